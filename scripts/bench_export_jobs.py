"""How much sooner a whole-model board set is written with ``export-set --jobs N``.

Exports the same subnets (``get_space(space).sample(n, seed)``, the standard list's first
ones) in each format twice into fresh temporary folders, with one process and with
``--jobs``, alternating which goes first per repeat, and reports the wall seconds of each
(median over repeats), the speed-up and whether the two sets' files are byte-identical.
Run it with the cores it may use idle: the speed-up is the host's, at most its core count.

    python scripts/bench_export_jobs.py --formats tflite onnx-int8 --n 6 --jobs 2 \
        --json data/benchmarks/export_jobs.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="ofa_mbv3_w1.2")
    ap.add_argument("--formats", nargs="+", default=["tflite", "onnx-int8"])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from ofa_latency import get_space
    from ofa_latency.export import export_set
    from ofa_latency.hardware import describe_hardware

    space = get_space(args.space)
    subs = space.sample(args.n, seed=args.seed)
    out = {"space": space.name, "n_subnets": args.n, "jobs": args.jobs,
           "cpu_count": os.cpu_count(), "hardware": describe_hardware("onnxruntime", 1, "cpu"),
           "formats": {}}
    for fmt in args.formats:
        secs = {1: [], args.jobs: []}
        identical = True
        for r in range(args.repeats):
            order = [1, args.jobs] if r % 2 == 0 else [args.jobs, 1]
            with tempfile.TemporaryDirectory() as tmp:
                sets = {}
                for jobs in order:
                    folder = Path(tmp) / f"jobs{jobs}"
                    t0 = time.perf_counter()
                    export_set(space, subs, folder, progress=False, fmt=fmt, jobs=jobs)
                    secs[jobs].append(time.perf_counter() - t0)
                    sets[jobs] = _files(folder)
                identical &= sets[1] == sets[args.jobs]
        one, many = statistics.median(secs[1]), statistics.median(secs[args.jobs])
        out["formats"][fmt] = {"seconds_1": [round(s, 1) for s in secs[1]],
                               f"seconds_{args.jobs}": [round(s, 1) for s in secs[args.jobs]],
                               "seconds_per_file_1": round(one / (args.n + 1), 2),
                               "speedup": round(one / many, 2), "identical_files": identical}
        print(f"{fmt:12s} {args.n + 1} files: 1 process {one:6.1f} s, {args.jobs} processes "
              f"{many:6.1f} s: {one / many:.2f}x; files identical: {identical}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
