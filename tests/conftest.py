"""Session hooks for the unit tests."""

from __future__ import annotations

import sys
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The crash-point explorer's figures, also under ``-q`` (they go in ``make unit``/``make test``)."""
    module = sys.modules.get("tests.test_crash_points")
    if module is not None and module.EXPLORED:
        terminalreporter.write_line(module.summary_line())
    if module is not None and module.EXPLORED_CACHED:
        terminalreporter.write_line(module.cached_summary_line())
