"""Which table-wide reference level is most stable? Measured on the committed CPU tables.

    python scripts/scale_estimator.py [--chunk 50] [--json data/benchmarks/scale_estimator.json]

Every measured row carries the reference subnet's median latency in its own timing window
(``ref_latency_ms``). A table's latencies are its rows' target/reference ratios times one
reference level, so two tables measured separately on the same machine state agree in scale
exactly when their levels agree. This script cuts each committed table into consecutive chunks
of ``--chunk`` rows (as if each had been a separate, smaller table measured at another moment
of the same day) and computes each chunk's level with candidate estimators: a low quantile of
the window references (5, 10, 20, 30 %), their median, and what a short calibration at a
table's start gives (the median of its first 3 windows). The most stable estimator is the one
whose chunk levels spread least (coefficient of variation and max/min).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUANTILES = (0.05, 0.1, 0.2, 0.3, 0.5)


def estimators(ref):
    out = {f"q{int(q * 100):02d}": float(np.quantile(ref, q)) for q in QUANTILES}
    out["start_3_windows"] = float(np.median(ref[:3]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = {}
    names = None
    for f in sorted((ROOT / "data" / "measurements").glob("*_cpu_*.csv")):
        df = pd.read_csv(f)
        ref = df["ref_latency_ms"].to_numpy(dtype=float)
        ref = ref[np.isfinite(ref)]
        chunks = [ref[i:i + args.chunk] for i in range(0, len(ref) - args.chunk + 1, args.chunk)]
        levels = pd.DataFrame([estimators(c) for c in chunks])
        names = list(levels.columns)
        cv = 100 * levels.std(ddof=1) / levels.mean()
        span = 100 * (levels.max() / levels.min() - 1)
        results[f.stem] = {"n_chunks": len(chunks), "median_spread_pct":
                           float(df["spread_pct"].median()),
                           "cv_pct": cv.round(2).to_dict(), "max_over_min_pct": span.round(1).to_dict()}
    w = max(len(k) for k in results)
    print(f"{'table':{w}s} {'chunks':>6s} {'spread':>7s}  " + "  ".join(f"{n:>15s}" for n in names))
    for k, r in results.items():
        print(f"{k:{w}s} {r['n_chunks']:6d} {r['median_spread_pct']:6.1f}%  " + "  ".join(
            f"{r['cv_pct'][n]:6.2f} / {r['max_over_min_pct'][n]:5.1f}" for n in names))
    print("cells: coefficient of variation of the chunk levels % / (max/min - 1) %")
    if args.json:
        Path(args.json).write_text(json.dumps({"chunk": args.chunk, "tables": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
