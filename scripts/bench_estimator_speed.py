"""Query speed of LatencyEstimator against OFA's Note10 lookup table, side by side.

    python scripts/bench_estimator_speed.py --repeats 7

Trains each predictor kind on HELP's 2080ti_64 setting (4,000 subnets) and times, in one run,
interleaved repeat by repeat, on subnets the estimator has never seen (there is no cache):
  * OFA LUT: ``LatencyTable.predict_efficiency(spec)`` per subnet (``ofa.tutorial``);
  * estimator ``get_efficiency(arch)`` (``ofa.nas`` form) and ``predict_efficiency(spec)``
    (``ofa.tutorial`` form) per subnet;
  * batch of 10,000 subnets: ``predict(list of dicts)`` in the ``ofa.nas`` form and in the
    ``ofa.tutorial`` form (with ``'wid': None``, as OFA's tutorial writes them);
    ``predict_arrays(ks, e, d, r)`` (integer arrays, validated); and the table alone on
    already-encoded subnets.
Prints medians with min..max over repeats, and each single-query time as a fraction of the
LUT's measured in the same repeat. ``--json`` writes the raw per-repeat numbers.
"""

from __future__ import annotations

import os
import argparse
import json
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data"))


def per_item_us(fn, items):
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t0) / len(items) * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--help-dir", default=str(SHARED / "help_ofa_mbv3_w1.2"))
    p.add_argument("--lut-dir", default=str(SHARED / "ofa_note10_lut"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--n-single", type=int, default=500)
    p.add_argument("--n-batch", type=int, default=10_000)
    p.add_argument("--kinds", nargs="+", default=["xgb", "mlp"])
    p.add_argument("--json", default=None, help="write per-repeat results here")
    args = p.parse_args(argv)

    from ofa_latency import get_space
    from ofa_latency.datasets import read_help
    from ofa_latency.estimator import LatencyEstimator
    from ofa_latency.lut import load_ofa_lut
    from ofa_latency.predictors import create_predictor

    for d in (args.help_dir, args.lut_dir):
        if not Path(d).exists():
            raise SystemExit(f"reference data not found: {d}")
    sp = get_space("ofa_mbv3_w1.2")
    lut = load_ofa_lut(args.lut_dir)
    df = read_help(args.help_dir, "2080ti_64")
    train = df[df.split == "train"].head(4000)
    pool = [s for s in sp.sample(args.n_batch + args.repeats * args.n_single * 3, seed=123)
            if s.image_size in lut.latency_tables]
    batch = [s.to_dict() for s in sp.sample(args.n_batch, seed=7)]
    batch_tut = [dict(s.to_tutorial_dict(), wid=None) for s in sp.sample(args.n_batch, seed=7)]
    ests = {k: LatencyEstimator(create_predictor(k).fit(train)) for k in args.kinds}
    import numpy as np

    bsubs = sp.sample(args.n_batch, seed=7)
    arrays = [np.array([getattr(x, f) for x in bsubs]) for f in ("ks", "e", "d", "image_size")]
    encoded = sp.encode_arrays(*arrays)

    modes = ("nas", "tutorial", "batch_dicts", "batch_dicts_tutorial", "batch_arrays",
             "batch_encoded")
    res = {k: [] for k in ["lut"] + [f"{k}_{m}" for k in args.kinds for m in modes]}
    for rep in range(args.repeats):
        chunk = pool[rep * args.n_single:(rep + 1) * args.n_single]
        specs = [s.to_tutorial_dict() for s in chunk]
        archs = [s.to_dict() for s in chunk]
        res["lut"].append(per_item_us(lut.predict_efficiency, specs))
        for k, est in ests.items():
            res[f"{k}_nas"].append(per_item_us(est.get_efficiency, archs))
            res[f"{k}_tutorial"].append(per_item_us(est.predict_efficiency, specs))
            for m, fn in (("batch_dicts", lambda est=est: est.predict(batch)),
                          ("batch_dicts_tutorial", lambda est=est: est.predict(batch_tut)),
                          ("batch_arrays", lambda est=est: est.predict_arrays(*arrays)),
                          ("batch_encoded", lambda est=est: est.predictor.predict(encoded))):
                t0 = time.perf_counter()
                fn()
                res[f"{k}_{m}"].append(args.n_batch / (time.perf_counter() - t0))
    lut_med = statistics.median(res["lut"])
    print(f"OFA Note10 LUT single query: median {lut_med:.1f} us "
          f"(min {min(res['lut']):.1f}, max {max(res['lut']):.1f}) over {args.repeats} repeats")
    for k in args.kinds:
        for m in ("nas", "tutorial"):
            v = res[f"{k}_{m}"]
            ratios = [a / b for a, b in zip(v, res["lut"])]
            print(f"{k} single query ({m} form): median {statistics.median(v):.2f} us "
                  f"(min {min(v):.2f}, max {max(v):.2f}); {statistics.median(ratios):.3f}x the "
                  f"LUT (ratio min {min(ratios):.3f}, max {max(ratios):.3f})")
        for m in ("batch_dicts", "batch_dicts_tutorial", "batch_arrays", "batch_encoded"):
            v = res[f"{k}_{m}"]
            print(f"{k} {m} ({args.n_batch}): median {statistics.median(v):,.0f} subnets/s "
                  f"(min {min(v):,.0f}, max {max(v):,.0f})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
