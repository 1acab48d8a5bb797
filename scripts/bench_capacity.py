"""xgb's number of trees fixed (300) against chosen by validation, on HELP's nine settings.

    python scripts/bench_capacity.py

Each setting: trained on its train split (about 4,000 subnets), held-out metrics on its test
split. "validated" holds out 15 % of the training subnets, grows up to 3,000 trees of depth 4
at learning rate 0.1 with early stopping on their MAPE, then refits on all with that count.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HELP = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"
VALIDATED = dict(n_estimators=3000, learning_rate=0.1, max_depth=4, validation_fraction=0.15)


def main():
    from ofa_latency import create_predictor
    from ofa_latency.datasets import HELP_SETTINGS, read_help
    from ofa_latency.evaluation import latency_metrics

    if not (HELP / "ofa_archs.pt").exists():
        raise SystemExit(f"HELP data not found at {HELP}")
    print("| setting | fixed 300 trees: MAPE (%) / tau | validated: MAPE (%) / tau | trees chosen |")
    print("|---|---|---|---|")
    for setting in HELP_SETTINGS:
        df = read_help(HELP, setting)
        tr, te = df[df.split == "train"], df[df.split == "test"]
        cells = []
        for params in ({}, VALIDATED):
            p = create_predictor("xgb", **params).fit(tr)
            m = latency_metrics(te.latency_ms.to_numpy(), p.predict(te))
            cells.append((m["mape_pct"], m["kendall_tau"], p.n_trees_))
        print(f"| {setting} | {cells[0][0]:.3f} / {cells[0][1]:.4f} | {cells[1][0]:.3f} / "
              f"{cells[1][1]:.4f} | {cells[1][2]} |", flush=True)


if __name__ == "__main__":
    main()
