"""``python -m delivery.cli``: the same as the ``deliver`` command."""

from delivery.cli import main

main()
