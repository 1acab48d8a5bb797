"""Tables of the same subnets made hours apart on one machine: do they still agree?

    python scripts/tables_over_hours.py --tables data/benchmarks/tables_over_hours_host8/*.csv \
        --json data/benchmarks/tables_over_hours_host8.json \
        --plot data/benchmarks/tables_over_hours_host8.png

A user profiles some subnets today and more tomorrow on the same machine, or refits a
predictor from a table made hours before the search it guides. Whether that is sound depends
on whether a subnet's latency relative to the others stays put over hours, or drifts with
the machine's state (section 14.5: a slow state moves subnets' ratios to the reference).
Given many separate tables of the same subnets and setting, made over hours (e.g. every
``noise_floor.py`` pass of a day), it reports:

* per table: when it was made, how many windows per subnet, its reference level (ms), its
  median within-window spread, the RMS error its rows' own 90 % half-widths claim
  (``ci_pct`` / 1.645, the normal quantile of its coverage), and its scale-free error
  against the consensus of the *other* tables (each subnet's median log ratio over them,
  every table centred on its own median: one global factor removed), as an RMS and a mean
  absolute error (%) and Kendall tau;
* per pair of tables: the scale-free MAPE and tau of ``noise_floor.py``'s retest, against
  how many hours apart the two were made: does the agreement decay with the gap? (a rank
  correlation, and pairs minutes apart against pairs hours apart);
* the mean of k one-window tables made at different times against the consensus of the rest:
  whether combining tables of different hours (appending more windows later) buys what a
  second window in the same minutes does;
* two windows against one at equal noise: the tables' errors against the consensus, in log
  terms, regressed on their median within-window spread and whether they timed two windows
  (least squares; the factor two windows multiply the error by, with a 95 % interval): hours
  differ in noise, so tables made in different minutes are not compared directly.

Every table must hold the same setting; the subnets compared are those every table has.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, norm, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_floor import compare  # noqa: E402  (the retest's own figures, one definition)

from ofa_latency.profiling.timing import INTERVAL_COVERAGE  # noqa: E402

SETTING = ["space", "backend", "device", "threads", "batch_size", "precision"]
# a row's ci_pct is this many standard deviations of a normal error (its 90 % interval)
Z_INTERVAL = float(norm.ppf(0.5 + INTERVAL_COVERAGE / 2))


def claimed_rms_pct(ci_pct) -> float:
    """The RMS error (%) that rows' own 90 % half-widths ``ci_pct`` claim (a normal error)."""
    return float(np.sqrt(np.mean((np.asarray(ci_pct, dtype=float) / Z_INTERVAL) ** 2)))


def centred(table, keys):
    """The table's log ratios (log-percent) of the subnets ``keys``, one global factor (their
    median) removed."""
    r = dict(zip(zip(table["arch"], table["image_size"].astype(int)),
                 table["ratio"].astype(float)))
    v = np.log([r[k] for k in keys]) * 100
    return v - np.median(v)


def scale_free_error(est, truth) -> dict:
    """Centred log ratios ``est`` against ``truth``, their median difference removed: the RMS
    and mean absolute error (%) and Kendall tau (not rounded)."""
    err = est - truth
    err = err - np.median(err)
    return {"rms_pct": float(np.sqrt(np.mean(err ** 2))),
            "mape_pct": float(np.mean(np.abs(np.expm1(err / 100)) * 100)),
            "kendall_tau": float(kendalltau(est, truth).statistic)}


def load(paths):
    """The tables (read as the product reads them), restricted to the subnets all of them
    have, and a description of each."""
    import pandas as pd
    from ofa_latency.datasets import read_measurements

    tables, info = [], []
    for p in paths:
        t = read_measurements(p)
        tables.append(t)
        stamps = pd.to_datetime(t["timestamp"], utc=True)
        info.append({"table": str(p), "rows": int(len(t)),
                     "start_utc": stamps.min().strftime("%Y-%m-%dT%H:%M"),
                     "hours": stamps.min().timestamp() / 3600.0,
                     "windows": 2 if t["window_sd_pct"].notna().mean() > 0.5 else 1,
                     "level_ms": round(float(t["ref_baseline_ms"].iloc[0]), 4),
                     "median_spread_pct": round(float(t["spread_pct"].median()), 1),
                     "median_ci_pct": round(float(t["ci_pct"].median()), 3),
                     "claimed_rms_pct": round(claimed_rms_pct(t["ci_pct"]), 3)})
    settings = {tuple(str(v) for v in t[SETTING].drop_duplicates().itertuples(index=False))
                for t in tables}
    if len(settings) != 1:
        raise SystemExit(f"the tables hold more than one setting: {sorted(settings)}")
    keys = set.intersection(*[set(zip(t["arch"], t["image_size"].astype(int)))
                              for t in tables])
    keys = sorted(keys)
    if len(keys) < 10:
        raise SystemExit(f"only {len(keys)} subnets are in every table")
    logs = [centred(t, keys) for t in tables]
    t0 = min(i["hours"] for i in info)
    for i in info:
        i["hours"] = round(i["hours"] - t0, 3)
    return tables, info, np.array(logs), keys


def against_consensus(logs, i, members=None):
    """Table (or mean of tables) ``i``'s centred log ratios against the median of the other
    tables (all but ``members``)."""
    members = [i] if members is None else list(members)
    rest = [k for k in range(len(logs)) if k not in members]
    e = scale_free_error(np.mean(logs[members], axis=0), np.median(logs[rest], axis=0))
    return {"rms_pct": round(e["rms_pct"], 3), "mape_pct": round(e["mape_pct"], 3),
            "kendall_tau": round(e["kendall_tau"], 4)}


def two_window_effect(info) -> dict | None:
    """log(error against the consensus) ~ a + b * median spread + c * [two windows]: the
    factor exp(c) with its 95 % interval, and exp(b * 10), the error's growth per 10 points of
    within-window spread (None without tables of both kinds)."""
    spread = np.array([i["median_spread_pct"] for i in info], dtype=float)
    two = np.array([i["windows"] == 2 for i in info], dtype=float)
    if two.sum() < 2 or (1 - two).sum() < 2:
        return None
    y = np.log([i["rms_pct"] for i in info])
    x = np.column_stack([np.ones_like(spread), spread, two])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ coef
    cov = res @ res / (len(y) - 3) * np.linalg.inv(x.T @ x)
    se = float(np.sqrt(cov[2, 2]))
    return {"tables": len(y), "two_window_error_factor": round(float(np.exp(coef[2])), 3),
            "factor_95pct_interval": [round(float(np.exp(coef[2] - 1.96 * se)), 3),
                                      round(float(np.exp(coef[2] + 1.96 * se)), 3)],
            "error_factor_per_10_points_of_spread": round(float(np.exp(10 * coef[1])), 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", required=True,
                   help="measurement CSVs of one setting (shell globs are expanded)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--minutes-apart", type=float, default=30.0,
                   help="pairs made less than this apart count as 'the same hour'")
    p.add_argument("--seed", type=int, default=0, help="for the random k-table combinations")
    args = p.parse_args(argv)
    paths = sorted({q for pat in args.tables for q in (glob.glob(pat) or [pat])})
    tables, info, logs, keys = load(paths)
    for k, i in enumerate(info):
        i.update(against_consensus(logs, k))
    pairs = []
    for a, b in itertools.combinations(range(len(tables)), 2):
        c = compare(tables[a], tables[b])
        pairs.append({"tables": [a, b], "windows": [info[a]["windows"], info[b]["windows"]],
                      "hours_apart": round(abs(info[a]["hours"] - info[b]["hours"]), 3),
                      "scale_free_mape_pct": c["scale_free_mape_pct"],
                      "kendall_tau": c["kendall_tau"],
                      "level_ratio": c["absolute_median_ratio"]})
    near = args.minutes_apart / 60
    summary = {"tables": len(tables), "subnets": len(keys),
               "span_hours": round(max(i["hours"] for i in info), 2)}
    for w in (1, 2):
        sel = [q for q in pairs if q["windows"] == [w, w]]
        if len(sel) < 3:
            continue
        gap = np.array([q["hours_apart"] for q in sel])
        mape = np.array([q["scale_free_mape_pct"] for q in sel])
        tau = np.array([q["kendall_tau"] for q in sel])
        lvl = np.array([abs(q["level_ratio"] - 1) * 100 for q in sel])
        rho = spearmanr(gap, mape).statistic

        def part(m, name):
            return {f"{name}_pairs": int(m.sum()),
                    f"{name}_scale_free_mape_pct": round(float(np.median(mape[m])), 3)
                    if m.any() else None,
                    f"{name}_kendall_tau": round(float(np.median(tau[m])), 4)
                    if m.any() else None,
                    f"{name}_level_apart_pct": round(float(np.median(lvl[m])), 2)
                    if m.any() else None}

        summary[f"{w}_window_pairs"] = {
            "pairs": len(sel), "spearman_gap_vs_mape": round(float(rho), 3),
            **part(gap < near, "same_hour"), **part(gap >= 2, "two_hours_or_more"),
            "goal_met_pct": round(float(100 * np.mean((mape <= 1.5) & (tau >= 0.97))), 1)}
        own = [i for i in info if i["windows"] == w]
        summary[f"{w}_window_tables_vs_consensus"] = {
            "tables": len(own),
            # the error against the consensus over what the rows' own intervals claim
            "median_error_over_claimed": round(float(np.median(
                [i["rms_pct"] / i["claimed_rms_pct"] for i in own])), 3),
            "spearman_error_vs_claimed": round(float(spearmanr(
                [i["claimed_rms_pct"] for i in own], [i["rms_pct"] for i in own]).statistic), 3),
            "median_rms_pct": round(float(np.median([i["rms_pct"] for i in own])), 3),
            "median_mape_pct": round(float(np.median([i["mape_pct"] for i in own])), 3),
            "median_kendall_tau": round(float(np.median([i["kendall_tau"] for i in own])), 4)}
    summary["two_windows_at_equal_spread"] = two_window_effect(info)
    one = [k for k, i in enumerate(info) if i["windows"] == 1]
    rng = np.random.default_rng(args.seed)
    combos = {}
    for k in (1, 2, 3, 4):
        if len(one) < k + 3:
            break
        picks = [sorted(rng.choice(one, k, replace=False).tolist()) for _ in range(40)]
        res = [against_consensus(logs, m[0], m) for m in picks]
        combos[str(k)] = {"median_rms_pct": round(float(np.median([r["rms_pct"] for r in res])),
                                                  3),
                          "median_kendall_tau": round(float(np.median(
                              [r["kendall_tau"] for r in res])), 4)}
    summary["mean_of_k_one_window_tables_vs_consensus"] = combos
    out = {"command": "python scripts/tables_over_hours.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "summary": summary,
        "per_table": info, "pairs": pairs}
    print(json.dumps(summary, indent=1))
    for i in info:
        print(f"{i['start_utc']}  w{i['windows']}  level {i['level_ms']:.3f} ms  spread "
              f"{i['median_spread_pct']:5.1f} %  vs consensus rms {i['rms_pct']:.2f} %  "
              f"tau {i['kendall_tau']:.3f}  {Path(i['table']).name}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.plot:
        plot(info, pairs, args.plot)
    return 0


def plot(info, pairs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4))
    for w, mk in ((1, "o"), (2, "s")):
        sel = [q for q in pairs if q["windows"] == [w, w]]
        ax[0].scatter([q["hours_apart"] for q in sel], [q["scale_free_mape_pct"] for q in sel],
                      marker=mk, alpha=0.6, label=f"{w} window{'s' * (w > 1)} per subnet")
        own = [i for i in info if i["windows"] == w]
        ax[1].scatter([i["hours"] for i in own], [i["rms_pct"] for i in own], marker=mk,
                      label=f"{w} window{'s' * (w > 1)}")
        ax[2].scatter([i["median_spread_pct"] for i in own], [i["rms_pct"] for i in own],
                      marker=mk, label=f"{w} window{'s' * (w > 1)}")
    ax[0].axhline(1.5, color="grey", ls="--", lw=1, label="retest goal 1.5 %")
    ax[0].set_xlabel("hours between the two tables")
    ax[0].set_ylabel("scale-free MAPE between them (%)")
    ax[0].set_title("pairs of tables of the same subnets")
    ax[0].legend(fontsize=8)
    ax[1].set_xlabel("hours since the first table")
    ax[1].set_ylabel("RMS error against the other tables' consensus (%)")
    ax[1].set_title("each table against the rest")
    ax[1].legend(fontsize=8)
    ax[2].set_xlabel("the table's median within-window spread (%)")
    ax[2].set_ylabel("RMS error against the other tables' consensus (%)")
    ax[2].set_title("error against how noisy its minutes were")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
