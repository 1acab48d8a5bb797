"""Speed of validation, sampling and the analytic cost features (100,000 subnets).

    python scripts/bench_features.py --n 100000 --repeats 3

Prints the median wall time (and min..max over repeats) of: sampling n subnets, computing
features from canonical Subnet objects, and computing them from plain arch dicts (validation
included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out), min(out), max(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--space", default="ofa_mbv3_w1.2")
    args = p.parse_args(argv)
    from ofa_latency import get_space

    sp = get_space(args.space)
    sp.features(sp.sample(2, seed=0))  # build the cost tables once (supernet construction)
    subs = sp.sample(args.n, seed=0)
    dicts = [s.to_dict() for s in subs]
    for name, fn in [("sample", lambda: sp.sample(args.n, seed=1)),
                     ("features(Subnet)", lambda: sp.features(subs)),
                     ("features(dict)", lambda: sp.features(dicts)),
                     ("onehot(dict)", lambda: sp.onehot(dicts))]:
        med, lo, hi = timed(fn, args.repeats)
        print(f"{name:18s} n={args.n}: median {med:.3f} s (min {lo:.3f}, max {hi:.3f}), "
              f"{args.n / med / 1e3:.0f} k subnets/s")


if __name__ == "__main__":
    main()
