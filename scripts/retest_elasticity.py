"""Does a table's size tilt follow the host's speed state? Tables of the same subnets and
setting, made minutes or hours apart on one host, each against their consensus.

The profiler drift-corrects a subnet by the reference subnet timed in the same window (its
ratio to the reference, times the table's reference level). That is exact when a subnet's
latency moves with the host's state in the same proportion as the reference's: an
*elasticity* of 1. This script measures it. For every group of tables of one setting (the
rows' backend and precision) under the given folders, with the subnets all of them share:

* per table, its **size slope**: the fit of its rows' log latency less the consensus (the
  mean over the tables, less its median) against the subnets' log size (consensus log
  latency less its median); and its **reference level**: the log of its rows' median
  ``ref_latency_ms``. Across the tables, how the slope follows the level (the regression
  slope, and the correlation): a negative one means that in a faster state the large
  subnets gain less than the reference, so a table made then is tilted against one made in
  a slower state.
* per row, its window's **raw latency** against its window's **reference** (each less its
  mean over the tables): the elasticity ``e = a + c * z`` fitted over every row of the group,
  and the rows' spread left by the ratio (elasticity 1) and by the fitted elasticity.
* ``--held-out``: each folder's pass-1 / pass-2 pairs moved to one state with the slope fitted
  on the other folders' tables, and their retest before and after; and how a subnet's retest
  difference grows with how far apart its two rows' states were. ``--within``: the slope
  estimated from each table alone, against a predictor.

    python scripts/retest_elasticity.py data/benchmarks/*host9/ --held-out \\
        --within "onnxruntime int8=ofa_mbv3_w1.2_onnxruntime_int8_cpu_t1_b1_host4_xgb" \\
        --within "openvino int8=ofa_mbv3_w1.2_openvino_int8_cpu_t1_b1_host6_xgb" \\
        --json data/benchmarks/retest_elasticity_host9.json
    python scripts/retest_elasticity.py data/benchmarks/*host8/ --held-out \\
        --json data/benchmarks/retest_elasticity_host8.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_floor import compare  # noqa: E402  (the retest's own figures, one definition)


def tables_by_setting(folders) -> dict:
    """``{(backend, precision): {name: table}}`` of every ``*.csv`` table under ``folders``
    (one setting per table), each indexed by ``(arch, image_size)``."""
    from ofa_latency.datasets import read_measurements

    out: dict = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.csv")):
            t = read_measurements(path)
            if not len(t) or "ref_latency_ms" not in t.columns:
                continue
            key = (str(t.backend.iloc[0]), str(t.precision.iloc[0]))
            t = t.set_index(["arch", "image_size"])
            t = t[~t.index.duplicated(keep="last")]
            out.setdefault(key, {})[f"{Path(folder).name}/{path.stem}"] = t
    return out


def pass_pairs(tables: dict):
    """``(name, pass 1 table, pass 2 table)`` of every ``<name>_pass1`` / ``<name>_pass2`` pair
    of ``tables`` (:func:`tables_by_setting`'s, one setting), in name order."""
    for n1 in sorted(tables):
        n2 = n1[:-1] + "2"
        if n1.endswith("_pass1") and n2 in tables:
            yield n1[:-len("_pass1")], tables[n1], tables[n2]


def analyse(tables: dict) -> dict | None:
    """The size slopes against the reference levels, and the elasticity fit, of ``tables``
    (one setting) over the subnets all of them share; None with fewer than 3 tables."""
    if len(tables) < 3:
        return None
    common = None
    for t in tables.values():
        common = t.index if common is None else common.intersection(t.index)
    if common is None or len(common) < 10:
        return None
    names = list(tables)
    lat = pd.DataFrame({k: np.log(tables[k].loc[common, "latency_ms"]) for k in names})
    raw = pd.DataFrame({k: np.log(tables[k].loc[common, "latency_raw_ms"]) for k in names})
    ref = pd.DataFrame({k: np.log(tables[k].loc[common, "ref_latency_ms"]) for k in names})
    z = lat.mean(axis=1)
    z = (z - z.median()).to_numpy()
    slopes, levels = [], []
    for k in names:
        d = (lat[k] - lat.mean(axis=1)).to_numpy(copy=True)
        d -= np.median(d)
        slopes.append(float(np.polyfit(z, d, 1)[0]))
        levels.append(float(np.log(tables[k].loc[common, "ref_latency_ms"].median())))
    slopes, levels = np.array(slopes), np.array(levels)
    lv = levels - levels.mean()
    follow = float(np.polyfit(lv, slopes, 1)[0]) if lv.std() > 0 else float("nan")
    corr = float(np.corrcoef(lv, slopes)[0, 1]) if lv.std() > 0 else float("nan")
    y = raw.sub(raw.mean(axis=1), axis=0).to_numpy().ravel()
    x = ref.sub(ref.mean(axis=1), axis=0).to_numpy().ravel()
    zz = np.repeat(z, len(names))
    a = np.c_[x, x * zz]
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    return {"tables": names, "subnets": int(len(common)),
            "size_slope": [round(v, 4) for v in slopes],
            "log_ref_level": [round(v, 4) for v in levels],
            "slope_per_log_ref_level": round(follow, 3), "slope_level_corr": round(corr, 3),
            "elasticity_a": round(float(coef[0]), 3), "elasticity_c": round(float(coef[1]), 3),
            "z_sd": round(float(z.std()), 3),
            "rows_sd_ratio_pct": round(float(100 * (y - x).std()), 3),
            "rows_sd_elastic_pct": round(float(100 * (y - a @ coef).std()), 3)}


def corrected(t, k: float, anchor, per_row: bool) -> np.ndarray:
    """``t``'s latencies moved to the host state ``anchor`` (a log reference latency; "own":
    the table's own level, ``ref_baseline_ms``) by a size slope of ``k`` per log reference
    level: ``log l - k * z * (s - anchor)``, ``z`` the row's log latency less the table's
    median, ``s`` the log reference latency of the row's windows (``per_row``) or the
    table's median."""
    lat = np.log(t["latency_ms"].to_numpy(dtype=float))
    z = lat - np.median(lat)
    ref = np.log(t["ref_latency_ms"].to_numpy(dtype=float))
    s = ref if per_row else np.full_like(ref, np.median(ref))
    if isinstance(anchor, str):
        anchor = np.log(t["ref_baseline_ms"].to_numpy(dtype=float))
    return np.exp(lat - k * z * (s - anchor))


def held_out_pairs(groups: dict) -> list:
    """Each ``<name>_pass1`` / ``<name>_pass2`` pair of a folder, its retest (scale-free MAPE
    and Kendall tau) as measured and corrected by :func:`corrected` with ``k`` fitted on the
    other folders' tables of the setting (the pair's own never): both tables moved to one
    state (the mean level of the fit's tables: ``table_state`` by each table's median
    reference, ``row_state`` by each row's), or each row to its own table's level
    (``row_to_own_level``: what one table alone could do). The figures are
    ``noise_floor.py``'s (:func:`compare`)."""
    out = []
    for setting, tables in sorted(groups.items()):
        folders = sorted({n.split("/")[0] for n in tables})
        for folder in folders:
            rest = {n: t for n, t in tables.items() if not n.startswith(folder + "/")}
            fit = analyse(rest)
            if fit is None:
                continue
            k = fit["slope_per_log_ref_level"]
            anchor = float(np.mean(fit["log_ref_level"]))
            mine = {n: t for n, t in tables.items() if n.startswith(folder + "/")}
            for pair_name, a, b in pass_pairs(mine):
                common = a.index.intersection(b.index)
                a, b = a.loc[common], b.loc[common]
                row = {"setting": " ".join(setting), "pair": pair_name,
                       "k": k, "n": int(len(common))}
                for label, f, where in (("measured", None, None),
                                        ("table_state", False, anchor),
                                        ("row_state", True, anchor),
                                        ("row_to_own_level", True, "own")):
                    pair = [t.reset_index() if f is None else
                            t.reset_index().assign(latency_ms=corrected(t, k, where, f))
                            for t in (a, b)]
                    res = compare(*pair)
                    row[label] = {c: res[c] for c in ("scale_free_mape_pct", "kendall_tau")}
                out.append(row)
                print(f"{row['setting']:18s} {row['pair']:62s} k {k:+.2f}: " + "  ".join(
                    f"{lbl} {row[lbl]['scale_free_mape_pct']:.2f} % / {row[lbl]['kendall_tau']:.3f}"
                    for lbl in ("measured", "table_state", "row_state", "row_to_own_level")))
    return out


def within_table(groups: dict, predictors: dict) -> list:
    """Per table of a setting in ``predictors`` (``"backend precision"`` -> a predictor's
    name or folder): the size slope per log reference level estimated from the table alone,
    its rows' log latency less the predictor's fitted against ``z`` and ``z * s`` (``s`` the
    row's log reference latency less the table's median); with its standard error."""
    from ofa_latency import LatencyEstimator

    out = []
    for setting, tables in sorted(groups.items()):
        name = predictors.get(" ".join(setting))
        if name is None:
            continue
        est = LatencyEstimator.load(name, check_machine=False)
        for table_name, t in sorted(tables.items()):
            archs = [dict(json.loads(a), image_size=int(r)) for a, r in t.index]
            lat = np.log(t["latency_ms"].to_numpy(dtype=float))
            y = lat - np.log(est.predict(archs))
            z = lat - np.median(lat)
            s = np.log(t["ref_latency_ms"].to_numpy(dtype=float))
            s -= np.median(s)
            x = np.c_[np.ones_like(z), z, z * s]
            coef = np.linalg.lstsq(x, y - np.median(y), rcond=None)[0]
            res = y - np.median(y) - x @ coef
            se = float(np.sqrt(res.var() * np.linalg.inv(x.T @ x)[2, 2]))
            out.append({"setting": " ".join(setting), "table": table_name, "predictor": name,
                        "k": round(float(coef[2]), 3), "k_se": round(se, 3),
                        "state_sd_pct": round(float(100 * s.std()), 2)})
            print(f"within {table_name:62s} k {coef[2]:+.2f} +- {se:.2f} (state sd "
                  f"{100 * s.std():.1f} %)")
    return out


def state_apart(groups: dict) -> dict:
    """Per setting, over every ``<name>_pass1`` / ``<name>_pass2`` pair: how a subnet's
    retest difference (its log ratio between the two tables, less the pair's median) grows
    with how far apart the states of its two rows were (each row's reference latency over its
    table's level, ``ref_latency_ms / ref_baseline_ms``, compared in logs): the Spearman
    correlation of the two magnitudes, and the mean difference where the states were closer
    and farther apart than the median; also where the rows' states lie (their reference's
    fastest round over the table's level, ``ref_min_ms / ref_baseline_ms``: median and 90th
    percentile, percent)."""
    from scipy.stats import spearmanr

    out = {}
    for setting, tables in sorted(groups.items()):
        apart, diff, above = [], [], []
        for _, a, b in pass_pairs(tables):
            common = a.index.intersection(b.index)
            a, b = a.loc[common], b.loc[common]
            d = np.log(a["latency_ms"] / b["latency_ms"]).to_numpy(dtype=float)
            apart += list(np.abs(np.log(a["ref_latency_ms"] / a["ref_baseline_ms"])
                                 - np.log(b["ref_latency_ms"] / b["ref_baseline_ms"])))
            diff += list(np.abs(d - np.median(d)))
            for t in (a, b):
                above += list(100 * (t["ref_min_ms"] / t["ref_baseline_ms"] - 1))
        if len(apart) < 20:
            continue
        apart, diff = np.array(apart), np.array(diff)
        close = apart <= np.median(apart)
        out[" ".join(setting)] = {
            "rows": int(len(apart)), "spearman": round(float(spearmanr(apart, diff)[0]), 3),
            "mean_diff_close_pct": round(float(100 * diff[close].mean()), 3),
            "mean_diff_apart_pct": round(float(100 * diff[~close].mean()), 3),
            "ref_min_over_level_pct": [round(float(np.quantile(above, q)), 2)
                                       for q in (0.5, 0.9)]}
        v = out[" ".join(setting)]
        print(f"{' '.join(setting):18s} {v['rows']} row pairs: retest difference against "
              f"states apart, Spearman {v['spearman']:+.2f}; mean {v['mean_diff_close_pct']:.2f} "
              f"% where closer, {v['mean_diff_apart_pct']:.2f} % where farther; rows' fastest "
              f"reference round over the level: median {v['ref_min_over_level_pct'][0]:.1f} %, "
              f"90th percentile {v['ref_min_over_level_pct'][1]:.1f} %")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="folders of tables of the same subnets, one host")
    p.add_argument("--held-out", action="store_true",
                   help="also: each folder's pass1/pass2 pairs corrected with the slope fitted "
                        "on the other folders' tables of the setting")
    p.add_argument("--within", action="append", default=[], metavar="SETTING=PREDICTOR",
                   help="also: the slope estimated from each table of SETTING ('onnxruntime "
                        "int8') alone, against PREDICTOR (a shipped name or folder)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = {"command": " ".join(["python", "scripts/retest_elasticity.py", *sys.argv[1:]]),
           "settings": {}}
    groups = tables_by_setting(args.folders)
    for (backend, precision), tables in sorted(groups.items()):
        res = analyse(tables)
        if res is None:
            continue
        out["settings"][f"{backend} {precision}"] = res
        print(f"{backend} {precision}: {len(res['tables'])} tables, {res['subnets']} subnets; "
              f"size slope per log reference level {res['slope_per_log_ref_level']:+.2f} "
              f"(corr {res['slope_level_corr']:+.2f}); elasticity {res['elasticity_a']:.3f} "
              f"{res['elasticity_c']:+.3f} z (z sd {res['z_sd']:.2f}); rows' spread "
              f"{res['rows_sd_ratio_pct']:.2f} % by the ratio, "
              f"{res['rows_sd_elastic_pct']:.2f} % by the fitted elasticity")
        for name, s, lv in zip(res["tables"], res["size_slope"], res["log_ref_level"]):
            print(f"    {name:60s} slope {s:+.4f}  reference {np.exp(lv):.3f} ms")
    if args.held_out:
        out["held_out_pairs"] = pairs = held_out_pairs(groups)
        out["held_out_summary"] = summary = {}
        for setting in sorted({r["setting"] for r in pairs}):
            rows = [r for r in pairs if r["setting"] == setting]
            for label in ("measured", "table_state", "row_state", "row_to_own_level"):
                mape = np.array([r[label]["scale_free_mape_pct"] for r in rows])
                tau = np.array([r[label]["kendall_tau"] for r in rows])
                base = np.array([r["measured"]["scale_free_mape_pct"] for r in rows])
                summary.setdefault(setting, {})[label] = {
                    "pairs": len(rows), "mean_scale_free_mape_pct": round(float(mape.mean()), 3),
                    "mean_kendall_tau": round(float(tau.mean()), 4),
                    "pairs_lower_than_measured": int((mape < base).sum()),
                    "pairs_meeting_the_goal": int(((mape <= 1.5) & (tau >= 0.97)).sum())}
                v = summary[setting][label]
                print(f"{setting:18s} {label:17s} {len(rows)} pairs: mean "
                      f"{v['mean_scale_free_mape_pct']:.2f} %, tau "
                      f"{v['mean_kendall_tau']:.3f}; lower than measured in "
                      f"{v['pairs_lower_than_measured']}, within 1.5 % and tau 0.97 in "
                      f"{v['pairs_meeting_the_goal']}")
    if args.held_out:
        out["state_apart"] = state_apart(groups)
    if args.within:
        out["within_table"] = within_table(groups, dict(w.split("=", 1) for w in args.within))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
