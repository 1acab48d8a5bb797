"""Profile a folder of exported subnets on a device without PyTorch: ONNX Runtime and numpy
only (no torch, ofa or pandas is imported).

On the host::

    ofa-latency export-set --space ofa_mbv3_w1.2 --n 50 --out subnets/

On the board (``pip install --no-deps ofa-latency onnxruntime numpy``)::

    python -m ofa_latency.board profile subnets/ --threads 4 --out board.csv

Back on the host: ``ofa-latency finetune --base NAME --data board.csv --out my_board/``.

The table has the schema and the timing protocol of ``ofa-latency profile`` (interleaved rounds
with the reference subnet, one row appended and fsynced per subnet, resumable: re-run the same
command after an interruption).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

from ._version import __version__
from .datasets import MeasurementLog, utc_timestamp
from .errors import UsageError
from .hardware import cpu_model_name
from .profiling.backends import OrtRunner, onnxruntime_session
from .profiling.scale import reference_level_ms
from .profiling.timing import TimingProtocol, combine_windows, measure, windows_agree

__all__ = ["profile_folder", "main"]

logger = logging.getLogger("ofa_latency.board")


def _runner(path: Path, image_size: int, batch_size: int, threads: int) -> OrtRunner:
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch_size, 3, image_size, image_size),
                                                 dtype=np.float32)
    return OrtRunner(onnxruntime_session(path, threads), x)


def profile_folder(folder, out, threads: int = 1, protocol: TimingProtocol = TimingProtocol(),
                   device: str | None = None, limit: int | None = None,
                   progress: bool = True) -> int:
    """Profile every subnet of an exported folder (:func:`ofa_latency.export.export_set`) into
    the measurement table ``out``; returns the number of rows now in it for this folder."""
    import onnxruntime as ort

    folder = Path(folder)
    man_path = folder / "manifest.json"
    if not man_path.is_file():
        raise UsageError(f"{man_path} not found: export the subnets with "
                         f"'ofa-latency export-set ... --out {folder}' first")
    manifest = json.loads(man_path.read_text())
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads = {threads!r}; must be an int >= 1")
    batch = int(manifest["batch_size"])
    device = device or cpu_model_name()
    setting = {"space": manifest["space"], "batch_size": batch, "backend": "onnxruntime",
               "device_type": "cpu", "device": device, "threads": threads, "precision": "fp32"}
    log = MeasurementLog(out)
    done, refs = set(), []
    for row in _rows(log.path):
        if row["backend"] != "onnxruntime" or row["threads"] not in (str(threads), f"{threads}.0") \
                or row["batch_size"] != str(batch) or row["device"] != device:
            raise UsageError(f"{log.path} holds another setting ({row['backend']} "
                             f"{row['threads']} thread(s), batch {row['batch_size']} on "
                             f"{row['device']}); use another --out")
        done.add((row["arch"], int(row["image_size"])))
        if row["ref_min_ms"]:
            refs.append(float(row["ref_min_ms"]))
    todo = [e for e in manifest["subnets"] if (e["arch"], e["image_size"]) not in done]
    if limit is not None:
        todo = todo[:max(0, limit - len(done))]
    ref = manifest["reference"]
    ref_runner = _runner(folder / ref["file"], ref["image_size"], batch, threads)
    versions = json.dumps({"python": platform.python_version(), "ofa_latency": __version__,
                           "onnxruntime": ort.__version__, "board": True}, sort_keys=True)
    t_start = time.perf_counter()
    for k, e in enumerate(todo, start=1):
        windows = []
        while True:
            runner = _runner(folder / e["file"], e["image_size"], batch, threads)
            windows.append(measure(runner, ref_runner, None, protocol))
            n = len(windows)
            if n >= protocol.max_windows or (n >= protocol.windows and (
                    n == 1 or windows_agree(windows, protocol.agree_pct))):
                break
        res = combine_windows(windows)
        refs.extend(w.ref_min_ms for w in windows)
        level = reference_level_ms(refs)
        log.append({**setting, "arch": e["arch"], "image_size": e["image_size"],
                    "latency_ms": round(res.ratio * level, 5),
                    "latency_raw_ms": round(res.latency_raw_ms, 5), "ratio": round(res.ratio, 7),
                    "spread_pct": round(res.spread_pct, 3), "n_runs": res.n_runs,
                    "n_rounds": res.n_rounds, "ref_latency_ms": round(res.ref_latency_ms, 5),
                    "ref_min_ms": round(res.ref_min_ms, 5), "ref_baseline_ms": round(level, 5),
                    "split": e["split"], "timestamp": utc_timestamp(), "versions": versions,
                    "source": "ofa-latency board"})
        if progress:
            rate = (time.perf_counter() - t_start) / k
            print(f"\r{k}/{len(todo)} subnets, {rate:.1f} s each, about "
                  f"{rate * (len(todo) - k) / 60:.0f} min left", end="", file=sys.stderr,
                  flush=True)
    if progress and todo:
        print(file=sys.stderr)
    return len(done) + len(todo)


def _rows(path: Path):
    import csv

    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)


def main(argv=None) -> int:
    """``python -m ofa_latency.board profile FOLDER --out TABLE``; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m ofa_latency.board", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("profile", help="time every exported subnet into a measurement table")
    pr.add_argument("folder", help="a folder written by 'ofa-latency export-set'")
    pr.add_argument("--out", required=True, help="CSV table to append to (resumes if it exists)")
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--device", default=None, help="device name for the table (default: the "
                                                   "CPU model)")
    pr.add_argument("--limit", type=int, default=None, help="profile at most this many")
    pr.add_argument("--rounds", type=int, default=6)
    pr.add_argument("--max-rounds", type=int, default=10)
    pr.add_argument("--quiet", action="store_true")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        n = profile_folder(args.folder, args.out, threads=args.threads, device=args.device,
                           protocol=TimingProtocol(rounds=args.rounds,
                                                   max_rounds=max(args.rounds, args.max_rounds)),
                           limit=args.limit, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} subnets in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
