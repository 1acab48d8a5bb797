"""The board's command line (``python -m ofa_latency.board``, ``ofa-latency-board``): needs only
onnxruntime and numpy, like :mod:`ofa_latency.board` itself. Exit codes as ``ofa-latency``'s."""

from __future__ import annotations

import argparse
import logging

from ..board import __doc__ as BOARD_DOC
from ..board import profile_folder, profile_layers
from ._common import add_litert_delegate_option, add_timing_options, timing_protocol
from ._run import run_command

__all__ = ["main"]


def _cmd_board_profile(args) -> int:
    n = profile_folder(args.folder, args.out, threads=args.threads, device=args.device,
                       protocol=timing_protocol(args), limit=args.limit, progress=not args.quiet,
                       litert_delegate=args.litert_delegate)
    print(f"{n} subnets in {args.out}")
    return 0


def _cmd_board_profile_layers(args) -> int:
    info = profile_layers(args.folder, args.out, threads=args.threads, device=args.device,
                          protocol=timing_protocol(args), progress=not args.quiet)
    print(f"{info['n_layers']} layers in {args.out} ({info['device_seconds']:.0f} device-seconds); "
          f"on the host: ofa-latency finish-lut --space {info['setting']['space']} --out {args.out}")
    return 0


def main(argv=None) -> int:
    """``python -m ofa_latency.board profile FOLDER --out TABLE`` (also the
    ``ofa-latency-board`` console script): needs only onnxruntime and numpy."""
    p = argparse.ArgumentParser(prog="python -m ofa_latency.board", description=BOARD_DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of any error")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("profile", help="time every exported subnet into a measurement table")
    pr.add_argument("folder", help="a folder written by 'ofa-latency export-set'")
    pr.add_argument("--out", required=True, help="CSV table to append to (resumes if it exists)")
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--device", default=None, help="device name for the table (default: the "
                                                   "CPU model)")
    pr.add_argument("--limit", type=int, default=None, help="profile at most this many")
    add_litert_delegate_option(pr, "a .tflite set")
    add_timing_options(pr)
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_cmd_board_profile)
    pl = sub.add_parser("profile-layers", help="time every exported layer (a lookup table)")
    pl.add_argument("folder", help="a folder written by 'ofa-latency export-layers'")
    pl.add_argument("--out", required=True, help="lookup-table folder (resumes if it exists)")
    pl.add_argument("--threads", type=int, default=1)
    pl.add_argument("--device", default=None, help="device name (default: the CPU model)")
    add_timing_options(pl, max_rounds=10)
    pl.add_argument("--quiet", action="store_true")
    pl.set_defaults(func=_cmd_board_profile_layers)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_command(args.func, args, args.debug)
