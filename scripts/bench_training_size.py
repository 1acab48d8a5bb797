"""Held-out quality against training-set size on HELP's GPU settings.

    python scripts/bench_training_size.py --out data/benchmarks/training_size.json \
        --plot data/benchmarks/training_size.png

For each HELP setting (GPU x batch size), each predictor kind and each training size, fits on
a seeded random subset of the ``train`` split and reports metrics on the whole ``test`` split
(the fixed hash split by canonical subnet). Resumable: finished cells are kept in --out.

Kind ``baseline`` is a quick gradient-boosting baseline outside the package: XGBoost's
default regressor (100 trees, depth 6) on OFA's plain one-hot encoding, squared error on
latency in ms.
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


class _Baseline:
    """XGBoost defaults on OFA's one-hot encoding (the reference the issue compares with)."""

    def __init__(self, seed):
        self.seed = seed

    def _x(self, df):
        from ofa_latency import get_space
        from ofa_latency.datasets import subnets_of

        return get_space(df.space.iloc[0]).onehot(subnets_of(df))

    def fit(self, df):
        import xgboost as xgb

        self.model = xgb.XGBRegressor(random_state=self.seed, n_jobs=1)
        self.model.fit(self._x(df), df.latency_ms.to_numpy())
        return self

    def predict(self, df):
        return self.model.predict(self._x(df)).astype(np.float64)


def main(argv=None):
    from ofa_latency.datasets import HELP_SETTINGS, read_help
    from ofa_latency.evaluation import latency_metrics
    from ofa_latency.predictors import create_predictor

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--help-dir", default=str(Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"))
    p.add_argument("--settings", nargs="+", default=HELP_SETTINGS)
    p.add_argument("--sizes", nargs="+", type=int, default=[100, 300, 1000, 4000])
    p.add_argument("--kinds", nargs="+", default=["baseline", "xgb", "mlp"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "data" / "benchmarks" / "training_size.json"))
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    if not Path(args.help_dir).exists():
        raise SystemExit(f"HELP data not found at {args.help_dir}")

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for setting in args.settings:
        df = read_help(args.help_dir, setting)
        train, test = df[df.split == "train"], df[df.split == "test"]
        order = np.random.default_rng(args.seed).permutation(len(train))
        for kind in args.kinds:
            for n in args.sizes:
                key = f"{setting}|{kind}|{n}"
                if key in results:
                    continue
                sub = train.iloc[order[:n]]
                t0 = time.perf_counter()
                if kind == "baseline":
                    pred = _Baseline(args.seed).fit(sub)
                else:
                    pred = create_predictor(kind, random_state=args.seed).fit(sub)
                fit_s = time.perf_counter() - t0
                m = latency_metrics(test.latency_ms.to_numpy(), pred.predict(test))
                m.update(n_train=int(len(sub)), fit_seconds=round(fit_s, 2))
                results[key] = m
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))
                print(f"{setting:12s} {kind:4s} n={n:5d}: MAPE {m['mape_pct']:5.2f} %  "
                      f"tau {m['kendall_tau']:.3f}  RMSE {m['rmse_ms']:.3f} ms "
                      f"({m['rmse_over_mean_pct']:.2f} % of mean)  +-10 % {m['within_10pct']:.1f} %",
                      flush=True)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.kinds), figsize=(6 * len(args.kinds), 4), squeeze=False)
        for ax, kind in zip(axes[0], args.kinds):
            for setting in args.settings:
                xs = [n for n in args.sizes if f"{setting}|{kind}|{n}" in results]
                ax.plot(xs, [results[f"{setting}|{kind}|{n}"]["mape_pct"] for n in xs], "o-",
                        label=setting)
            ax.set_xscale("log"); ax.set_xlabel("training subnets"); ax.set_ylabel("held-out MAPE (%)")
            ax.set_title(f"{kind} on HELP settings"); ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout(); fig.savefig(args.plot, dpi=110)
        print("plot ->", args.plot)


if __name__ == "__main__":
    main()
