"""Shared command-line plumbing: user errors print one clear line and exit 2, no traceback."""
from __future__ import annotations

import sys
from collections.abc import Callable

from .data.sequence import DataError
from .space.space import ConstraintError, SpaceError

USER_ERRORS = (SpaceError, ConstraintError, DataError, FileNotFoundError, KeyError, ValueError)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a tool's ``main``; known user errors become ``error: ...`` on stderr and exit code 2."""
    try:
        code = main()
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
