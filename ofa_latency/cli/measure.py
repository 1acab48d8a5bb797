"""Commands from subnets to measurement tables: profile, hardware, model-cache, sample, import,
import-help, export, export-set, build-lut, export-layers, finish-lut."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ._common import (add_convert_jobs_option, add_litert_delegate_option, add_timing_options,
                      add_weights_options, litert_delegate_option, nonnegative_float,
                      parse_arch, parse_pairs, positive_int, resolutions, subnets_from_args,
                      timing_protocol, windows_count)


def _summary_table(df) -> str:
    cols = ["image_size", "latency_ms", "ci_pct", "spread_pct", "others_busy_pct", "n_runs",
            "split"]
    view = df[cols].copy()
    view.insert(0, "arch", [a if len(a) <= 40 else a[:37] + "..." for a in df["arch"]])
    return view.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def cmd_profile(args) -> int:
    from ..hardware import describe_hardware
    from ..datasets import noise_text, table_noise
    from ..profiling import create_backend, profile_subnets
    from ..spaces import get_space

    space = get_space(args.space)
    extra = {}
    if args.streams != 1:
        if args.backend != "openvino":
            raise UsageError(f"--streams is an OpenVINO setting; --backend is {args.backend}")
        extra["streams"] = args.streams
    extra |= litert_delegate_option(args, args.backend)
    backend = create_backend(args.backend, threads=args.threads, device=args.device,
                             precision=args.precision, **extra)
    if args.retime_above is not None and not args.archs and args.n is None:
        from ..datasets import read_measurements, subnets_of

        if not Path(args.out).exists():
            raise UsageError(f"--retime-above without --archs or --n re-times the subnets of "
                             f"--out, and {args.out} does not exist")
        old = read_measurements(args.out)
        subnets = subnets_of(old[old["space"] == space.name])
    else:
        if args.n is None:
            args.n = 10
        subnets = subnets_from_args(args, space, "profile")
    auto = args.windows == "auto"
    if auto and not args.target_ci_pct:
        raise UsageError("--windows auto compares one window's pooled half-width with "
                         "--target-ci-pct; it cannot be 0")
    windows = 1 if auto else args.windows
    protocol = timing_protocol(args, windows=windows, auto_windows=auto,
                               max_windows=max(windows, 2 if auto else 1, args.max_windows))
    hw = describe_hardware(args.backend, args.threads, args.device,
                           measure=args.backend != "fake", precision=args.precision)
    df = profile_subnets(space, backend, subnets, args.batch_size, args.out, protocol=protocol,
                         drift_correction=not args.no_drift_correction,
                         progress=not args.quiet, hardware=hw,
                         allow_mixed_settings=args.allow_mixed_settings,
                         allow_machine_change=args.allow_machine_change,
                         retime_above_pct=args.retime_above,
                         convert_jobs=args.convert_jobs)
    print(f"{len(df)} subnets of {space.name} on {backend.device_name()} "
          f"({args.backend}, {args.device}, {args.threads} thread(s), batch {args.batch_size}) "
          f"-> {args.out}")
    if len(df) <= args.show:
        print(_summary_table(df))
    else:
        print(f"latency_ms: min {df.latency_ms.min():.3f}  median {df.latency_ms.median():.3f}  "
              f"max {df.latency_ms.max():.3f}")
    print(noise_text(table_noise(df)))
    if df.attrs.get("auto_windows"):
        print(df.attrs["auto_windows"]["summary"])
    models = df.attrs.get("models") or {}
    if any(models.values()):
        print(f"models: {models['converted']} converted here, {models['from_cache']} read from "
              f"the model cache (ofa-latency model-cache), {models['subnets_ahead']} subnets' "
              f"made ahead by helper processes")
    return 0


def cmd_hardware(args) -> int:
    from ..hardware import describe_hardware
    from ..profiling import reference_fingerprint_ms

    desc = describe_hardware(args.backend, args.threads, args.device, measure=not args.no_measure)
    if not args.no_measure:
        desc["reference_subnet_ms"] = round(reference_fingerprint_ms(
            args.backend, args.threads, args.device, args.batch_size, args.space), 3)
        desc["reference_subnet"] = (f"{args.space} kernel 5, expand 4, depth 3, 176 px, batch "
                                    f"{args.batch_size}")
    if args.json:
        print(json.dumps(desc, indent=1))
    else:
        units = {"memory_gb": "GB", "memory_bandwidth_gbs": "GB/s", "matmul_gflops": "GFLOP/s",
                 "gpu_memory_gb": "GB", "gpu_bandwidth_gbs": "GB/s",
                 "gpu_launch_overhead_us": "us", "gpu_matmul_fp32_gflops": "GFLOP/s",
                 "reference_subnet_ms": "ms (speed fingerprint of this backend setting)"}
        for k, v in desc.items():
            print(f"{k:24s} {v} {units.get(k, '')}".rstrip())
    return 0


def cmd_model_cache(args) -> int:
    from ..profiling.modelstore import ENV_FOLDER, ENV_GB, model_store

    store = model_store()
    if store is None:
        print(f"model cache: off (${ENV_FOLDER}=off); models are converted in each process")
        return 0
    if args.clear:
        print(f"{store.folder}: {store.clear()} models removed")
        return 0
    entries = store.entries()
    size = sum(e[1] for e in entries)
    print(f"folder  {store.folder} (${ENV_FOLDER})")
    print(f"models  {len(entries)}, {size / 1e9:.3f} GB of {store.max_bytes / 1e9:.3f} GB "
          f"(${ENV_GB}; least recently used removed first)")
    return 0


def cmd_export(args) -> int:
    from ..export import FORMATS, export_model
    from ..spaces import get_space

    space = get_space(args.space)
    out = Path(args.out)
    suffix = FORMATS[args.format][2]
    if out.suffix != suffix:
        raise UsageError(f"--format {args.format} writes a {suffix} file; --out {out} has "
                         f"another suffix")
    res = export_model(space, parse_arch(args.arch), out, args.format,
                       batch_size=args.batch_size, weights=args.weights,
                       calibration_images=args.calibration_images,
                       n_calibration_images=args.calibration_count)
    a = res["agreement"]
    print(f"wrote {res['path']} ({args.format}: {res['runtime']} {res['precision']}, "
          f"{res['size_mb']:.1f} MB) and {res['config_path']}")
    w = res["weights"]
    print(f"weights: {w['source']}" + (f"; batch norms: {w['batchnorm']}" if "batchnorm" in w
                                       else ""))
    if res.get("quantization"):
        print(f"int8: {res['quantization']}" + (f", calibrated on {w['int8_calibration']}"
                                                if "int8_calibration" in w else
                                                ", calibrated on random inputs"))
    inputs = f"{a['n']} random inputs" if a["inputs"] == "random" else a["inputs"]
    print(f"against PyTorch fp32 on {inputs}: top-1 agreement "
          f"{100 * a['top1_agreement']:.0f} %, relative RMSE {a['rel_rmse']:.2e}, max abs "
          f"difference {a['max_abs_diff']:.3e}")
    return 0


def cmd_export_set(args) -> int:
    from ..export import FORMATS, export_set
    from ..profiling.runtimes import RUNTIME_PACKAGES
    from ..spaces import get_space

    space = get_space(args.space)
    subnets = subnets_from_args(args, space, "export")
    path = export_set(space, subnets, args.out, batch_size=args.batch_size,
                      progress=not args.quiet, fmt=args.format, jobs=args.jobs)
    size = sum(p.stat().st_size for p in Path(args.out).iterdir() if p.is_file())
    what = ("as ONNX structure ({:.1f} MB; the board fills random weights)" if
            args.format == "onnx" else f"as {args.format} models ({{:.1f}} MB)").format(size / 1e6)
    needs = RUNTIME_PACKAGES[FORMATS[args.format][0]]
    print(f"{len(subnets)} subnets and the reference subnet {what}, manifest {path}; on the "
          f"device (pip install --no-deps ofa-latency {needs} numpy): python -m "
          f"ofa_latency.board profile {args.out} --threads T --out board.csv")
    return 0


def cmd_import_help(args) -> int:
    import pandas as pd

    from ..datasets import HELP_SETTINGS, read_help

    help_dir = Path(args.help_dir)
    if not help_dir.is_dir():
        raise UsageError(f"HELP data folder not found: {help_dir}")
    settings = HELP_SETTINGS if args.setting == ["all"] else args.setting
    df = pd.concat([read_help(help_dir, s) for s in settings], ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"{len(df)} rows ({', '.join(settings)}) -> {args.out}")
    return 0


def cmd_import(args) -> int:
    from ..datasets import DEFAULT_SPACE, import_table

    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out} exists; choose a new file (import does not append)")
    setting = parse_pairs(args.set, "--set")
    space = setting.pop("space", None)
    if space is not None and args.space is not None and space != args.space:
        raise UsageError(f"--space {args.space} and --set space={space} disagree; give one")
    space = str(space or args.space or DEFAULT_SPACE)
    df = import_table(args.data, arch_column=args.arch_column,
                      latency_column=args.latency_column,
                      image_size_column=args.image_size_column, latency_unit=args.latency_unit,
                      setting=setting, space=space, source=args.source)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"{len(df)} rows of {space} ({df['split'].eq('train').sum()} train, "
          f"{df['split'].eq('test').sum()} test) -> {out}")
    return 0


def cmd_sample(args) -> int:
    from ..resolve import locate_predictor, resolve_predictor
    from ..sampling import select_subnets
    from ..spaces import get_space

    space = get_space(args.space)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; choose another file or pass --overwrite")
    if args.committee and args.strategy != "uncertain":
        raise UsageError("--committee is for --strategy uncertain")
    committee = []
    for name in args.committee or []:
        src = locate_predictor(name)
        if src.kind == "conditioned":
            from ..conditioned import ConditionedPredictor

            committee += ConditionedPredictor.load(src.path).tables_
        else:
            committee.append(resolve_predictor(name))
    res = resolutions(args.resolutions) if args.resolutions else None
    subs = select_subnets(space, args.n, strategy=args.strategy, seed=args.seed,
                          pool_factor=args.pool_factor, committee=committee, resolutions=res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in subs))
    sizes = sorted({s.image_size for s in subs})
    print(f"{len(subs)} subnets of {space.name} ({args.strategy}, seed {args.seed}; "
          f"{len(sizes)} resolutions {sizes[0]}..{sizes[-1]}) -> {out}; profile them with "
          f"'ofa-latency profile --archs {out} ...'")
    return 0


def cmd_build_lut(args) -> int:
    from ..hardware import describe_hardware
    from ..lut import build_lut
    from ..profiling import create_backend
    from ..spaces import get_space

    space = get_space(args.space)
    res = resolutions(args.resolutions)
    backend = create_backend(args.backend, threads=args.threads, device=args.device)
    protocol = timing_protocol(args)
    info = build_lut(space, backend, res, args.out, batch_size=args.batch_size,
                     protocol=protocol, progress=not args.quiet)
    hw = Path(args.out) / "hardware.json"
    if not hw.exists():
        hw.write_text(json.dumps(describe_hardware(args.backend, args.threads, args.device,
                                                   measure=args.backend != "fake"), indent=1))
    print(f"lookup table of {space.name} on {info['setting']['device']} ({args.backend}, "
          f"{args.threads} thread(s), batch {args.batch_size}): {info['n_layers']} layers at "
          f"{len(info['resolutions'])} resolutions, {info['device_seconds']:.0f} device-seconds "
          f"-> {args.out} (OFA's format: ofa.tutorial.latency_table reads it)")
    return 0


def cmd_export_layers(args) -> int:
    from ..lut import export_layers
    from ..spaces import get_space

    path = export_layers(get_space(args.space), resolutions(args.resolutions), args.out,
                         batch_size=args.batch_size, progress=not args.quiet)
    n = len(json.loads(path.read_text())["layers"])
    print(f"{n} layers + reference.onnx -> {args.out}; on the board: python -m "
          f"ofa_latency.board profile-layers {args.out} --threads T --out LUT_DIR")
    return 0


def cmd_finish_lut(args) -> int:
    from ..lut import finish_lut
    from ..spaces import get_space

    res = resolutions(args.resolutions) if args.resolutions else None
    info = finish_lut(get_space(args.space), args.out, res)
    print(f"lookup tables for {info['resolutions']} written to {args.out}")
    return 0


def register(sub) -> None:
    from ..profiling import list_backends
    from ..spaces import list_spaces

    pr = sub.add_parser("profile", help="measure subnets into a resumable CSV table")
    pr.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    pr.add_argument("--backend", default="onnxruntime", choices=list_backends())
    pr.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    pr.add_argument("--threads", type=positive_int, default=1)
    pr.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                    help="fp16: torch on CUDA; int8: onnxruntime, openvino, litert (post-"
                         "training static quantization, calibrated on random inputs)")
    pr.add_argument("--streams", type=positive_int, default=1,
                    help="openvino: NUM_STREAMS (default 1, one inference at a time; recorded "
                         "in the rows' versions)")
    add_litert_delegate_option(pr)
    pr.add_argument("--batch-size", type=positive_int, default=1)
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--n", type=int, default=None,
                     help="number of random subnets to sample (default 10)")
    src.add_argument("--archs", help="file with one arch dict per line: JSON or the Python "
                                     "dict OFA prints (either OFA form)")
    pr.add_argument("--seed", type=int, default=0, help="sampling seed")
    pr.add_argument("--out", required=True, help="CSV table to append to (resumes if it exists; "
                    "one writer at a time)")
    add_timing_options(pr)
    pr.add_argument("--windows", type=windows_count, default="auto",
                    help="time each subnet in this many windows, each with a fresh preparation "
                         "(more are added when two disagree, up to --max-windows); auto "
                         "(default): two while one window's half-width, pooled over the "
                         "subnets timed twice (the first 6, then every 5th), is wider than "
                         "--target-ci-pct, else one")
    pr.add_argument("--max-windows", type=positive_int, default=3)
    pr.add_argument("--no-drift-correction", action="store_true")
    pr.add_argument("--allow-mixed-settings", action="store_true",
                    help="append to a table that holds another backend/threads/batch setting")
    pr.add_argument("--allow-machine-change", action="store_true",
                    help="append although the machine's descriptor or speed (reference level) "
                         "differs from the table's")
    pr.add_argument("--retime-above", type=nonnegative_float, default=None, metavar="PCT",
                    help="measure again the subnets whose row's 90 %% half-width (ci_pct) is "
                         "above PCT %% (noisy windows; 0: every subnet, a second pass); the "
                         "table combines each subnet's rows, weighted by their intervals. "
                         "Without --archs/--n: every subnet of --out")
    add_convert_jobs_option(pr)
    pr.add_argument("--show", type=int, default=20, help="print the table when it has at most "
                                                          "this many rows")
    pr.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    pr.set_defaults(func=cmd_profile)

    hw = sub.add_parser("hardware", help="describe and measure this machine")
    hw.add_argument("--backend", default="torch", choices=list_backends())
    hw.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    hw.add_argument("--threads", type=positive_int, default=1)
    hw.add_argument("--json", action="store_true")
    hw.add_argument("--batch-size", type=positive_int, default=1)
    hw.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    hw.add_argument("--no-measure", action="store_true",
                    help="skip bandwidth, throughput and reference-subnet runs")
    hw.set_defaults(func=cmd_hardware)

    mc = sub.add_parser("model-cache", help="the folder of converted models (OpenVINO, LiteRT, "
                                            "onnxruntime int8) kept across runs")
    mc.add_argument("--clear", action="store_true", help="remove every stored model")
    mc.set_defaults(func=cmd_model_cache)

    sa = sub.add_parser("sample", help="choose which subnets to profile on a new device")
    sa.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    sa.add_argument("--n", type=positive_int, required=True)
    sa.add_argument("--resolutions", default=None,
                    help="comma-separated resolutions to draw from (e.g. those a lookup table "
                         "was built for; default all of the space's)")
    sa.add_argument("--committee", nargs="+", metavar="NAME_OR_DIR",
                    help="for --strategy uncertain: predictors of other devices (shipped names "
                         "or folders; a conditioned model gives its members)")
    sa.add_argument("--strategy", default="random",
                    choices=["random", "stratified", "diverse", "uncertain"],
                    help="default random: over 39 fine-tuning cases none of the others was "
                         "better on average (BENCHMARKS.md section 5.1)")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--pool-factor", type=positive_int, default=20,
                    help="choose among this many times n random subnets")
    sa.add_argument("--out", required=True, help="file to write, one arch per line (JSON)")
    sa.add_argument("--overwrite", action="store_true")
    sa.set_defaults(func=cmd_sample)

    from ..export import FORMATS

    ex = sub.add_parser("export", help="export a subnet for deployment (ONNX, OpenVINO, TFLite; "
                                       "fp32 or int8) and check it against PyTorch")
    ex.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    ex.add_argument("--arch", required=True,
                    help="arch dict as JSON or as OFA prints it (either OFA form)")
    ex.add_argument("--batch-size", type=positive_int, default=1)
    ex.add_argument("--format", default="onnx", choices=list(FORMATS),
                    help="onnx[-int8]: ONNX Runtime; openvino[-int8]: OpenVINO IR (.xml + "
                         ".bin, extra [openvino]); tflite[-int8]: LiteRT (extra [litert])")
    ex.add_argument("--out", required=True, help="output path (.onnx, .xml or .tflite)")
    add_weights_options(ex)
    ex.set_defaults(func=cmd_export)

    es = sub.add_parser("export-set", help="export subnets (and a manifest) for profiling on a "
                                           "device without PyTorch")
    es.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    es_src = es.add_mutually_exclusive_group()
    es_src.add_argument("--n", type=int, default=50, help="number of random subnets")
    es_src.add_argument("--archs", help="file with one arch per line (JSON or OFA's dict)")
    es.add_argument("--seed", type=int, default=0)
    es.add_argument("--batch-size", type=positive_int, default=1)
    es.add_argument("--format", default="onnx", choices=list(FORMATS),
                    help="onnx: weightless ONNX structure (smallest); the others write whole "
                         "models for the board's runtime (onnx-int8, openvino[-int8], "
                         "tflite[-int8])")
    es.add_argument("--out", required=True, help="folder to write")
    es.add_argument("--jobs", type=positive_int, default=1,
                    help="processes converting at once (e.g. the host's core count: LiteRT "
                         "converts one subnet in 11-27 s)")
    es.add_argument("--quiet", action="store_true")
    es.set_defaults(func=cmd_export_set)

    ih = sub.add_parser("import-help", help="convert HELP's latency files into the schema")
    ih.add_argument("--help-dir", required=True,
                    help="HELP's folder (ofa_archs.pt and latency/<gpu>_<batch>.pt)")
    ih.add_argument("--setting", nargs="+", default=["all"],
                    help="<gpu>_<batch> settings, or 'all'")
    ih.add_argument("--out", required=True)
    ih.set_defaults(func=cmd_import_help)

    im = sub.add_parser("import", help="turn another tool's latency CSV into the schema")
    im.add_argument("--data", required=True, help="the foreign CSV")
    im.add_argument("--arch-column", default="arch")
    im.add_argument("--latency-column", default="latency_ms")
    im.add_argument("--latency-unit", default="ms", choices=["ms", "s", "us"])
    im.add_argument("--image-size-column", default=None,
                    help="column of the resolution, when the arch does not hold 'r'")
    im.add_argument("--space", default=None, choices=list_spaces(),
                    help="search space of the archs (or --set space=...; default ofa_mbv3_w1.2)")
    im.add_argument("--set", nargs="*", metavar="COL=VALUE",
                    help="setting of every row, e.g. device='Jetson Orin' backend=onnxruntime "
                         "batch_size=1 threads=4 (also space=..., split=train|test)")
    im.add_argument("--source", default=None, help="who measured it (default: the file name)")
    im.add_argument("--out", required=True, help="CSV to write")
    im.set_defaults(func=cmd_import)

    bl = sub.add_parser("build-lut", help="measure every layer in isolation and write OFA's "
                                          "lookup-table format (resumable)")
    bl.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    bl.add_argument("--backend", default="onnxruntime", choices=list_backends())
    bl.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bl.add_argument("--threads", type=positive_int, default=1)
    bl.add_argument("--batch-size", type=positive_int, default=1)
    bl.add_argument("--resolutions", default="160,176,192,208,224")
    add_timing_options(bl, max_rounds=10)
    bl.add_argument("--out", required=True, help="folder for <R>_lookup_table.yaml, layers.csv "
                    "and build.json (resumes if it exists)")
    bl.add_argument("--quiet", action="store_true")
    bl.set_defaults(func=cmd_build_lut)

    el = sub.add_parser("export-layers", help="every LUT layer as ONNX structure, for timing on "
                                             "a board (python -m ofa_latency.board profile-layers)")
    el.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    el.add_argument("--resolutions", default="160,176,192,208,224")
    el.add_argument("--batch-size", type=positive_int, default=1)
    el.add_argument("--out", required=True)
    el.add_argument("--quiet", action="store_true")
    el.set_defaults(func=cmd_export_layers)

    fl = sub.add_parser("finish-lut", help="write OFA's YAML files from a board's layer timings")
    fl.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    fl.add_argument("--resolutions", default=None, help="default: those the board timed")
    fl.add_argument("--out", required=True, help="the folder profile-layers wrote")
    fl.set_defaults(func=cmd_finish_lut)
