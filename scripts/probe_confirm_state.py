"""Does the confirmation's wait for the fast state remove what a slow window does to it?
(BENCHMARKS.md sections 16.36-16.37.)

A small profiling table of ``--table-subnets`` seeded subnets gives the level (as a search's
``--level-table`` does). Then the pool's fewest- and most-MACs subnets are confirmed in turn
(:func:`ofa_latency.search.workflow.confirm`, the chosen subnet's last step), each time once
with the wait for the fast state (``near_pct`` :data:`~ofa_latency.search.workflow.
CONFIRM_NEAR_PCT`, the default) and once timed at once (``near_pct`` None, as before), for
``--seconds``. Per subnet and way: the median confirmed latency against the subnet's
fast-state reading (the median of its confirmations, either way, whose window's reference
ran within ``--near`` % of the level), the windows' states, and the seconds each took.

    taskset -c 1 python scripts/probe_confirm_state.py --backend onnxruntime --precision int8 \\
        --json data/benchmarks/confirm_state_onnxruntime_int8_host9.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def summarise(series: dict, near: float, confirm_near: float) -> dict:
    """Per subnet: each way's median confirmed latency against the fast-state reading (%;
    the median of the confirmations either way whose reference ran within ``near`` % of the
    level), its kept windows' median state, the share of them farther off than
    ``confirm_near`` (the confirmation's threshold), its seconds and windows."""
    out = {}
    for name, s in series.items():
        allc = s["waited"] + s["at_once"]
        fast = [c["measured_ms"] for c in allc if c["state_pct"] is not None
                and c["state_pct"] <= near]
        ref = float(np.median(fast)) if len(fast) >= 3 else None
        per = {"fast_state_ms": None if ref is None else round(ref, 4),
               "fast_state_confirmations": len(fast)}
        for way in ("waited", "at_once"):
            cs = s[way]
            ms = np.array([c["measured_ms"] for c in cs])
            states = np.array([c["state_pct"] if c["state_pct"] is not None else np.nan
                               for c in cs])
            per[way] = {
                "n": len(cs),
                "median_ms": round(float(np.median(ms)), 4),
                "median_vs_fast_state_pct": None if ref is None else
                round(float(100 * (np.median(ms) / ref - 1)), 2),
                "mean_abs_vs_fast_state_pct": None if ref is None else
                round(float(np.mean(np.abs(100 * (ms / ref - 1)))), 2),
                "state_median_pct": round(float(np.nanmedian(states)), 2),
                "states_over_near_pct": round(float(100 * np.mean(states > confirm_near)), 1),
                "median_seconds": round(float(np.median([c["seconds"] for c in cs])), 2),
                "mean_seconds": round(float(np.mean([c["seconds"] for c in cs])), 2),
                "median_windows": float(np.median([c["windows"] for c in cs]))}
        out[name] = per
    return out


def print_summary(summary: dict, near: float, confirm_near: float) -> None:
    for name, per in summary.items():
        print(f"{name}: fast-state reading {per['fast_state_ms']} ms "
              f"({per['fast_state_confirmations']} confirmations within {near:g} %)")
        for way in ("waited", "at_once"):
            w = per[way]
            print(f"  {way:8s} n {w['n']:3d}  median {w['median_ms']:.4f} ms "
                  f"({w['median_vs_fast_state_pct']} % vs fast state; mean |diff| "
                  f"{w['mean_abs_vs_fast_state_pct']} %)  state median {w['state_median_pct']} "
                  f"%, {w['states_over_near_pct']} % over {confirm_near:g} %  "
                  f"{w['median_seconds']} s (mean {w['mean_seconds']}), "
                  f"{w['median_windows']:g} windows")


def main(argv=None) -> dict:
    from probe_elasticity import pool_by_macs

    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling import create_backend, profile_subnets
    from ofa_latency.search.workflow import CONFIRM_NEAR_PCT, confirm
    from ofa_latency.spaces import get_space

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default="int8")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--pool", type=int, default=50, help="samples the two subnets come from")
    p.add_argument("--table-subnets", type=int, default=8,
                   help="subnets of the profiling table that gives the level")
    p.add_argument("--near", type=float, default=3.0,
                   help="a confirmation whose reference ran within this (%%) of the level "
                        "counts towards the subnet's fast-state reading")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summarise", metavar="JSON", default=None,
                   help="instead: read a run's JSON, summarise its series again, write it back")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.summarise:
        out = json.loads(Path(args.summarise).read_text())
        out["summary"] = summarise(out["series"], out["fast_state_within_pct"], out["near_pct"])
        print_summary(out["summary"], out["fast_state_within_pct"], out["near_pct"])
        Path(args.summarise).write_text(json.dumps(out, indent=1))
        return out

    space = get_space("ofa_mbv3_w1.2")
    be = create_backend(args.backend, threads=1, precision=args.precision)
    pool, macs, order = pool_by_macs(space, args.pool, args.seed)
    picks = {"fewest MACs": pool[order[0]], "most MACs": pool[order[-1]]}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "level.csv"
        t0 = time.perf_counter()
        profile_subnets(space, be, space.sample(args.table_subnets, seed=args.seed + 1), 1,
                        table, progress=False, convert_jobs=0)
        print(f"level table: {args.table_subnets} subnets in {time.perf_counter() - t0:.0f} s",
              flush=True)
        series = {k: {"waited": [], "at_once": []} for k in picks}
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for name, sub in picks.items():
                for way, near in (("waited", CONFIRM_NEAR_PCT), ("at_once", None)):
                    t1 = time.perf_counter()
                    c = confirm(space, be, sub.to_dict(), 1, table, 1e9, level_tables=[table],
                                near_pct=near)
                    series[name][way].append(
                        {k: c[k] for k in ("measured_ms", "state_pct", "windows", "waited_s",
                                           "ci_pct")}
                        | {"seconds": round(time.perf_counter() - t1, 2)})
            print(f"{time.perf_counter() - t0:5.0f} s: " + "; ".join(
                f"{n} " + ", ".join(f"{w} {s[w][-1]['measured_ms']:.3f} ms "
                                    f"({s[w][-1]['state_pct']} %)" for w in s)
                for n, s in series.items()), flush=True)
    summary = summarise(series, args.near, CONFIRM_NEAR_PCT)
    print_summary(summary, args.near, CONFIRM_NEAR_PCT)
    out = {"command": " ".join(["python", "scripts/probe_confirm_state.py", *sys.argv[1:]]),
           "backend": args.backend, "precision": args.precision,
           "hardware": describe_hardware(args.backend, 1, "cpu", precision=args.precision),
           "near_pct": CONFIRM_NEAR_PCT, "fast_state_within_pct": args.near,
           "subnets": {k: {"arch": s.arch_json(), "image_size": s.image_size,
                           "macs_m": round(float(macs[pool.index(s)]), 1)}
                       for k, s in picks.items()},
           "series": series, "summary": summary}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
