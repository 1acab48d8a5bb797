"""The exit-code contract every command line of the package follows."""

from __future__ import annotations

import sys
import traceback

from ..errors import USER_ERRORS

__all__ = ["run_command"]


def run_command(func, args, debug: bool = False) -> int:
    """Run one command of a command line under its exit-code contract: 0 success, 2 a
    mistake in what was asked (``error: ...`` on stderr, no traceback), 130 interrupted,
    1 an unexpected error (a bug; ``debug`` prints the traceback)."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so, traceback on request
        if debug:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc} (this is a bug in ofa-latency; "
              f"rerun with --debug for the traceback)", file=sys.stderr)
        return 1
