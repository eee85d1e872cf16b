"""Shared command-line plumbing: user errors print one clear line and exit 2, no traceback; argparse
types shared by several tools."""
from __future__ import annotations

import argparse
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


def shard_arg(text: str) -> tuple[int, int]:
    """``K/N`` as ``(K, N)`` with 0 <= K < N: an argparse type for N processes sharing one study."""
    from .workflows.ranking import check_shard

    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 0/2, got {text!r}") from None
    try:
        check_shard((k, n))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return k, n


def keep_float_option(parser: argparse.ArgumentParser, when: str) -> None:
    """``--keep-float [OP ...]`` of the int8 tools (``None`` when not given: the int8 backend's default)."""
    parser.add_argument("--keep-float", nargs="*", default=None, metavar="OP",
                        help=f"{when}: ONNX op types left in float (e.g. MatMul for the correlation, Sigmoid Mul "
                             "for Swish and SE, DepthwiseConv for grouped convolutions, Output for the heads' last "
                             "layers); an op type the graph lacks is refused with the ones it has. Without the flag: "
                             "Output (the outputs stay float); op types given replace it (name Output too to keep "
                             "it); the flag alone quantises every layer")
