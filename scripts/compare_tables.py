"""Agreement between two measurement tables of the same setting on their common subnets.

    python scripts/compare_tables.py data/measurements/A.csv data/measurements/B.csv

Prints MAPE of B against A, the share within +-5 % / +-10 %, Kendall tau, and the median
ratio B/A (a systematic speed difference between the two sessions), and the MAPE left after
dividing that ratio out (the part no predictor trained on one table can follow on the other).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None):
    from scipy.stats import kendalltau

    from ofa_latency.datasets import read_measurements

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    a, b = read_measurements(args.a), read_measurements(args.b)
    key = ["space", "arch", "image_size"]
    m = a[key + ["latency_ms"]].merge(b[key + ["latency_ms"]], on=key, suffixes=("_a", "_b"))
    if m.empty:
        raise SystemExit("the tables have no subnet in common")
    ya, yb = m.latency_ms_a.to_numpy(), m.latency_ms_b.to_numpy()
    ape = np.abs(yb - ya) / ya * 100
    print(f"{len(m)} common subnets: MAPE {ape.mean():.2f} %  median APE {np.median(ape):.2f} %  "
          f"within 5 % {np.mean(ape <= 5) * 100:.1f} %  within 10 % {np.mean(ape <= 10) * 100:.1f} %  "
          f"tau {kendalltau(ya, yb)[0]:.3f}  median ratio b/a {np.median(yb / ya):.4f}")
    ratio = yb / ya / np.median(yb / ya)
    dev = np.abs(ratio - 1) * 100
    print(f"after removing the median ratio: MAPE {dev.mean():.2f} %  median {np.median(dev):.2f} %  "
          f"p95 {np.percentile(dev, 95):.2f} %")


if __name__ == "__main__":
    main()
