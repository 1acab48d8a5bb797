"""The per-layer lookup table built on this machine against learned predictors, on the same
held-out subnets, timing protocol and machine.

    python scripts/bench_lut.py --backends onnxruntime torch --json data/benchmarks/lut.json --plot data/benchmarks/lut.png

For each backend (1 thread, batch 1):
1. ``build-lut`` at OFA's five resolutions 160, 176, 192, 208, 224 (resumable; its
   device-seconds are recorded in ``data/lut_bench/<backend>_t1/build.json``);
2. a measurement table of ``--subnets`` random subnets at those resolutions
   (``data/lut_bench/<backend>_t1_subnets.csv``, resumable), split 80/20 by the fixed hash;
3. on its test split: the raw LUT; the calibrated LUT (``a * LUT + b`` fitted on N measured
   train subnets); xgb trained from scratch on N; the shipped xgb of the committed host
   fine-tuned on N (automatic choice), and the same with the on-device LUT as a member of its
   mix (``finetune --lut``); for N in ``--n`` (capped at the train split), 5 seeds
   (which N subnets). Device-seconds: the LUT's build time; N x this table's profiling time
   per subnet (plus the build for the calibrated LUT).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RES = (160, 176, 192, 208, 224)
BASES = {"onnxruntime": "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone_xgb",
         "torch": "ofa_mbv3_w1.2_torch_cpu_t1_b1_xgb"}


def committed(backend_name, work):
    """The LUT folder and table already in ``work`` (no measuring: any host); the OFA-format
    YAML tables are derived from its ``layers.csv`` (``finish-lut``)."""
    from ofa_latency import get_space
    from ofa_latency.datasets import read_measurements
    from ofa_latency.lut import finish_lut
    from ofa_latency.training import lut_build_seconds

    lut_dir = work / f"{backend_name}_t1"
    table = work / f"{backend_name}_t1_subnets.csv"
    finish_lut(get_space("ofa_mbv3_w1.2"), lut_dir)
    build = json.loads((lut_dir / "build.json").read_text())
    return lut_dir, {"device_seconds": lut_build_seconds(lut_dir),
                     "n_layers": build.get("n_layers")}, table, read_measurements(table)


def collect(backend_name, work, n_subnets, seed=0):
    from ofa_latency import get_space
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.lut import build_lut
    from ofa_latency.profiling import create_backend, profile_subnets

    sp = get_space("ofa_mbv3_w1.2")
    backend = create_backend(backend_name, threads=1)
    lut_dir = work / f"{backend_name}_t1"
    info = build_lut(sp, backend, RES, lut_dir)
    rng = np.random.default_rng(seed)
    subs = []
    for s in sp.sample(n_subnets, seed=seed):
        d = s.to_dict()
        d["image_size"] = int(rng.choice(RES))
        subs.append(d)
    table = work / f"{backend_name}_t1_subnets.csv"
    df = profile_subnets(sp, backend, subs, 1, table,
                         hardware=describe_hardware(backend_name, 1, "cpu"))
    return lut_dir, info, table, df


def evaluate(backend_name, lut_dir, info, table, df, ns, seeds):
    from ofa_latency import LatencyEstimator, create_predictor, finetune
    from ofa_latency.datasets import profiling_seconds_per_subnet
    from ofa_latency.evaluation import latency_metrics

    train, test = df[df.split == "train"], df[df.split == "test"]
    y = test.latency_ms.to_numpy()
    per_subnet = profiling_seconds_per_subnet(df)
    build_s = info["device_seconds"]
    raw = create_predictor("lut", lut_dir=str(lut_dir)).fit()
    rows = [{**latency_metrics(y, raw.predict(test)), "backend": backend_name,
             "method": "raw LUT", "n": 0, "seed": 0, "device_seconds": build_s}]
    base = LatencyEstimator.from_pretrained(BASES[backend_name], check_machine=False).predictor
    for n in ns:
        n_eff = min(n, len(train))
        for seed in range(seeds):
            rows_n = train.sample(n=n_eff, random_state=seed)
            preds = {
                "calibrated LUT": (create_predictor("lut", lut_dir=str(lut_dir), calibrate=True)
                                   .fit(rows_n), build_s + n_eff * per_subnet),
                "xgb scratch": (create_predictor("xgb").fit(rows_n), n_eff * per_subnet),
                "xgb fine-tuned": (finetune(base, rows_n, random_state=seed),
                                   n_eff * per_subnet),
                # the on-device LUT as a member of the mix (finetune --lut)
                "fine-tuned + LUT": (finetune(base, rows_n, random_state=seed, others=[raw],
                                              other_names=["lut"]),
                                     build_s + n_eff * per_subnet),
            }
            for name, (p, cost) in preds.items():
                rows.append({**latency_metrics(y, p.predict(test)), "backend": backend_name,
                             "method": name, "n": n_eff, "seed": seed, "device_seconds": cost})
            if n_eff < n:
                break
        if n_eff < n:
            break
    return rows, {"n_test": len(test), "n_train": len(train), "seconds_per_subnet": per_subnet,
                  "lut_build_seconds": build_s, "lut_layers": info["n_layers"]}


def summarise(rows):
    out = {}
    for r in rows:
        k = (r["backend"], r["method"], r["n"])
        out.setdefault(k, []).append(r)
    table = []
    for (b, m, n), rs in out.items():
        table.append({"backend": b, "method": m, "n": n,
                      "rmse_ms": float(np.mean([r["rmse_ms"] for r in rs])),
                      "rmse_std": float(np.std([r["rmse_ms"] for r in rs])),
                      "mape_pct": float(np.mean([r["mape_pct"] for r in rs])),
                      "within_10pct": float(np.mean([r["within_10pct"] for r in rs])),
                      "kendall_tau": float(np.mean([r["kendall_tau"] for r in rs])),
                      "device_seconds": float(np.mean([r["device_seconds"] for r in rs]))})
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"])
    p.add_argument("--subnets", type=int, default=400)
    p.add_argument("--n", nargs="+", type=int, default=[20, 50, 100, 300, 1000])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--work", default="data/lut_bench",
                   help="LUT folders and tables (committed; resumable: a rerun only measures what is missing)")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--evaluate-only", action="store_true",
                   help="evaluate the committed tables in --work without measuring (any host)")
    p.add_argument("--json")
    p.add_argument("--plot")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, meta = [], {}
    for b in args.backends:
        lut_dir, info, table, df = committed(b, work) if args.evaluate_only else \
            collect(b, work, args.subnets)
        if args.collect_only:
            continue
        r, m = evaluate(b, lut_dir, info, table, df, args.n, args.seeds)
        rows += r
        meta[b] = m
    if args.collect_only:
        return
    summary = summarise(rows)
    print(f"\n{'backend':12s} {'method':16s} {'N':>5s} {'RMSE ms':>14s} {'MAPE %':>7s} "
          f"{'+-10 %':>7s} {'tau':>6s} {'device s':>9s}")
    for s in summary:
        print(f"{s['backend']:12s} {s['method']:16s} {s['n']:5d} {s['rmse_ms']:7.4f}+-{s['rmse_std']:.4f} "
              f"{s['mape_pct']:7.2f} {s['within_10pct']:7.1f} {s['kendall_tau']:6.3f} "
              f"{s['device_seconds']:9.0f}")
    print(json.dumps(meta, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows},
                                              indent=1))
    if args.plot:
        plot(summary, args.plot)


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({s["backend"] for s in summary})
    fig, axes = plt.subplots(1, len(backends), figsize=(5.5 * len(backends), 4), squeeze=False)
    for ax, b in zip(axes[0], backends):
        for m, style in (("calibrated LUT", "s--"), ("xgb scratch", "o:"), ("xgb fine-tuned", "o-"),
                         ("fine-tuned + LUT", "^-")):
            ss = sorted([s for s in summary if s["backend"] == b and s["method"] == m],
                        key=lambda s: s["device_seconds"])
            ax.plot([s["device_seconds"] for s in ss], [s["rmse_ms"] for s in ss], style,
                    label=m)
        raw = [s for s in summary if s["backend"] == b and s["method"] == "raw LUT"][0]
        ax.plot([raw["device_seconds"]], [raw["rmse_ms"]], "r*", ms=12, label="raw LUT")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("device-seconds (LUT build; N profiled subnets)")
        ax.set_ylabel("held-out RMSE (ms)")
        ax.set_title(f"{b}, 1 thread, batch 1 (this machine)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot ->", path)


if __name__ == "__main__":
    main()
