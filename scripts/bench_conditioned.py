"""The hardware-conditioned predictor on devices it has not seen: zero-shot from a descriptor,
few-shot with N more measured subnets.

    python scripts/bench_conditioned.py --json data/benchmarks/conditioned.json --plot data/benchmarks/conditioned.png
    python scripts/bench_conditioned.py --cases help --n 0 10 --seeds 1     # a quicker look
    python scripts/bench_conditioned.py --cases help --n 0 --pool family    # references choose among the target's batch size only
    python scripts/bench_conditioned.py --n 10 20 50 --calibrate all     # intervals calibrated with the references too

Cases (the same as ``scripts/bench_finetune.py``, whose numbers the plot overlays):

* ``help``: leave one GPU out. The model's members are the shipped xgb predictors of the two
  other GPUs at batch 1, 32 and 64 (six settings), each with its spec-sheet descriptor and its
  measured latencies of HELP's 10 reference subnets. The target is described by its spec sheet
  (``specs``) and, for ``refs``, its measured latencies of the same 10 reference subnets
  (HELP's protocol for a new device). Metrics on the target's test split without those 10.
* ``cpu``: the other host's shipped onnxruntime / torch 1-thread (and onnxruntime 2-thread)
  predictors as members; the target table's descriptor is its measured matmul GFLOP/s and
  memory bandwidth (``specs``) and, for ``refs``, its reference level (the profiler's reference
  subnet, measured in every table: one subnet).

For N = 0 the resolved model is scored as it is. For N > 0, N subnets of the target's train
split (seeded) are added to the references and :func:`ofa_latency.finetune` adapts the
resolved table with them (every method, the mix over the members included, residual and
scratch of kind xgb; cross-validated choice). Device-seconds on the CPU hosts: (N + references) x the profiling cost per subnet that
``scripts/noise_floor.py`` measured (``data/benchmarks/noise_floor.json``).
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
sys.path.insert(0, str(ROOT / "scripts"))
HELP = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"
GPUS = ("2080ti", "titan_xp", "v100")
MEAS = ROOT / "data" / "measurements"


def help_cases(batches):
    """(name, members [(predictor, descriptor)], target table, spec descriptor, refs descriptor)."""
    from ofa_latency import LatencyEstimator
    from ofa_latency.conditioned import HardwareDescriptor
    from ofa_latency.datasets import _load_help_pt, read_help
    from ofa_latency.spaces import get_space

    if not (HELP / "ofa_archs.pt").exists():
        print(f"HELP data not found at {HELP}; skipping the HELP cases")
        return []
    sp = get_space("ofa_mbv3_w1.2")
    archs = _load_help_pt(HELP / "ofa_archs.pt")["arch"]
    refs = [sp.validate({"ks": archs[i]["ks"], "e": archs[i]["e"], "d": archs[i]["d"],
                         "image_size": int(archs[i]["r"])})
            for i in _load_help_pt(HELP / "hardware_embedding_index.pt")]
    data = {(g, b): read_help(HELP, f"{g}_{b}") for g in GPUS for b in (1, 32, 64)}

    def desc(g, b, with_refs):
        d = HardwareDescriptor.from_gpu(g, b)
        if with_refs:
            d.reference_ms = HardwareDescriptor.from_table(data[(g, b)], references=refs).reference_ms
        return d

    out = []
    for g in GPUS:
        members = [(LatencyEstimator.from_pretrained(f"help_{o}_{b}_xgb",
                                                     check_machine=False).predictor,
                    desc(o, b, True)) for o in GPUS if o != g for b in (1, 32, 64)]
        for b in batches:
            out.append((f"help_{g}_{b}", members, data[(g, b)], desc(g, b, False),
                        desc(g, b, True)))
    return out


def cpu_cases():
    from ofa_latency import LatencyEstimator, list_pretrained
    from ofa_latency.conditioned import HardwareDescriptor
    from ofa_latency.datasets import read_measurements

    shipped = {e["name"] for e in list_pretrained()}
    hosts = {"committed": ["ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone",
                           "ofa_mbv3_w1.2_onnxruntime_cpu_t2_b1", "ofa_mbv3_w1.2_torch_cpu_t1_b1"],
             "host2": ["ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_host2",
                       "ofa_mbv3_w1.2_torch_cpu_t1_b1_host2"]}

    def load(name):
        df = read_measurements(MEAS / f"{name}.csv")
        hw = json.loads((MEAS / f"{name}.csv.hardware.json").read_text())
        return df, HardwareDescriptor.from_table(df, hw, name, references=[])

    out = []
    for src, dst in (("committed", "host2"), ("host2", "committed")):
        if not all((MEAS / f"{n}.csv").exists() and f"{n}_xgb" in shipped
                   for n in hosts[src] + hosts[dst]):
            print(f"tables or shipped predictors of {src}/{dst} missing; skipping")
            continue
        members = [(LatencyEstimator.from_pretrained(f"{n}_xgb", check_machine=False).predictor,
                    load(n)[1]) for n in hosts[src]]
        for n in hosts[dst]:
            if "_t2_" in n:
                continue
            df, d = load(n)
            backend = "onnxruntime" if "onnxruntime" in n else "torch"
            specs_only = HardwareDescriptor(**{**d.to_dict(), "reference_ms": {}})
            out.append((f"{backend}_t1_{src}_to_{dst}", members, df, specs_only, d))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["help", "cpu"], choices=["help", "cpu"])
    p.add_argument("--batches", nargs="+", type=int, default=[32, 64, 1])
    p.add_argument("--n", nargs="+", type=int, default=[0, 5, 10, 20, 50, 100, 300])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pool", default="device_type", choices=["device_type", "family"],
                   help="members the references may choose from (ConditionedPredictor.resolve)")
    p.add_argument("--calibrate", default="random", choices=["random", "all"],
                   help="the fine-tuned interval's calibration: the random samples alone when "
                        "they suffice (finetune's designed=, the default), or every sample "
                        "with the references")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)

    from scipy.stats import kendalltau, spearmanr

    from ofa_latency.adapt import finetune
    from ofa_latency.conditioned import ConditionedPredictor
    from ofa_latency.datasets import subnets_of
    from ofa_latency.errors import UsageError

    noise = json.loads((ROOT / "data" / "benchmarks" / "noise_floor.json").read_text())
    per_subnet_s = {k.split("_")[0]: v["device_seconds_per_subnet"]
                    for k, v in noise["settings"].items()}
    cases = (help_cases(args.batches) if "help" in args.cases else []) + \
        (cpu_cases() if "cpu" in args.cases else [])
    results = []
    for name, members, df, d_specs, d_refs in cases:
        model = ConditionedPredictor.from_members([m for m, _ in members], [d for _, d in members])
        sp = model.space_
        ref_subs = [k for k in d_refs.reference_ms]
        train, test = df[df.split == "train"], df[df.split == "test"]
        keep = [s.key() not in set(ref_subs) for s in subnets_of(test)]
        test = test[keep]
        y_test = test.latency_ms.to_numpy()
        cost = per_subnet_s.get(name.split("_")[0]) if not name.startswith("help") else None

        def score(pred):
            p_ = pred.predict(test)
            out = {"mape_pct": float(100 * np.mean(np.abs(p_ - y_test) / y_test)),
                   "kendall_tau": float(kendalltau(y_test, p_).statistic),
                   "spearman_rho": float(spearmanr(y_test, p_).statistic)}
            try:  # the 90 % interval, where the resolved predictor has residuals for one
                lo, hi = pred.interval_factors(0.9)
                _, up = pred.interval_factors(0.8)  # the one-sided 90 % upper bound
            except UsageError:
                return out
            return {**out, "coverage_pct": float(100 * np.mean((y_test >= p_ * lo) &
                                                               (y_test <= p_ * hi))),
                    "above_upper_pct": float(100 * np.mean(y_test > p_ * up)),
                    "width_pct": float(100 * (hi - lo))}

        for n in args.n:
            if n == 0:
                for way, d in (("specs", d_specs), ("refs", d_refs)):
                    t0 = time.perf_counter()
                    pred = model.resolve(d, pool=args.pool)
                    rec = {"case": name, "n": 0, "seed": 0, "variant": way,
                           "n_references": len(d.reference_ms),
                           "how": {k: v for k, v in pred.conditioning_.items()
                                   if k in ("way", "nearest", "method", "scale")},
                           "seconds": round(time.perf_counter() - t0, 2), **score(pred)}
                    if cost:
                        rec["device_seconds"] = round(len(d.reference_ms) * cost, 1)
                    results.append(rec)
                    print(json.dumps(rec), flush=True)
                continue
            for seed in range(args.seeds):
                rows = train.sample(n=min(n, len(train)), random_state=seed)
                t0 = time.perf_counter()
                base = model.resolve(d_refs, random_state=seed, pool=args.pool)
                X = [s.to_dict() for s in subnets_of(rows)] + \
                    [sp.from_key(k).to_dict() for k in ref_subs]
                y = np.concatenate([rows.latency_ms.to_numpy(),
                                    np.array(list(d_refs.reference_ms.values()))])
                pred = finetune(base, X, y, random_state=seed, base_name="conditioned",
                                others=model.member_predictors(), kind="xgb",
                                designed=[sp.from_key(k) for k in ref_subs]
                                if args.calibrate == "random" else ())
                rec = {"case": name, "n": n, "seed": seed, "variant": "refs+finetune",
                       "n_references": len(ref_subs), "how": {"method": pred.adaptation_.method},
                       "interval_samples": pred.interval_.n,
                       "seconds": round(time.perf_counter() - t0, 2), **score(pred)}
                if cost:
                    rec["device_seconds"] = round((n + len(ref_subs)) * cost, 1)
                results.append(rec)
                print(json.dumps(rec), flush=True)
    summary = summarise(results)
    print_summary(summary)
    bands = coverage_bands(results)
    print_bands(bands)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary,
                                               "coverage_bands": bands},
                                              indent=1))
    if args.plot:
        plot(summary, args.plot)


def summarise(results):
    out = {}
    for r in results:
        s = out.setdefault((r["case"], r["n"], r["variant"]),
                           {"case": r["case"], "n": r["n"], "variant": r["variant"],
                            "n_references": r["n_references"], "mape": [], "tau": [], "rho": [],
                            "seconds": [], "chosen": [], "device_seconds": r.get("device_seconds")})
        s["mape"].append(r["mape_pct"])
        s["tau"].append(r["kendall_tau"])
        s["rho"].append(r["spearman_rho"])
        s["seconds"].append(r["seconds"])
        s["chosen"].append(r["how"].get("method") or r["how"].get("way"))
        if "coverage_pct" in r:
            s.setdefault("coverage", []).append(r["coverage_pct"])
            s.setdefault("above_upper", []).append(r["above_upper_pct"])
    for s in out.values():
        for k in ("mape", "tau", "rho"):
            s[f"{k}_mean"], s[f"{k}_std"] = float(np.mean(s[k])), float(np.std(s[k]))
        for k in ("coverage", "above_upper"):
            if k in s:
                s[f"{k}_mean"], s[f"{k}_min"] = float(np.mean(s[k])), float(np.min(s[k]))
        s["seconds_max"] = float(np.max(s["seconds"]))
    return list(out.values())


def coverage_bands(results, band=(85.0, 95.0)):
    """Per N: how many cells' mean coverage of the 90 % interval (over the seeds) lies in
    ``band``, above it and below it; the mean coverage, its range over the cells, the mean
    share above the one-sided 90 % bound and the median width (BENCHMARKS.md 10.0.4-10.0.5)."""
    from bench_intervals import cell_means

    out = []
    for n in sorted({r["n"] for r in results if "coverage_pct" in r}):
        cells, cov = cell_means(results, n)
        _, up = cell_means(results, n, "above_upper_pct")
        rs = [r for r in results if r["n"] == n and "coverage_pct" in r]
        out.append({"n": n, "cells": len(cells),
                    "in_band": sum(band[0] <= c <= band[1] for c in cov),
                    "above": sum(c > band[1] for c in cov), "below": sum(c < band[0] for c in cov),
                    "coverage_mean": float(np.mean(cov)), "coverage_range": [min(cov), max(cov)],
                    "above_upper_mean": float(np.mean(up)), "above_upper_range": [min(up), max(up)],
                    "width_median_pct": float(np.median([r["width_pct"] for r in rs])),
                    "outside": {c: round(v, 1) for c, v in zip(cells, cov)
                                if not band[0] <= v <= band[1]}})
    return out


def print_bands(bands):
    print(f"\n{'N':>4s} {'in 85-95':>9s} {'above':>6s} {'below':>6s} {'mean cover':>11s} "
          f"{'range':>13s} {'> upper':>8s} {'width':>7s}  outside the band")
    for b in bands:
        lo, hi = b["coverage_range"]
        print(f"{b['n']:4d} {b['in_band']:4d} of {b['cells']:<2d} {b['above']:6d} {b['below']:6d} "
              f"{b['coverage_mean']:10.1f}% {lo:6.1f}..{hi:5.1f} {b['above_upper_mean']:7.1f}% "
              f"{b['width_median_pct']:6.1f}%  {b['outside']}")


def print_summary(summary):
    print(f"\n{'case':34s} {'N':>4s} {'variant':>14s} {'MAPE %':>13s} {'tau':>6s} {'rho':>6s} "
          f"{'fit s':>6s} {'device s':>8s} {'cover 90':>8s} {'> upper':>7s}  chosen")
    for s in summary:
        ds = "" if s["device_seconds"] is None else f"{s['device_seconds']:.0f}"
        cov = f"{s['coverage_mean']:8.1f}" if "coverage_mean" in s else f"{'':8s}"
        up = f"{s['above_upper_mean']:7.1f}" if "above_upper_mean" in s else f"{'':7s}"
        print(f"{s['case']:34s} {s['n']:4d} {s['variant']:>14s} {s['mape_mean']:6.2f}+-{s['mape_std']:4.2f} "
              f"{s['tau_mean']:6.3f} {s['rho_mean']:6.3f} {s['seconds_max']:6.1f} {ds:>8s} "
              f"{cov} {up}  {max(set(s['chosen']), key=s['chosen'].count)}")


def plot(summary, path):
    """One panel per case: the conditioned model (zero-shot at N = 0, then with N samples)
    against fine-tuning one base (``data/benchmarks/finetune.json``, same cases, when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ft_path = ROOT / "data" / "benchmarks" / "finetune.json"
    ft = {}
    if ft_path.exists():
        for s in json.loads(ft_path.read_text())["summary"]:
            ft.setdefault(s["case"], []).append(s)
    cases = sorted({s["case"] for s in summary})
    cols = min(3, len(cases))
    rows = int(np.ceil(len(cases) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, case in zip(axes.ravel(), cases):
        ss = [s for s in summary if s["case"] == case]
        few = sorted([s for s in ss if s["n"] > 0], key=lambda s: s["n"])
        refs0 = [s for s in ss if s["n"] == 0 and s["variant"] == "refs"]
        spec0 = [s for s in ss if s["n"] == 0 and s["variant"] == "specs"]
        xs = [0.5] + [s["n"] for s in few]  # N = 0 drawn at 0.5 on the log axis
        ax.errorbar(xs, [s["mape_mean"] for s in refs0 + few],
                    yerr=[s["mape_std"] for s in refs0 + few], marker="o", capsize=2,
                    label=f"conditioned ({refs0[0]['n_references'] if refs0 else '?'} refs + N)")
        if spec0:
            ax.plot([0.5], [spec0[0]["mape_mean"]], "rx", label="specs only (N = 0)")
        fts = sorted(ft.get(case, []),
                     key=lambda s: s["n"])
        if fts:
            ax.plot([s["n"] for s in fts], [s["mape_mean"]["auto"] for s in fts], "s--",
                    label="fine-tune one base (auto)")
            ax.plot([s["n"] for s in fts], [s["mape_mean"]["scratch"] for s in fts], ":",
                    label="scratch")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("N measured subnets (N = 0 at 0.5)")
        ax.set_ylabel("held-out MAPE %")
        ax.grid(alpha=0.3, which="both")
    axes.ravel()[0].legend(fontsize=7)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
