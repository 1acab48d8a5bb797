"""Do the fine-tuned predictors' 90 % intervals cover 90 % of a new device's subnets?

    python scripts/bench_intervals.py --json data/benchmarks/intervals.json

The cases of scripts/bench_finetune.py (HELP leave one GPU out at batch 1, 32 and 64; the CPU
cross-host pairs): for N measured subnets of the new device (seeded draws from its train
split) the automatic fine-tuning (:func:`ofa_latency.finetune`, with the bases
``finetune`` without ``--base`` considers) and its interval, calibrated on the out-of-fold
residuals of its weighted candidates; then on the device's whole test split: the share of
measured latencies inside the two-sided 90 % interval, the share above the one-sided 90 % upper
bound (what ``--confidence 0.9`` budgets against; nominal 10 %), and the interval's width.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    from bench_finetune import cpu_cases, help_cases

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import CHOICES, finetune
    from ofa_latency.training import base_and_others

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["help", "cpu"], choices=["help", "cpu"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32, 64])
    p.add_argument("--n", nargs="+", type=int, default=[10, 20, 50])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--choice", default=None, choices=list(CHOICES),
                   help="finetune's choice among its candidates (default: finetune's default)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    choice = {} if args.choice is None else {"choice": args.choice}
    cases = (help_cases(args.batches) if "help" in args.cases else []) + \
        (cpu_cases() if "cpu" in args.cases else [])
    rows_out = []
    t_all = time.perf_counter()
    for name, base_names, df in cases:
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        train, test = df[df.split == "train"], df[df.split == "test"]
        y_test = test.latency_ms.to_numpy()
        for n in args.n:
            for seed in range(args.seeds):
                rows = train.sample(n=min(n, len(train)), random_state=seed)
                base_name, names = base_and_others(bases, rows)  # finetune without --base
                ft = finetune(bases[base_name], rows, random_state=seed,
                              others=[bases[b] for b in names], other_names=names, **choice)
                pred = ft.predict(test)
                lo, hi = ft.interval_factors(args.coverage)
                _, up1 = ft.interval_factors(2 * args.coverage - 1)
                rows_out.append({
                    "case": name, "n": n, "seed": seed, "method": ft.adaptation_.method,
                    "calibration": ft.interval_.method(args.coverage),
                    "coverage_pct": 100 * float(np.mean((y_test >= pred * lo) &
                                                        (y_test <= pred * hi))),
                    "above_upper_pct": 100 * float(np.mean(y_test > pred * up1)),
                    "width_pct": 100 * (hi - lo),
                    "test_mape_pct": 100 * float(np.mean(np.abs(pred / y_test - 1)))})
            sel = [r for r in rows_out if r["case"] == name and r["n"] == n]
            print(f"{name:32s} N={n:3d}: coverage {np.mean([r['coverage_pct'] for r in sel]):5.1f} % "
                  f"(min {min(r['coverage_pct'] for r in sel):5.1f}), above the 90 % upper bound "
                  f"{np.mean([r['above_upper_pct'] for r in sel]):4.1f} %, width "
                  f"{np.mean([r['width_pct'] for r in sel]):5.1f} %, MAPE "
                  f"{np.mean([r['test_mape_pct'] for r in sel]):5.2f} %", flush=True)
    summary = {}
    for n in args.n:
        cells, cov = cell_means(rows_out, n)
        summary[str(n)] = {"cells": len(cells), "mean_coverage_pct": round(float(np.mean(cov)), 2),
                           "cells_in_85_95": int(sum(85 <= c <= 95 for c in cov)),
                           "min_cell_coverage_pct": round(float(min(cov)), 2),
                           "max_cell_coverage_pct": round(float(max(cov)), 2)}
        print(f"N={n}: {summary[str(n)]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python scripts/bench_intervals.py " + " ".join(argv or sys.argv[1:]),
            "coverage": args.coverage, "seconds": round(time.perf_counter() - t_all, 1),
            "summary": summary, "rows": rows_out}, indent=1))
    return 0


def cell_means(rows, n, key="coverage_pct"):
    """The cells (cases) of ``rows`` measured at N = ``n`` that have ``key``, sorted, and
    each cell's mean of ``key`` over its seeds."""
    sel = [r for r in rows if r["n"] == n and key in r]
    cells = sorted({r["case"] for r in sel})
    return cells, [float(np.mean([r[key] for r in sel if r["case"] == c])) for c in cells]


if __name__ == "__main__":
    sys.exit(main())
