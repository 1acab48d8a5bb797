"""Do small and large subnets follow the host's speed state alike? A direct check of
BENCHMARKS.md section 16.31 in one process.

Three seeded subnets of ``ofa_mbv3_w1.2`` (the fewest, the median and the most MACs of
``--pool`` samples), each prepared once, are timed in turn, window after window, for
``--seconds``, each window the profiler's own (:func:`~ofa_latency.profiling.timing.measure`,
the reference subnet in the same window). The host's state moves between windows; per subnet
the script fits its window's log raw latency against the log reference latency of the same
window: the *elasticity* (1: the subnet moves with the host's state as the reference does,
which drift correction by the ratio assumes). Each window's ratio against its reference latency
gives the same thing as a slope (elasticity - 1). The reference's own window-to-window
noise pulls every fitted elasticity towards 0 by the same factor, so compare the three with
each other: drift correction by the ratio is exact where they are equal.

    taskset -c 1 python scripts/probe_elasticity.py --backend onnxruntime --precision int8 \\
        --json data/benchmarks/elasticity_onnxruntime_int8_host9.json
    taskset -c 1 python scripts/probe_elasticity.py --backend openvino --precision int8 \\
        --json data/benchmarks/elasticity_openvino_int8_host9.json
    taskset -c 1 python scripts/probe_elasticity.py --backend onnxruntime --precision fp32 \\
        --json data/benchmarks/elasticity_onnxruntime_host9.json
    taskset -c 1 python scripts/probe_elasticity.py --backend torch --precision fp32 \\
        --json data/benchmarks/elasticity_torch_host9.json
    taskset -c 1 python scripts/probe_elasticity.py --backend litert --precision int8 \\
        --json data/benchmarks/elasticity_litert_int8_host9.json
    taskset -c 1 python scripts/probe_elasticity.py --backend onnxruntime --precision int8 \\
        --picks 8 --seconds 480 --json data/benchmarks/elasticity_onnxruntime_int8_8_host9.json
    python scripts/probe_elasticity.py --summarise data/benchmarks/elasticity_onnxruntime_host9.json
    for f in data/benchmarks/elasticity_*_host9.json; do \
        python scripts/probe_elasticity.py --summarise $f; done   # every run's state summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pool_by_macs(space, n: int, seed: int):
    """``n`` seeded samples of ``space``, their MACs (M) and the order that sorts them by MACs:
    the pool the probes pick their subnets from."""
    from ofa_latency.predictors._table import cost_table

    pool = space.sample(n, seed=seed)
    macs = cost_table(space, "macs_m").predict_encoded(space.encode(pool))
    return pool, macs, np.argsort(macs)


def _log_slope(x_ms, y_ms):
    """The least-squares slope of log ``y_ms`` on log ``x_ms``, the residuals, and the
    centred log ``x_ms``."""
    x, y = np.log(x_ms), np.log(y_ms)
    xc, yc = x - x.mean(), y - y.mean()
    slope = float((xc * yc).sum() / (xc ** 2).sum())
    return slope, yc - slope * xc, xc


def fit(ref_ms, raw_ms) -> dict:
    """Elasticity of ``raw_ms`` on ``ref_ms`` (log-log slope), its standard error, and the
    spread of the reference over the windows (sd of its log, percent)."""
    slope, res, xc = _log_slope(ref_ms, raw_ms)
    se = float(np.sqrt(res.var(ddof=2) / (xc ** 2).sum()))
    return {"elasticity": round(slope, 3), "se": round(se, 3),
            "ref_sd_pct": round(float(100 * xc.std()), 2), "windows": int(len(xc))}


NEAR_PCT, SLOW_PCT = 3.0, 7.0  # a window near the fast state / well off it (reference, %)


def slow_window_bias(ref_ms, ratio) -> dict:
    """What one window off the fast state makes of a subnet: its median ratio in windows whose
    reference ran at least :data:`SLOW_PCT` % above the fast level (the 10th percentile of
    its windows' reference latencies) against its median ratio in windows within
    :data:`NEAR_PCT` % of it (percent; negative: the slow window reads the subnet faster than
    the fast state does, as a verification window would), with the windows' counts and how
    far the slow ones' reference ran above the level; None with fewer than 3 of either."""
    ref, ratio = np.asarray(ref_ms, float), np.asarray(ratio, float)
    level = np.percentile(ref, 10)
    near, slow = ref <= level * (1 + NEAR_PCT / 100), ref >= level * (1 + SLOW_PCT / 100)
    if near.sum() < 3 or slow.sum() < 3:
        return {"slow_window_bias_pct": None}
    return {"slow_window_bias_pct": round(float(100 * (np.median(ratio[slow])
                                                       / np.median(ratio[near]) - 1)), 2),
            "near_slow_windows": [int(near.sum()), int(slow.sum())],
            "slow_ref_above_level_pct": round(float(100 * (np.median(ref[slow]) / level - 1)), 1)}


def state_summary(out: dict) -> dict:
    """From a run's series: per subnet, its windows' ratio spread (sd of the log ratio,
    percent) and what is left of it once its own window's reference state is fitted (the
    ratio's slope on the log reference latency, and the residual sd); and how much two
    windows of one cycle share their state (the correlation of the reference's log latency in
    the first and the last subnet's windows of each cycle)."""
    subs = out["subnets"]
    n = min(len(v["ratio"]) for v in subs.values())
    per = {}
    for k, v in subs.items():
        ratio = np.array(v["ratio"][:n])
        ref = np.array(v["ref_ms"][:n])
        slope, res, _ = _log_slope(ref, ratio)
        per[k] = {"ratio_sd_pct": round(float(100 * np.log(ratio).std()), 3),
                  "ratio_slope_on_state": round(slope, 3),
                  "ratio_sd_left_pct": round(float(100 * res.std()), 3),
                  **slow_window_bias(ref, ratio)}
    first, last = list(subs.values())[0], list(subs.values())[-1]
    shared = float(np.corrcoef(np.log(first["ref_ms"][:n]), np.log(last["ref_ms"][:n]))[0, 1])
    return {"subnets": per, "cycle_state_corr": round(shared, 3)}


def print_state(summary: dict) -> None:
    for k, v in summary["subnets"].items():
        print(f"  {k:12s} ratio sd {v['ratio_sd_pct']:.2f} %; slope on its window's state "
              f"{v['ratio_slope_on_state']:+.2f}, leaving {v['ratio_sd_left_pct']:.2f} %"
              + ("" if v.get("slow_window_bias_pct") is None else
                 f"; windows >= {SLOW_PCT:g} % off the fast state (+"
                 f"{v['slow_ref_above_level_pct']:.0f} %) read it {v['slow_window_bias_pct']:+.1f}"
                 f" % against windows within {NEAR_PCT:g} % ({v['near_slow_windows'][1]} / "
                 f"{v['near_slow_windows'][0]} windows)"))
    print(f"  the state of the first and last subnets' windows of a cycle: correlation "
          f"{summary['cycle_state_corr']:+.2f}")


def main(argv=None) -> dict:
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend
    from ofa_latency.profiling.timing import TimingProtocol, measure
    from ofa_latency.spaces import get_space, reference_subnet

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default="int8")
    p.add_argument("--seconds", type=float, default=240.0)
    p.add_argument("--pool", type=int, default=50, help="samples the subnets are chosen from")
    p.add_argument("--picks", type=int, default=3,
                   help="subnets timed: the pool's fewest and most MACs and those between at "
                        "even MACs ranks (3: fewest, median, most)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summarise", metavar="JSON", default=None,
                   help="instead: read a run's JSON, add its state summary, write it back")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.summarise:
        out = json.loads(Path(args.summarise).read_text())
        out["state"] = state_summary(out)
        print_state(out["state"])
        Path(args.summarise).write_text(json.dumps(out, indent=1))
        return out

    space = get_space("ofa_mbv3_w1.2")
    be = create_backend(args.backend, threads=1, precision=args.precision)
    pool, macs, order = pool_by_macs(space, args.pool, args.seed)
    if args.picks == 3:
        picks = {"fewest MACs": pool[order[0]], "median MACs": pool[order[len(order) // 2]],
                 "most MACs": pool[order[-1]]}
    else:
        ranks = np.linspace(0, len(order) - 1, max(2, args.picks)).round().astype(int)
        picks = {f"MACs rank {r + 1}": pool[order[r]] for r in dict.fromkeys(ranks)}
    ref = be.prepare(space, reference_subnet(space), 1)
    runners = {k: be.prepare(space, s, 1) for k, s in picks.items()}
    protocol = TimingProtocol()
    series = {k: {"ref_ms": [], "raw_ms": [], "ratio": []} for k in picks}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for k, runner in runners.items():
            r = measure(runner, ref, None, protocol)
            series[k]["ref_ms"].append(round(float(r.ref_latency_ms), 5))
            series[k]["raw_ms"].append(round(float(r.latency_raw_ms), 5))
            series[k]["ratio"].append(round(float(r.ratio), 6))
    out = {"command": " ".join(["python", "scripts/probe_elasticity.py", *sys.argv[1:]]),
           "backend": args.backend, "precision": args.precision,
           "hardware": describe_hardware(args.backend, 1, "cpu", precision=args.precision),
           "subnets": {}}
    for k, s in series.items():
        f = fit(np.array(s["ref_ms"]), np.array(s["raw_ms"]))
        out["subnets"][k] = {"arch": picks[k].arch_json(), "image_size": picks[k].image_size,
                             "macs_m": round(float(macs[pool.index(picks[k])]), 1),
                             "median_ratio": round(float(np.median(s["ratio"])), 4),
                             **f, **s}
        print(f"{args.backend} {args.precision} {k:12s} ratio {np.median(s['ratio']):.3f}: "
              f"elasticity {f['elasticity']:.3f} +- {f['se']:.3f} over {f['windows']} windows "
              f"(reference moved {f['ref_sd_pct']:.1f} % sd)", flush=True)
    out["state"] = state_summary(out)
    print_state(out["state"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
