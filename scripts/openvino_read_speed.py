"""How the product makes OpenVINO models, against ``openvino.convert_model``: conversion time,
the compiled operations, and the latency of the two compiled models side by side.

For each of ``--n`` subnets of the standard list (fp32 and NNCF int8, 1 thread, batch 1) it
makes the model both ways from the same ONNX export, compiles both, and reports

* the seconds each way took to make the model (int8: NNCF included);
* whether the compiled models run the same operations at the same precisions (OpenVINO's
  runtime model: ``layerType`` and ``runtimePrecision`` of every node);
* the largest absolute difference of their outputs on one random input;
* the latency ratio product / ``convert_model``: the median over ``--rounds`` rounds, each
  round timing ``--runs`` inferences of one model and then of the other (order alternating),
  with the rounds' min..max.

    taskset -c 1 python scripts/openvino_read_speed.py --n 10 \
        --out data/benchmarks/openvino_read_speed.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofa_latency.hardware import describe_hardware  # noqa: E402
from ofa_latency.profiling import conversions as conv  # noqa: E402
from ofa_latency.spaces import get_space  # noqa: E402


def _operations(compiled) -> list:
    return sorted((i["layerType"].astype(str), i["runtimePrecision"].astype(str))
                  for i in (n.get_rt_info() for n in compiled.get_runtime_model().get_ops()))


def _ms_per_run(request, x, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        request.infer({0: x})
    return (time.perf_counter() - start) / runs * 1e3


def _convert_model(model_bytes, precision, batches):
    """What the product did before: ``openvino.convert_model``, then the same NNCF call."""
    import openvino as ov

    saved = conv._openvino_from_onnx
    conv._openvino_from_onnx = lambda b: ov.convert_model(io.BytesIO(b))
    try:
        return conv.openvino_model(model_bytes, precision, batches)
    finally:
        conv._openvino_from_onnx = saved


def compare(space, subnet, precision: str, rounds: int, runs: int) -> dict:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    model_bytes = conv.deployable_onnx_bytes(space, subnet, 1)
    batches = conv.calibration_batches((1, 3, subnet.image_size, subnet.image_size))
    made, seconds = {}, {}
    for way, make in (("product", conv.openvino_model), ("convert_model", _convert_model)):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model = make(model_bytes, precision, batches)
        seconds[way] = time.perf_counter() - start
        made[way] = core.compile_model(model, "CPU", config)
    x = conv.calibration_batches((1, 3, subnet.image_size, subnet.image_size), n=1, seed=7)[0]
    requests = {way: c.create_infer_request() for way, c in made.items()}
    outputs = {way: r.infer({0: x})[0].copy() for way, r in requests.items()}
    ratios = []
    for i in range(rounds):
        order = ("product", "convert_model") if i % 2 == 0 else ("convert_model", "product")
        ms = {way: _ms_per_run(requests[way], x, runs) for way in order}
        ratios.append(ms["product"] / ms["convert_model"])
    return {"subnet": subnet.key(), "image_size": subnet.image_size, "precision": precision,
            "make_s_product": round(seconds["product"], 3),
            "make_s_convert_model": round(seconds["convert_model"], 3),
            "same_operations": _operations(made["product"]) == _operations(made["convert_model"]),
            "max_abs_output_difference": float(np.abs(outputs["product"]
                                                      - outputs["convert_model"]).max()),
            "latency_ratio_median": float(np.median(ratios)),
            "latency_ratio_min": float(min(ratios)), "latency_ratio_max": float(max(ratios))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10, help="subnets (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per model pair")
    parser.add_argument("--runs", type=int, default=50, help="inferences per round")
    parser.add_argument("--out", type=Path, default=None, help="JSON report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nncf").setLevel(logging.WARNING)
    space = get_space("ofa_mbv3_w1.2")
    rows = []
    for subnet in space.sample(args.n, seed=args.seed):
        for precision in ("fp32", "int8"):
            row = compare(space, subnet, precision, args.rounds, args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for precision in ("fp32", "int8"):
        mine = [r for r in rows if r["precision"] == precision]
        summary[precision] = {
            "make_s_product_median": float(np.median([r["make_s_product"] for r in mine])),
            "make_s_convert_model_median": float(np.median([r["make_s_convert_model"]
                                                            for r in mine])),
            "same_operations": sum(r["same_operations"] for r in mine), "subnets": len(mine),
            "latency_ratio_median": float(np.median([r["latency_ratio_median"] for r in mine])),
            "latency_ratio_range": [min(r["latency_ratio_median"] for r in mine),
                                    max(r["latency_ratio_median"] for r in mine)]}
    print(json.dumps(summary, indent=1))
    if args.out:
        import openvino as ov

        args.out.write_text(json.dumps({"n_subnets": args.n, "seed": args.seed,
                                        "rounds": args.rounds, "runs": args.runs,
                                        "openvino": ov.__version__,
                                        "hardware": describe_hardware(backend="openvino"),
                                        "summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
