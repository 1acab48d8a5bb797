"""Does a subnet's measurement move from one window to the next because each window prepares
the model afresh (a new ONNX Runtime session, a new OpenVINO compilation), or because the
host's moments differ?

For each of ``--subnets`` seeded subnets of ``ofa_mbv3_w1.2`` (1 thread, batch 1), the model
is made once (the conversion cache), then timed in ``--windows`` windows prepared afresh and
as many windows of one runner prepared once, alternating, each window the profiler's own
(:func:`~ofa_latency.profiling.timing.measure`, drift-corrected by the reference subnet in
the same window). Per subnet and kind it reports the spread of the windows' ratios (standard
deviation, percent of their mean) beside the windows' own 90 % half-widths (median): where
fresh windows spread more than windows of one runner, preparing is a source of row noise.

    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --json data/benchmarks/preparations_openvino_int8_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend onnxruntime --precision int8 \
        --json data/benchmarks/preparations_onnxruntime_int8_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --warmup-runs 50 --json data/benchmarks/preparations_openvino_int8_w50_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --order alternate --json data/benchmarks/preparations_openvino_int8_alt_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --trajectory-s 90 --json data/benchmarks/preparations_openvino_int8_trajectory_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --compilations 3 --windows 8 \
        --json data/benchmarks/preparations_openvino_int8_in_turn_host9.json
    taskset -c 1 python scripts/probe_preparations.py --backend openvino --precision int8 \
        --keep-fresh --json data/benchmarks/preparations_openvino_int8_kept_host9.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spread(results) -> dict:
    """The windows' ratios: their spread (sd, percent of the mean) and median half-width."""
    ratios = np.array([r.ratio for r in results])
    return {"windows": len(ratios), "ratio_mean": round(float(ratios.mean()), 5),
            "ratio_sd_pct": round(float(100 * ratios.std(ddof=1) / ratios.mean()), 3),
            "median_own_ci_pct": round(float(np.median([r.ci_pct for r in results])), 3)}


def trajectory(be, space, sub, ref, protocol, seconds: float) -> dict:
    """One runner of ``sub`` prepared afresh (its model made before), timed window after
    window for ``seconds``: each window's ratio and its start (seconds since preparing)."""
    import time

    from ofa_latency.profiling.timing import measure

    be.prepare(space, sub, 1)  # the model made (cached) before the clock starts
    runner = be.prepare(space, sub, 1)
    t0 = time.perf_counter()
    starts, ratios = [], []
    while time.perf_counter() - t0 < seconds:
        starts.append(round(time.perf_counter() - t0, 2))
        ratios.append(measure(runner, ref, None, protocol).ratio)
    r = np.array(ratios)
    k = max(1, len(r) // 5)
    row = {"arch": sub.arch_json(), "window_start_s": starts,
           "ratio": [round(float(x), 5) for x in r],
           "last_fifth_over_first_fifth_pct": round(float(100 * (r[-k:].mean()
                                                                 / r[:k].mean() - 1)), 3)}
    print(f"{len(r)} windows over {seconds:.0f} s: last fifth over first fifth "
          f"{row['last_fifth_over_first_fifth_pct']:+.2f} %; ratios "
          + " ".join(f"{x:.4f}" for x in r), flush=True)
    return row


def in_turn(be, space, sub, ref, protocol, k: int, rounds: int) -> dict:
    """``k`` runners of ``sub`` prepared one after the other and kept, timed in turn (one
    window each per round) for ``rounds`` rounds: each one's mean ratio over the first's."""
    from ofa_latency.profiling.timing import measure

    runners = [be.prepare(space, sub, 1) for _ in range(k)]
    ratios = [[] for _ in range(k)]
    for i in range(rounds):
        for j in [(m + i) % k for m in range(k)]:  # each runner in each position in turn
            ratios[j].append(measure(runners[j], ref, None, protocol).ratio)
    means = [float(np.mean(r)) for r in ratios]
    row = {"arch": sub.arch_json(), "ratios": [[round(float(x), 5) for x in r] for r in ratios],
           "over_first_pct": [round(100 * (m / means[0] - 1), 3) for m in means],
           "sd_pct": [round(float(100 * np.std(r, ddof=1) / np.mean(r)), 3) for r in ratios]}
    print(f"{k} preparations, {rounds} windows each: mean over the first's "
          + " ".join(f"{x:+.2f} %" for x in row["over_first_pct"])
          + "; sd " + " ".join(f"{x:.2f}" for x in row["sd_pct"]) + " %", flush=True)
    return row


def main(argv=None) -> dict:
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend
    from ofa_latency.profiling.timing import TimingProtocol, measure
    from ofa_latency.spaces import get_space, reference_subnet

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--precision", default="int8")
    p.add_argument("--subnets", type=int, default=3)
    p.add_argument("--windows", type=int, default=10, help="windows of each kind per subnet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=["fresh-first", "alternate"], default="fresh-first",
                   help="fresh-first: prepare, time the fresh runner, then the one prepared "
                        "once; alternate: every other pair prepares, times the one prepared "
                        "once, then the fresh runner (the preparation's after-effects then "
                        "fall on the old runner's window)")
    p.add_argument("--trajectory-s", type=float, default=None, metavar="S",
                   help="instead: per subnet, one runner prepared afresh and timed window "
                        "after window for S seconds (does a new model speed up with time?)")
    p.add_argument("--compilations", type=int, default=None, metavar="K",
                   help="instead: per subnet, K runners prepared one after the other (the "
                        "first makes the model), all kept, timed in turn for --windows rounds "
                        "(is the first preparation faster than later ones?)")
    p.add_argument("--keep-fresh", action="store_true",
                   help="keep every runner prepared afresh until the subnet is done instead of "
                        "dropping it after its window (does the next preparation reuse what a "
                        "dropped model freed?)")
    p.add_argument("--warmup-runs", type=int, default=None,
                   help="warm-up runs per window (default: the profiler's own)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    space = get_space("ofa_mbv3_w1.2")
    be = create_backend(args.backend, threads=1, precision=args.precision)
    protocol = TimingProtocol() if args.warmup_runs is None else TimingProtocol(
        warmup_runs=args.warmup_runs)
    ref = be.prepare(space, reference_subnet(space), 1)
    out = {"command": " ".join(sys.argv), "backend": args.backend, "precision": args.precision,
           "warmup_runs": protocol.warmup_runs, "order": args.order,
           "keep_fresh": args.keep_fresh,
           "hardware": describe_hardware(args.backend, 1, "cpu", precision=args.precision),
           "subnets": []}
    for sub in space.sample(args.subnets, seed=args.seed):
        if args.compilations is not None:
            out["subnets"].append(in_turn(be, space, sub, ref, protocol, args.compilations,
                                          args.windows))
            continue
        if args.trajectory_s is not None:
            out["subnets"].append(trajectory(be, space, sub, ref, protocol, args.trajectory_s))
            continue
        once = be.prepare(space, sub, 1)  # makes the model (cached), prepares one runner
        fresh, same, kept = [], [], []
        late = {"fresh": [], "prepared_once": []}  # pairs whose old window came first
        for i in range(args.windows):
            runner = be.prepare(space, sub, 1)
            if args.order == "alternate" and i % 2 == 1:
                same.append(measure(once, ref, None, protocol))
                fresh.append(measure(runner, ref, None, protocol))
                late["fresh"].append(fresh[-1].ratio)
                late["prepared_once"].append(same[-1].ratio)
            else:
                fresh.append(measure(runner, ref, None, protocol))
                same.append(measure(once, ref, None, protocol))
            if args.keep_fresh:
                kept.append(runner)
            del runner
        kept.clear()
        row = {"arch": sub.arch_json(), "fresh": spread(fresh), "prepared_once": spread(same),
               "fresh_over_once_mean_pct": round(float(100 * np.mean(
                   [f.ratio / o.ratio - 1 for f, o in zip(fresh, same)])), 3)}
        if late["fresh"]:  # fresh over once, by which window followed the preparation
            ratio = np.array(late["fresh"]) / np.array(late["prepared_once"])
            early = np.array([f.ratio for f in fresh]) / np.array([o.ratio for o in same])
            early = np.delete(early, range(1, len(early), 2))
            row["fresh_over_once_pct"] = {
                "fresh_window_right_after_preparation": round(float(100 * (early.mean() - 1)), 3),
                "old_window_right_after_preparation": round(float(100 * (ratio.mean() - 1)), 3)}
        out["subnets"].append(row)
        print(f"{args.backend} {args.precision}  fresh: sd {row['fresh']['ratio_sd_pct']:.2f} % "
              f"(own +-{row['fresh']['median_own_ci_pct']:.2f} %)  prepared once: sd "
              f"{row['prepared_once']['ratio_sd_pct']:.2f} % "
              f"(own +-{row['prepared_once']['median_own_ci_pct']:.2f} %)  "
              f"means {row['fresh']['ratio_mean']:.4f} / {row['prepared_once']['ratio_mean']:.4f}",
              flush=True)
        if "fresh_over_once_pct" in row:
            print("  fresh over once, %", row["fresh_over_once_pct"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
