"""Fewer runs per round for slow models: device time against test-retest noise.

    taskset -c 1 python scripts/bench_runs_per_round.py --n 40 --formats tflite tflite-int8 \
        --protocols 3 1 --json data/benchmarks/runs_per_round.json

LiteRT's subnets run 16-81 ms here, and the default protocol (rounds of 3 runs of the reference
and 3 of the subnet, each round keeping its fastest run, at least 6 rounds, then more until
the subnet's 90 % half-width is 1 % or 3 s are spent) costs 2-3.5 device-seconds per subnet
(BENCHMARKS.md 16.12), where issue 17 asks for 1.5. A round's minimum over 3 runs guards
against a run hit by interference; a run of 50 ms already spans many scheduler ticks, so one
run per round may do as well for fewer seconds. This measures it.

The subnets (``get_space(space).sample(n, seed)``: the first subnets of the committed tables)
are exported once per format with ``ofa-latency export-set`` into ``--workdir`` (kept: a
re-run reuses them), then profiled with the board's profiler (``python -m
ofa_latency.board profile``, what a board runs) into a separate new table per protocol and
pass; the passes alternate the protocols (pass 1 of every protocol, then pass 2), so they see
the same machine states. For each format and protocol: the test-retest agreement of its two
tables (``scripts/noise_floor.py``'s reader) and the device-seconds per subnet (the profile
process's wall time over the subnets).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default="ofa_mbv3_w1.2")
    p.add_argument("--formats", nargs="+", default=["tflite", "tflite-int8"])
    p.add_argument("--protocols", nargs="+", type=int, default=[3, 1],
                   help="runs per round to compare")
    p.add_argument("--jobs", type=int, default=1, help="export-set processes")
    p.add_argument("--workdir", default="/tmp/runs_per_round")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from noise_floor import compare

    from ofa_latency.datasets import read_measurements
    from ofa_latency.hardware import describe_hardware

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    export_s = {}
    for fmt in args.formats:
        folder = work / f"{fmt}_n{args.n}_s{args.seed}"
        if not (folder / "done").exists():  # exported by an earlier run: reused
            export_s[fmt] = run([py, "-m", "ofa_latency.cli", "export-set", "--space", args.space,
                                 "--n", str(args.n), "--seed", str(args.seed), "--format", fmt,
                                 "--out", str(folder), "--jobs", str(args.jobs), "--quiet"])
            (folder / "done").write_text("")
    walls = {}
    for pas in (1, 2):
        for rpr in args.protocols:
            for fmt in args.formats:
                out = work / f"{fmt}_rpr{rpr}_pass{pas}.csv"
                out.unlink(missing_ok=True)
                out.with_name(out.name + ".hardware.json").unlink(missing_ok=True)
                walls[(fmt, rpr, pas)] = run([
                    py, "-m", "ofa_latency.board", "profile",
                    str(work / f"{fmt}_n{args.n}_s{args.seed}"), "--threads", "1",
                    "--runs-per-round", str(rpr), "--out", str(out), "--quiet"])
                print(f"{fmt} runs/round {rpr} pass {pas}: {walls[(fmt, rpr, pas)]:.0f} s",
                      flush=True)
    results = {"n_subnets": args.n, "seed": args.seed, "space": args.space,
               "hardware": describe_hardware("onnxruntime", 1),
               "export_seconds": {k: round(v, 1) for k, v in export_s.items()},
               "results": []}
    for fmt in args.formats:
        for rpr in args.protocols:
            a = read_measurements(work / f"{fmt}_rpr{rpr}_pass1.csv")
            b = read_measurements(work / f"{fmt}_rpr{rpr}_pass2.csv")
            res = {"format": fmt, "runs_per_round": rpr, **compare(a, b),
                   "device_seconds_per_subnet": round(
                       (walls[(fmt, rpr, 1)] + walls[(fmt, rpr, 2)]) / 2 / args.n, 3)}
            results["results"].append(res)
            print(json.dumps(res), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
