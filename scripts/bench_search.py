"""Search benchmarks on this machine: finder speed and quality, gradient search, and a sweep
of budgets verified on the device.

    python scripts/bench_search.py speed  --json data/benchmarks/search_speed.json
    python scripts/bench_search.py sweep  --json data/benchmarks/search_sweep.json --plot data/benchmarks/search_sweep.png

``speed``: the same estimator (the shipped onnxruntime 1-thread predictor of this host,
``..._host2_xgb``), the same budget (10 ms) and OFA's hyper-parameters (population 100, 500
iterations) for OFA's ``EvolutionFinder`` and ``--finder fast``, 5 seeds each, run alternately
in one process (wall time per search, best predicted accuracy); OFA's finder with OFA's Note10
lookup table (budget 25 ms, Note10's scale) for its wall time; the gradient finder (lambda by
bisection) at the same budget, 5 seeds.

``sweep``: for budgets from 7 to 14 ms, ``fast`` and ``gradient`` searches (and with ``--lut``,
``fast`` with OFA's lookup table built on this machine as the estimator) verified on this
machine (onnxruntime, 1 thread): the top 5 candidates profiled, the most accurate that meets
the budget measured chosen (re-search with a tightened budget when none does), then the chosen
subnet measured again in a separate table (the confirmation). A violation is a confirmed
latency above the budget by more than the noise floor (1 %). Also counted: how often the
unverified top-1 prediction would have violated it.
"""

from __future__ import annotations

import os
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data"))
ESTIMATOR = "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_host2_xgb"


def _setup():
    from ofa_latency import LatencyEstimator
    from ofa_latency.search import OFAAccuracyPredictor

    path = SHARED / "ofa_acc_predictor" / "acc_predictor.pth"
    if not path.exists():
        raise SystemExit(f"OFA's accuracy predictor not found at {path}")
    return (LatencyEstimator.from_pretrained(ESTIMATOR, check_machine=False),
            OFAAccuracyPredictor.load(path))


class _LutEfficiency:
    """OFA's Note10 LUT (OFA's own LatencyTable) behind ``get_efficiency`` for ``ofa.nas``."""

    def __init__(self, table):
        self.table = table

    def get_efficiency(self, arch):
        return self.table.predict_efficiency({"ks": arch["ks"], "e": arch["e"], "d": arch["d"],
                                              "r": [arch["image_size"]]})


def speed(args):
    from ofa.nas.search_algorithm import EvolutionFinder

    from ofa_latency.lut import load_ofa_lut
    from ofa_latency.search import Constraint, search

    est, acc = _setup()
    c = [Constraint(est, 10.0, ESTIMATOR)]
    search(c, acc, "fast", seed=99)  # warm-up (imports, first allocations)
    rows = []
    for seed in range(args.seeds):
        for finder in ("ofa", "fast", "gradient"):
            res = search(c, acc, finder, seed=seed)
            rows.append({"finder": finder, "seed": seed, "seconds": res.seconds,
                         "accuracy": res.accuracy, "latency_ms": res.latency_ms[0],
                         "n_evaluated": res.n_evaluated, "extra": res.extra})
            print(json.dumps(rows[-1]), flush=True)
    lut_rows = []
    lut_dir = SHARED / "ofa_note10_lut"
    if lut_dir.exists():
        import random

        lut = _LutEfficiency(load_ofa_lut(lut_dir, [160, 176, 192, 208, 224]))
        for seed in range(args.seeds):
            random.seed(seed)
            np.random.seed(seed)
            finder = EvolutionFinder(lut, acc)
            t0 = time.perf_counter()
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                hist, best = finder.run_evolution_search(25.0, verbose=False)
            lut_rows.append({"finder": "ofa + Note10 LUT (25 ms)", "seed": seed,
                             "seconds": time.perf_counter() - t0, "accuracy": float(best[0]),
                             "latency_ms": float(best[2])})
            print(json.dumps(lut_rows[-1]), flush=True)
    summary = {}
    for f in ("ofa", "fast", "gradient"):
        r = [x for x in rows if x["finder"] == f]
        summary[f] = {"seconds_median": float(np.median([x["seconds"] for x in r])),
                      "seconds_range": [min(x["seconds"] for x in r), max(x["seconds"] for x in r)],
                      "accuracy_mean": float(np.mean([x["accuracy"] for x in r])),
                      "accuracy_range": [min(x["accuracy"] for x in r), max(x["accuracy"] for x in r)]}
    if lut_rows:
        summary["ofa_lut"] = {"seconds_median": float(np.median([x["seconds"] for x in lut_rows])),
                              "seconds_range": [min(x["seconds"] for x in lut_rows),
                                                max(x["seconds"] for x in lut_rows)]}
    summary["fast_speedup_median"] = summary["ofa"]["seconds_median"] / summary["fast"]["seconds_median"]
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"estimator": ESTIMATOR, "budget_ms": 10.0,
                                               "rows": rows, "lut_rows": lut_rows,
                                               "summary": summary}, indent=1))


def sweep(args):
    from ofa_latency.profiling import create_backend, profile_subnets
    from ofa_latency.search import Constraint
    from ofa_latency.search.workflow import NOISE_FLOOR_PCT, search_and_verify

    from ofa_latency import LatencyEstimator, create_predictor
    from ofa_latency.errors import UsageError

    est, acc = _setup()
    sp = est.space
    backend = create_backend("onnxruntime", threads=1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    variants = [(f, est, ESTIMATOR) for f in args.finders]
    if args.lut:  # OFA's per-layer LUT built on this machine, as the search's estimator
        lut = LatencyEstimator(create_predictor("lut", lut_dir=args.lut).fit(), check_machine=False)
        variants.append(("fast+LUT", lut, f"raw LUT {args.lut}"))
    for budget in args.budgets:
        for finder, e, name in variants:
            t0 = time.perf_counter()
            try:
                res, rounds = search_and_verify([Constraint(e, budget, name)], acc, backend, 1,
                                                work / "verify.csv", finder=finder.split("+")[0],
                                                seed=0, top_k=5, progress=False,
                                                max_rounds=args.max_rounds)
            except UsageError as exc:  # e.g. no subnet meets the budget by this estimator
                rows.append({"budget_ms": budget, "finder": finder, "rounds": 0,
                             "seconds": time.perf_counter() - t0, "error": str(exc),
                             "chosen": None, "confirmed_ms": None, "violates": None,
                             "top1_unverified": None, "top1_unverified_violates": False,
                             "candidates": []})
                print(json.dumps(rows[-1]), flush=True)
                continue
            ver = rounds[-1]
            first = rounds[0].rows[0]  # the unverified top-1 of the first search
            rec = {"budget_ms": budget, "finder": finder, "rounds": len(rounds),
                   "seconds": time.perf_counter() - t0,
                   "top1_unverified": first,
                   "top1_unverified_violates": first["measured_ms"] > budget * (1 + NOISE_FLOOR_PCT / 100),
                   "candidates": [r for v in rounds for r in v.rows]}
            if ver.chosen is not None:
                ch = ver.chosen_row
                conf = profile_subnets(sp, backend, [ch["arch"]], 1,
                                       work / f"confirm_{finder.replace('+', '_')}.csv",
                                       progress=False)
                confirmed = float(conf.latency_ms.iloc[0])
                rec.update(chosen=ch, confirmed_ms=confirmed,
                           violates=confirmed > budget * (1 + NOISE_FLOOR_PCT / 100))
            else:
                rec.update(chosen=None, confirmed_ms=None, violates=None)
            rows.append(rec)
            print(json.dumps({k: rec[k] for k in ("budget_ms", "finder", "rounds", "seconds",
                                                   "confirmed_ms", "violates",
                                                   "top1_unverified_violates")}),
                  (rec["chosen"] or {}).get("accuracy"), flush=True)
    summary = {}
    for f in [v[0] for v in variants]:
        r = [x for x in rows if x["finder"] == f]
        summary[f] = {"n_budgets": len(r), "found": sum(x["chosen"] is not None for x in r),
                      "violations": sum(bool(x["violates"]) for x in r),
                      "unverified_top1_violations": sum(x["top1_unverified_violates"] for x in r),
                      "mean_rounds": float(np.mean([x["rounds"] for x in r]))}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"estimator": ESTIMATOR, "rows": rows,
                                               "summary": summary}, indent=1, default=float))
    if args.plot:
        plot(rows, args.plot)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for finder, m in (("fast", "o"), ("gradient", "s"), ("fast+LUT", "^")):
        r = [x for x in rows if x["finder"] == finder and x["chosen"]]
        if not r:
            continue
        a.plot([x["confirmed_ms"] for x in r], [100 * x["chosen"]["accuracy"] for x in r],
               marker=m, label=f"{finder} (verified, confirmed)")
    for x in rows:
        a.axvline(x["budget_ms"], color="0.85", lw=0.6, zorder=0)
    a.set_xlabel("measured latency on this machine (ms, onnxruntime 1 thread)")
    a.set_ylabel("predicted top-1 accuracy (%)")
    a.set_title("Pareto front: found subnets (grey: budgets)", fontsize=9)
    a.legend(fontsize=8)
    learned = [x for x in rows if "LUT" not in x["finder"]]
    pred = [c["predicted_ms"] for x in learned for c in x["candidates"]]
    meas = [c["measured_ms"] for x in learned for c in x["candidates"]]
    b.scatter(pred, meas, s=10)
    lo, hi = min(pred + meas), max(pred + meas)
    b.plot([lo, hi], [lo, hi], "k-", lw=0.6)
    b.set_xlabel("predicted latency (ms)")
    b.set_ylabel("measured latency (ms)")
    b.set_title(f"verified candidates of the learned estimator ({len(pred)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot ->", path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--seeds", type=int, default=5)
    s.add_argument("--json")
    w = sub.add_parser("sweep")
    w.add_argument("--budgets", nargs="+", type=float, default=[7, 8, 9, 10, 12, 14])
    w.add_argument("--finders", nargs="+", default=["fast", "gradient"])
    w.add_argument("--work", default="runs/bench_search", help="verification tables")
    w.add_argument("--lut", default=None, help="also search with this LUT folder (built on "
                   "this machine by build-lut) as the estimator")
    w.add_argument("--max-rounds", type=int, default=3, help="searches per budget at most")
    w.add_argument("--json")
    w.add_argument("--plot")
    args = p.parse_args(argv)
    {"speed": speed, "sweep": sweep}[args.what](args)


if __name__ == "__main__":
    main()
