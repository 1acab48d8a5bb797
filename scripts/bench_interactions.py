"""The non-additive residual (xgb ``interaction_trees``) against the additive predictor, on
HELP's nine settings, and what it costs per query.

    python scripts/bench_interactions.py --json data/benchmarks/interactions.json

Each setting: the first N subnets of its train split (N = 1,000 and all, about 4,000), held-out
metrics on its whole test split. "additive" is xgb with its trees chosen by validation
(``validation_fraction=0.15``, up to 3,000 trees of depth 4 at learning rate 0.1, as
``scripts/bench_capacity.py``); "+ interactions" is the same plus ``interaction_trees=1000``
(the number kept chosen by validation on the same held-out fraction, zero when it does not
beat the additive model there). Query speed is measured afterwards on one setting, side by side
in one run: a batch of 10,000 dicts and single ``get_efficiency`` calls (median of 5 repeats,
with the spread).
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
HELP = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"
ADDITIVE = dict(n_estimators=3000, learning_rate=0.1, max_depth=4, validation_fraction=0.15)


def speed(pred, archs, repeats=5):
    from ofa_latency import LatencyEstimator

    est = LatencyEstimator(pred, check_machine=False)
    batch, single = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        est.predict(archs)
        batch.append(len(archs) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for a in archs[:200]:
            est.get_efficiency(a)
        single.append((time.perf_counter() - t0) / 200 * 1e6)
    return {"batch_per_s_median": float(np.median(batch)),
            "batch_per_s_range": [float(min(batch)), float(max(batch))],
            "single_us_median": float(np.median(single)),
            "single_us_range": [float(min(single)), float(max(single))]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", nargs="+", default=None)
    p.add_argument("--n", nargs="+", type=int, default=[1000, 0], help="0: the whole train split")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from ofa_latency import create_predictor
    from ofa_latency.datasets import HELP_SETTINGS, read_help
    from ofa_latency.evaluation import latency_metrics

    if not (HELP / "ofa_archs.pt").exists():
        raise SystemExit(f"HELP data not found at {HELP}")
    results, fitted = [], None
    print("| setting | N | additive: MAPE % / tau | + interactions: MAPE % / tau | change | trees kept |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings or HELP_SETTINGS:
        df = read_help(HELP, setting)
        train, test = df[df.split == "train"], df[df.split == "test"]
        for n in args.n:
            rows = train if n == 0 else train.iloc[:n]
            y = test.latency_ms.to_numpy()
            add = create_predictor("xgb", **ADDITIVE).fit(rows)
            inter = create_predictor("xgb", **ADDITIVE, interaction_trees=1000).fit(rows)
            m_add = latency_metrics(y, add.predict(test))
            m_int = latency_metrics(y, inter.predict(test))
            rec = {"setting": setting, "n_train": len(rows), "additive": m_add,
                   "interactions": m_int, "interaction_trees_kept": inter.n_interaction_trees_,
                   "change_pct": 100 * (m_int["mape_pct"] / m_add["mape_pct"] - 1)}
            results.append(rec)
            print(f"| {setting} | {len(rows)} | {m_add['mape_pct']:.3f} / {m_add['kendall_tau']:.4f} | "
                  f"{m_int['mape_pct']:.3f} / {m_int['kendall_tau']:.4f} | {rec['change_pct']:+.1f} % | "
                  f"{inter.n_interaction_trees_} |", flush=True)
            if inter.n_interaction_trees_ and (fitted is None or len(rows) > fitted[2]):
                fitted = (add, inter, len(rows), setting)
    out = {"results": results}
    if fitted:
        from ofa_latency.spaces import get_space

        archs = [s.to_dict() for s in get_space("ofa_mbv3_w1.2").sample(10000, seed=7)]
        out["speed"] = {"setting": fitted[3], "additive": speed(fitted[0], archs),
                        "interactions": speed(fitted[1], archs)}
        for k in ("additive", "interactions"):
            s = out["speed"][k]
            print(f"{k:13s} batch {s['batch_per_s_median']:,.0f}/s "
                  f"({s['batch_per_s_range'][0]:,.0f}-{s['batch_per_s_range'][1]:,.0f}); single "
                  f"{s['single_us_median']:.1f} us ({s['single_us_range'][0]:.1f}-"
                  f"{s['single_us_range'][1]:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
