"""Test-retest noise floor of the profiler on this machine.

Two independent passes (separate processes; pass 2 starts only after pass 1 has finished every
backend) over the same subnets, for each CPU setting. Reports the MAPE between the passes for
the drift-corrected latency (with each pass's own calibration, and with one shared
calibration), for the uncorrected robust estimate, and the device-seconds one subnet costs.
With the default seed 0 the subnets are the first ones of the committed tables in
data/measurements/, so pass 1 is also compared with the committed rows (measured earlier, with
two single-thread jobs side by side), using the table's own calibration.

    python scripts/noise_floor.py --n 50 --out data/benchmarks/noise_floor.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"onnxruntime_t1": ("onnxruntime", 1), "torch_t1": ("torch", 1)}


def run_pass(backend, threads, archs, out, extra):
    cmd = [sys.executable, "-m", "ofa_latency.cli", "profile", "--space", "ofa_mbv3_w1.2",
           "--backend", backend, "--threads", str(threads), "--archs", str(archs),
           "--out", str(out), "--quiet", "--show", "0"] + extra
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def mape(a, b):
    return 100.0 * np.abs(b - a) / a


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--workdir", default=str(ROOT / "runs" / "noise"))
    p.add_argument("--out", default=str(ROOT / "data" / "benchmarks" / "noise_floor.json"))
    p.add_argument("--extra", default="", help="extra arguments for 'ofa-latency profile'")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from ofa_latency import get_space

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    archs = work / f"archs_n{args.n}_s{args.seed}.jsonl"
    archs.write_text("".join(json.dumps(s.to_dict()) + "\n"
                             for s in get_space("ofa_mbv3_w1.2").sample(args.n, args.seed)))
    walls = {}
    for pas in (1, 2):
        for name in args.settings:
            backend, threads = SETTINGS[name]
            out = work / f"{name}_pass{pas}.csv"
            out.unlink(missing_ok=True)
            walls[(name, pas)] = run_pass(backend, threads, archs, out, args.extra.split())

    results = {"n_subnets": args.n, "seed": args.seed, "settings": {}}
    for name in args.settings:
        a = pd.read_csv(work / f"{name}_pass1.csv")
        b = pd.read_csv(work / f"{name}_pass2.csv")
        m = a.merge(b, on=["arch", "image_size"], suffixes=("_1", "_2"))
        own = mape(m.latency_ms_1, m.latency_ms_2)
        shared = mape(m.latency_ms_1, m.latency_ms_2 / m.ref_baseline_ms_2 * m.ref_baseline_ms_1)
        raw = mape(m.latency_raw_ms_1, m.latency_raw_ms_2)
        res = {
            "n_pairs": int(len(m)),
            "mape_pct_own_calibration": round(float(own.mean()), 3),
            "mape_pct_shared_calibration": round(float(shared.mean()), 3),
            "p95_ape_pct_shared_calibration": round(float(np.percentile(shared, 95)), 3),
            "max_ape_pct_shared_calibration": round(float(shared.max()), 3),
            "mape_pct_uncorrected": round(float(raw.mean()), 3),
            "max_ape_pct_uncorrected": round(float(raw.max()), 3),
            "ref_baseline_ms": [float(m.ref_baseline_ms_1.iloc[0]), float(m.ref_baseline_ms_2.iloc[0])],
            "median_latency_ms": round(float(m.latency_ms_1.median()), 3),
            "device_seconds_per_subnet": round((walls[(name, 1)] + walls[(name, 2)]) / 2 / args.n, 3),
        }
        table = ROOT / "data" / "measurements" / f"ofa_mbv3_w1.2_{SETTINGS[name][0]}_cpu_t1_b1.csv"
        if table.exists():
            t = pd.read_csv(table).merge(a, on=["arch", "image_size"], suffixes=("_t", ""))
            if len(t):
                ape = mape(t.latency_ms_t, t.latency_ms / t.ref_baseline_ms * t.ref_baseline_ms_t)
                res["n_vs_committed_table"] = int(len(t))
                res["mape_pct_vs_committed_table"] = round(float(ape.mean()), 3)
                res["tau_vs_committed_table"] = round(float(
                    kendalltau(t.latency_ms_t, t.latency_ms).statistic), 3)
        res["tau_pass1_vs_pass2"] = round(float(kendalltau(m.latency_ms_1, m.latency_ms_2).statistic), 3)
        results["settings"][name] = res
        print(name, json.dumps(res))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("->", args.out)


if __name__ == "__main__":
    main()
