"""Which N subnets to profile: random, stratified, diverse or uncertain (the subnets a
committee of other devices' shipped predictors disagrees about most), measured through
fine-tuning.

    python scripts/bench_sampling.py --json data/benchmarks/sampling.json --plot data/benchmarks/sampling.png

For each case of ``scripts/bench_finetune.py`` (HELP leave-one-GPU-out at batch 1/32/64, CPU
across hosts), N subnets are chosen by each strategy among 20 x N random subnets of the
target's train split (``ofa_latency.sampling.select_subnets``; the same candidates for every
strategy, new ones per seed), the base is fine-tuned
on them (automatic choice), and the held-out MAPE on the target's test split is recorded
(3 seeds). The strategy with the lowest mean MAPE over all cases and N becomes the default of
``ofa-latency sample``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", nargs="+", type=int, default=[10, 20, 50])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)

    from bench_finetune import cpu_cases, help_cases, mape

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import finetune, global_scale
    from ofa_latency.predictors import archs_from
    from ofa_latency.sampling import STRATEGIES, select_subnets

    from ofa_latency import list_pretrained

    shipped = [e["name"] for e in list_pretrained() if e["kind"] == "xgb"
               and e["space"] == "ofa_mbv3_w1.2"]

    def committee_for(case):
        """Shipped xgb predictors of other devices of the target's type: for a HELP GPU the
        other two GPUs' (all batch sizes), for a CPU host the other host's."""
        if case.startswith("help_"):
            gpu = case[len("help_"):].rsplit("_", 1)[0]
            names = [s for s in shipped if s.startswith("help_") and not s.startswith(f"help_{gpu}_")]
        else:
            to_host2 = "to_host2" in case
            names = [s for s in shipped if "_cpu_" in s and ("_host2" in s) != to_host2]
        return [LatencyEstimator.from_pretrained(s, check_machine=False).predictor.table
                for s in names]

    rows = []
    for name, base_names, df in help_cases([32, 64, 1]) + cpu_cases():
        committee = committee_for(name)
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        sp = next(iter(bases.values())).space_
        train, test = df[df.split == "train"].reset_index(drop=True), df[df.split == "test"]
        pool = archs_from(sp, train)
        pool_keys = [sp.validate(a) for a in pool]
        index = {s: i for i, s in enumerate(pool_keys)}
        for n in args.n:
            for seed in range(args.seeds):
                # as `ofa-latency sample` does: choose among 20 x N candidates (here: random
                # subnets of the train split, which the target has measured), seeded
                cand = np.random.default_rng(seed).choice(len(pool_keys),
                                                          size=min(len(pool_keys), 20 * n),
                                                          replace=False)
                for strategy in STRATEGIES:
                    chosen = select_subnets(sp, n, strategy, seed=seed,
                                            pool=[pool_keys[i] for i in cand],
                                            committee=committee)
                    sel = train.iloc[[index[s] for s in chosen]]
                    enc = sp.encode(archs_from(sp, sel))
                    y = sel.latency_ms.to_numpy()
                    base_name = min(bases, key=lambda b: float(np.mean(np.abs(
                        global_scale(bases[b].table, enc, y)
                        * bases[b].table.predict_encoded(enc) / y - 1))))
                    ft = finetune(bases[base_name], sel, random_state=seed)
                    rows.append({"case": name, "n": n, "seed": seed, "strategy": strategy,
                                 "mape_pct": mape(ft, test), "method": ft.adaptation_.method})
                print(name, n, seed, {r["strategy"]: round(r["mape_pct"], 2)
                                      for r in rows[-len(STRATEGIES):]}, flush=True)
    summary = {}
    for r in rows:
        summary.setdefault((r["case"], r["n"]), {}).setdefault(r["strategy"], []).append(
            r["mape_pct"])
    print(f"\n{'case':36s} {'N':>4s} " + " ".join(f"{s:>11s}" for s in STRATEGIES))
    wins = {s: 0 for s in STRATEGIES}
    rel = {s: [] for s in STRATEGIES}
    for (case, n), d in summary.items():
        means = {s: float(np.mean(v)) for s, v in d.items()}
        best = min(means, key=means.get)
        wins[best] += 1
        for s in STRATEGIES:
            rel[s].append(means[s] / means["random"])
        print(f"{case:36s} {n:4d} " + " ".join(f"{means[s]:10.2f}%" for s in STRATEGIES))
    print("\ncells won: " + ", ".join(f"{s} {wins[s]}" for s in STRATEGIES))
    print("mean MAPE relative to random: " + ", ".join(
        f"{s} {np.mean(rel[s]):.3f}" for s in STRATEGIES))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "wins": wins,
                                               "relative_to_random": {s: float(np.mean(v))
                                                                      for s, v in rel.items()}},
                                              indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        cases = sorted({c for c, _ in summary})
        for k, s in enumerate(STRATEGIES):
            vals = [np.mean(summary[(c, n)][s]) / np.mean(summary[(c, n)]["random"])
                    for c in cases for n in args.n]
            ax.scatter(np.arange(len(vals)) + 0.15 * (k - 1.5), vals, s=12, label=s)
        ax.axhline(1, color="k", lw=0.6)
        ax.set_ylabel("MAPE / MAPE of random")
        ax.set_xlabel("case x N (" + ", ".join(f"N={n}" for n in args.n) + " per case)")
        ax.set_title("held-out MAPE after fine-tuning, by sampling strategy", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print("plot ->", args.plot)


if __name__ == "__main__":
    main()
