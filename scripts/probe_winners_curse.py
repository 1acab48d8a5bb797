"""Does the search's winner's curse show where other devices' predictors disagree?

Section 10.3 of BENCHMARKS.md: ``search`` with ``Constraint(..., confidence=0.9)`` and no
verification picks subnets that run over the budget in 7.4 % of cases, against 1.5 % for a
pick among random subnets under the same bound: the bound is calibrated on random subnets, the
optimiser goes where the fine-tuned predictor is optimistic. A bound that widened there would
need a signal available without measuring. This probe tests one: the disagreement at a subnet
among the other devices' predictors (the ``others`` that join ``finetune``'s mix), each scaled
to the N samples by its own global factor: the standard deviation of their log predictions.

Protocol of ``scripts/bench_confidence.py --device predictor --search`` (HELP leave one GPU
out, batch 1/32/64, the held-out GPU's full-data predictor as the device, N = 20, 5 seeds,
budgets at the 10/30/50th percentile of 5,000 random subnets at 160-224 px). For each search
pick: its error (device / fine-tuned prediction), whether it ran over the budget, and its
disagreement against the median disagreement over the random pool; the same for the random
pool's own subnets (whose errors the bound was calibrated on).

    python scripts/probe_winners_curse.py \
        --accuracy-predictor ../shared/data/ofa_acc_predictor/acc_predictor.pth \
        --json data/benchmarks/winners_curse_disagreement.json
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


def sample_scales(others, sample_archs, sample_ms) -> list:
    """Each of ``others``' median ratio to the samples' latencies (its own global scale)."""
    return [float(np.median(sample_ms / o.predict(sample_archs))) for o in others]


def disagreement(others, scales, archs) -> np.ndarray:
    """Per subnet of ``archs``: the standard deviation of the log predictions of ``others``,
    each times its scale (:func:`sample_scales`)."""
    return np.std([np.log(s * o.predict(archs)) for o, s in zip(others, scales)], axis=0)


def main(argv=None) -> int:
    from bench_confidence import predictor_device
    from bench_finetune import help_cases
    from scipy.stats import spearmanr

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import finetune
    from ofa_latency.datasets import subnets_of
    from ofa_latency.search import Constraint, OFAAccuracyPredictor, search
    from ofa_latency.training import base_and_others

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy-predictor", required=True)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32, 64])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--quantiles", nargs="+", type=float, default=[0.1, 0.3, 0.5])
    p.add_argument("--pool", type=int, default=5000)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    acc = OFAAccuracyPredictor.load(args.accuracy_predictor)
    picks, pool_rows = [], []
    t0 = time.perf_counter()
    for name, base_names, df in help_cases(args.batches):
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        device_est, pool, y_pool, train = predictor_device(name, df, args.pool)
        device = device_est.predictor
        space = device.space_
        budgets = {q: float(np.quantile(y_pool, q)) for q in args.quantiles}
        for seed in range(args.seeds):
            sample = train.sample(n=args.n, random_state=seed)
            s_archs, s_ms = subnets_of(sample), sample.latency_ms.to_numpy()
            base_name, names = base_and_others(bases, sample)
            others = [bases[b] for b in names]
            ft = finetune(bases[base_name], sample, random_state=seed, others=others,
                          other_names=names)
            scales = sample_scales(others, s_archs, s_ms)
            d_pool = disagreement(others, scales, pool)
            d_ref = float(np.median(d_pool))
            err_pool = np.log(y_pool / ft.predict(pool))
            rho = spearmanr(d_pool, np.abs(err_pool)).statistic
            pool_rows.append({"case": name, "seed": seed, "median_disagreement": d_ref,
                              "spearman_disagreement_abs_error": float(rho),
                              "error_pct_p90": float(100 * np.expm1(np.quantile(err_pool, 0.9)))})
            est = LatencyEstimator(ft, check_machine=False)
            for q, budget in budgets.items():
                res = search([Constraint(est, budget, confidence=args.confidence)], acc,
                             "fast", seed=0)
                if res.latency_ms[0] > res.budgets_ms[0]:
                    continue
                sub = space.validate(res.arch)
                true_ms = float(device.predict([sub])[0])
                pred_ms = float(ft.predict([sub])[0])
                d = float(disagreement(others, scales, [sub])[0])
                picks.append({"case": name, "seed": seed, "quantile": q, "budget_ms": budget,
                              "predicted_ms": pred_ms,
                              "device_ms": true_ms, "over": bool(true_ms > budget),
                              "error_pct": float(100 * (true_ms / pred_ms - 1)),
                              "disagreement": d, "disagreement_vs_pool": d / d_ref,
                              "pool_percentile": float(100 * np.mean(d_pool < d))})
        print(f"{name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)

    def describe(sel):
        if not sel:
            return {"picks": 0}
        return {"picks": len(sel),
                "median_error_pct": round(float(np.median([r["error_pct"] for r in sel])), 2),
                "median_disagreement_vs_pool": round(float(np.median(
                    [r["disagreement_vs_pool"] for r in sel])), 3),
                "median_pool_percentile": round(float(np.median(
                    [r["pool_percentile"] for r in sel])), 1)}

    summary = {"all_picks": describe(picks),
               "over_budget": describe([r for r in picks if r["over"]]),
               "within_budget": describe([r for r in picks if not r["over"]]),
               "spearman_pick_disagreement_error": round(float(spearmanr(
                   [r["disagreement_vs_pool"] for r in picks],
                   [r["error_pct"] for r in picks]).statistic), 3),
               "pool_spearman_disagreement_abs_error_median": round(float(np.median(
                   [r["spearman_disagreement_abs_error"] for r in pool_rows])), 3)}
    for k, v in summary.items():
        print(k, v)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python scripts/probe_winners_curse.py " + " ".join(argv or sys.argv[1:]),
            "summary": summary, "picks": picks, "pool": pool_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
