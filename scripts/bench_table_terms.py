"""The linear table with and without its per-kernel-size depthwise terms, on every table.

    python scripts/bench_table_terms.py --json data/benchmarks/table_terms.json

For every committed measurement table (retests left out) and every HELP GPU setting (read from
``../shared/data``, skipped where absent): the table kind fitted on the ``train`` rows by
:func:`ofa_latency.predictors.fit_linear_table` with ``kernel_terms`` False and True (same
rows, same penalty), held-out MAPE on the ``test`` rows. The table is what every kind starts
from (xgb and mlp add a correction to it).

For the tables matching ``--curve-tables`` (default the LiteRT tables of host5), two more
looks: the cross-validated MAPE over all their rows (5 folds, 2 shuffles; not one fixed
split), with and without the terms; and a learning curve: the fit with the terms on
``--curve-n`` train rows drawn at random (3 draws, mean held-out MAPE) and on all of them:
does the error still fall with more rows?
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data"))


def settings(help_dir):
    from ofa_latency.datasets import HELP_SETTINGS, read_help, read_measurements

    for t in sorted((ROOT / "data" / "measurements").glob("*.csv")):
        if "retest" not in t.stem:
            yield t.stem, read_measurements(t)
    if (help_dir / "ofa_archs.pt").exists():
        for s in HELP_SETTINGS:
            yield f"help_{s}", read_help(help_dir, s)
    else:
        print(f"HELP data not found at {help_dir}; its settings are left out")


def cross_validated(space, df, folds=5, shuffles=2):
    """Mean out-of-fold MAPE (%) of the table with and without the terms over all rows."""
    from sklearn.model_selection import KFold

    from ofa_latency.datasets import subnets_of
    from ofa_latency.predictors import fit_linear_table

    enc = space.encode(subnets_of(df))
    y = df.latency_ms.to_numpy()
    out = {}
    for terms in (False, True):
        errs = []
        for seed in range(shuffles):
            pred = np.zeros(len(y))
            for tr, te in KFold(folds, shuffle=True, random_state=seed).split(y):
                fit = fit_linear_table(space, enc.take(tr), y[tr], kernel_terms=terms)
                pred[te] = fit.predict_encoded(enc.take(te))
            errs.append(np.mean(np.abs(pred / y - 1)) * 100)
        out["with_terms" if terms else "without_terms"] = round(float(np.mean(errs)), 3)
    return out


def main(argv=None):
    from ofa_latency.datasets import subnets_of
    from ofa_latency.predictors import fit_linear_table
    from ofa_latency.spaces import get_space

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--help-dir", default=str(SHARED / "help_ofa_mbv3_w1.2"))
    p.add_argument("--curve-tables", nargs="*", default=["*_litert_*_host5"], metavar="GLOB")
    p.add_argument("--curve-n", nargs="*", type=int, default=[60, 120, 180])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows, curves = [], {}
    for name, df in settings(Path(args.help_dir)):
        space = get_space(df.space.iloc[0])
        tr, te = df[df.split == "train"], df[df.split == "test"]
        enc_tr, enc_te = space.encode(subnets_of(tr)), space.encode(subnets_of(te))
        y_te = te.latency_ms.to_numpy()
        row = {"table": name, "n_train": int(len(tr)), "n_test": int(len(te))}
        for terms in (False, True):
            fit = fit_linear_table(space, enc_tr, tr.latency_ms.to_numpy(), kernel_terms=terms)
            mape = float(np.mean(np.abs(fit.predict_encoded(enc_te) / y_te - 1)) * 100)
            row["with_terms" if terms else "without_terms"] = round(mape, 3)
        rows.append(row)
        print(f"{name:55s} {row['n_train']:5d} / {row['n_test']:4d}  without "
              f"{row['without_terms']:6.2f} %  with {row['with_terms']:6.2f} %", flush=True)
        if any(fnmatch.fnmatch(name, g) for g in args.curve_tables):
            row["cv_pct"] = cross_validated(space, df)
            print(f"  5-fold cross-validated MAPE over all {len(df)} rows: {row['cv_pct']}",
                  flush=True)
            curve = {}
            for n in [n for n in args.curve_n if n < len(tr)]:
                errs = []
                for seed in range(3):
                    sub = tr.sample(n=n, random_state=seed)
                    fit = fit_linear_table(space, space.encode(subnets_of(sub)),
                                           sub.latency_ms.to_numpy())
                    errs.append(np.mean(np.abs(fit.predict_encoded(enc_te) / y_te - 1)) * 100)
                curve[str(n)] = round(float(np.mean(errs)), 3)
            curve[str(len(tr))] = row["with_terms"]
            curves[name] = curve
            print(f"  learning curve (train rows: held-out MAPE %): {curve}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "learning_curves": curves},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
