"""The deployment runtimes on this host: noise, ranking, conversion agreement and transfer.

Reads the tables ``scripts/collect_runtime_tables.py`` writes (``data/measurements/*_<host>.csv``
and ``*_<host>_retest.csv``) and reports, per setting (ONNX Runtime fp32/int8, OpenVINO
fp32/int8, LiteRT fp32/int8; CPU, 1 thread, batch 1):

* ``retest``: profiler test-retest between the two separate tables of the same subnets
  (scale-free MAPE after one factor, Kendall tau, absolute scale, device-seconds per subnet);
* ``ranks``: Kendall tau between every two settings on their common subnets (how differently
  the runtimes rank the same subnets), and the int8 speed-up of each runtime (median and range
  over subnets; the Spearman correlation of the speed-up with MACs);
* ``agreement``: each setting's model against PyTorch fp32 on random inputs (a few subnets);
* ``errors``: where the shipped predictor's held-out error sits: its test MAPE on the rows
  whose windows missed the machine's fast state and on the others, and per measuring session
  (rows more than an hour apart); rows on disk against subnets (windows timed again) and the
  range of the clean chunks' device-seconds per subnet;
* ``transfer``: the full-data predictor (XGBoost on the table's train rows, MAPE on its test
  rows) against the setting's own test-retest noise, and fine-tuning from the fp32 ONNX Runtime
  predictor shipped from another host (and from every shipped CPU predictor, as ``finetune``
  without ``--base`` does) with N = 10, 20, 50, 100 rows, 5 seeds, tested on the test rows.

    python scripts/bench_runtimes.py --json data/benchmarks/runtimes.json --plot data/benchmarks/runtimes.png
    python scripts/bench_runtimes.py --parts retest ranks      # the cheap parts only
    python scripts/bench_runtimes.py --host host6 --parts errors --json data/benchmarks/runtimes_host6_openvino500.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

SETTINGS = ["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:int8",
            "litert:fp32", "litert:int8"]
FP32_BASE = "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone_xgb"


def tables(space, host, d):
    from collect_runtime_tables import table_path

    from ofa_latency.datasets import read_measurements

    out = {}
    for s in SETTINGS:
        b, p = s.split(":")
        main, retest = (table_path(d, space, b, p, host, ph) for ph in ("main", "retest"))
        if main.exists():
            out[s] = {"main": read_measurements(main), "stem": main.stem,
                      "retest": read_measurements(retest) if retest.exists() else None}
    return out


def seconds_log(d):
    path = d / "runtime_tables_log.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    out = {}
    for r in rows:  # rows-weighted means over every run of the script, per table
        if "table" not in r:  # a --convert-ahead chunk's helper conversion
            continue
        o = out.setdefault(r["table"], {"rows": 0, "convert": 0.0, "profile": 0.0,
                                        "clean_rows": 0, "clean_profile": 0.0})
        o["rows"] += r["rows"]
        o["convert"] += r["rows"] * r["convert_s_per_subnet"]
        o["profile"] += r["rows"] * r["profile_s_per_subnet"]
        if r.get("conversions_while_profiling") == 0:  # logged, and no conversion was timed
            o["clean_rows"] += r["rows"]
            o["clean_profile"] += r["rows"] * r["profile_s_per_subnet"]
    return {k: {"rows": v["rows"], "convert_s_per_subnet": v["convert"] / v["rows"],
                "profile_s_per_subnet": v["profile"] / v["rows"],
                # only the chunks known to have timed no conversion (logged since 2026-12-05)
                "clean_rows": v["clean_rows"],
                "clean_profile_s_per_subnet": v["clean_profile"] / v["clean_rows"]
                if v["clean_rows"] else float("nan")} for k, v in out.items()}


def _share(ape, mask) -> dict:
    """How many of the rows ``mask`` selects, and their MAPE (None when none)."""
    return {"n": int(mask.sum()),
            "mape_pct": round(float(ape[mask].mean()), 3) if mask.any() else None}


def part_errors(tabs, d, gap_h: float = 1.0):
    from ofa_latency import LatencyEstimator
    from ofa_latency.profiling.scale import off_state

    log = [json.loads(x) for x in (d / "runtime_tables_log.jsonl").read_text().splitlines()] \
        if (d / "runtime_tables_log.jsonl").exists() else []
    out = {}
    for s, t in tabs.items():
        try:
            est = LatencyEstimator.from_pretrained(t["stem"] + "_xgb", check_machine=False)
        except Exception:  # no shipped predictor for this table
            continue
        test = t["main"][t["main"].split == "test"]
        y = test.latency_ms.to_numpy()
        ape = 100 * np.abs(est.predictor.predict(test) - y) / y
        slow = off_state(test.ref_min_ms.to_numpy(float), test.ref_baseline_ms.to_numpy(float))
        when = pd.to_datetime(test.timestamp, utc=True, format="ISO8601")
        order = np.argsort(when.to_numpy())
        gaps = np.diff(when.to_numpy()[order]).astype("timedelta64[s]").astype(float) / 3600
        session = np.empty(len(test), dtype=int)
        session[order] = np.concatenate([[0], np.cumsum(gaps > gap_h)])
        chunks = [r["profile_s_per_subnet"] for r in log if r.get("table") == t["stem"] + ".csv"
                  and r.get("phase") == "main" and r.get("conversions_while_profiling") == 0]
        rec = {"test_rows": int(len(test)), "mape_pct": round(float(ape.mean()), 3),
               "off_state": _share(ape, slow), "fast_state": _share(ape, ~slow),
               "sessions": [{**_share(ape, session == k), "from": str(when[session == k].min()),
                             "to": str(when[session == k].max())}
                            for k in range(session.max() + 1)],
               "rows_on_disk": int(len(pd.read_csv(d / f"{t['stem']}.csv"))),
               "subnets": int(len(t["main"])),
               "clean_chunk_profile_s_per_subnet": [round(min(chunks), 2), round(max(chunks), 2)]
               if chunks else None}
        out[s] = rec
        print(f"errors {s:18s} test {rec['mape_pct']:.2f} %  off-state {rec['off_state']}  "
              f"fast {rec['fast_state']}  sessions " + ", ".join(
                  f"{x['n']} rows {x['mape_pct']} %" for x in rec["sessions"]))
    return out


def part_retest(tabs, d):
    from noise_floor import compare

    from ofa_latency.datasets import table_noise

    secs = seconds_log(d)
    out = {}
    for s, t in tabs.items():
        if t["retest"] is None or not len(t["retest"]):
            continue
        rec = compare(t["main"], t["retest"])
        rec["noise"] = [table_noise(t["main"]), table_noise(t["retest"])]
        rec["by_lag"] = by_lag(t["main"], t["retest"])
        for phase, name in (("main", f"{t['stem']}.csv"), ("retest", f"{t['stem']}_retest.csv")):
            if name in secs:
                rec[f"seconds_{phase}"] = {k: round(v, 3) for k, v in secs[name].items()}
        out[s] = rec
        print(f"retest {s:18s} n {rec['n_pairs']:3d}  scale-free {rec['scale_free_mape_pct']:.2f} %"
              f"  tau {rec['kendall_tau']:.3f}  abs {100 * (rec['absolute_median_ratio'] - 1):+.1f} %"
              + (f"  device {rec['seconds_retest']['profile_s_per_subnet']:.2f} s/subnet, "
                 f"conversion {rec['seconds_retest']['convert_s_per_subnet']:.2f} s/subnet"
                 if "seconds_retest" in rec else ""))
    return out


def by_lag(main, retest, parts: int = 3) -> list:
    """The retest pairs in ``parts`` groups by the time between a subnet's two measurements
    (a retest spread over the main table's hours, ``collect_runtime_tables.py --retest``):
    per group the lag (minutes), the scale-free APE under the one factor of all pairs, and
    the median change of the ratio to the reference (does the state drift over the run?)."""
    m = main.merge(retest, on=["arch", "image_size"], suffixes=("_1", "_2"))
    if len(m) < 3 * parts or "timestamp_1" not in m:
        return []
    lag = (pd.to_datetime(m.timestamp_2) - pd.to_datetime(m.timestamp_1)).dt.total_seconds() / 60
    x, y = m.latency_ms_1.to_numpy(), m.latency_ms_2.to_numpy()
    ape = 100 * np.abs(y / float(np.median(y / x)) - x) / x
    change = 100 * (m.ratio_2.to_numpy() / m.ratio_1.to_numpy() - 1)
    order = np.argsort(lag.to_numpy())
    out = []
    for idx in np.array_split(order, parts):
        out.append({"n": int(len(idx)), "lag_min": [round(float(lag.iloc[idx].min()), 1),
                                                    round(float(lag.iloc[idx].max()), 1)],
                    "scale_free_mape_pct": round(float(ape[idx].mean()), 3),
                    "median_ratio_change_pct": round(float(np.median(change[idx])), 2)})
    return out


def part_ranks(space, tabs):
    from scipy.stats import kendalltau, spearmanr

    key = ["arch", "image_size"]
    names = list(tabs)
    out = {"kendall_tau": {}, "n_common": {}, "int8_speedup": {}}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            m = tabs[a]["main"][key + ["latency_ms"]].merge(
                tabs[b]["main"][key + ["latency_ms"]], on=key)
            if len(m) >= 10:
                tau = float(kendalltau(m.latency_ms_x, m.latency_ms_y).statistic)
                out["kendall_tau"][f"{a} vs {b}"] = round(tau, 4)
                out["n_common"][f"{a} vs {b}"] = int(len(m))
                print(f"tau {a:18s} vs {b:18s} {tau:.3f} (n {len(m)})")
    for runtime in ("onnxruntime", "openvino", "litert"):
        a, b = f"{runtime}:fp32", f"{runtime}:int8"
        if a in tabs and b in tabs:
            m = tabs[a]["main"][key + ["latency_ms"]].merge(
                tabs[b]["main"][key + ["latency_ms"]], on=key)
            if len(m) < 10:
                continue
            speed = (m.latency_ms_x / m.latency_ms_y).to_numpy()
            macs = space.features([space.validate({**json.loads(r.arch),
                                                   "image_size": int(r.image_size)})
                                   for r in m.itertuples()])["macs_m"].to_numpy()
            out["int8_speedup"][runtime] = {
                "n": int(len(m)), "median": round(float(np.median(speed)), 3),
                "min": round(float(speed.min()), 3), "max": round(float(speed.max()), 3),
                "spearman_with_macs": round(float(spearmanr(speed, macs).statistic), 3)}
            print(f"int8 speed-up {runtime:12s} median {np.median(speed):.2f}x  "
                  f"range {speed.min():.2f}-{speed.max():.2f}x  Spearman with MACs "
                  f"{out['int8_speedup'][runtime]['spearman_with_macs']:+.2f}")
    return out


def part_agreement(space, n_subnets):
    from ofa_latency import create_backend
    from ofa_latency.profiling.runtimes import check_conversion

    subs = space.sample(n_subnets, seed=0)
    out = {}
    for s in SETTINGS:
        b, p = s.split(":")
        try:
            be = create_backend(b, precision=p)
        except ImportError as exc:
            print(f"agreement {s}: skipped ({exc})")
            continue
        recs = [check_conversion(be, space, sub) for sub in subs]
        out[s] = {"n_subnets": len(recs),
                  "top1_agreement_mean": round(float(np.mean([r["top1_agreement"]
                                                              for r in recs])), 3),
                  "rel_rmse_median": float(np.median([r["rel_rmse"] for r in recs])),
                  "rel_rmse_max": float(np.max([r["rel_rmse"] for r in recs])),
                  "max_abs_diff_max": float(np.max([r["max_abs_diff"] for r in recs]))}
        print(f"agreement {s:18s} top-1 {out[s]['top1_agreement_mean']:.2f}  relative RMSE "
              f"median {out[s]['rel_rmse_median']:.2e} max {out[s]['rel_rmse_max']:.2e}")
    return out


def _mape(pred, df):
    y = df.latency_ms.to_numpy()
    return float(100 * np.mean(np.abs(pred.predict(df) - y) / y))


def shipped_cpu_bases() -> dict:
    """Every shipped CPU xgb predictor of ``ofa_mbv3_w1.2``, by name: the bases ``finetune``
    without ``--base`` considers for a CPU table."""
    from ofa_latency import LatencyEstimator, list_pretrained

    cpu = [e["name"] for e in list_pretrained() if e.get("device_type") == "cpu"
           and e.get("space") == "ofa_mbv3_w1.2" and e["name"].endswith("_xgb")]
    return {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor for b in cpu}


def part_transfer(tabs, ns, seeds, retest):
    from ofa_latency import create_predictor
    from ofa_latency.adapt import finetune
    from ofa_latency.training import base_and_others

    bases = shipped_cpu_bases()
    out = {}
    for s, t in tabs.items():
        df = t["main"]
        # never a base trained on this very table (its shipped predictors saw these rows'
        # setting in full): the other settings' predictors only
        mine = {b for b in bases if b.startswith(t["stem"] + "_")}
        others_of = {b: m for b, m in bases.items() if b not in mine}
        train, test = df[df.split == "train"], df[df.split == "test"]
        if len(test) < 10 or len(train) < 20:
            print(f"transfer {s}: {len(train)} train / {len(test)} test rows; too few")
            continue
        full = create_predictor("xgb").fit(train, train.latency_ms.to_numpy())
        rec = {"n_train": int(len(train)), "n_test": int(len(test)),
               "bases_left_out": sorted(mine),
               "full_data_mape_pct": round(_mape(full, test), 3),
               "retest_scale_free_mape_pct": (retest.get(s) or {}).get("scale_free_mape_pct"),
               "curves": {}}
        for n in ns:
            if n > len(train):
                continue
            for how in ("from_fp32_onnxruntime", "all_shipped_cpu"):
                vals = []
                for seed in range(seeds):
                    rows = train.sample(n=n, random_state=seed)
                    if how == "from_fp32_onnxruntime":
                        model = finetune(bases[FP32_BASE], rows, random_state=seed,
                                         base_name=FP32_BASE)
                    else:
                        name, others = base_and_others(others_of, rows)
                        model = finetune(others_of[name], rows, random_state=seed,
                                         base_name=name, others=[others_of[o] for o in others],
                                         other_names=others)
                    vals.append(_mape(model, test))
                rec["curves"].setdefault(how, {})[str(n)] = {
                    "mean": round(float(np.mean(vals)), 3), "max": round(float(np.max(vals)), 3)}
        out[s] = rec
        print(f"transfer {s:18s} full-data {rec['full_data_mape_pct']:.2f} % (retest "
              f"{rec['retest_scale_free_mape_pct']})  "
              + "  ".join(f"{how[:9]} " + " ".join(f"N{n}:{v['mean']:.2f}" for n, v in c.items())
                          for how, c in rec["curves"].items()), flush=True)
    return out


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for s, rec in (result.get("transfer") or {}).items():
        c = rec["curves"].get("from_fp32_onnxruntime", {})
        if c:
            ns = [int(n) for n in c]
            line, = ax.plot(ns, [c[str(n)]["mean"] for n in ns], "o-", label=s)
            ax.axhline(rec["full_data_mape_pct"], color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured subnets N (fine-tuned from fp32 ONNX Runtime, another host)")
    ax.set_ylabel("test MAPE (%), mean of seeds")
    ax.set_title("Transfer to each runtime (dotted: XGBoost on the table's train rows)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    names = SETTINGS
    taus = (result.get("ranks") or {}).get("kendall_tau", {})
    mat = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        mat[i, i] = 1.0
        for j, b in enumerate(names):
            v = taus.get(f"{a} vs {b}", taus.get(f"{b} vs {a}"))
            if v is not None:
                mat[i, j] = v
    im = ax.imshow(mat, vmin=0.5, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if mat[i, j] < 0.8 else "k")
    ax.set_title("Kendall tau between settings (same subnets)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="*", default=["retest", "ranks", "agreement", "transfer"],
                   choices=["retest", "ranks", "agreement", "transfer", "errors"],
                   help="none: only replot --json")
    p.add_argument("--space", default="ofa_mbv3_w1.2")
    p.add_argument("--host", default="host3")
    p.add_argument("--dir", default=str(ROOT / "data" / "measurements"))
    p.add_argument("--n", nargs="+", type=int, default=[10, 20, 50, 100])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--agreement-subnets", type=int, default=5)
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)

    from ofa_latency import get_space

    space = get_space(args.space)
    d = Path(args.dir)
    tabs = tables(space.name, args.host, d)
    result = {"host": args.host, "tables": {s: {"rows": int(len(t["main"])),
                                                 "retest_rows": None if t["retest"] is None
                                                 else int(len(t["retest"]))}
                                            for s, t in tabs.items()},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.json and Path(args.json).exists():  # keep the parts not re-run
        result = json.loads(Path(args.json).read_text()) | result
    if "retest" in args.parts:
        result["retest"] = part_retest(tabs, d)
    if "ranks" in args.parts:
        result["ranks"] = part_ranks(space, tabs)
    if "agreement" in args.parts:
        result["agreement"] = part_agreement(space, args.agreement_subnets)
    if "errors" in args.parts:
        result["errors"] = part_errors(tabs, d)
    if "transfer" in args.parts:
        result["transfer"] = part_transfer(tabs, args.n, args.seeds, result.get("retest", {}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
