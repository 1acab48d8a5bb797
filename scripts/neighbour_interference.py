"""Does work on the other core slow the profiled one? (BENCHMARKS.md section 14.18)

The profiler times on one core (``taskset -c 1``) while helper processes may convert the next
subnets' models on the other (``profile --convert-jobs``), and a user's own work may run there.
On a VM two virtual cores can share a physical core or its memory bandwidth. This script times
ONNX Runtime's reference subnet (1 thread) on this process's core in rounds of 3 runs (each
round's minimum, as the profiler keeps), while a helper process pinned to another core cycles
through what it does in blocks of ``--block-s`` seconds:

* ``idle``: nothing;
* ``export``: ONNX exports of OFA subnets, as a ``--convert-jobs`` helper for ONNX Runtime;
* ``spin``: a pure-Python busy loop, as the demo benchmark's busy process.

Each block's first ``--settle-s`` seconds are dropped (the switch itself; an export under
way finishes first). Per state: the median and the 10th
percentile of the round minima (ms), the median within-block spread ((max - min) / median of
the rounds), and their ratio to the idle blocks' (per cycle, so a slow drift of the host
cancels: the median over cycles of the state's block median / the idle block median of the
same cycle).

    taskset -c 1 python scripts/neighbour_interference.py --cycles 10 \\
        --out data/benchmarks/neighbour_interference_host8.json
    taskset -c 1 python scripts/neighbour_interference.py --cycles 40 --block-s 2.5 \\
        --settle-s 0.8 --out data/benchmarks/neighbour_interference_short_host8.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATES = ("idle", "export", "spin")


def _helper(conn, cpus):
    """The neighbour: pinned to ``cpus``; does what the last message says until the next."""
    os.sched_setaffinity(0, cpus)
    import torch

    torch.set_num_threads(1)
    from ofa_latency.spaces import get_space
    from ofa_latency.spaces.building import onnx_bytes

    space = get_space("ofa_mbv3_w1.2")
    subs = space.sample(20, seed=1)
    mode, i = "idle", 0
    conn.send("ready")
    while mode != "stop":
        if conn.poll(0.01 if mode == "idle" else 0):
            mode = conn.recv()
        if mode == "export":
            sub = subs[i % len(subs)]
            onnx_bytes(space.build(sub), sub.image_size, 1)
            i += 1
        elif mode == "spin":
            t = time.perf_counter()
            while time.perf_counter() - t < 0.01:
                pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=8, help="cycles of the three states")
    p.add_argument("--block-s", type=float, default=6.0, help="seconds per state and cycle")
    p.add_argument("--settle-s", type=float, default=1.0,
                   help="seconds dropped at the start of each block")
    p.add_argument("--out", default=str(ROOT / "data" / "benchmarks" /
                                        "neighbour_interference.json"))
    args = p.parse_args(argv)
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend
    from ofa_latency.profiling.ahead import helper_cpus
    from ofa_latency.spaces import get_space, reference_subnet

    others = helper_cpus()  # where --convert-jobs helpers run: the CPUs this one is not on
    if len(os.sched_getaffinity(0)) != 1 or not others:
        sys.exit("pin this script to one core with other cores free (taskset -c 1 python ...)")

    space = get_space("ofa_mbv3_w1.2")
    backend = create_backend("onnxruntime", threads=1)
    ref = backend.prepare(space, reference_subnet(space), 1)
    ref.run(10)
    parent, child = mp.get_context("spawn").Pipe()
    helper = mp.get_context("spawn").Process(target=_helper, args=(child, others), daemon=True)
    helper.start()
    assert parent.recv() == "ready"
    blocks = []  # (cycle, state, [round minima ms])
    t_start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for cycle in range(args.cycles):
        for state in STATES:
            parent.send(state)
            t0 = time.perf_counter()
            rounds = []
            while time.perf_counter() - t0 < args.block_s:
                m = float(np.min(ref.run(3))) * 1e3
                if time.perf_counter() - t0 >= args.settle_s:
                    rounds.append(m)
            blocks.append((cycle, state, rounds))
            print(f"cycle {cycle} {state:6s} median {statistics.median(rounds):.3f} ms "
                  f"({len(rounds)} rounds)", flush=True)
    parent.send("stop")
    helper.join(10)
    out = {"started": t_start, "cycles": args.cycles, "block_s": args.block_s,
           "settle_s": args.settle_s,
           "hardware": describe_hardware("onnxruntime", 1, "cpu"), "states": {}}
    idle = {c: statistics.median(r) for c, s, r in blocks if s == "idle"}
    for state in STATES:
        mine = [(c, r, statistics.median(r)) for c, s, r in blocks if s == state]
        allr = [x for _, r, _ in mine for x in r]
        ratios = [med / idle[c] for c, _, med in mine]
        out["states"][state] = {
            "rounds": len(allr),
            "median_ms": round(statistics.median(allr), 4),
            "p10_ms": round(float(np.percentile(allr, 10)), 4),
            "median_block_spread_pct": round(statistics.median(
                100 * (max(r) - min(r)) / med for _, r, med in mine), 2),
            "ratio_to_idle_by_cycle": [round(x, 4) for x in ratios],
            "median_ratio_to_idle": round(statistics.median(ratios), 4)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["states"], indent=1))
    print("->", args.out)


if __name__ == "__main__":
    main()
