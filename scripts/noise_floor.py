"""Test-retest noise floor of the profiler on this machine, in whatever state it is in.

Two independent passes over the same subnets, each a separate `ofa-latency profile` process
writing a separate, new table (pass 2 starts after pass 1 has finished every setting). For each
setting it reports:

* scale-free agreement: MAPE between the passes after dividing out one global factor (the
  median ratio), its p95 and max, and Kendall tau;
* absolute agreement: the median ratio pass 2 / pass 1 of ``latency_ms`` (each table with its
  own scale, taken from all its windows) and the MAPE without any factor;
* the uncorrected estimate's MAPE (no reference), for comparison;
* the median within-window spread of both passes (how noisy the day was) and the
  device-seconds one subnet cost (wall time of the process / subnets; by pass too: with the
  default --model-cache fresh, pass 1 makes the runtimes' models and pass 2 reads them).

    python scripts/noise_floor.py --n 50 --out data/benchmarks/noise_floor.json
    python scripts/noise_floor.py --n 50 --settings torch_t1 torch_t1_w2   # windows compared
    taskset -c 1 python scripts/noise_floor.py --n 50 \
        --settings onnxruntime_t1 onnxruntime_t1_wauto onnxruntime_t1_w2
                                    # one window, the table's own choice, two windows
    taskset -c 1 python scripts/noise_floor.py --n 50 --settings onnxruntime_t1_w2
                                    # two windows per subnet, as verification measures: do
                                    # the rows' own or the pooled window half-widths explain
                                    # the retest? (retest_within_pooled_intervals_pct)
    python scripts/noise_floor.py --n 50 --settings onnxruntime_t1 onnxruntime_t1_fixed torch_t1 torch_t1_fixed
                                    # per-row intervals and adaptive rounds against the fixed protocol
    python scripts/noise_floor.py --n 50 --settings torch_t1 torch_t1_noretry
                                    # off-state windows timed again, or not
    python scripts/noise_floor.py --n 50 --settings torch_t1 torch_t1_nowait
                                    # retries wait for the fast state, or not
    taskset -c 1 python scripts/noise_floor.py --n 50 \
        --settings torch_t1 torch_t1_half torch_t1_half_b --combine torch_t1_half torch_t1_half_b
                                    # one 3 s window per subnet, or two of 1.5 s minutes apart
                                    # (the same timing per subnet; rows by geometric mean)
    taskset -c 1 python scripts/noise_floor.py --n 50 --settings litert_t1_ahead litert_int8_t1_ahead
                                    # LiteRT fp32 and int8 (pass 2 reads pass 1's models from
                                    # the model cache; --model-cache off: converts them again)
    taskset -c 1 python scripts/noise_floor.py --n 20 --settings openvino_int8_t1 openvino_int8_t1_ahead
                                    # models converted ahead on the other core, or not
                                    # (with two settings: also each pass's two tables compared)
    taskset -c 1 python scripts/noise_floor.py --n 50 --settings torch_t1 torch_t1_rpr1 torch_t1_rpr6
                                    # a round's minimum over 3 runs, or 1, or 6
    taskset -c 1 python scripts/noise_floor.py --n 50 \
        --settings torch_t1 torch_t1_rpr1 onnxruntime_t1 onnxruntime_t1_rpr1
    taskset -c 1 python scripts/noise_floor.py --n 50 --settings onnxruntime_t1 --busy-pass2 15 15
                                    # pass 2 beside a process spinning on the same CPU 15 s
                                    # of every 30: do the rows it shared retest worse?
    taskset -c 1 python scripts/noise_floor.py --n 50 --settings onnxruntime_t1 onnxruntime_t1_nobusy \
        --busy-pass2 15 15          # the same, with and without timing those rows again

With the default seed 0 the subnets are the first ones of the committed tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# name: (backend, threads, windows per subnet, more profile options); "_fixed": the protocol
# before rows carried their own interval (rounds until their spread is under 6 %, at most 10)
FIXED = ["--target-ci-pct", "0", "--max-rounds", "10"]
SPLIT2 = ["--max-seconds", "1.5", "--max-rounds", "20", "--target-ci-pct", "1.41"]
SPLIT3 = ["--max-seconds", "1", "--max-rounds", "14", "--target-ci-pct", "1.73"]
HERE = ["--convert-jobs", "0"]  # models made in the timing process (`profile`'s default before)
SETTINGS = {"onnxruntime_t1": ("onnxruntime", 1, 1, []), "torch_t1": ("torch", 1, 1, []),
            "onnxruntime_t1_w2": ("onnxruntime", 1, 2, []), "torch_t1_w2": ("torch", 1, 2, []),
            # the rounds of one window split over two (three) fresh preparations: each window
            # half (a third) the seconds and rounds, its half-width target sqrt(2) (sqrt(3))
            # wider, so their mean aims at the one window's 1 % (section 14.16: not better)
            "onnxruntime_t1_w2_split": ("onnxruntime", 1, 2, SPLIT2),
            "onnxruntime_t1_w3_split": ("onnxruntime", 1, 3, SPLIT3),
            # one window or two per subnet, as the table's own window spread says
            # (`profile --windows auto`)
            "onnxruntime_t1_wauto": ("onnxruntime", 1, "auto", []),
            "torch_t1_wauto": ("torch", 1, "auto", []),
            # windows more than 10 % (not 25 %) off the table's fast state timed again
            "torch_t1_wauto_off10": ("torch", 1, "auto", ["--off-state-pct", "10"]),
            # ONNX Runtime's fp32 export made ahead by a helper process on the other core
            "onnxruntime_t1_ahead": ("onnxruntime", 1, 1, ["--convert-jobs", "1"]),
            "onnxruntime_t1_fixed": ("onnxruntime", 1, 1, FIXED),
            "torch_t1_fixed": ("torch", 1, 1, FIXED),
            # windows that missed the machine's fast state not timed again (before 2026-12-05)
            "onnxruntime_t1_noretry": ("onnxruntime", 1, 1, ["--off-state-retries", "0"]),
            "torch_t1_noretry": ("torch", 1, 1, ["--off-state-retries", "0"]),
            # retried at once, without waiting for the fast state (2026-12-05, morning)
            "onnxruntime_t1_nowait": ("onnxruntime", 1, 1, ["--off-state-wait-s", "0"]),
            "torch_t1_nowait": ("torch", 1, 1, ["--off-state-wait-s", "0"]),
            # half the timing seconds per window: two such tables, made minutes apart, give
            # each subnet two spaced windows for the device time of one (--combine)
            "torch_t1_half": ("torch", 1, 1, ["--max-seconds", "1.5"]),
            "torch_t1_half_b": ("torch", 1, 1, ["--max-seconds", "1.5"]),
            "onnxruntime_t1_half": ("onnxruntime", 1, 1, ["--max-seconds", "1.5"]),
            "onnxruntime_t1_half_b": ("onnxruntime", 1, 1, ["--max-seconds", "1.5"]),
            # each round's minimum over 1 or 6 runs instead of 3 (the same 3 s per window)
            "torch_t1_rpr1": ("torch", 1, 1, ["--runs-per-round", "1"]),
            "torch_t1_rpr6": ("torch", 1, 1, ["--runs-per-round", "6"]),
            "onnxruntime_t1_rpr1": ("onnxruntime", 1, 1, ["--runs-per-round", "1"]),
            # subnets timed only beside other work not timed again (before section 14.9)
            "onnxruntime_t1_nobusy": ("onnxruntime", 1, 1, ["--busy-retry-pct", "0"]),
            "torch_t1_nobusy": ("torch", 1, 1, ["--busy-retry-pct", "0"]),
            # a deployment runtime, its models made here one by one (`--convert-jobs 0`) or
            # ahead by a helper process on the other CPUs (`profile --convert-jobs 1`; run
            # this pinned)
            "openvino_int8_t1": ("openvino", 1, 1, ["--precision", "int8", *HERE]),
            "openvino_t1": ("openvino", 1, 1, []),
            "onnxruntime_int8_t1": ("onnxruntime", 1, 1, ["--precision", "int8", *HERE]),
            # the same with one window or two per subnet, as the table says
            "openvino_int8_t1_wauto": ("openvino", 1, "auto", ["--precision", "int8", *HERE]),
            "openvino_t1_wauto": ("openvino", 1, "auto", []),
            "onnxruntime_int8_t1_wauto": ("onnxruntime", 1, "auto",
                                          ["--precision", "int8", *HERE]),
            # int8 and LiteRT at `profile`'s default since 2026-12-07 (`--windows auto
            # --convert-jobs auto`: a helper makes the models where the run is pinned)
            "onnxruntime_int8_t1_default": ("onnxruntime", 1, "auto", ["--precision", "int8"]),
            "openvino_int8_t1_default": ("openvino", 1, "auto", ["--precision", "int8"]),
            "litert_int8_t1_default": ("litert", 1, "auto", ["--precision", "int8"]),
            "litert_t1_default": ("litert", 1, "auto", []),
            # its int8 models made ahead by a helper process: the timing process makes none
            "onnxruntime_int8_t1_ahead": ("onnxruntime", 1, 1, ["--precision", "int8",
                                                                "--convert-jobs", "1"]),
            "openvino_int8_t1_ahead": ("openvino", 1, 1, ["--precision", "int8",
                                                          "--convert-jobs", "1"]),
            # LiteRT (XNNPACK): its conversions take 10-30 s, so always made ahead
            "litert_t1_ahead": ("litert", 1, 1, ["--convert-jobs", "1"]),
            "litert_int8_t1_ahead": ("litert", 1, 1, ["--precision", "int8",
                                                      "--convert-jobs", "1"])}


BUSY_PCT = 20.0  # a row timed while others kept its CPU this busy (OTHERS_BUSY_WARN_PCT)
_SPIN = ("import time\nwhile True:\n    t = time.time()\n    while time.time() - t < {on}: pass"
         "\n    time.sleep({off})\n")


def run_pass(backend, threads, windows, archs, out, extra=()):
    cmd = [sys.executable, "-m", "ofa_latency.cli", "profile", "--space", "ofa_mbv3_w1.2",
           "--backend", backend, "--threads", str(threads), "--windows", str(windows),
           "--archs", str(archs), "--out", str(out), "--quiet", "--show", "0", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    print(done.stdout, end="", flush=True)
    # "models: A converted here, B read from the model cache (...), C subnets' made ahead ..."
    found = re.search(r"models: (\d+) converted here, (\d+) read from the model cache .*, "
                      r"(\d+) subnets' made ahead", done.stdout)
    models = dict(zip(("converted", "from_cache", "subnets_ahead"),
                      map(int, found.groups()))) if found else None
    # "windows auto: A of B subnets timed in two windows; one window moves a row by +-C % ..."
    found = re.search(r"windows auto: (\d+) of (\d+) subnets timed in two windows; one window "
                      r"moves a row by \+-([\d.]+|\?) %", done.stdout)
    auto = {"two_windows": int(found[1]), "timed": int(found[2]),
            "one_window_ci_pct": None if found[3] == "?" else float(found[3])} if found else None
    return wall, models, auto


def compare(a, b) -> dict:
    """Agreement of two tables of the same subnets (pandas frames from read_measurements)."""
    m = a.merge(b, on=["arch", "image_size"], suffixes=("_1", "_2"))
    x, y = m.latency_ms_1.to_numpy(), m.latency_ms_2.to_numpy()
    factor = float(np.median(y / x))
    ape_free = 100 * np.abs(y / factor - x) / x
    ape_abs = 100 * np.abs(y - x) / x
    raw = 100 * np.abs(m.latency_raw_ms_2 - m.latency_raw_ms_1) / m.latency_raw_ms_1
    out = {
        "n_pairs": int(len(m)),
        "scale_free_mape_pct": round(float(ape_free.mean()), 3),
        "scale_free_p95_ape_pct": round(float(np.percentile(ape_free, 95)), 3),
        "scale_free_max_ape_pct": round(float(ape_free.max()), 3),
        "kendall_tau": round(float(kendalltau(x, y).statistic), 4),
        "absolute_median_ratio": round(factor, 4),
        "absolute_mape_pct": round(float(ape_abs.mean()), 3),
        "absolute_p95_ape_pct": round(float(np.percentile(ape_abs, 95)), 3),
        "uncorrected_mape_pct": round(float(raw.mean()), 3),
        "median_spread_pct": [round(float(a.spread_pct.median()), 2),
                              round(float(b.spread_pct.median()), 2)],
        "reference_level_ms": [round(float(a.ref_baseline_ms.iloc[0]), 4),
                               round(float(b.ref_baseline_ms.iloc[0]), 4)],
        "median_latency_ms": round(float(np.median(x)), 3),
        "median_rounds": [float(a.n_rounds.median()), float(b.n_rounds.median())],
    }
    if "others_busy_pct_2" in m.columns and m["others_busy_pct_2"].notna().any():
        # the retest of the rows pass 2 timed beside other work, against the others
        busy = m["others_busy_pct_2"].to_numpy(dtype=float)
        out["others_busy_pct"] = [round(float(np.nanmean(t)), 1) if t.notna().any() else None
                                  for t in (m["others_busy_pct_1"], m["others_busy_pct_2"])]
        for name, sel in (("quiet", busy < BUSY_PCT), ("busy", busy >= BUSY_PCT)):
            out[f"retest_{name}_rows"] = {
                "n": int(sel.sum()),
                "scale_free_mape_pct": round(float(ape_free[sel].mean()), 3) if sel.any()
                else None,
                "p95_ape_pct": round(float(np.percentile(ape_free[sel], 95)), 3)
                if sel.any() else None}
    if m["ci_pct_1"].notna().all() and m["ci_pct_2"].notna().all():
        # do the rows' own intervals explain the retest? the difference of two measurements,
        # each known to +-ci at 90 %, is within sqrt(ci1^2 + ci2^2) for most subnets
        half = np.sqrt(m.ci_pct_1.to_numpy() ** 2 + m.ci_pct_2.to_numpy() ** 2)
        out["median_ci_pct"] = [round(float(a.ci_pct.median()), 3),
                                round(float(b.ci_pct.median()), 3)]
        out["retest_within_own_intervals_pct"] = round(float(100 * np.mean(ape_free <= half)), 1)
        if "window_sd_pct_1" in m.columns and m["window_sd_pct_1"].notna().any() and \
                m["window_sd_pct_2"].notna().any():
            # the verification's half-widths: each row's own, or its table's window-to-window
            # spread pooled over every row when that is larger (search.workflow.verify)
            from ofa_latency.profiling.timing import pooled_window_ci_pct

            pooled = [pooled_window_ci_pct(t.window_sd_pct.to_numpy(dtype=float))
                      for t in (a, b)]
            h = [np.maximum(m[f"ci_pct_{i}"].to_numpy(), pooled[i - 1]) for i in (1, 2)]
            out["pooled_window_ci_pct"] = [round(float(v), 3) for v in pooled]
            out["median_window_sd_pct"] = [round(float(t.window_sd_pct.median()), 3)
                                           for t in (a, b)]
            out["retest_within_pooled_intervals_pct"] = round(
                float(100 * np.mean(ape_free <= np.sqrt(h[0] ** 2 + h[1] ** 2))), 1)
    return out


def combined(a, b):
    """Two tables of the same subnets as one: each row the geometric mean of its two
    measurements (its interval that of a mean of two: the half-widths added in quadrature,
    halved), its rounds summed."""
    m = a.merge(b, on=["arch", "image_size"], suffixes=("_a", "_b"))
    out = m[["arch", "image_size"]].copy()
    for c in ("latency_ms", "latency_raw_ms", "ref_baseline_ms"):
        out[c] = np.sqrt(m[f"{c}_a"] * m[f"{c}_b"])
    out["spread_pct"] = np.maximum(m.spread_pct_a, m.spread_pct_b)
    out["n_rounds"] = m.n_rounds_a + m.n_rounds_b
    out["ci_pct"] = np.sqrt(m.ci_pct_a ** 2 + m.ci_pct_b ** 2) / 2
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=["onnxruntime_t1", "torch_t1"],
                   choices=list(SETTINGS))
    p.add_argument("--combine", nargs=2, action="append", default=[], metavar=("A", "B"),
                   help="also compare, pass against pass, settings A and B's tables combined "
                        "(each subnet's two rows by geometric mean)")
    p.add_argument("--busy-pass2", nargs=2, type=float, metavar=("ON_S", "OFF_S"),
                   help="during pass 2, a process spinning ON_S seconds then sleeping OFF_S, "
                        "on the CPUs this script may run on (run it pinned: taskset -c N)")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "noise"))
    p.add_argument("--model-cache", choices=["fresh", "off", "shared"], default="fresh",
                   help="converted models kept between processes: fresh (default: an emptied "
                        "folder in --workdir, so pass 1 converts every model and pass 2 reads "
                        "them), off (every pass converts), shared (the user's folder as it is)")
    p.add_argument("--out", default=str(ROOT / "data" / "benchmarks" / "noise_floor.json"))
    args = p.parse_args(argv)
    for pair in args.combine:
        if not set(pair) <= set(args.settings):
            p.error(f"--combine {' '.join(pair)}: both must be among --settings")

    from ofa_latency import get_space
    from ofa_latency.datasets import read_measurements
    from ofa_latency.hardware import describe_hardware
    from ofa_latency.profiling.scale import off_state
    import pandas as pd

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    archs = work / f"archs_n{args.n}_s{args.seed}.jsonl"
    archs.write_text("".join(json.dumps(s.to_dict()) + "\n"
                             for s in get_space("ofa_mbv3_w1.2").sample(args.n, args.seed)))
    store = {"fresh": str(work / "models"), "off": "off", "shared": None}[args.model_cache]
    if args.model_cache == "fresh":
        shutil.rmtree(work / "models", ignore_errors=True)
    if store is not None:
        os.environ["OFA_LATENCY_MODEL_CACHE"] = store  # the passes' processes inherit it
    walls, models, autos = {}, {}, {}
    for pas in (1, 2):
        spin = None
        if pas == 2 and args.busy_pass2:
            on, off = args.busy_pass2
            spin = subprocess.Popen([sys.executable, "-c", _SPIN.format(on=on, off=off)])
        try:
            for name in args.settings:
                backend, threads, windows, extra = SETTINGS[name]
                out = work / f"{name}_pass{pas}.csv"
                out.unlink(missing_ok=True)
                out.with_name(out.name + ".hardware.json").unlink(missing_ok=True)
                walls[(name, pas)], models[(name, pas)], autos[(name, pas)] = run_pass(
                    backend, threads, windows, archs, out, extra)
        finally:
            if spin is not None:
                spin.kill()
                spin.wait()

    results = {"n_subnets": args.n, "seed": args.seed, "busy_pass2": args.busy_pass2,
               "model_cache": args.model_cache,
               "hardware": describe_hardware("onnxruntime", 1), "settings": {}}
    for name in args.settings:
        a = read_measurements(work / f"{name}_pass1.csv")
        b = read_measurements(work / f"{name}_pass2.csv")
        res = compare(a, b)
        res["device_seconds_per_subnet"] = round(
            (walls[(name, 1)] + walls[(name, 2)]) / 2 / args.n, 3)
        # windows timed again because they missed the machine's fast state, and the rows kept
        # that never met it
        raw = [pd.read_csv(work / f"{name}_pass{k}.csv") for k in (1, 2)]  # every row on disk
        res["rows_on_disk"] = [len(t) for t in raw]
        res["off_state_rows_kept"] = [int(off_state(t.ref_min_ms, t.ref_baseline_ms).sum())
                                      for t in (a, b)]
        res["wall_seconds_per_subnet_by_pass"] = [round(walls[(name, k)] / args.n, 3)
                                                  for k in (1, 2)]
        # per pass: runtime models converted in the profile process, by helpers, or read
        # from the model cache (None where no model was made or read)
        res["models_by_pass"] = [models[(name, k)] for k in (1, 2)]
        if SETTINGS[name][2] == "auto":  # per pass: what the table chose
            res["auto_windows_by_pass"] = [autos[(name, k)] for k in (1, 2)]
        # the device-seconds of the timed rounds alone (every row on disk, retries included;
        # tables made before rows carried timed_s: None)
        res["timed_seconds_per_subnet"] = round(
            sum(pd.to_numeric(t["timed_s"], errors="coerce").sum() for t in raw) / 2 / args.n,
            3) if all("timed_s" in t for t in raw) else None
        results["settings"][name] = res
        print(name, json.dumps(res))
    for x, y in args.combine:  # two spaced windows per subnet, each table's rows combined
        tables = [combined(read_measurements(work / f"{x}_pass{k}.csv"),
                           read_measurements(work / f"{y}_pass{k}.csv")) for k in (1, 2)]
        res = compare(*tables)
        res["device_seconds_per_subnet"] = round(
            sum(walls[(n, k)] for n in (x, y) for k in (1, 2)) / 2 / args.n, 3)
        results["settings"][f"{x}+{y}"] = res
        print(f"{x}+{y}", json.dumps(res))
    if len(args.settings) == 2:  # the two settings' tables of each pass, against each other
        x, y = args.settings
        results["between_settings"] = {
            f"pass{k}": compare(read_measurements(work / f"{x}_pass{k}.csv"),
                                read_measurements(work / f"{y}_pass{k}.csv")) for k in (1, 2)}
        print("between", json.dumps(results["between_settings"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("->", args.out)


if __name__ == "__main__":
    main()
