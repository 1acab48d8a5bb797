"""What several commands share: reading archs and key=value pairs, the hardware options,
printing metrics. Parsing only; the work is the library's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError

HARDWARE_HELP = ("a hardware-conditioned predictor's target: a descriptor JSON, a measurement "
                 "table of the device, or a GPU key/name of the spec table (with --batch-size)")


def read_archs_file(path, space):
    """Archs from a file, one per line: JSON or the Python-dict form OFA prints."""
    from ..spaces import arch_from_text

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--archs file not found: {path}")
    archs = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            archs.append(space.validate(arch_from_text(line, "arch")))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path}:{i}: {exc}") from None
    if not archs:
        raise UsageError(f"{path} holds no archs (one arch dict per line expected)")
    return archs


def subnets_from_args(args, space, verb):
    """``--archs FILE`` or ``--n N --seed S`` sampled subnets."""
    if args.archs:
        return read_archs_file(args.archs, space)
    if args.n < 1:
        raise UsageError(f"--n {args.n}: the number of subnets to {verb} must be >= 1")
    return space.sample(args.n, seed=args.seed)


def parse_arch(text):
    from ..spaces import arch_from_text

    return arch_from_text(text, "--arch")


def check_out_folder(out):
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} exists and is a file; a predictor is saved as a folder")


def parse_pairs(pairs, what):
    """``["k=v", ...]`` as a dict, values read as JSON where they parse."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise UsageError(f"{what} {item!r} is not of the form key=value")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def filters(args) -> dict:
    return {k: str(v) for k, v in parse_pairs(getattr(args, "filter", None), "--filter").items()}


def _int_at_least(text: str, lowest: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < lowest:
        raise argparse.ArgumentTypeError(f"{v}: must be >= {lowest}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def windows_count(text: str):
    """argparse type: an integer >= 1, or ``auto``."""
    return "auto" if text.strip().lower() == "auto" else _int_at_least(text, 1)


def jobs_count(text: str):
    """argparse type: an integer >= 0, or ``auto``."""
    return "auto" if text.strip().lower() == "auto" else _int_at_least(text, 0)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _finite_number(text: str, lowest: float, strict: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ((v > lowest if strict else v >= lowest) and v < float("inf")):
        raise argparse.ArgumentTypeError(
            f"{v}: must be a finite number {'>' if strict else '>='} {lowest:g}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _finite_number(text, 0.0, strict=True)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _finite_number(text, 0.0, strict=False)


def add_timing_options(p, max_rounds: int = 40):
    """The timing protocol's options (:class:`~ofa_latency.profiling.TimingProtocol`)."""
    p.add_argument("--rounds", type=positive_int, default=6, help="rounds at least")
    p.add_argument("--max-rounds", type=positive_int, default=max_rounds, help="rounds at most")
    p.add_argument("--target-ci-pct", type=nonnegative_float, default=1.0,
                   help="add rounds until the half-width of a subnet's own 90 %% interval is "
                        "at most this (percent; default 1.0); 0: the older rule, rounds until "
                        "their spread is under 6 %%")
    p.add_argument("--max-seconds", type=nonnegative_float, default=3.0,
                   help="timing seconds per subnet and window at most (default 3)")
    p.add_argument("--runs-per-round", type=positive_int, default=3,
                   help="runs of the subnet (and of the reference) per round; a round keeps "
                        "the fastest (default 3)")
    p.add_argument("--off-state-retries", type=nonnegative_int, default=2,
                   help="time a subnet again, up to this many times, when its window never saw "
                        "the machine's fast state (the reference's fastest round more than "
                        "--off-state-pct above the table's level; default 2, 0: never)")
    p.add_argument("--off-state-pct", type=positive_float, default=25.0,
                   help="how far (percent) above the table's level a window's fastest "
                        "reference round is off the fast state (default 25; recorded in the "
                        "rows when another)")
    p.add_argument("--off-state-wait-s", type=nonnegative_float, default=10.0,
                   help="before such a retry, time the reference alone until the machine is "
                        "back in its fast state, for up to this many seconds of runs; a longer "
                        "slow spell ends the try (default 10; 0: retry at once)")
    p.add_argument("--busy-retry-pct", type=nonnegative_float, default=20.0,
                   help="also time a subnet again when other processes kept the profiled CPUs "
                        "at least this busy (percent) in all its windows, each try once they "
                        "have been quieter for half a second (waiting up to --off-state-wait-s; "
                        "default 20, 0: never)")


def timing_protocol(args, **kw):
    """The :class:`~ofa_latency.profiling.TimingProtocol` of :func:`add_timing_options`."""
    from ..profiling import TimingProtocol

    if not args.max_seconds > 0:
        raise UsageError("--max-seconds must be > 0")
    return TimingProtocol(rounds=args.rounds, max_rounds=max(args.rounds, args.max_rounds),
                          target_ci_pct=args.target_ci_pct or None,
                          max_seconds=args.max_seconds, runs_per_round=args.runs_per_round,
                          off_state_retries=args.off_state_retries,
                          off_state_wait_s=args.off_state_wait_s,
                          off_state_pct=args.off_state_pct,
                          busy_retry_pct=min(args.busy_retry_pct, 100.0) or None,
                          **kw)


def add_convert_jobs_option(p, what=None):
    """``--convert-jobs``: helper processes that make the next subnets' models ahead (``what``:
    the help's opening words, e.g. the option it needs)."""
    p.add_argument("--convert-jobs", type=jobs_count, default="auto", metavar="N",
                   help=(f"{what}: " if what else "") + f"make the next subnets' models (OpenVINO, LiteRT, onnxruntime "
                        f"on CPU) in N helper processes while the current one is timed, on the "
                        f"CPUs the profiler is not pinned to (run it as taskset -c 1 "
                        f"ofa-latency ...); 0: convert, then time, one subnet at a time; auto "
                        f"(default): 1 for int8 and LiteRT settings when this process is "
                        f"pinned and another CPU is free, else 0 (an int8 model made in the "
                        f"timing process tilted its table by the subnets' size, BENCHMARKS.md "
                        f"16.26)")


def add_litert_delegate_option(p, what="litert"):
    """``--litert-delegate``: XNNPACK (LiteRT's default) or its builtin kernels."""
    p.add_argument("--litert-delegate", default="xnnpack", choices=["xnnpack", "none"],
                   help=f"{what}: XNNPACK (default) or LiteRT's builtin kernels (none); "
                        f"recorded in the rows' versions")


def litert_delegate_option(args, backend: str | None) -> dict:
    """The backend option ``--litert-delegate`` asks for (``{}`` for the default), refused for
    a backend that is not LiteRT."""
    if args.litert_delegate == "xnnpack":
        return {}
    if backend != "litert":
        raise UsageError(f"--litert-delegate is a LiteRT setting; the backend is {backend}")
    return {"delegate": args.litert_delegate}


def add_hardware_options(p):
    p.add_argument("--hardware", help=HARDWARE_HELP)
    p.add_argument("--batch-size", type=int, default=None,
                   help="with --hardware GPU: the batch size")


def load_estimator(spec, args=None, hardware=None):
    """A :class:`~ofa_latency.LatencyEstimator` over what ``spec`` names (through the one
    resolver, :func:`ofa_latency.resolve.resolve_predictor`); ``--hardware`` from ``args``."""
    from ..estimator import LatencyEstimator

    if args is not None and hardware is None:
        hardware = getattr(args, "hardware", None)
    return LatencyEstimator.load(spec, hardware=hardware,
                                 batch_size=getattr(args, "batch_size", None) if args else None)


def print_metrics(m):
    print(f"n={m['n']}  RMSE {m['rmse_ms']:.4f} ms ({m['rmse_over_mean_pct']:.2f} % of mean)  "
          f"MAPE {m['mape_pct']:.2f} %  within +-5 % {m['within_5pct']:.1f} %  "
          f"within +-10 % {m['within_10pct']:.1f} %  Kendall tau {m['kendall_tau']:.3f}  "
          f"Spearman rho {m['spearman_rho']:.3f}")
    if "interval_coverage_pct" in m:
        print(f"{m['interval_nominal_pct']:g} % interval ({m['interval_source']} residuals, "
              f"width {m['interval_width_pct']:.1f} % of the prediction): covers "
              f"{m['interval_coverage_pct']:.1f} % of these subnets")


def resolutions(text):
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise UsageError(f"--resolutions {text!r}: comma-separated integers expected, e.g. "
                         f"160,176,192,208,224") from None


def add_weights_options(p):
    """The options of an export with the trained weights of OFA's supernet."""
    p.add_argument("--weights", metavar="FILE",
                   help="a checkpoint of the space's OFA supernet (OFA's own file, e.g. "
                        "ofa_mbv3_d234_e346_k357_w1.2, or a plain state dict; read without "
                        "pickle): the exported subnet carries its trained weights (default: "
                        "random weights, a latency stand-in)")
    p.add_argument("--calibration-images", metavar="DIR",
                   help="with --weights: a folder of images (e.g. ImageNet training images) "
                        "to recalibrate the subnet's batch norms on (as OFA does), calibrate "
                        "int8 ranges and check the export")
    p.add_argument("--calibration-count", type=positive_int, default=2000, metavar="N",
                   help="images used from --calibration-images (default 2000, as OFA)")
