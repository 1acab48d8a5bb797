"""Markdown tables of the shipped predictors' held-out metrics (from the manifest).

    python scripts/report_shipped.py

Reads data/predictors/manifest.json (written by scripts/train_shipped.py) and, when present,
data/benchmarks/training_size.json (scripts/bench_training_size.py) for the one-hot
gradient-boosting baseline at 4,000 training subnets on each HELP setting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    from ofa_latency import list_pretrained

    entries = list_pretrained()
    ts_path = ROOT / "data" / "benchmarks" / "training_size.json"
    ts = json.loads(ts_path.read_text()) if ts_path.exists() else {}
    head = ("| predictor | train | test | RMSE (ms) | RMSE / mean (%) | MAPE (%) | within +-5 % (%) "
            "| within +-10 % (%) | Kendall tau | Spearman rho |")
    for group, pick in (("HELP GPU settings", lambda e: e["name"].startswith("help_")),
                        ("this project's tables", lambda e: not e["name"].startswith("help_"))):
        print(f"\n{group}:\n")
        print(head)
        print("|" + "---|" * 10)
        for e in sorted(filter(pick, entries), key=lambda e: e["name"]):
            m = e["heldout_metrics"]
            print(f"| {e['name']} | {e['n_train']} | {e['n_test']} | {m['rmse_ms']:.3f} | "
                  f"{m['rmse_over_mean_pct']:.2f} | {m['mape_pct']:.2f} | {m['within_5pct']:.1f} | "
                  f"{m['within_10pct']:.1f} | {m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} |")
    if ts:
        print("\nAgainst the one-hot gradient-boosting baseline (4,000 training subnets, same "
              "held-out split):\n")
        print("| HELP setting | baseline MAPE (%) | baseline tau | xgb MAPE (%) | xgb tau "
              "| mlp MAPE (%) | mlp tau |")
        print("|" + "---|" * 7)
        settings = sorted({k.split("|")[0] for k in ts})
        for s in settings:
            row = [s]
            for kind in ("baseline", "xgb", "mlp"):
                m = ts.get(f"{s}|{kind}|4000")
                row += ["-", "-"] if m is None else [f"{m['mape_pct']:.2f}", f"{m['kendall_tau']:.3f}"]
            print("| " + " | ".join(row) + " |")
        sizes = sorted({int(k.split("|")[2]) for k in ts})
        print("\nTraining-size curve, held-out MAPE (%) / Kendall tau:\n")
        print("| HELP setting | kind | " + " | ".join(str(n) for n in sizes) + " |")
        print("|" + "---|" * (2 + len(sizes)))
        for s in settings:
            for kind in ("baseline", "xgb", "mlp"):
                cells = [ts.get(f"{s}|{kind}|{n}") for n in sizes]
                print(f"| {s} | {kind} | " + " | ".join(
                    "-" if m is None else f"{m['mape_pct']:.2f} / {m['kendall_tau']:.3f}"
                    for m in cells) + " |")


if __name__ == "__main__":
    main()
