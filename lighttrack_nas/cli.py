"""Shared command-line plumbing: user errors print one clear line and exit 2, no traceback."""
from __future__ import annotations

import sys
from collections.abc import Callable

from .config import StopError
from .data.sequence import DataError
from .space.space import ConstraintError, SpaceError

# KeyError is not among them: a bare one is a bug and keeps its traceback (names that are not known
# raise UnknownNameError, a ValueError)
USER_ERRORS = (SpaceError, ConstraintError, DataError, FileNotFoundError, ValueError, StopError)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a tool's ``main``; known user errors become ``error: ...`` on stderr and exit code 2."""
    try:
        code = main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
