"""Fine-tuning to a new device from N measured subnets: every method, the automatic choice,
training from scratch and the rescaled base, on held-out subnets of the new device.

    python scripts/bench_finetune.py --json data/benchmarks/finetune.json --plot data/benchmarks/finetune.png
    python scripts/bench_finetune.py --cases help --n 5 10 20 --seeds 2     # a quicker look

Cases:
* ``help``: leave one GPU out, for each of HELP's three GPUs and batch sizes 1, 32 and 64: the
  base is the shipped xgb predictor of another GPU at the same batch size (of the two, the one
  whose single global factor fits the N samples best); the N samples come from the target's
  train split (seeded), the metrics from its whole test split.
* ``cpu``: the committed host's shipped onnxruntime / torch 1-thread predictors as base and the
  second host's tables (``*_host2.csv``) as the new device, and back (host2's predictors as
  base, the committed host's tables as the new device).

For each case, N and seed: the automatic choice (:func:`ofa_latency.finetune`, 5-fold CV on the
N samples) and every single method fitted on all N samples. "best in hindsight" is the single
method with the lowest held-out MAPE at that case and N (mean over seeds).
"""

from __future__ import annotations

import os
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"
GPUS = ("2080ti", "titan_xp", "v100")


def help_cases(batches):
    from ofa_latency.datasets import read_help

    if not (SHARED / "ofa_archs.pt").exists():
        print(f"HELP data not found at {SHARED}; skipping the HELP cases")
        return []
    out = []
    for b in batches:
        for g in GPUS:
            bases = [f"help_{o}_{b}_xgb" for o in GPUS if o != g]
            out.append((f"help_{g}_{b}", bases, read_help(SHARED, f"{g}_{b}")))
    return out


def cpu_cases():
    """Committed host -> host2 and back, for onnxruntime and torch at 1 thread."""
    from ofa_latency import list_pretrained
    from ofa_latency.datasets import read_measurements

    shipped = {e["name"] for e in list_pretrained()}
    d = ROOT / "data" / "measurements"
    pairs = [("onnxruntime", "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone",
              "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_host2"),
             ("torch", "ofa_mbv3_w1.2_torch_cpu_t1_b1", "ofa_mbv3_w1.2_torch_cpu_t1_b1_host2")]
    out = []
    for backend, committed, host2 in pairs:
        for src, dst, label in ((committed, host2, "committed_to_host2"),
                                (host2, committed, "host2_to_committed")):
            table, base = d / f"{dst}.csv", f"{src}_xgb"
            if table.exists() and base in shipped:
                out.append((f"{backend}_t1_{label}", [base], read_measurements(table)))
            else:
                print(f"{table.name} or shipped {base} not found; skipping")
    return out


def mape(pred, df):
    y = df.latency_ms.to_numpy()
    return float(100 * np.mean(np.abs(pred.predict(df) - y) / y))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["help", "cpu"], choices=["help", "cpu"])
    p.add_argument("--batches", nargs="+", type=int, default=[32, 64, 1])
    p.add_argument("--n", nargs="+", type=int, default=[5, 10, 20, 50, 100])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--mix", action="store_true",
                   help="HELP cases: also offer the 'mix' method over the shipped xgb predictors "
                        "of the other GPUs at every batch size")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)

    from scipy.stats import kendalltau, spearmanr

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import finetune, list_methods
    from ofa_latency.training import best_scaled_base

    cases = (help_cases(args.batches) if "help" in args.cases else []) + \
        (cpu_cases() if "cpu" in args.cases else [])
    results = []
    for name, base_names, df in cases:
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        train, test = df[df.split == "train"], df[df.split == "test"]
        for n in args.n:
            for seed in range(args.seeds):
                rows = train.sample(n=min(n, len(train)), random_state=seed)
                base_name = best_scaled_base(bases, rows)
                base = bases[base_name]
                others = []
                if args.mix and name.startswith("help_"):
                    gpu = name[len("help_"):].rsplit("_", 1)[0]
                    others = [LatencyEstimator.from_pretrained(f"help_{o}_{bb}_xgb",
                                                               check_machine=False).predictor
                              for o in GPUS if o != gpu for bb in (1, 32, 64)
                              if f"help_{o}_{bb}_xgb" != base_name]
                t0 = time.perf_counter()
                auto = finetune(base, rows, random_state=seed, base_name=base_name,
                                others=others)
                seconds = time.perf_counter() - t0
                rec = {"case": name, "n": n, "seed": seed, "base": base_name,
                       "auto_method": auto.adaptation_.method, "auto_seconds": round(seconds, 2),
                       "cv_mape_pct": auto.adaptation_.cv_mape_pct,
                       "test_mape_pct": {"auto": mape(auto, test)}}
                p_auto = auto.predict(test)
                rec["auto_kendall_tau"] = float(kendalltau(test.latency_ms, p_auto).statistic)
                rec["auto_spearman_rho"] = float(spearmanr(test.latency_ms, p_auto).statistic)
                for m in list_methods(base, others):
                    if m == auto.adaptation_.method:
                        rec["test_mape_pct"][m] = rec["test_mape_pct"]["auto"]
                        continue
                    one = finetune(base, rows, methods=[m], random_state=seed, others=others)
                    rec["test_mape_pct"][m] = mape(one, test)
                results.append(rec)
                print(json.dumps({k: rec[k] for k in ("case", "n", "seed", "base", "auto_method",
                                                      "auto_seconds")}),
                      {k: round(v, 2) for k, v in rec["test_mape_pct"].items()}, flush=True)
    summary = summarise(results)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary},
                                              indent=1))
    if args.plot:
        plot(summary, args.plot)


def summarise(results):
    out = {}
    for r in results:
        key = f"{r['case']}|{r['n']}"
        s = out.setdefault(key, {"case": r["case"], "n": r["n"], "mape": {}, "rho": [],
                                 "tau": [], "seconds": [], "chosen": []})
        for m, v in r["test_mape_pct"].items():
            s["mape"].setdefault(m, []).append(v)
        s["rho"].append(r["auto_spearman_rho"])
        s["tau"].append(r["auto_kendall_tau"])
        s["seconds"].append(r["auto_seconds"])
        s["chosen"].append(r["auto_method"])
    for s in out.values():
        s["mape_mean"] = {m: float(np.mean(v)) for m, v in s["mape"].items()}
        s["mape_std"] = {m: float(np.std(v)) for m, v in s["mape"].items()}
        singles = {m: v for m, v in s["mape_mean"].items() if m != "auto"}
        s["best_single"] = min(singles, key=singles.get)
        s["auto_over_best"] = s["mape_mean"]["auto"] / singles[s["best_single"]]
        s["rho_mean"], s["tau_mean"] = float(np.mean(s["rho"])), float(np.mean(s["tau"]))
        s["seconds_max"] = float(np.max(s["seconds"]))
    return list(out.values())


def print_summary(summary):
    print(f"\n{'case':22s} {'N':>4s} {'auto MAPE':>14s} {'scale':>7s} {'best single':>22s} "
          f"{'auto/best':>9s} {'rho':>6s} {'tau':>6s} {'fit s':>6s}")
    for s in summary:
        print(f"{s['case']:22s} {s['n']:4d} {s['mape_mean']['auto']:7.2f}+-{s['mape_std']['auto']:4.2f}% "
              f"{s['mape_mean']['scale']:6.2f}% {s['best_single']:>14s} {s['mape_mean'][s['best_single']]:6.2f}% "
              f"{s['auto_over_best']:9.2f} {s['rho_mean']:6.3f} {s['tau_mean']:6.3f} {s['seconds_max']:6.1f}")


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({s["case"] for s in summary})
    cols = min(3, len(cases))
    rows = int(np.ceil(len(cases) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, case in zip(axes.ravel(), cases):
        ss = sorted([s for s in summary if s["case"] == case], key=lambda s: s["n"])
        ns = [s["n"] for s in ss]
        for m in ss[0]["mape_mean"]:
            ax.plot(ns, [s["mape_mean"][m] for s in ss], marker="o" if m == "auto" else None,
                    lw=2.2 if m == "auto" else 1, label=m)
        ax.set_xscale("log"); ax.set_yscale("log")
        ax.set_title(case, fontsize=9); ax.set_xlabel("measured subnets N")
        ax.set_ylabel("held-out MAPE (%)"); ax.grid(alpha=0.3, which="both")
    axes.ravel()[0].legend(fontsize=6)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot ->", path)


if __name__ == "__main__":
    main()
