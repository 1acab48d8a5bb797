"""Where LiteRT's time goes on this host: XNNPACK against LiteRT's own kernels, per operator.

    python scripts/probe_litert_kernels.py --json data/benchmarks/litert_kernels.json

Four parts:

* ``ops``: single depthwise convolutions (3x3, 5x5, 7x7; stride 1 and 2) and a 1x1
  convolution at OFA MobileNetV3 w1.2's stage-2 shapes, converted by the project's own path
  (``litert-torch``, int8 by ai-edge-quantizer), each timed with the XNNPACK delegate (what the
  ``litert`` backend runs) and with LiteRT's builtin kernels
  (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``), fp32 and int8, median of 15 invokes
  after warm-up, one thread, interleaved so that both see the same machine state;
* ``scan``: the 7x7 depthwise convolution alone (XNNPACK, stride 1, 144 channels) over
  spatial sizes 28-112: nanoseconds per output element, fp32 and int8 (is its cost per
  element constant, or does it grow with the feature map?);
* ``subnets``: whole subnets (the first ``--subnets`` of the standard list, the ones every
  table starts with) through the ``litert`` backend with ``delegate="xnnpack"`` and
  ``delegate="none"``, fp32 and int8, interleaved, median of 3 rounds of 15 invokes: what a
  LiteRT user on this host gains by turning the delegate off;
* ``tables``: how much of the committed LiteRT tables' latency the 7x7 depthwise
  convolutions explain: a least-relative-error linear fit of each row's latency on its
  depthwise output elements per kernel size, its MACs and a constant (in-sample MAPE, and the
  7x7 term's median share of a subnet's latency).

Needs the ``litert`` extra; the ``tables`` part needs only the committed tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (name, in channels, out channels, kernel, stride, groups, H): stage 2 of w1.2 at 224 px
OPS = [("dw3_s1", 144, 144, 3, 1, 144, 56), ("dw5_s1", 144, 144, 5, 1, 144, 56),
       ("dw7_s1", 144, 144, 7, 1, 144, 56), ("dw3_s2", 144, 144, 3, 2, 144, 56),
       ("dw7_s2", 144, 144, 7, 2, 144, 56), ("conv1x1", 48, 144, 1, 1, 1, 56)]


def _median_ms(interpreter, repeats=15):
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _interpreter(model_bytes, delegate):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=model_bytes, num_threads=1,
                     experimental_op_resolver_type=kind)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    return it


def probe_ops(rounds=3):
    import torch

    from ofa_latency.profiling.conversions import calibration_batches, tflite_bytes

    out = []
    for name, cin, cout, k, s, groups, h in OPS:
        module = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=groups).eval()
        shape = (1, cin, h, h)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        fp32 = tflite_bytes(module, x)
        models = {"fp32": fp32, "int8": tflite_bytes(None, None, "int8",
                                                     calibration_batches(shape),
                                                     fp32_bytes=fp32)}
        row = {"op": name, "channels": cout, "kernel": k, "stride": s, "input_hw": h}
        for prec, data in models.items():
            runs = {"xnnpack": [], "builtin": []}
            for _ in range(rounds):  # interleaved: both kinds in every round
                for kind in runs:
                    runs[kind].append(_median_ms(_interpreter(data, kind == "xnnpack")))
            x_ms, b_ms = float(np.median(runs["xnnpack"])), float(np.median(runs["builtin"]))
            row[prec] = {"xnnpack_ms": round(x_ms, 3), "builtin_ms": round(b_ms, 3),
                         "xnnpack_over_builtin": round(x_ms / b_ms, 2),
                         "spread_pct": round(100 * (max(runs["xnnpack"]) / min(runs["xnnpack"])
                                                    - 1), 1)}
        out.append(row)
        print(f"{name:8s} fp32 XNNPACK {row['fp32']['xnnpack_ms']:7.3f} ms, builtin "
              f"{row['fp32']['builtin_ms']:7.3f} ms | int8 XNNPACK {row['int8']['xnnpack_ms']:7.3f}"
              f" ms, builtin {row['int8']['builtin_ms']:7.3f} ms", flush=True)
    return out


def scan_dw7(sizes=(28, 40, 56, 72, 96, 112), channels=144):
    import torch

    from ofa_latency.profiling.conversions import calibration_batches, tflite_bytes

    out = []
    for h in sizes:
        module = torch.nn.Conv2d(channels, channels, 7, padding=3, groups=channels).eval()
        shape = (1, channels, h, h)
        fp32 = tflite_bytes(module, np.random.default_rng(0).standard_normal(shape,
                                                                             dtype=np.float32))
        int8 = tflite_bytes(None, None, "int8", calibration_batches(shape), fp32_bytes=fp32)
        elements = channels * h * h
        row = {"input_hw": h, "channels": channels}
        for prec, data in (("fp32", fp32), ("int8", int8)):
            ms = float(np.median([_median_ms(_interpreter(data, True)) for _ in range(3)]))
            row[prec] = {"xnnpack_ms": round(ms, 3),
                         "ns_per_element": round(ms * 1e6 / elements, 1)}
        out.append(row)
        print(f"7x7 depthwise {channels} ch {h:3d}x{h:<3d}: fp32 "
              f"{row['fp32']['ns_per_element']:6.1f} ns per element, int8 "
              f"{row['int8']['ns_per_element']:6.1f}", flush=True)
    return out


def probe_subnets(n, rounds=3, repeats=15):
    from ofa_latency import create_backend
    from ofa_latency.spaces import get_space

    space = get_space("ofa_mbv3_w1.2")
    out = []
    for sub in space.sample(n, seed=0):
        row = {"arch": sub.arch_json(), "image_size": sub.image_size}
        for prec in ("fp32", "int8"):
            runners = {d: create_backend("litert", precision=prec, delegate=d)
                       .prepare(space, sub, 1) for d in ("xnnpack", "none")}
            ms = {d: [] for d in runners}
            for _ in range(rounds):  # interleaved: both delegates in every round
                for d, r in runners.items():
                    r.run(3)
                    ms[d].append(float(np.median(r.run(repeats))) * 1e3)
            x_ms, b_ms = float(np.median(ms["xnnpack"])), float(np.median(ms["none"]))
            row[prec] = {"xnnpack_ms": round(x_ms, 2), "builtin_ms": round(b_ms, 2),
                         "xnnpack_over_builtin": round(x_ms / b_ms, 2)}
        out.append(row)
        print(f"{sub.image_size} px, 7x7 kernels {sum(k == 7 for k in sub.ks)}: fp32 XNNPACK "
              f"{row['fp32']['xnnpack_ms']} / builtin {row['fp32']['builtin_ms']} ms | int8 "
              f"{row['int8']['xnnpack_ms']} / {row['int8']['builtin_ms']} ms", flush=True)
    return out


def dw_elements(space, enc):
    """Depthwise output elements (millions) per kernel size of an encoded batch."""
    from ofa_latency.predictors import AdditiveTable

    grid = space.cost_grid["dw_elements_m"]
    ks_of_choice = np.repeat(space.ks_choices, len(space.e_choices))
    zero = np.zeros(len(space.image_sizes))
    return {k: AdditiveTable(space, zero, grid * (ks_of_choice == k)).predict_encoded(enc)
            for k in space.ks_choices}


def explain_tables(paths):
    from ofa_latency.datasets import read_measurements, subnets_of
    from ofa_latency.spaces import get_space

    out = []
    for path in paths:
        df = read_measurements(path)
        space = get_space(df.space.iloc[0])
        enc = space.encode(subnets_of(df))
        dw = dw_elements(space, enc)
        macs = space.cost_features(enc)["macs_m"].to_numpy()
        X = np.column_stack([dw[k] for k in space.ks_choices] + [macs, np.ones(len(df))])
        y = df.latency_ms.to_numpy()
        coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones(len(y)), rcond=None)
        fit = X @ coef
        k7 = space.ks_choices.index(7)
        row = {"table": Path(path).stem, "rows": int(len(df)),
               "ms_per_million_dw_elements": {str(k): round(float(coef[i]), 2)
                                              for i, k in enumerate(space.ks_choices)},
               "ms_per_mmac": round(float(coef[-2]), 4), "constant_ms": round(float(coef[-1]), 3),
               "in_sample_mape_pct": round(float(np.mean(np.abs(fit / y - 1)) * 100), 2),
               "dw7_median_share": round(float(np.median(X[:, k7] * coef[k7] / y)), 3)}
        out.append(row)
        print(f"{row['table']}: 7x7 depthwise {row['dw7_median_share']:.0%} of a subnet's "
              f"latency (median); fit MAPE {row['in_sample_mape_pct']} %", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=["ops", "scan", "subnets", "tables"],
                   default=["ops", "scan", "subnets", "tables"])
    p.add_argument("--subnets", type=int, default=8)
    p.add_argument("--tables", nargs="+", default=None,
                   help="LiteRT tables to explain (default: every committed one but retests)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    warnings.filterwarnings("ignore")
    import platform

    from ofa_latency.hardware import cpu_model_name

    result = {"host": {"cpu": cpu_model_name(), "platform": platform.platform(),
                       "cpus": os.cpu_count()},
              "date_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())}
    if {"ops", "scan", "subnets"} & set(args.parts):
        from importlib.metadata import version

        result["versions"] = {m: version(m) for m in ("ai-edge-litert", "litert-torch",
                                                      "ai-edge-quantizer")}
    if "ops" in args.parts:
        result["ops"] = probe_ops(args.rounds)
    if "scan" in args.parts:
        result["dw7_scan"] = scan_dw7()
    if "subnets" in args.parts:
        result["subnets"] = probe_subnets(args.subnets)
    if "tables" in args.parts:
        paths = args.tables or sorted(str(t) for t in (ROOT / "data" / "measurements")
                                      .glob("*_litert_*.csv") if "retest" not in t.stem)
        result["tables"] = explain_tables(paths)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
