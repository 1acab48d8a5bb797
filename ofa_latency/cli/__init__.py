"""``ofa-latency`` command line: one small function per command over the public API, grouped
by the path of the data (:mod:`.measure`: subnets to tables; :mod:`.predictors`: tables to
predictors; :mod:`.search`: predictors to a deployed subnet).

Exit codes: 0 success, 2 a mistake in what was asked (bad value, unknown name, missing or
malformed file: ``error: ...`` on stderr, no traceback), 130 interrupted (Ctrl-C), 141 the
reader of the output went away (``ofa-latency list | head``, silent), 1 an unexpected error (a bug: rerun with ``--debug`` for the traceback).
"""

from __future__ import annotations

import argparse
import logging

from ._run import run_command

__all__ = ["main", "build_parser"]

_DESCRIPTION = """Learned latency predictors for Once-for-All: profile subnets on your device,
fine-tune a shipped predictor, search under a latency budget, verify and export.

Exit codes: 0 success, 2 a mistake in what was asked (error: ... on stderr), 130 interrupted,
141 the reader of the output went away (| head), 1 a bug (rerun with --debug for the traceback)."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (imports only what parsing needs)."""
    from .._version import __version__
    from . import fleet, measure, predictors, search

    p = argparse.ArgumentParser(prog="ofa-latency", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging, the libraries' own INFO and DEBUG lines too")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of any error (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (measure, predictors, search, fleet):
        group.register(sub)
    return p


def main(argv=None) -> int:
    """Entry point of the ``ofa-latency`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage errors (code 2)
        return int(exc.code or 0)
    level = logging.DEBUG if args.verbose else \
        logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    # the package's own messages at ``level``; the libraries it drives (converters, Ray) at
    # WARNING unless --verbose: their INFO lines are not the user's business
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ofa_latency").setLevel(level)
    return run_command(args.func, args, args.debug)
