"""The exit-code contract every command line of the package follows."""

from __future__ import annotations

import os
import sys
import traceback

from ..errors import USER_ERRORS

__all__ = ["run_command"]


def run_command(func, args, debug: bool = False) -> int:
    """Run one command of a command line under its exit-code contract: 0 success, 2 a
    mistake in what was asked (``error: ...`` on stderr, no traceback), 130 interrupted,
    141 the reader of its output went away (``ofa-latency list | head``; silent, as a shell
    tool killed by SIGPIPE), 1 an unexpected error (a bug; ``debug`` prints the traceback)."""
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
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


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's flush at exit does not fail
    again on the closed pipe (Python's documented recipe for SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
