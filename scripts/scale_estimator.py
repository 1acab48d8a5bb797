"""Which table-wide reference level is most stable? Measured on the committed CPU tables.

    python scripts/scale_estimator.py [--chunk 50] [--json data/benchmarks/scale_estimator.json]
    python scripts/scale_estimator.py --pairs data/benchmarks/retest_tables_host7 \
        --json data/benchmarks/level_estimators_retest.json

Every measured row carries the reference subnet's median latency in its own timing window
(``ref_latency_ms``). A table's latencies are its rows' target/reference ratios times one
reference level, so two tables measured separately on the same machine state agree in scale
exactly when their levels agree. This script cuts each committed table into consecutive chunks
of ``--chunk`` rows (as if each had been a separate, smaller table measured at another moment
of the same day) and computes each chunk's level with candidate estimators: a low quantile of
the window references (5, 10, 20, 30 %), their median, and what a short calibration at a
table's start gives (the median of its first 3 windows). The most stable estimator is the one
whose chunk levels spread least (coefficient of variation and max/min).

``--pairs`` asks the question the levels are for: do two separately made tables of the same
subnets agree in absolute scale? For every committed table with a retest beside it
(``<table>_retest*.csv``) and every ``<setting>_pass1.csv`` / ``_pass2.csv`` pair of the
folders given (``scripts/noise_floor.py``'s tables), each table's level is taken from its
windows' fastest reference rounds (``ref_min_ms``, as the product does) with several
estimators, and the absolute disagreement is ``|median(ratio_2 / ratio_1) * level_2 /
level_1 - 1|``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ofa_latency.profiling.scale import _window_values, reference_level_ms  # noqa: E402

QUANTILES = (0.05, 0.1, 0.2, 0.3, 0.5)


def estimators(ref):
    out = {f"q{int(q * 100):02d}": float(np.quantile(ref, q)) for q in QUANTILES}
    out["start_3_windows"] = float(np.median(ref[:3]))
    return out


def _window_min(df):
    """A table's per-window reference values, as the product takes them (``ref_min_ms``)."""
    v = _window_values(df)[0].to_numpy(dtype=float)
    return v[np.isfinite(v) & (v > 0)]


def _fast_state(v, pct):
    """The windows within ``pct`` % of the fastest one (the machine's fastest state)."""
    return v[v <= v.min() * (1 + pct / 100)]


LEVELS = {"q05 (product)": reference_level_ms,
          "q01": lambda v: np.quantile(v, 0.01),
          "min": lambda v: v.min(),
          "2nd smallest": lambda v: np.sort(v)[1],
          "fastest state (5 %), median": lambda v: np.median(_fast_state(v, 5)),
          "fastest state (5 %), q25": lambda v: np.quantile(_fast_state(v, 5), 0.25)}


def retest_pairs(folders):
    pairs = [(f.with_name(f.name.split("_retest")[0] + ".csv"), f) for f in
             sorted((ROOT / "data" / "measurements").glob("*_retest*.csv"))]
    for d in folders:
        pairs += [(a, a.with_name(a.name.replace("_pass1", "_pass2")))
                  for a in sorted(Path(d).glob("*_pass1.csv"))]
    rows = []
    for a, b in pairs:
        ta, tb = pd.read_csv(a, comment="#"), pd.read_csv(b, comment="#")
        m = ta.merge(tb, on=["arch", "image_size"], suffixes=("_1", "_2"))
        ratio = float(np.median(m["ratio_2"] / m["ratio_1"]))
        wa, wb = _window_min(ta), _window_min(tb)
        row = {"pair": f"{a.parent.name}/{b.name}", "windows": [len(wa), len(wb)]}
        row.update({k: round(100 * abs(ratio * f(wb) / f(wa) - 1), 2) for k, f in LEVELS.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    summary = {k: {"median_pct": round(float(df[k].median()), 2),
                   "max_pct": round(float(df[k].max()), 2),
                   "pairs_within_2pct": int((df[k] <= 2).sum())} for k in LEVELS}
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(df.to_string(index=False))
    print(f"{len(df)} pairs; absolute disagreement %: " + json.dumps(summary))
    return {"pairs": rows, "summary": summary}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--json", default=None)
    p.add_argument("--pairs", nargs="*", default=None, metavar="DIR",
                   help="judge the estimators on test-retest pairs (committed retests and "
                        "the pass1/pass2 tables of these folders)")
    args = p.parse_args(argv)
    if args.pairs is not None:
        out = retest_pairs(args.pairs)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return 0
    results = {}
    names = None
    for f in sorted((ROOT / "data" / "measurements").glob("*_cpu_*.csv")):
        df = pd.read_csv(f)
        ref = df["ref_latency_ms"].to_numpy(dtype=float)
        ref = ref[np.isfinite(ref)]
        chunks = [ref[i:i + args.chunk] for i in range(0, len(ref) - args.chunk + 1, args.chunk)]
        if not chunks:  # shorter than one chunk (a few re-timed rows)
            continue
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
