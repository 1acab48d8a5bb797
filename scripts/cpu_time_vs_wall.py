"""Is this host's timing noise time taken away from the process (the hypervisor's steal, other
processes), or the CPU running slower while the process runs?

Times the reference subnet of ``ofa_mbv3_w1.2`` (ONNX Runtime and PyTorch, 1 thread) run by
run, each run by the wall clock and by the thread's own CPU time (``time.thread_time``), and
reads the pinned CPU's steal time from ``/proc/stat`` before and after. Where the two clocks
spread alike run to run, the process held the CPU throughout and the noise is in how fast it
ran there: no clock a profiler could read instead would remove it.

    taskset -c 1 python scripts/cpu_time_vs_wall.py --runs 600 \
        --json data/benchmarks/cpu_time_vs_wall_host8.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _spread(v) -> dict:
    q5, q10, q50, q90, q95 = np.percentile(v, [5, 10, 50, 90, 95])
    return {"median_ms": float(q50), "min_ms": float(np.min(v)),
            "p90_over_p10": float(q90 / q10), "p95_over_p5": float(q95 / q5)}


def time_runs(run, n: int, warmup: int = 10) -> dict:
    """``run()`` ``n`` times after ``warmup``: wall and thread CPU time per run, their
    spreads, their correlation, and the pinned CPU's steal time over the runs."""
    for _ in range(warmup):
        run()
    from ofa_latency.hardware import cpu_snapshot

    cpu = sorted(os.sched_getaffinity(0))[0]
    before, t0 = cpu_snapshot(), time.perf_counter()
    wall, thread = np.empty(n), np.empty(n)
    for i in range(n):
        w0, c0 = time.perf_counter(), time.thread_time()
        run()
        wall[i], thread[i] = time.perf_counter() - w0, time.thread_time() - c0
    elapsed = time.perf_counter() - t0
    steal_s = cpu_snapshot().steal_s[cpu] - before.steal_s[cpu]
    wall, thread = wall * 1e3, thread * 1e3
    return {"runs": n, "cpu": cpu, "wall": _spread(wall), "thread_cpu": _spread(thread),
            "corr": float(np.corrcoef(wall, thread)[0, 1]),
            "median_wall_over_cpu": float(np.median(wall / thread)),
            "steal_pct_of_elapsed": 100 * steal_s / elapsed, "elapsed_s": elapsed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from ofa_latency import get_space
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import reference_subnet
    from ofa_latency.spaces.building import onnx_bytes

    torch.set_num_threads(1)
    space = get_space("ofa_mbv3_w1.2")
    ref = reference_subnet(space)
    module = space.build(ref).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, ref.image_size, ref.image_size),
                                                  dtype=np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes(module, ref.image_size), opts,
                                providers=["CPUExecutionProvider"])
    xt = torch.from_numpy(x)

    def torch_run():
        with torch.inference_mode():
            module(xt)

    out = {"subnet": ref.arch_json(), "image_size": ref.image_size,
           "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "hardware": describe_hardware(measure=False), "results": {}}
    for name, run in (("onnxruntime_t1", lambda: sess.run(None, {"input": x})),
                      ("torch_t1", torch_run)):
        r = out["results"][name] = time_runs(run, args.runs)
        print(f"{name}: wall median {r['wall']['median_ms']:.2f} ms, p90/p10 "
              f"{r['wall']['p90_over_p10']:.3f}; thread CPU p90/p10 "
              f"{r['thread_cpu']['p90_over_p10']:.3f}; corr {r['corr']:.4f}; wall/CPU "
              f"{r['median_wall_over_cpu']:.4f}; steal {r['steal_pct_of_elapsed']:.2f} % of "
              f"{r['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
