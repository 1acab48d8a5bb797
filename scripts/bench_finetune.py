"""Fine-tuning to a new device from N measured subnets: every method, the automatic choice,
training from scratch and the rescaled base, on held-out subnets of the new device.

    python scripts/bench_finetune.py --json data/benchmarks/finetune.json --plot data/benchmarks/finetune.png
    python scripts/bench_finetune.py --cases help --n 5 10 20 --seeds 2     # a quicker look

Cases:
* ``help``: leave one GPU out, for each of HELP's three GPUs and batch sizes 1, 32 and 64, as
  ``ofa-latency finetune`` without ``--base`` runs: every shipped GPU predictor except the
  target GPU's own (all batch sizes, both kinds) is a candidate, the one whose global scale fits
  the N samples best is the base and the others join (``--bases same-batch``: only the other
  GPUs' xgb predictors at the same batch size, the older setup); the N samples come from the
  target's train split (seeded), the metrics from its whole test split.
* ``cpu``: the committed host's shipped onnxruntime / torch 1-thread predictors as base and the
  second host's tables (``*_host2.csv``) as the new device, and back (host2's predictors as
  base, the committed host's tables as the new device).

For each case, N and seed: the automatic result (:func:`ofa_latency.finetune`: candidates
weighted by repeated 5-fold CV on the N samples), the older one-standard-error choice
(``one_se``, on one 5-fold cross-validation as before) and every single method fitted on all N samples. "best single" is the single
method with the lowest held-out MAPE at that case and N (mean over seeds); "worst seed" is the
largest ratio of the automatic result to that method at the same seed.
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


def help_cases(batches, bases="shipped"):
    from ofa_latency import list_pretrained
    from ofa_latency.datasets import read_help

    if not (SHARED / "ofa_archs.pt").exists():
        print(f"HELP data not found at {SHARED}; skipping the HELP cases")
        return []
    gpu_names = [e["name"] for e in list_pretrained()
                 if e.get("device_type") == "cuda" and e.get("space") == "ofa_mbv3_w1.2"
                 and e.get("kind") != "conditioned"]
    out = []
    for b in batches:
        for g in GPUS:
            if bases == "same-batch":
                names = [f"help_{o}_{b}_xgb" for o in GPUS if o != g]
            else:  # what finetune without --base sees, less the target GPU's own predictors
                names = [n for n in gpu_names if not n.startswith(f"help_{g}_")]
            out.append((f"help_{g}_{b}", names, read_help(SHARED, f"{g}_{b}")))
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
    p.add_argument("--bases", default="shipped", choices=["shipped", "same-batch"],
                   help="HELP cases: the candidate bases (see above)")
    p.add_argument("--json", default=None)
    p.add_argument("--resume", default=None,
                   help="a JSON-lines file: each finished (case, N, seed) is appended to it, and "
                        "those already in it are not run again")
    p.add_argument("--plot", default=None)
    p.add_argument("--compare", default=None, metavar="JSONL",
                   help="another run's JSON-lines file (e.g. the committed "
                        "data/benchmarks/finetune_choice.jsonl): per (case, N), the automatic "
                        "choice's mean test MAPE there and here, on the seeds both ran")
    args = p.parse_args(argv)

    from scipy.stats import kendalltau, spearmanr

    from ofa_latency import LatencyEstimator
    from ofa_latency.adapt import finetune, list_methods
    from ofa_latency.training import base_and_others

    cases = (help_cases(args.batches, args.bases) if "help" in args.cases else []) + \
        (cpu_cases() if "cpu" in args.cases else [])
    results, done = [], set()
    if args.resume and Path(args.resume).exists():
        results = [json.loads(line) for line in Path(args.resume).read_text().splitlines()
                   if line.strip()]
        done = {(r["case"], r["n"], r["seed"]) for r in results}
        print(f"resuming: {len(done)} runs already in {args.resume}")
    for name, base_names, df in cases:
        bases = {b: LatencyEstimator.from_pretrained(b, check_machine=False).predictor
                 for b in base_names}
        train, test = df[df.split == "train"], df[df.split == "test"]
        for n in args.n:
            for seed in range(args.seeds):
                if (name, n, seed) in done:
                    continue
                rows = train.sample(n=min(n, len(train)), random_state=seed)
                base_name, names = base_and_others(bases, rows)  # finetune without --base
                base = bases[base_name]
                others = [bases[b] for b in names]
                t0 = time.perf_counter()
                auto = finetune(base, rows, random_state=seed, base_name=base_name,
                                others=others, other_names=names)
                seconds = time.perf_counter() - t0
                one_se = finetune(base, rows, random_state=seed, others=others,
                                  other_names=names, choice="one_se", repeats=1)
                rec = {"case": name, "n": n, "seed": seed, "base": base_name,
                       "auto_method": auto.adaptation_.method,
                       "auto_weights": auto.adaptation_.weights,
                       "auto_seconds": round(seconds, 2),
                       "cv_mape_pct": auto.adaptation_.cv_mape_pct,
                       "one_se_method": one_se.adaptation_.method,
                       "test_mape_pct": {"auto": mape(auto, test), "one_se": mape(one_se, test)}}
                p_auto = auto.predict(test)
                rec["auto_kendall_tau"] = float(kendalltau(test.latency_ms, p_auto).statistic)
                rec["auto_spearman_rho"] = float(spearmanr(test.latency_ms, p_auto).statistic)
                for m in list_methods(base, others):
                    m_key = "residual_kind" if m.startswith("residual_") else m
                    one = finetune(base, rows, methods=[m], random_state=seed, others=others,
                                   other_names=names)
                    rec["test_mape_pct"][m_key] = mape(one, test)
                results.append(rec)
                if args.resume:
                    with open(args.resume, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                print(json.dumps({k: rec[k] for k in ("case", "n", "seed", "base", "auto_method",
                                                      "one_se_method", "auto_seconds")}),
                      {k: round(v, 2) for k, v in rec["test_mape_pct"].items()}, flush=True)
    summary = summarise(results)
    print_summary(summary)
    if args.compare:
        compare_runs(results, args.compare)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary},
                                              indent=1))
    if args.plot:
        plot(summary, args.plot)


def compare_runs(results, path):
    """Print, per (case, N), the mean ``auto`` test MAPE of the run in ``path`` and of
    ``results`` over the (case, N, seed) both have, and the largest difference."""
    other = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            other[(r["case"], r["n"], r["seed"])] = r["test_mape_pct"]["auto"]
    cells = {}
    for r in results:
        key = (r["case"], r["n"], r["seed"])
        if key in other:
            cells.setdefault(key[:2], []).append((other[key], r["test_mape_pct"]["auto"]))
    print(f"\nagainst {path} (automatic choice, mean test MAPE over the common seeds):")
    worst = 0.0
    for (case, n), pairs in sorted(cells.items()):
        there, here = np.mean(pairs, axis=0)
        worst = max(worst, abs(here - there))
        print(f"{case:35s} N {n:4d}  {len(pairs)} seeds  there {there:6.2f} %  here {here:6.2f} %")
    print(f"{sum(len(v) for v in cells.values())} runs in {len(cells)} cells; largest difference "
          f"{worst:.2f} points")


def summarise(results):
    out = {}
    for r in results:
        key = f"{r['case']}|{r['n']}"
        s = out.setdefault(key, {"case": r["case"], "n": r["n"], "mape": {}, "rho": [],
                                 "tau": [], "seconds": [], "chosen": []})
        for m, v in r["test_mape_pct"].items():
            s["mape"].setdefault(m, []).append(v)
        s["rho"].append(r.get("auto_spearman_rho", np.nan))  # not kept for runs read from a log
        s["tau"].append(r.get("auto_kendall_tau", np.nan))
        s["seconds"].append(r["auto_seconds"])
        s["chosen"].append(r["auto_method"])
    for s in out.values():
        s["mape_mean"] = {m: float(np.mean(v)) for m, v in s["mape"].items()}
        s["mape_std"] = {m: float(np.std(v)) for m, v in s["mape"].items()}
        singles = {m: v for m, v in s["mape_mean"].items() if m not in ("auto", "one_se")}
        s["best_single"] = min(singles, key=singles.get)
        s["auto_over_best"] = s["mape_mean"]["auto"] / singles[s["best_single"]]
        s["one_se_over_best"] = s["mape_mean"]["one_se"] / singles[s["best_single"]]
        best = np.array(s["mape"][s["best_single"]])
        s["auto_worst_seed_over_best"] = float(np.max(np.array(s["mape"]["auto"]) / best))
        s["one_se_worst_seed_over_best"] = float(np.max(np.array(s["mape"]["one_se"]) / best))
        s["rho_mean"], s["tau_mean"] = float(np.nanmean(s["rho"])), float(np.nanmean(s["tau"]))
        s["seconds_max"] = float(np.max(s["seconds"]))
    return list(out.values())


def print_summary(summary):
    print(f"\n{'case':30s} {'N':>4s} {'auto MAPE':>14s} {'scale':>7s} {'best single':>22s} "
          f"{'auto/best':>9s} {'worst seed':>10s} {'one_se/best':>11s} {'worst':>6s} "
          f"{'tau':>6s} {'fit s':>6s}")
    for s in summary:
        print(f"{s['case']:30s} {s['n']:4d} {s['mape_mean']['auto']:7.2f}+-{s['mape_std']['auto']:4.2f}% "
              f"{s['mape_mean']['scale']:6.2f}% {s['best_single']:>14s} {s['mape_mean'][s['best_single']]:6.2f}% "
              f"{s['auto_over_best']:9.2f} {s['auto_worst_seed_over_best']:10.2f} "
              f"{s['one_se_over_best']:11.2f} {s['one_se_worst_seed_over_best']:6.2f} "
              f"{s['tau_mean']:6.3f} {s['seconds_max']:6.1f}")
    for label, rows in (("HELP", [s for s in summary if s["case"].startswith("help_")]),
                        ("CPU", [s for s in summary if not s["case"].startswith("help_")])):
        if rows:
            for who in ("auto", "one_se"):
                mean = np.array([s[f"{who}_over_best"] for s in rows])
                worst = np.array([s[f"{who}_worst_seed_over_best"] for s in rows])
                print(f"{label} {who}: mean/best max {mean.max():.2f} ({(mean > 1.1).sum()} of "
                      f"{len(rows)} cells over 1.1), worst seed max {worst.max():.2f} "
                      f"({(worst > 1.5).sum()} over 1.5)")


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
