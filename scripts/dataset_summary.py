"""Summarise the committed measurement tables (markdown for BENCHMARKS.md).

    python scripts/dataset_summary.py

For each table in data/measurements/: rows, unique subnets, resolutions, train/test counts,
latency quantiles (ms), median per-subnet round spread, median timed runs, and the
measurement cost (wall seconds per subnet from the row timestamps), and the reference level
as the 5 % quantile of the window medians and of the windows' fastest rounds. Where a repeat measurement
of the same subnets exists in data/benchmarks/ (``*_repeat.csv``), the test-retest MAPE and
Kendall tau between the two are printed too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep] + body)


def main():
    from ofa_latency.datasets import read_measurements

    rows = []
    for path in sorted((ROOT / "data" / "measurements").glob("*.csv")):
        df = read_measurements(path)
        t = pd.to_datetime(df.timestamp)
        gaps = t.diff().dt.total_seconds().dropna()
        gaps = gaps[gaps < 600]  # drop pauses between resumed runs
        rows.append({
            "table": path.stem, "rows": len(df),
            "unique subnets": len(df.drop_duplicates(["arch", "image_size"])),
            "resolutions": f"{df.image_size.min()}..{df.image_size.max()} ({df.image_size.nunique()})",
            "train/test": f"{(df.split == 'train').sum()}/{(df.split == 'test').sum()}",
            "latency ms p5/p50/p95": "/".join(f"{q:.2f}" for q in df.latency_ms.quantile([.05, .5, .95])),
            "median spread %": round(float(df.spread_pct.median()), 1),
            "median runs": int(df.n_runs.median()),
            "s per subnet": round(float(gaps.mean()), 2),
            # the reference level two ways: 5 % quantile of the window medians (what older
            # tables have) / of each window's fastest reference round (the current level)
            "ref level ms (medians / fastest)": "/".join(
                "-" if df[c].isna().all() else f"{np.quantile(df[c].dropna(), 0.05):.2f}"
                for c in ("ref_latency_ms", "ref_min_ms")),
        })
    print(markdown_table(pd.DataFrame(rows)))
    for rep in sorted((ROOT / "data" / "benchmarks").glob("*_repeat.csv")):
        base = ROOT / "data" / "measurements" / rep.name.replace("_repeat", "")
        a, b = read_measurements(rep), read_measurements(base)
        m = a.merge(b, on=["arch", "image_size"], suffixes=("_rep", ""))
        for col in ("latency_ms", "latency_raw_ms"):
            ape = 100 * np.abs(m[col + "_rep"] - m[col]) / m[col]
            tau = kendalltau(m[col + "_rep"], m[col]).statistic
            print(f"\n{rep.stem} vs {base.stem}, {col}: n={len(m)}, MAPE {ape.mean():.2f} %, "
                  f"p95 APE {np.percentile(ape, 95):.2f} %, Kendall tau {tau:.3f}")


if __name__ == "__main__":
    main()
