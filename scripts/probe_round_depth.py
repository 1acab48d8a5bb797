"""Do PyTorch's rounds spread more than ONNX Runtime's because the host slows them at other
moments, or because the same slow moments cost PyTorch more? And does Python's garbage
collector run inside PyTorch's forward passes?

Times the reference subnet of ``ofa_mbv3_w1.2`` (1 thread, batch 1) in both runtimes, and the
largest subnet in ONNX Runtime (its runs at least as long as PyTorch's reference's), round by
round in turn (each round the minimum of ``--runs-per-round`` runs, as the profiler's rounds
are), and counts the garbage collections during ``--gc-runs`` PyTorch forward passes and each
runtime's page faults during as many runs.

    taskset -c 0 python scripts/probe_round_depth.py --rounds 150 \
        --json data/benchmarks/round_depth_host9.json
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
from pathlib import Path

import numpy as np


def depth(minima_ms) -> dict:
    """How far a series of round minima moves around its median."""
    r = np.asarray(minima_ms) / np.median(minima_ms)
    return {"median_ms": round(float(np.median(minima_ms)), 4),
            "min_over_median": round(float(r.min()), 3),
            "max_over_median": round(float(r.max()), 3),
            "p90_over_p10": round(float(np.percentile(r, 90) / np.percentile(r, 10)), 3)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--runs-per-round", type=int, default=3)
    p.add_argument("--gc-runs", type=int, default=200)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend, reference_subnet
    from ofa_latency.spaces import get_space

    space = get_space("ofa_mbv3_w1.2")
    ref = reference_subnet(space)
    runners = {b: create_backend(b, threads=1).prepare(space, ref, 1)
               for b in ("torch", "onnxruntime")}
    # ONNX Runtime on the largest subnet: its runs at least as long as PyTorch's reference's,
    # so that a difference in depth between runtimes is not one of run length
    largest = space.validate({"ks": [7] * space.n_blocks, "e": [6] * space.n_blocks,
                              "d": [4] * space.n_stages, "image_size": 224})
    runners["onnxruntime_largest"] = create_backend("onnxruntime", threads=1).prepare(
        space, largest, 1)
    collections = []

    def on_gc(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(on_gc)
    runners["torch"].run(args.gc_runs)
    gc.callbacks.remove(on_gc)
    faults = {}
    for b, r in runners.items():
        r.run(20)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF)
        r.run(args.gc_runs)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults[b] = {"minor_page_faults_per_run": round(
            (after.ru_minflt - before.ru_minflt) / args.gc_runs, 3),
            "major_page_faults": after.ru_majflt - before.ru_majflt}
    minima = {b: [] for b in runners}
    for _ in range(args.rounds):
        for b, r in runners.items():
            minima[b].append(1e3 * min(r.run(args.runs_per_round)))
    rel = {b: np.asarray(v) / np.median(v) for b, v in minima.items()}
    slow = rel["onnxruntime"] > np.percentile(rel["onnxruntime"], 90)
    out = {"hardware": describe_hardware("onnxruntime", 1), "rounds": args.rounds,
           "runs_per_round": args.runs_per_round,
           "gc_collections_in_torch_runs": {"runs": args.gc_runs, "collections": len(collections),
                                            "by_generation": {str(g): collections.count(g)
                                                              for g in (0, 1, 2)}},
           "page_faults": faults,
           "round_minima": {b: depth(v) for b, v in minima.items()},
           # the same moments? the two series' round minima, rank-correlated
           "spearman_torch_vs_onnxruntime": round(float(
               np.corrcoef(np.argsort(np.argsort(rel["torch"])),
                           np.argsort(np.argsort(rel["onnxruntime"])))[0, 1]), 3),
           # how much deeper: PyTorch's excess over its median in ONNX Runtime's slowest
           # tenth of rounds, against ONNX Runtime's own there
           "slowest_tenth_excess_pct": {b: round(float(100 * (np.median(v[slow]) - 1)), 2)
                                        for b, v in rel.items()}}
    print(json.dumps({k: v for k, v in out.items() if k != "hardware"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
