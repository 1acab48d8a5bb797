"""``ofa-latency`` command line: one small function per command over the public API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger("ofa_latency")


def _read_archs_jsonl(path, space):
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"error: --archs file not found: {path}")
    archs = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            archs.append(space.validate(json.loads(line)))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise SystemExit(f"error: {path}:{i}: {exc}")
    return archs


def _parse_arch(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --arch is not valid JSON: {exc}")


def _summary_table(df) -> str:
    cols = ["image_size", "latency_ms", "spread_pct", "n_runs", "split"]
    view = df[cols].copy()
    view.insert(0, "arch", [a if len(a) <= 40 else a[:37] + "..." for a in df["arch"]])
    return view.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def cmd_profile(args) -> int:
    from .spaces import get_space
    from .profiling import TimingProtocol, create_backend, profile_subnets
    from .hardware import describe_hardware

    space = get_space(args.space)
    backend = create_backend(args.backend, threads=args.threads, device=args.device,
                             precision=args.precision)
    if args.archs:
        subnets = _read_archs_jsonl(args.archs, space)
    else:
        subnets = space.sample(args.n, seed=args.seed)
    protocol = TimingProtocol(rounds=args.rounds, runs_per_round=args.runs_per_round,
                              max_rounds=max(args.rounds, args.max_rounds))
    hw = describe_hardware(args.backend, args.threads, args.device,
                           measure=args.backend != "fake")
    df = profile_subnets(space, backend, subnets, args.batch_size, args.out, protocol=protocol,
                         drift_correction=not args.no_drift_correction,
                         progress=not args.quiet, hardware=hw,
                         ref_baseline_ms=args.ref_baseline_ms)
    print(f"{len(df)} subnets of {space.name} on {backend.device_name()} "
          f"({args.backend}, {args.device}, {args.threads} thread(s), batch {args.batch_size}) "
          f"-> {args.out}")
    if len(df) <= args.show:
        print(_summary_table(df))
    else:
        print(f"latency_ms: min {df.latency_ms.min():.3f}  median {df.latency_ms.median():.3f}  "
              f"max {df.latency_ms.max():.3f}; median spread {df.spread_pct.median():.2f} %")
    return 0


def cmd_hardware(args) -> int:
    from .hardware import describe_hardware

    desc = describe_hardware(args.backend, args.threads, args.device, measure=not args.no_measure)
    if args.json:
        print(json.dumps(desc, indent=1))
    else:
        units = {"memory_gb": "GB", "memory_bandwidth_gbs": "GB/s", "matmul_gflops": "GFLOP/s",
                 "gpu_memory_gb": "GB", "gpu_bandwidth_gbs": "GB/s",
                 "gpu_launch_overhead_us": "us", "gpu_matmul_fp32_gflops": "GFLOP/s"}
        for k, v in desc.items():
            print(f"{k:24s} {v} {units.get(k, '')}".rstrip())
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx
    from .spaces import get_space

    space = get_space(args.space)
    res = export_onnx(space, _parse_arch(args.arch), args.out, batch_size=args.batch_size)
    print(f"wrote {res['onnx_path']} ({res['size_mb']:.1f} MB) and {res['config_path']}")
    print(f"max abs difference ONNX Runtime vs PyTorch: {res['max_abs_diff']:.3e}")
    return 0


def cmd_import_help(args) -> int:
    import pandas as pd
    from .datasets import HELP_SETTINGS, read_help

    help_dir = Path(args.help_dir)
    if not help_dir.exists():
        raise SystemExit(f"error: HELP data folder not found: {help_dir}")
    settings = HELP_SETTINGS if args.setting == ["all"] else args.setting
    df = pd.concat([read_help(help_dir, s) for s in settings], ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"{len(df)} rows ({', '.join(settings)}) -> {args.out}")
    return 0


def _parse_pairs(pairs, what):
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise SystemExit(f"error: {what} {item!r} is not of the form key=value")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _print_metrics(m):
    print(f"n={m['n']}  RMSE {m['rmse_ms']:.4f} ms ({m['rmse_over_mean_pct']:.2f} % of mean)  "
          f"MAPE {m['mape_pct']:.2f} %  within +-5 % {m['within_5pct']:.1f} %  "
          f"within +-10 % {m['within_10pct']:.1f} %  Kendall tau {m['kendall_tau']:.3f}  "
          f"Spearman rho {m['spearman_rho']:.3f}")


def _load_estimator(name_or_dir):
    from .estimator import LatencyEstimator

    if Path(name_or_dir).is_dir():
        return LatencyEstimator.load(name_or_dir)
    return LatencyEstimator.from_pretrained(name_or_dir)


def cmd_train(args) -> int:
    from .training import train_on_table

    filters = {k: str(v) for k, v in _parse_pairs(args.filter, "--filter").items()}
    _, metrics, meta = train_on_table(args.data, args.model, filters,
                                      _parse_pairs(args.param, "--param"), out=args.out,
                                      progress=not args.quiet)
    s = meta["setting"]
    print(f"{args.model} on {s['space']} / {s['device']} ({s['backend']}, batch "
          f"{s['batch_size']}): {meta['data']['n_train']} train, {meta['data']['n_test']} "
          f"held-out subnets -> {args.out}")
    _print_metrics(metrics)
    return 0


def cmd_evaluate(args) -> int:
    from .datasets import read_measurements
    from .evaluation import latency_metrics, plot_predicted_vs_measured

    est = _load_estimator(args.predictor)
    df = read_measurements(args.data, {k: str(v) for k, v in
                                       _parse_pairs(args.filter, "--filter").items()})
    if args.split != "all":
        df = df[df.split == args.split]
    if df.empty:
        raise SystemExit("error: no rows to evaluate (check --filter and --split)")
    pred = est.predictor.predict(df)
    m = latency_metrics(df.latency_ms.to_numpy(), pred)
    _print_metrics(m)
    if args.plot:
        plot_predicted_vs_measured(df.latency_ms.to_numpy(), pred, args.plot,
                                   title=f"{args.predictor} on {Path(args.data).name} ({args.split})")
        print(f"plot -> {args.plot}")
    return 0


def cmd_predict(args) -> int:
    est = _load_estimator(args.predictor)
    print(f"{est.get_efficiency(_parse_arch(args.arch)):.4f} ms")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .profiling import list_backends
    from .spaces import list_spaces

    p = argparse.ArgumentParser(prog="ofa-latency", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("profile", help="measure subnets into a resumable CSV table")
    pr.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    pr.add_argument("--backend", default="onnxruntime", choices=list_backends())
    pr.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    pr.add_argument("--batch-size", type=int, default=1)
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--n", type=int, default=10, help="number of random subnets to sample")
    src.add_argument("--archs", help="JSONL file, one arch dict per line (either OFA form)")
    pr.add_argument("--seed", type=int, default=0, help="sampling seed")
    pr.add_argument("--out", required=True, help="CSV table to append to (resumes if it exists)")
    pr.add_argument("--rounds", type=int, default=6)
    pr.add_argument("--runs-per-round", type=int, default=3)
    pr.add_argument("--max-rounds", type=int, default=10)
    pr.add_argument("--no-drift-correction", action="store_true")
    pr.add_argument("--ref-baseline-ms", type=float, default=None,
                    help="calibrated reference latency to scale to (default: calibrate, or "
                         "reuse the table's own)")
    pr.add_argument("--show", type=int, default=20, help="print the table when it has at most "
                                                          "this many rows")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_profile)

    hw = sub.add_parser("hardware", help="describe and measure this machine")
    hw.add_argument("--backend", default="torch", choices=list_backends())
    hw.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    hw.add_argument("--threads", type=int, default=1)
    hw.add_argument("--json", action="store_true")
    hw.add_argument("--no-measure", action="store_true", help="skip bandwidth/throughput runs")
    hw.set_defaults(func=cmd_hardware)

    ex = sub.add_parser("export", help="export a subnet to ONNX and check it against PyTorch")
    ex.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    ex.add_argument("--arch", required=True, help="arch dict as JSON (either OFA form)")
    ex.add_argument("--batch-size", type=int, default=1)
    ex.add_argument("--out", required=True, help="output .onnx path")
    ex.set_defaults(func=cmd_export)

    ih = sub.add_parser("import-help", help="convert HELP's latency files into the schema")
    ih.add_argument("--help-dir", default="../shared/data/help_ofa_mbv3_w1.2")
    ih.add_argument("--setting", nargs="+", default=["all"],
                    help="<gpu>_<batch> settings, or 'all'")
    ih.add_argument("--out", required=True)
    ih.set_defaults(func=cmd_import_help)

    tr = sub.add_parser("train", help="fit a predictor on one setting of a measurement table")
    tr.add_argument("--data", required=True, help="measurement CSV")
    tr.add_argument("--filter", nargs="*", metavar="COL=VALUE", help="keep matching rows")
    tr.add_argument("--model", default="xgb", help="predictor kind (xgb, mlp)")
    tr.add_argument("--param", nargs="*", metavar="NAME=VALUE", help="hyper-parameters")
    tr.add_argument("--out", required=True, help="predictor folder to write")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="metrics of a predictor on a measurement table")
    ev.add_argument("--predictor", required=True, help="predictor folder or shipped name")
    ev.add_argument("--data", required=True)
    ev.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    ev.add_argument("--split", default="test", choices=["test", "train", "all"])
    ev.add_argument("--plot", help="write a predicted-vs-measured scatter plot (PNG)")
    ev.set_defaults(func=cmd_evaluate)

    pd_ = sub.add_parser("predict", help="predicted latency of one subnet")
    pd_.add_argument("--predictor", required=True, help="predictor folder or shipped name")
    pd_.add_argument("--arch", required=True, help="arch dict as JSON (either OFA form)")
    pd_.set_defaults(func=cmd_predict)
    return p


def main(argv=None) -> int:
    """Entry point of the ``ofa-latency`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
