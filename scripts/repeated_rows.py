"""A subnet timed again: one table's rows and another pass's over the same subnets, read as
one table. Does combining a subnet's rows beat keeping its most certain row?

    python scripts/repeated_rows.py \
        --tables "data/benchmarks/retest_tables_host8/onnxruntime_t1_pass?.csv" \
                 "data/benchmarks/tables_over_hours_host8/*.csv" \
        --json data/benchmarks/repeated_rows_host8.json

A user's table holds a subnet twice when it was timed again: a second pass over the same
subnets (``profile`` over a table that has them, after `--retime-above`, or a re-measurement
that joined the table), hours or minutes after the first. Given many separate tables of the
same subnets and setting made on one machine state (e.g. those of
``tables_over_hours.py``), each pair of tables with the same number of windows per subnet is
read as one table holding both, three ways:

* ``single``: each table alone (the error of one pass, for scale);
* ``most_certain``: each subnet's row with the smallest ``ci_pct`` (how the reader kept one
  row before 2026-12-06; the rows as each table alone reads them);
* ``as_read``: the two files' rows concatenated and read by ``read_measurements`` as any
  table is (since 2026-12-06: a subnet's rows combined, each weighted by its own interval
  floored at 1 %, :func:`ofa_latency.datasets.drop_duplicate_rows`).

and, for ``--retime-above`` PCT, table A plus table B's rows of only A's subnets whose
``ci_pct`` is above PCT (what ``profile --retime-above`` adds). Each against the consensus of
every *other* table (the median of their centred log ratios; one global factor removed): the
scale-free RMS error (%) and Kendall tau. Also how well the combined rows' own intervals
claim their error (``ci_pct`` / 1.645 against the RMS error). Beside them, other ways to
combine the rows on the same pairs (``VARIANTS``: each row weighted alike, by its inverse
variance, by ``1 / (ci**2 + f**2)`` for f = 0.5, 1, 2 %, or averaged only where the rows agree
within 4 %).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# one reading of the tables and one scale-free error against the consensus
from tables_over_hours import (centred, claimed_rms_pct, load,  # noqa: E402
                               scale_free_error)


def most_certain(a, b):
    """Each subnet's row of the smaller ``ci_pct`` among tables ``a`` and ``b``."""
    import pandas as pd

    both = pd.concat([a, b], ignore_index=True)
    both = both.assign(_ci=pd.to_numeric(both["ci_pct"], errors="coerce").fillna(np.inf))
    return both.sort_values("_ci", kind="stable").drop_duplicates(["arch", "image_size"])


# other ways to combine a subnet's rows, judged on the same pairs (the rows as each table alone
# reads them): each row's log estimate weighted alike, by 1 / ci**2, by 1 / (ci**2 + f**2),
# or averaged only where the rows agree within 4 % (else the most certain)
VARIANTS = ("equal", "inverse_variance", "floor_0.5", "floor_1", "floor_2", "agree_4pct")


def variant(a, b, rule: str):
    """Tables ``a`` and ``b`` (read singly) as one, each subnet's rows combined by ``rule``."""
    import pandas as pd

    both = pd.concat([a, b], ignore_index=True)
    lr = np.log(both["ratio"].astype(float).to_numpy())
    ci = both["ci_pct"].astype(float).to_numpy()
    if rule == "equal":
        w = np.ones_like(ci)
    elif rule == "inverse_variance":
        w = 1 / ci ** 2
    elif rule.startswith("floor_"):
        w = 1 / (ci ** 2 + float(rule.split("_")[1]) ** 2)
    else:
        w = np.ones_like(ci)
    key = list(zip(both["arch"], both["image_size"].astype(int)))
    frame = pd.DataFrame({"k": key, "wl": w * lr, "w": w, "lr": lr, "ci": ci})
    g = frame.groupby("k", sort=False)
    est = g["wl"].sum() / g["w"].sum()
    if rule == "agree_4pct":
        gap = 100 * (g["lr"].max() - g["lr"].min())
        certain = frame.sort_values("ci", kind="stable").drop_duplicates("k").set_index("k")
        est = est.where(gap <= 4.0, certain["lr"])
    return pd.DataFrame({"arch": [k[0] for k in est.index],
                         "image_size": [k[1] for k in est.index], "ratio": np.exp(est.values)})


def as_read(paths, work: Path, subnets=None):
    """The files' rows (of table 2 on: only ``subnets``) concatenated and read as a table."""
    import pandas as pd
    from ofa_latency.datasets import read_measurements

    raw = [pd.read_csv(p, dtype={"arch": str}) for p in paths]
    if subnets is not None:
        raw[1:] = [t[[k in subnets for k in zip(t["arch"], t["image_size"].astype(int))]]
                   for t in raw[1:]]
    path = work / "both.csv"
    pd.concat(raw, ignore_index=True).to_csv(path, index=False)
    return read_measurements(path)


def readings(a, b, read, keys, truth) -> dict:
    """Tables ``a`` and ``b`` (each read alone) as one, against ``truth``: each subnet's most
    certain row, the file as read (``read``), and every rule of ``VARIANTS``."""
    rec = {"most_certain": scale_free_error(centred(most_certain(a, b), keys), truth),
           "as_read": scale_free_error(centred(read, keys), truth)}
    for rule in VARIANTS:
        rec[rule] = scale_free_error(centred(variant(a, b, rule), keys), truth)
    return rec


def summarise(records, rules) -> dict:
    out = {"pairs": len(records)}
    for r in rules:
        rms = np.array([x[r]["rms_pct"] for x in records])
        out[r] = {"median_rms_pct": round(float(np.median(rms)), 3),
                  "mean_rms_pct": round(float(np.mean(rms)), 3),
                  "median_kendall_tau": round(float(np.median(
                      [x[r]["kendall_tau"] for x in records])), 4)}
    if "as_read" in rules and "most_certain" in rules:
        q = np.array([x["as_read"]["rms_pct"] / x["most_certain"]["rms_pct"]
                      for x in records])
        out["as_read_over_most_certain"] = {
            "median": round(float(np.median(q)), 3),
            "geometric_mean": round(float(np.exp(np.mean(np.log(q)))), 3),
            "pairs_better_pct": round(float(100 * np.mean(q < 1)), 1)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", required=True,
                   help="measurement CSVs of one setting (shell globs are expanded)")
    p.add_argument("--retime-above", type=float, nargs="*", default=[1.0, 2.0],
                   metavar="PCT", help="re-timing thresholds to simulate (percent)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.disable(logging.INFO)  # the reader's per-file notes
    paths = sorted({q for pat in args.tables for q in (glob.glob(pat) or [pat])})
    tables, info, logs, keys = load(paths)
    truth_without = lambda drop: np.median(  # noqa: E731
        logs[[k for k in range(len(logs)) if k not in drop]], axis=0)
    summary = {"tables": len(tables), "subnets": len(keys)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for w in (1, 2):
            group = [k for k, i in enumerate(info) if i["windows"] == w]
            if len(group) < 3:
                continue
            pairs, claimed = [], []
            for a, b in itertools.combinations(group, 2):
                truth = truth_without((a, b))
                read = as_read([paths[a], paths[b]], work)
                alone = [scale_free_error(logs[t], truth) for t in (a, b)]
                rec = {"single": {m: float(np.mean([e[m] for e in alone]))
                                  for m in ("rms_pct", "kendall_tau")},
                       **readings(tables[a], tables[b], read, keys, truth)}
                pairs.append(rec)
                ci = dict(zip(zip(read["arch"], read["image_size"].astype(int)),
                              read["ci_pct"].astype(float)))
                claimed.append(rec["as_read"]["rms_pct"] /
                               claimed_rms_pct([ci[k] for k in keys]))
            s = summarise(pairs, ["single", "most_certain", "as_read", *VARIANTS])
            s["as_read_error_over_claimed_median"] = round(float(np.median(claimed)), 3)
            summary[f"second_pass_{w}_window"] = s
            for above in args.retime_above:
                recs, n = [], []
                for a, b in itertools.permutations(group, 2):
                    truth = truth_without((a, b))
                    ta = tables[a]
                    loose = ta[ta["ci_pct"].astype(float) > above]
                    again = set(zip(loose["arch"], loose["image_size"].astype(int)))
                    n.append(len(again))
                    tb = tables[b][[k in again for k in zip(
                        tables[b]["arch"], tables[b]["image_size"].astype(int))]]
                    read = as_read([paths[a], paths[b]], work, again)
                    recs.append({"single": scale_free_error(logs[a], truth),
                                 **readings(ta, tb, read, keys, truth)})
                s = summarise(recs, ["single", "most_certain", "as_read", *VARIANTS])
                s["median_subnets_timed_again"] = float(np.median(n))
                summary[f"retime_above_{above:g}_{w}_window"] = s
            print(json.dumps({k: v for k, v in summary.items()
                              if k.endswith(f"_{w}_window")}, indent=1), flush=True)
    out = {"command": "python scripts/repeated_rows.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "summary": summary,
        "tables": [i["table"] for i in info]}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
