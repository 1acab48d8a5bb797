"""Is the disagreement between two tables of the same subnets noise, row by row, or a trend
with the subnets' size (a machine state that changes large and small subnets' ratios to the
reference differently)?

For every pass-1 / pass-2 pair of tables in the given folders (``noise_floor.py``'s
``<setting>_pass1.csv`` and ``_pass2.csv``): the per-subnet log ratio of the two tables'
latencies, less its median (what scale-free MAPE looks at), its standard deviation, and how
much of its variance a straight line in the subnet's log latency explains (R^2, and the
slope: the exponent by which pass 2's latencies would follow pass 1's, minus one).

    python scripts/retest_size_trend.py data/benchmarks/retest_tables_host7 \
        data/benchmarks/retest_tables_host8 data/benchmarks/noise_floor_runtimes_night_host8 \
        data/benchmarks/retest_tables_host9 data/benchmarks/noise_floor_wauto_host9 \
        data/benchmarks/noise_floor_runtimes_wauto_host9 data/benchmarks/noise_floor_runtimes_steady_host9 \
        data/benchmarks/noise_floor_runtimes_steady2_host9 --json data/benchmarks/retest_size_trend.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def size_trend(a, b) -> dict:
    """The log-ratio of table ``a`` to ``b`` over their common subnets against log latency."""
    m = a.merge(b, on=["arch", "image_size"], suffixes=("_1", "_2"))
    d = np.log(m.latency_ms_1.to_numpy() / m.latency_ms_2.to_numpy())
    d -= np.median(d)
    z = np.log(m.latency_ms_1.to_numpy() / np.median(m.latency_ms_1))
    slope, icpt = np.polyfit(z, d, 1)
    res = d - (slope * z + icpt)
    # scale-free MAPE after the trend: the ratio left once a power law in size is taken out
    return {"n": int(len(m)), "log_ratio_sd_pct": round(float(100 * d.std()), 3),
            "size_r2": round(float(1 - res.var() / d.var()), 3),
            "size_slope": round(float(slope), 4),
            "scale_free_mape_pct": round(float(100 * np.mean(np.abs(np.expm1(d)))), 3),
            "after_trend_mape_pct": round(float(100 * np.mean(np.abs(np.expm1(
                res - np.median(res))))), 3)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from ofa_latency.datasets import read_measurements

    out = {}
    for folder in map(Path, args.folders):
        for p1 in sorted(folder.glob("*_pass1.csv")):
            p2 = p1.with_name(p1.name.replace("_pass1.csv", "_pass2.csv"))
            if not p2.exists():
                continue
            key = f"{folder.name}/{p1.name[:-len('_pass1.csv')]}"
            out[key] = size_trend(read_measurements(p1), read_measurements(p2))
            r = out[key]
            print(f"{key:60s} n {r['n']:3d}  sd {r['log_ratio_sd_pct']:5.2f} %  size R^2 "
                  f"{r['size_r2']:.2f}  slope {r['size_slope']:+.3f}  scale-free MAPE "
                  f"{r['scale_free_mape_pct']:.2f} -> {r['after_trend_mape_pct']:.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
