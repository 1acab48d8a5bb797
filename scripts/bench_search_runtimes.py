"""The same latency budget searched and verified under each deployment runtime of this host.

For each setting (ONNX Runtime fp32 and int8, OpenVINO int8, LiteRT int8 by default) it runs
what a user runs, through the command line:

1. ``ofa-latency finetune --base <fp32 ONNX Runtime predictor shipped from another host>``
   on the first ``--n`` rows of the setting's table (``collect_runtime_tables.py``);
2. ``ofa-latency search --verify <runtime> --precision <p> --refit`` under ``--budget-ms``
   (the closed loop: candidates measured on this runtime, the predictor refitted, the
   winner confirmed in a fresh window and exported in the runtime's format);

and tabulates per runtime: the chosen subnet, its predicted, measured and confirmed latency,
its predicted accuracy, and how many of its choices (kernel, expand, depth, resolution) differ
from the fp32 ONNX Runtime pick. Resumable: a setting whose ``report.json`` exists is read,
not searched again.

    python scripts/bench_search_runtimes.py --budget-ms 5 --json data/benchmarks/search_runtimes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

FP32_BASE = "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone_xgb"


def _cli(*argv, usage_ok=False):
    """Run ``ofa-latency ARGV``; with ``usage_ok`` a usage error (exit 2: e.g. no subnet meets
    the budget) returns its message instead of stopping."""
    exe = Path(sys.executable).with_name("ofa-latency")
    r = subprocess.run([str(exe), *map(str, argv)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode == 2 and usage_ok:
        return next((line for line in r.stderr.splitlines() if line.startswith("error:")),
                    r.stderr.strip()[-500:])
    if r.returncode != 0:
        raise SystemExit(f"ofa-latency {' '.join(map(str, argv))} failed:\n{r.stderr[-3000:]}")
    return None


def differences(a: dict, b: dict) -> int:
    """Choices (per-block kernel and expand of active blocks, per-stage depth, resolution) in
    which two canonical archs differ."""
    n = sum(x != y for x, y in zip(a["d"], b["d"])) + (a["image_size"] != b["image_size"])
    return n + sum(x != y for x, y in zip(a["ks"], b["ks"])) + \
        sum(x != y for x, y in zip(a["e"], b["e"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+",
                   default=["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32",
                            "openvino:int8", "litert:fp32", "litert:int8"])
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--n", type=int, default=50, help="rows of each table fine-tuned on")
    p.add_argument("--host", default="host3")
    p.add_argument("--accuracy-predictor",
                   default=str(ROOT.parent / "shared" / "data" / "ofa_acc_predictor" /
                               "acc_predictor.pth"))
    p.add_argument("--work", default=str(ROOT / "runs" / "search_runtimes"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from collect_runtime_tables import table_path

    from ofa_latency.datasets import read_measurements

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    acc = ["--accuracy-predictor", args.accuracy_predictor] \
        if Path(args.accuracy_predictor).exists() else ["--proxy", "macs"]
    rows = []
    for s in args.settings:
        runtime, precision = s.split(":")
        name = f"{runtime}_{precision}"
        out = work / f"search_{name}"
        failed = out / "failed.txt"
        if not (out / "report.json").exists() and not failed.exists():
            table = table_path(ROOT / "data" / "measurements", "ofa_mbv3_w1.2", runtime,
                               precision, args.host, "main")
            df = read_measurements(table).head(args.n)
            data = work / f"{name}_first{args.n}.csv"
            df.to_csv(data, index=False)
            hw = table.with_name(table.name + ".hardware.json")
            if hw.exists():
                data.with_name(data.name + ".hardware.json").write_text(hw.read_text())
            pred = work / f"predictor_{name}"
            if not (pred / "config.json").exists():
                _cli("finetune", "--base", FP32_BASE, "--data", data, "--out", pred)
            error = _cli("search", "--estimator", pred, "--latency-ms", args.budget_ms, *acc,
                         "--verify", runtime, "--precision", precision, "--refit", "--out", out,
                         "--quiet", usage_ok=True)
            if error:
                out.mkdir(parents=True, exist_ok=True)
                failed.write_text(error)
        if failed.exists():
            rows.append({"setting": s, "error": failed.read_text()})
            print(f"{s}: {failed.read_text()}")
            continue
        rep = json.loads((out / "report.json").read_text())
        conf = rep.get("confirmation") or {}
        rows.append({"setting": s, "arch": rep["arch"], "accuracy": rep["accuracy"],
                     "predicted_ms": (rep["predicted_ms"] or [None])[0],
                     "measured_ms": rep["measured_ms"],
                     "measured_upper_ms": rep.get("measured_upper_ms"),
                     "confirmed_ms": conf.get("measured_ms"),
                     "rounds": rep.get("rounds"),
                     "deployed": (rep.get("deployed") or {}).get("path")})
    found = [r for r in rows if "error" not in r]
    ref = next((r for r in found if r["setting"] == "onnxruntime:fp32"), found[0])
    print(f"budget {args.budget_ms} ms, predictors fine-tuned from {FP32_BASE} on {args.n} rows")
    print(f"{'setting':18s} {'accuracy':>8s} {'pred ms':>8s} {'meas ms':>8s} {'conf ms':>8s} "
          f"{'res':>4s} {'differs':>7s}  deployed")
    for r in found:
        r["choices_differing_from_onnxruntime_fp32"] = differences(r["arch"], ref["arch"])
        print(f"{r['setting']:18s} {r['accuracy']:8.4f} {r['predicted_ms'] or float('nan'):8.3f} "
              f"{r['measured_ms'] or float('nan'):8.3f} {r['confirmed_ms'] or float('nan'):8.3f} "
              f"{r['arch']['image_size']:4d} {r['choices_differing_from_onnxruntime_fp32']:7d}  "
              f"{r['deployed']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"budget_ms": args.budget_ms, "n": args.n,
                                               "base": FP32_BASE, "accuracy": acc[-1],
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
