"""``python -m delivery.cli``: the same as the ``deliver`` command."""

from . import main

main()
