"""Picking under a budget by prediction, or by the calibrated upper bound, judged on a held-out
GPU's measured latencies.

    python scripts/bench_confidence.py --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth \
        --json data/benchmarks/confidence.json

HELP leave one GPU out at batch 1, 32 and 64 (the cases of scripts/bench_finetune.py): the
automatic fine-tuning from N measured subnets of the held-out GPU (seeded draws from its train
split), then, among the GPU's measured test subnets at 160-224 px (the accuracy predictor's
range), the most accurate one (OFA's accuracy predictor) whose predicted latency (point), or
whose one-sided upper bound at ``--confidence`` (upper), meets a budget at the 10th, 30th and
50th percentile of their measured latencies. The oracle picks by measured latency. Reported:
the share of picks over budget (measured), by how much, and the accuracy given up against the
oracle (points of top-1).
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
    from bench_finetune import help_cases

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import finetune
    from ofa_latency.training import base_and_others
    from ofa_latency.datasets import subnets_of
    from ofa_latency.search import OFAAccuracyPredictor

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy-predictor", required=True)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32, 64])
    p.add_argument("--n", nargs="+", type=int, default=[20])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--confidence", nargs="+", type=float, default=[0.9])
    p.add_argument("--quantiles", nargs="+", type=float, default=[0.1, 0.3, 0.5])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    acc = OFAAccuracyPredictor.load(args.accuracy_predictor)
    rows = []
    t0 = time.perf_counter()
    for name, base_names, df in help_cases(args.batches):
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        train, test = df[df.split == "train"], df[df.split == "test"]
        pool = test[(test.image_size >= 160) & (test.image_size <= 224)]
        y = pool.latency_ms.to_numpy()
        a = 100 * acc.predict(subnets_of(pool))
        budgets = {q: float(np.quantile(y, q)) for q in args.quantiles}
        for n in args.n:
            for seed in range(args.seeds):
                sample = train.sample(n=min(n, len(train)), random_state=seed)
                base_name, names = base_and_others(bases, sample)  # finetune without --base
                ft = finetune(bases[base_name], sample, random_state=seed,
                              others=[bases[b] for b in names], other_names=names)
                pred = ft.predict(pool)
                for q, budget in budgets.items():
                    oracle = int(np.argmax(np.where(y <= budget, a, -np.inf)))
                    ways = {"point": 1.0}
                    ways.update({f"upper_{c:g}": ft.interval_factors(2 * c - 1)[1]
                                 for c in args.confidence})
                    for way, factor in ways.items():
                        ok = pred * factor <= budget
                        if not ok.any():
                            rows.append({"case": name, "n": n, "seed": seed, "quantile": q,
                                         "way": way, "picked": False})
                            continue
                        i = int(np.argmax(np.where(ok, a, -np.inf)))
                        rows.append({"case": name, "n": n, "seed": seed, "quantile": q,
                                     "way": way, "picked": True, "budget_ms": budget,
                                     "measured_ms": float(y[i]),
                                     "over": bool(y[i] > budget),
                                     "over_pct": 100 * float(y[i] / budget - 1),
                                     "accuracy_loss_points": float(a[oracle] - a[i])})
        print(f"{name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {}
    for way in sorted({r["way"] for r in rows}):
        sel = [r for r in rows if r["way"] == way and r["picked"]]
        summary[way] = {
            "picks": len(sel), "no_pick": sum(1 for r in rows if r["way"] == way and not r["picked"]),
            "over_budget_pct_of_picks": round(100 * float(np.mean([r["over"] for r in sel])), 2),
            "worst_over_pct": round(max(r["over_pct"] for r in sel), 2),
            "mean_accuracy_loss_points": round(float(np.mean([r["accuracy_loss_points"]
                                                              for r in sel])), 3)}
        print(way, summary[way])
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python scripts/bench_confidence.py " + " ".join(argv or sys.argv[1:]),
            "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
