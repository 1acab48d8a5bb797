"""``ofa-latency`` command line: one small function per command over the public API.

Exit codes: 0 success, 2 a mistake in what was asked (bad value, unknown name, missing or
malformed file: ``error: ...`` on stderr, no traceback), 130 interrupted (Ctrl-C), 1 an
unexpected error (a bug: rerun with ``--debug`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import UsageError, run_command

__all__ = ["main", "build_parser"]

logger = logging.getLogger("ofa_latency")

def _read_archs_file(path, space):
    """Archs from a file, one per line: JSON or the Python-dict form OFA prints."""
    from .spaces import arch_from_text

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


def _subnets_from_args(args, space, verb):
    """``--archs FILE`` or ``--n N --seed S`` sampled subnets."""
    if args.archs:
        return _read_archs_file(args.archs, space)
    if args.n < 1:
        raise UsageError(f"--n {args.n}: the number of subnets to {verb} must be >= 1")
    return space.sample(args.n, seed=args.seed)


def _parse_arch(text):
    from .spaces import arch_from_text

    return arch_from_text(text, "--arch")


def _check_out_folder(out):
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} exists and is a file; a predictor is saved as a folder")


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
    subnets = _subnets_from_args(args, space, "profile")
    protocol = TimingProtocol(rounds=args.rounds, runs_per_round=args.runs_per_round,
                              max_rounds=max(args.rounds, args.max_rounds), windows=args.windows,
                              max_windows=max(args.windows, args.max_windows))
    hw = describe_hardware(args.backend, args.threads, args.device,
                           measure=args.backend != "fake")
    df = profile_subnets(space, backend, subnets, args.batch_size, args.out, protocol=protocol,
                         drift_correction=not args.no_drift_correction,
                         progress=not args.quiet, hardware=hw,
                         allow_mixed_settings=args.allow_mixed_settings,
                         allow_machine_change=args.allow_machine_change)
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
    from .profiling import reference_fingerprint_ms

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


def cmd_export(args) -> int:
    from .export import export_onnx
    from .spaces import get_space

    space = get_space(args.space)
    res = export_onnx(space, _parse_arch(args.arch), args.out, batch_size=args.batch_size)
    print(f"wrote {res['onnx_path']} ({res['size_mb']:.1f} MB) and {res['config_path']}")
    print(f"max abs difference ONNX Runtime vs PyTorch: {res['max_abs_diff']:.3e}")
    return 0


def cmd_export_set(args) -> int:
    from .export import export_set
    from .spaces import get_space

    space = get_space(args.space)
    subnets = _subnets_from_args(args, space, "export")
    path = export_set(space, subnets, args.out, batch_size=args.batch_size,
                      progress=not args.quiet)
    print(f"{len(subnets)} subnets and the reference subnet as ONNX, manifest {path}; on the "
          f"device: python -m ofa_latency.board profile {args.out} --threads T --out board.csv")
    return 0


def cmd_import_help(args) -> int:
    import pandas as pd
    from .datasets import HELP_SETTINGS, read_help

    help_dir = Path(args.help_dir)
    if not help_dir.is_dir():
        raise UsageError(f"HELP data folder not found: {help_dir}")
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
            raise UsageError(f"{what} {item!r} is not of the form key=value")
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


def _predictor_dir(name_or_dir) -> Path:
    """The folder of a shipped predictor's name or of a predictor folder; errors say which
    was meant."""
    from .pretrained import list_pretrained, pretrained_path

    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if name_or_dir in {e["name"] for e in list_pretrained()}:
        return pretrained_path(name_or_dir)
    if path.exists():
        raise UsageError(f"--predictor {name_or_dir} is a file; expected a predictor folder "
                         f"(with config.json) or a shipped predictor's name")
    if os.sep in name_or_dir or "/" in name_or_dir or name_or_dir.startswith("."):
        raise UsageError(f"predictor folder not found: {name_or_dir}")
    raise UsageError(f"no shipped predictor called {name_or_dir!r} and no folder of that name; "
                     f"'ofa-latency list' shows the shipped predictors")


def _hardware_arg(args):
    from .conditioned import read_hardware

    hw = getattr(args, "hardware", None)
    return None if hw is None else read_hardware(hw, getattr(args, "batch_size", None))


def _load_estimator(name_or_dir, hardware=None):
    """An estimator over a shipped predictor's name or a predictor folder (a conditioned one
    resolved for ``hardware``)."""
    from .estimator import LatencyEstimator

    return LatencyEstimator.load(_predictor_dir(name_or_dir), hardware=hardware)


def cmd_train(args) -> int:
    from .training import train_on_table

    _check_out_folder(args.out)
    if args.conditioned:
        return _train_conditioned(args)
    if len(args.data) > 1:
        raise UsageError(f"{len(args.data)} tables given to --data; one predictor is fitted on "
                         f"one table (several are for --conditioned)")
    args.data = args.data[0]
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


def _train_conditioned(args) -> int:
    from .conditioned import ConditionedPredictor, HardwareDescriptor
    from .datasets import SETTING_COLUMNS, read_measurements, subnets_of
    from .evaluation import latency_metrics
    from .profiling import table_hardware_path

    filters = {k: str(v) for k, v in _parse_pairs(args.filter, "--filter").items()}
    from .spaces import get_space

    refs = None
    tables, descs, names = [], [], []
    for path in args.data:
        df = read_measurements(path, filters)
        if df.empty:
            raise UsageError(f"{path}: no rows (check --filter)")
        if refs is None:
            refs = _read_archs_file(args.references, get_space(df["space"].iloc[0])) \
                if args.references else []
        hw_path = table_hardware_path(path)
        hw = json.loads(hw_path.read_text()) if hw_path.exists() else None
        cols = [c for c in SETTING_COLUMNS if c in df.columns]
        for _, rows in df.groupby(cols, dropna=False, sort=True):
            train = rows[rows.split == "train"]
            if len(train) < 20:
                raise UsageError(f"{path}: a setting with {len(train)} train rows "
                                 f"({rows.iloc[0]['device']}, batch {rows.iloc[0]['batch_size']}); "
                                 f"need at least 20 per member (drop it with --filter)")
            d = HardwareDescriptor.from_table(rows, hw, str(path), references=refs)
            tables.append(rows)
            descs.append(d)
            names.append(f"{d.name} / {d.backend or '-'} / batch {d.batch_size}")
    model = ConditionedPredictor(space=tables[0]["space"].iloc[0], member_kind=args.model,
                                 member_params=_parse_pairs(args.param, "--param"))
    model.fit([t[t.split == "train"] for t in tables], descs, references=refs,
              progress=not args.quiet)
    model.save(args.out, metadata={"data": [str(p) for p in args.data], "filters": filters})
    print(f"conditioned {args.model} over {len(tables)} settings -> {args.out}")
    for name, t, table in zip(names, tables, model.tables_):
        test = t[t.split == "test"]
        if len(test) >= 2:
            m = latency_metrics(test.latency_ms.to_numpy(), table.predict_encoded(
                model.space_.encode(subnets_of(test))))
            print(f"  {name}: held-out MAPE {m['mape_pct']:.2f} %, Kendall tau "
                  f"{m['kendall_tau']:.3f} ({len(test)} subnets)")
        else:
            print(f"  {name}: no held-out rows")
    return 0


def _warn_if_other_setting(est, df, data_path):
    """Evaluating one device's predictor on another device's data is allowed (it measures
    transfer), but it must not pass unnoticed."""
    from .datasets import setting_differences
    from .hardware import hardware_differences
    from .profiling import table_hardware_path
    from .training import single_setting

    data_setting = single_setting(df, str(data_path))
    diffs = setting_differences(est.setting or {}, data_setting)
    if diffs:
        logger.warning("the predictor was fitted on another setting than this data's (%s): "
                       "the metrics below measure transfer between devices",
                       "; ".join(diffs))
    hw_path = table_hardware_path(data_path)
    if est.hardware and hw_path.exists():
        hw = json.loads(hw_path.read_text())
        diffs = hardware_differences(est.hardware, hw)
        if diffs:
            logger.warning("the predictor's data and this data come from different machines "
                           "(%s)", "; ".join(diffs))


def cmd_evaluate(args) -> int:
    from .datasets import read_measurements
    from .evaluation import latency_metrics, plot_predicted_vs_measured

    est = _load_estimator(args.predictor, _hardware_arg(args))
    df = read_measurements(args.data, {k: str(v) for k, v in
                                       _parse_pairs(args.filter, "--filter").items()})
    if len(df):
        _warn_if_other_setting(est, df, args.data)  # one setting, and is it the predictor's?
    if args.split != "all":
        df = df[df.split == args.split]
    if len(df) < 2:
        raise UsageError(f"{args.data}: {len(df)} rows to evaluate after --filter and "
                         f"--split {args.split}; need at least 2")
    pred = est.predictor.predict(df)
    m = latency_metrics(df.latency_ms.to_numpy(), pred)
    _print_metrics(m)
    if args.plot:
        plot_predicted_vs_measured(df.latency_ms.to_numpy(), pred, args.plot,
                                   title=f"{args.predictor} on {Path(args.data).name} ({args.split})")
        print(f"plot -> {args.plot}")
    return 0


def cmd_predict(args) -> int:
    est = _load_estimator(args.predictor, _hardware_arg(args))
    print(f"{est.get_efficiency(_parse_arch(args.arch)):.4f} ms")
    return 0


def cmd_finetune(args) -> int:
    from .adapt import finetune, save_adapted
    from .conditioned import ConditionedPredictor, is_conditioned, read_hardware
    from .estimator import LatencyEstimator
    from .predictors import list_predictors
    from .datasets import read_measurements
    from .profiling import table_hardware_path
    from .training import single_setting, training_device_seconds

    _check_out_folder(args.out)
    filters = {k: str(v) for k, v in _parse_pairs(args.filter, "--filter").items()}
    df = read_measurements(args.data, filters)
    setting = single_setting(df, str(args.data))
    if args.split != "all":
        df = df[df.split == args.split]
    if len(df) < 2:
        raise UsageError(f"{args.data}: {len(df)} rows after --filter and --split {args.split}; "
                         f"need at least 2 measured subnets")
    others = [_load_estimator(name).predictor for name in (args.mix or [])]
    base_dir = _predictor_dir(args.base)
    if is_conditioned(base_dir):
        # resolved for the new device (its descriptor: --hardware, or the data's reference
        # level and its rows of the model's reference subnets), the members offered to 'mix'
        model = ConditionedPredictor.load(base_dir)
        hw = _hardware_arg(args) or read_hardware(args.data, references=model.references_)
        est = LatencyEstimator(model.resolve(hw, random_state=args.seed), check_machine=False)
        others += model.member_predictors(like=hw)
        kind = model.member_kind if model.member_kind in list_predictors() else None
        logger.info("conditioned base resolved for %s: %s", hw.name, est.predictor.conditioning_)
    else:
        est, kind = _load_estimator(args.base, _hardware_arg(args)), None
    pred = finetune(est.predictor, df, methods=args.methods, cv=args.cv,
                    random_state=args.seed, base_name=args.base, others=others, kind=kind)
    rep = pred.adaptation_
    hw = table_hardware_path(args.data)
    save_adapted(pred, args.out, metadata={
        "setting": setting, "hardware": json.loads(hw.read_text()) if hw.exists() else None,
        "data": {"path": str(args.data), "filters": filters, "n_train": len(df)},
        "device_seconds": training_device_seconds(df, len(df))})
    if rep.cv_mape_pct:
        print(f"{rep.folds}-fold cross-validated MAPE on {rep.n_samples} subnets:")
        for m, v in sorted(rep.cv_mape_pct.items(), key=lambda kv: kv[1]):
            print(f"  {m:16s} {v:7.2f} %{'  <- chosen' if m == rep.method else ''}")
    print(f"chosen: {rep.method} ({rep.reason}); fitted on {rep.n_samples} subnets in "
          f"{rep.seconds:.1f} s -> {args.out}")
    return 0


def cmd_sample(args) -> int:
    from .sampling import select_subnets
    from .spaces import get_space

    space = get_space(args.space)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; choose another file or pass --overwrite")
    committee = []
    for name in args.committee or []:
        from .conditioned import ConditionedPredictor, is_conditioned

        d = _predictor_dir(name)
        committee += (ConditionedPredictor.load(d).tables_ if is_conditioned(d)
                      else [_load_estimator(d).predictor])
    if committee and args.strategy != "uncertain":
        raise UsageError("--committee is for --strategy uncertain")
    subs = select_subnets(space, args.n, strategy=args.strategy, seed=args.seed,
                          pool_factor=args.pool_factor, committee=committee)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in subs))
    sizes = sorted({s.image_size for s in subs})
    print(f"{len(subs)} subnets of {space.name} ({args.strategy}, seed {args.seed}; "
          f"{len(sizes)} resolutions {sizes[0]}..{sizes[-1]}) -> {out}; profile them with "
          f"'ofa-latency profile --archs {out} ...'")
    return 0


def _accuracy_predictor(args, space):
    from .search import MacsProxy, OFAAccuracyPredictor, SEARCH_RESOLUTIONS

    res = [int(r) for r in args.resolutions.split(",")] if args.resolutions else SEARCH_RESOLUTIONS
    if args.proxy:
        if args.accuracy_predictor:
            raise UsageError("--proxy macs and --accuracy-predictor exclude each other")
        logger.warning("searching with a MACs proxy: results are NOT accuracy predictions")
        return MacsProxy(space, resolutions=res)
    return OFAAccuracyPredictor.load(args.accuracy_predictor,
                                     download=args.download_accuracy_predictor, space=space,
                                     resolutions=res)


def _print_verification(rounds):
    for k, ver in enumerate(rounds, 1):
        print(f"verification round {k} (search budget {ver.search_budget_ms:.3f} ms, measured "
              f"budget {ver.budget_ms:.3f} ms):")
        print(f"  {'#':>2s} {'accuracy':>9s} {'predicted ms':>13s} {'measured ms':>12s} "
              f"{'meas/pred':>9s}  meets")
        for i, r in enumerate(ver.rows):
            mark = "  <- chosen" if i == ver.chosen else ""
            print(f"  {i:2d} {r['accuracy']:9.4f} {r['predicted_ms']:13.3f} "
                  f"{r['measured_ms']:12.3f} {r['measured_ms'] / r['predicted_ms']:9.3f}  "
                  f"{'yes' if r['meets'] else 'NO'}{mark}")


def cmd_search(args) -> int:
    from .search import Constraint, search
    from .search.workflow import deploy, search_and_verify

    if len(args.estimator) != len(args.latency_ms):
        raise UsageError(f"{len(args.estimator)} --estimator and {len(args.latency_ms)} "
                         f"--latency-ms given; give one budget per estimator, in order")
    _check_out_folder(args.out)
    hw = _hardware_arg(args)
    ests = [_load_estimator(e, hw if i == 0 else None) for i, e in enumerate(args.estimator)]
    space = ests[0].space.name
    if args.space and args.space != space:
        raise UsageError(f"--space {args.space} but the estimator is for {space}")
    acc = _accuracy_predictor(args, space)
    constraints = [Constraint(e, float(b), name) for e, b, name in
                   zip(ests, args.latency_ms, args.estimator)]
    params = {"lam": args.lam} if args.finder == "gradient" and args.lam is not None else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ver = None
    if args.verify:
        from .profiling import create_backend

        backend = create_backend(args.verify, threads=args.threads, device=args.device)
        res, rounds = search_and_verify(constraints, acc, backend, args.batch_size,
                                        out / "verify.csv", finder=args.finder, seed=args.seed,
                                        top_k=args.top_k, progress=not args.quiet, **params)
        _print_verification(rounds)
        ver = rounds[-1]
        if ver.chosen is None:
            raise UsageError(f"no candidate met {args.latency_ms[0]} ms measured on "
                             f"{args.verify} after {len(rounds)} searches; see {out / 'verify.csv'}")
        arch = ver.chosen_row["arch"]
    else:
        res = search(constraints, acc, args.finder, seed=args.seed, top_k=args.top_k, **params)
        arch = res.arch
    (out / "search.json").write_text(json.dumps(res.to_dict(), indent=1))
    rep = deploy(out, ests[0].space, arch, res, ver, batch_size=args.batch_size,
                 setting=ests[0].setting, hardware=ests[0].hardware, estimators=args.estimator,
                 export=not args.no_export)
    print((out / "summary.md").read_text())
    print(f"search: {res.finder} finder, {res.n_evaluated} subnets scored in {res.seconds:.2f} s; "
          f"files in {out}/ (report.json, summary.md{', subnet.onnx' if rep.get('onnx') else ''})")
    return 0


def cmd_demo(args) -> int:
    """Profile -> fine-tune -> search -> verify -> export, on this machine (see README)."""
    import numpy as np

    from .adapt import finetune, save_adapted
    from .estimator import LatencyEstimator
    from .hardware import describe_hardware
    from .profiling import create_backend, profile_subnets, table_hardware_path
    from .search import Constraint, OFAAccuracyPredictor, MacsProxy
    from .search.workflow import deploy, search_and_verify
    from .spaces import get_space
    from .training import single_setting

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space("ofa_mbv3_w1.2")
    if args.proxy:
        acc = MacsProxy(space.name)
    else:
        shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / \
            "ofa_acc_predictor" / "acc_predictor.pth"
        path = args.accuracy_predictor or (shared if shared.is_file() else None)
        acc = OFAAccuracyPredictor.load(path, download=True)
    backend = create_backend("onnxruntime", threads=1)
    table = out / "measurements.csv"
    print(f"[1/5] profiling {args.n} random subnets on this machine (onnxruntime, 1 thread) "
          f"-> {table}")
    hw = describe_hardware("onnxruntime", 1, "cpu",
                           measure=not table_hardware_path(table).exists())
    df = profile_subnets(space, backend, space.sample(args.n, seed=args.seed), 1, table,
                         progress=not args.quiet, hardware=hw)
    print(f"      {len(df)} subnets: {df.latency_ms.min():.2f} .. {df.latency_ms.max():.2f} ms "
          f"(median {df.latency_ms.median():.2f})")
    pred_dir = out / "predictor"
    print(f"[2/5] fine-tuning the shipped {args.base} to this machine -> {pred_dir}")
    base = LatencyEstimator.from_pretrained(args.base, check_machine=False).predictor
    ft = finetune(base, df, random_state=args.seed, base_name=args.base)
    hw_path = table_hardware_path(table)
    save_adapted(ft, pred_dir, metadata={
        "setting": single_setting(df, str(table)),
        "hardware": json.loads(hw_path.read_text()) if hw_path.exists() else None,
        "data": {"path": str(table), "n_train": len(df)}})
    rep = ft.adaptation_
    print(f"      method {rep.method} (cross-validated MAPE "
          f"{rep.cv_mape_pct.get(rep.method, float('nan')):.2f} %), {rep.seconds:.1f} s")
    budget = args.latency_ms or round(float(np.quantile(df.latency_ms, 0.3)), 1)
    est = LatencyEstimator.load(pred_dir, check_machine=False)
    print(f"[3/5] searching the most {'MACs-heavy (proxy)' if acc.is_proxy else 'accurate'} "
          f"subnet under {budget} ms ({'given' if args.latency_ms else '30th percentile of the measured subnets'})")
    print(f"[4/5] verifying the top {args.top_k} candidates on this machine")
    res, rounds = search_and_verify([Constraint(est, budget, "this machine")], acc, backend, 1,
                                    out / "verify.csv", seed=args.seed, top_k=args.top_k,
                                    progress=not args.quiet)
    _print_verification(rounds)
    ver = rounds[-1]
    if ver.chosen is None:
        raise UsageError(f"no candidate met {budget} ms measured; see {out / 'verify.csv'}")
    print(f"[5/5] exporting the chosen subnet -> {out / 'subnet.onnx'}")
    deploy(out, space, ver.chosen_row["arch"], res, ver, setting=est.setting,
           hardware=est.hardware, estimators=[str(pred_dir)])
    print()
    print((out / "summary.md").read_text())
    return 0


def cmd_build_lut(args) -> int:
    from .hardware import describe_hardware
    from .lut import build_lut
    from .profiling import TimingProtocol, create_backend
    from .spaces import get_space

    space = get_space(args.space)
    res = _resolutions(args.resolutions)
    backend = create_backend(args.backend, threads=args.threads, device=args.device)
    protocol = TimingProtocol(rounds=args.rounds, max_rounds=max(args.rounds, args.max_rounds))
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
    from .lut import export_layers
    from .spaces import get_space

    path = export_layers(get_space(args.space), _resolutions(args.resolutions), args.out,
                         batch_size=args.batch_size, progress=not args.quiet)
    n = len(json.loads(path.read_text())["layers"])
    print(f"{n} layers + reference.onnx -> {args.out}; on the board: python -m "
          f"ofa_latency.board profile-layers {args.out} --threads T --out LUT_DIR")
    return 0


def cmd_finish_lut(args) -> int:
    from .lut import finish_lut
    from .spaces import get_space

    res = _resolutions(args.resolutions) if args.resolutions else None
    info = finish_lut(get_space(args.space), args.out, res)
    print(f"lookup tables for {info['resolutions']} written to {args.out}")
    return 0


def _resolutions(text):
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise UsageError(f"--resolutions {text!r}: comma-separated integers expected, e.g. "
                         f"160,176,192,208,224") from None


def _comparand(name_or_dir):
    """(label, predictor, device-seconds or None) for a predictor folder, a shipped name or a
    LUT folder (OFA's YAML files; raw)."""
    from .predictors import create_predictor
    from .training import lut_build_seconds

    path = Path(name_or_dir)
    if path.is_dir() and not (path / "config.json").exists() and \
            any(path.glob("*_lookup_table.yaml")):
        pred = create_predictor("lut", lut_dir=str(path)).fit()
        return path.name, pred, lut_build_seconds(path)
    est = _load_estimator(name_or_dir)
    meta = (getattr(est.predictor, "config_", None) or {}).get("metadata") or {}
    return Path(str(name_or_dir)).name, est.predictor, meta.get("device_seconds")


def cmd_compare(args) -> int:
    from .datasets import read_measurements
    from .evaluation import compare, plot_compare

    df = read_measurements(args.data, {k: str(v) for k, v in
                                       _parse_pairs(args.filter, "--filter").items()})
    if args.split != "all":
        df = df[df.split == args.split]
    if len(df) < 2:
        raise UsageError(f"{args.data}: {len(df)} rows after --filter and --split {args.split}; "
                         f"need at least 2")
    preds, costs = {}, {}
    for item in args.predictors:
        label, pred, cost = _comparand(item)
        if label in preds:
            label = item
        preds[label] = pred.predict(df)
        costs[label] = cost
    y = df.latency_ms.to_numpy()
    rows = compare(y, preds, costs)
    print(f"{len(df)} subnets of {args.data} ({args.split}):")
    print(f"  {'predictor':40s} {'RMSE ms':>9s} {'MAPE %':>7s} {'+-10 %':>7s} {'tau':>6s} "
          f"{'device-s':>9s}")
    for r in rows:
        ds = "?" if r["device_seconds"] is None else f"{r['device_seconds']:.0f}"
        print(f"  {r['name']:40s} {r['rmse_ms']:9.4f} {r['mape_pct']:7.2f} "
              f"{r['within_10pct']:7.1f} {r['kendall_tau']:6.3f} {ds:>9s}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot_compare(y, preds, rows, args.plot, title=f"{Path(args.data).name} ({args.split})")
        print(f"plot -> {args.plot}")
    return 0


def cmd_list(args) -> int:
    from .pretrained import list_pretrained

    entries = list_pretrained()
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    rows = [("name", "device", "backend", "threads", "batch", "MAPE %", "tau")]
    for e in entries:
        m = e.get("heldout_metrics") or {}
        rows.append((e["name"], str(e.get("device")), str(e.get("backend")),
                     "-" if e.get("threads") is None else str(e["threads"]),
                     str(e.get("batch_size")), f"{m.get('mape_pct', float('nan')):.2f}",
                     f"{m.get('kendall_tau', float('nan')):.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) if i < 3 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))))
    print(f"{len(entries)} shipped predictors; metrics on each setting's held-out subnets "
          f"(tau below 0.8: rankings of close subnets are unreliable)")
    return 0


def cmd_import(args) -> int:
    from .datasets import import_table

    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out} exists; choose a new file (import does not append)")
    setting = {k: v for k, v in _parse_pairs(args.set, "--set").items()}
    df = import_table(args.data, arch_column=args.arch_column,
                      latency_column=args.latency_column,
                      image_size_column=args.image_size_column, latency_unit=args.latency_unit,
                      setting=setting, space=args.space, source=args.source)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"{len(df)} rows of {args.space} ({df['split'].eq('train').sum()} train, "
          f"{df['split'].eq('test').sum()} test) -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .profiling import list_backends
    from .spaces import list_spaces

    p = argparse.ArgumentParser(prog="ofa-latency", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of any error (for bug reports)")
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
    src.add_argument("--archs", help="file with one arch dict per line: JSON or the Python "
                                     "dict OFA prints (either OFA form)")
    pr.add_argument("--seed", type=int, default=0, help="sampling seed")
    pr.add_argument("--out", required=True, help="CSV table to append to (resumes if it exists)")
    pr.add_argument("--rounds", type=int, default=6)
    pr.add_argument("--runs-per-round", type=int, default=3)
    pr.add_argument("--max-rounds", type=int, default=10)
    pr.add_argument("--windows", type=int, default=1,
                    help="time each subnet in this many windows, each with a fresh preparation "
                         "(more are added when two disagree, up to --max-windows)")
    pr.add_argument("--max-windows", type=int, default=3)
    pr.add_argument("--no-drift-correction", action="store_true")
    pr.add_argument("--allow-mixed-settings", action="store_true",
                    help="append to a table that holds another backend/threads/batch setting")
    pr.add_argument("--allow-machine-change", action="store_true",
                    help="append although the machine's descriptor or speed (reference level) "
                         "differs from the table's")
    pr.add_argument("--show", type=int, default=20, help="print the table when it has at most "
                                                          "this many rows")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_profile)

    hw = sub.add_parser("hardware", help="describe and measure this machine")
    hw.add_argument("--backend", default="torch", choices=list_backends())
    hw.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    hw.add_argument("--threads", type=int, default=1)
    hw.add_argument("--json", action="store_true")
    hw.add_argument("--batch-size", type=int, default=1)
    hw.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    hw.add_argument("--no-measure", action="store_true",
                    help="skip bandwidth, throughput and reference-subnet runs")
    hw.set_defaults(func=cmd_hardware)

    ex = sub.add_parser("export", help="export a subnet to ONNX and check it against PyTorch")
    ex.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    ex.add_argument("--arch", required=True,
                    help="arch dict as JSON or as OFA prints it (either OFA form)")
    ex.add_argument("--batch-size", type=int, default=1)
    ex.add_argument("--out", required=True, help="output .onnx path")
    ex.set_defaults(func=cmd_export)

    es = sub.add_parser("export-set", help="export subnets as ONNX files (and a manifest) for "
                                           "profiling on a device without PyTorch")
    es.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    es_src = es.add_mutually_exclusive_group()
    es_src.add_argument("--n", type=int, default=50, help="number of random subnets")
    es_src.add_argument("--archs", help="file with one arch per line (JSON or OFA's dict)")
    es.add_argument("--seed", type=int, default=0)
    es.add_argument("--batch-size", type=int, default=1)
    es.add_argument("--out", required=True, help="folder to write")
    es.add_argument("--quiet", action="store_true")
    es.set_defaults(func=cmd_export_set)

    ih = sub.add_parser("import-help", help="convert HELP's latency files into the schema")
    ih.add_argument("--help-dir", default="../shared/data/help_ofa_mbv3_w1.2")
    ih.add_argument("--setting", nargs="+", default=["all"],
                    help="<gpu>_<batch> settings, or 'all'")
    ih.add_argument("--out", required=True)
    ih.set_defaults(func=cmd_import_help)

    tr = sub.add_parser("train", help="fit a predictor on one setting of a measurement table "
                                      "(or a hardware-conditioned one on several)")
    tr.add_argument("--data", required=True, nargs="+", help="measurement CSV (several, each "
                    "split into its settings, with --conditioned)")
    tr.add_argument("--conditioned", action="store_true",
                    help="one model over every setting of the tables, resolved for a new device "
                         "from its descriptor (predict/evaluate/finetune --hardware)")
    tr.add_argument("--references", help="with --conditioned: a file of reference subnets (one "
                    "arch per line) a new device should measure for its descriptor")
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
    ev.add_argument("--hardware", help="a hardware-conditioned predictor's target: a descriptor JSON, a measurement table of the device, or a GPU key/name of data/hardware.csv (with --batch-size)")
    ev.add_argument("--batch-size", type=int, default=None,
                    help="with --hardware GPU: the batch size")
    ev.set_defaults(func=cmd_evaluate)

    pd_ = sub.add_parser("predict", help="predicted latency of one subnet")
    pd_.add_argument("--predictor", required=True, help="predictor folder or shipped name")
    pd_.add_argument("--arch", required=True,
                     help="arch dict as JSON or as OFA prints it (either OFA form)")
    pd_.add_argument("--hardware", help="a hardware-conditioned predictor's target: a descriptor JSON, a measurement table of the device, or a GPU key/name of data/hardware.csv (with --batch-size)")
    pd_.add_argument("--batch-size", type=int, default=None,
                    help="with --hardware GPU: the batch size")
    pd_.set_defaults(func=cmd_predict)

    ft = sub.add_parser("finetune", help="adapt a shipped or saved predictor to a new device "
                                         "from a few measured subnets")
    ft.add_argument("--base", required=True, help="shipped predictor name or predictor folder")
    ft.add_argument("--data", required=True, help="the new device's measurement table")
    ft.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    ft.add_argument("--split", default="all", choices=["all", "train", "test"],
                    help="rows to fine-tune on (default all)")
    ft.add_argument("--methods", nargs="+", default=None,
                    help="candidate methods (default: all; chosen by cross-validation)")
    ft.add_argument("--mix", nargs="+", metavar="NAME_OR_DIR",
                    help="more bases (other devices' predictors): adds the 'mix' method, a "
                         "non-negative combination of all bases' tables")
    ft.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--out", required=True, help="predictor folder to write")
    ft.add_argument("--hardware", help="a hardware-conditioned predictor's target: a descriptor JSON, a measurement table of the device, or a GPU key/name of data/hardware.csv (with --batch-size)")
    ft.add_argument("--batch-size", type=int, default=None,
                    help="with --hardware GPU: the batch size")
    ft.set_defaults(func=cmd_finetune)

    sa = sub.add_parser("sample", help="choose which subnets to profile on a new device")
    sa.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    sa.add_argument("--n", type=int, required=True)
    sa.add_argument("--committee", nargs="+", metavar="NAME_OR_DIR",
                    help="for --strategy uncertain: predictors of other devices (shipped names "
                         "or folders; a conditioned model gives its members)")
    sa.add_argument("--strategy", default="random",
                    choices=["random", "stratified", "diverse", "uncertain"],
                    help="default random: over 39 fine-tuning cases none of the others was "
                         "better on average (BENCHMARKS.md section 5.1)")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--pool-factor", type=int, default=20,
                    help="choose among this many times n random subnets")
    sa.add_argument("--out", required=True, help="file to write, one arch per line (JSON)")
    sa.add_argument("--overwrite", action="store_true")
    sa.set_defaults(func=cmd_sample)

    se = sub.add_parser("search", help="the most accurate subnet under latency budgets, "
                                       "verified on the device and exported")
    se.add_argument("--space", default=None, help="checked against the estimators' space")
    se.add_argument("--estimator", action="append", required=True, metavar="NAME_OR_DIR",
                    help="a latency predictor (shipped name or folder); repeat with "
                         "--latency-ms for several devices")
    se.add_argument("--latency-ms", action="append", required=True, type=float,
                    help="the budget for the estimator at the same position")
    se.add_argument("--hardware", help="for a conditioned first estimator: the target "
                    "(descriptor JSON, measurement table or GPU name with --batch-size)")
    se.add_argument("--accuracy-predictor", help="OFA's acc_predictor.pth (default: "
                    "$OFA_LATENCY_ACC_PREDICTOR or OFA's cache ~/.torch/acc_predictor.pth)")
    se.add_argument("--download-accuracy-predictor", action="store_true",
                    help="fetch OFA's accuracy predictor when not found (needs internet)")
    se.add_argument("--proxy", choices=["macs"], help="no accuracy predictor: maximise MACs "
                    "instead (results labelled as a proxy)")
    se.add_argument("--finder", default="fast", choices=["fast", "ofa", "gradient"])
    se.add_argument("--lambda", dest="lam", type=float, default=None,
                    help="gradient finder: the latency weight (default: bisection to the budget)")
    se.add_argument("--resolutions", default=None,
                    help="comma-separated resolutions to search (default 160,176,192,208,224: "
                         "the accuracy predictor's)")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--top-k", type=int, default=5, help="candidates verified on the device")
    se.add_argument("--verify", choices=["onnxruntime", "torch", "fake"], default=None,
                    help="profile the top candidates with this backend here and choose by "
                         "measured latency (against the first budget)")
    se.add_argument("--threads", type=int, default=1)
    se.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    se.add_argument("--batch-size", type=int, default=1)
    se.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    se.add_argument("--out", required=True, help="folder for report.json, summary.md, "
                    "subnet.onnx and the verification table")
    se.add_argument("--quiet", action="store_true")
    se.set_defaults(func=cmd_search)

    de = sub.add_parser("demo", help="the whole path on this machine: profile, fine-tune, "
                                     "search, verify, export (a few minutes)")
    de.add_argument("--out", default="runs/demo")
    de.add_argument("--n", type=int, default=40, help="subnets to profile")
    de.add_argument("--base", default="ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb",
                    help="shipped predictor to fine-tune")
    de.add_argument("--latency-ms", type=float, default=None,
                    help="budget (default: the 30th percentile of the profiled subnets)")
    de.add_argument("--accuracy-predictor", default=None)
    de.add_argument("--proxy", action="store_true", help="use the MACs proxy (no accuracy)")
    de.add_argument("--top-k", type=int, default=5)
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=cmd_demo)

    bl = sub.add_parser("build-lut", help="measure every layer in isolation and write OFA's "
                                          "lookup-table format (resumable)")
    bl.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    bl.add_argument("--backend", default="onnxruntime", choices=list_backends())
    bl.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bl.add_argument("--threads", type=int, default=1)
    bl.add_argument("--batch-size", type=int, default=1)
    bl.add_argument("--resolutions", default="160,176,192,208,224")
    bl.add_argument("--rounds", type=int, default=6)
    bl.add_argument("--max-rounds", type=int, default=10)
    bl.add_argument("--out", required=True, help="folder for <R>_lookup_table.yaml, layers.csv "
                    "and build.json (resumes if it exists)")
    bl.add_argument("--quiet", action="store_true")
    bl.set_defaults(func=cmd_build_lut)

    el = sub.add_parser("export-layers", help="every LUT layer as ONNX, for timing on a board "
                                             "(python -m ofa_latency.board profile-layers)")
    el.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    el.add_argument("--resolutions", default="160,176,192,208,224")
    el.add_argument("--batch-size", type=int, default=1)
    el.add_argument("--out", required=True)
    el.add_argument("--quiet", action="store_true")
    el.set_defaults(func=cmd_export_layers)

    fl = sub.add_parser("finish-lut", help="write OFA's YAML files from a board's layer timings")
    fl.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    fl.add_argument("--resolutions", default=None, help="default: those the board timed")
    fl.add_argument("--out", required=True, help="the folder profile-layers wrote")
    fl.set_defaults(func=cmd_finish_lut)

    co = sub.add_parser("compare", help="metrics and cost of several predictors (LUTs "
                                        "included) on the same measured subnets")
    co.add_argument("--data", required=True)
    co.add_argument("--predictors", nargs="+", required=True,
                    help="predictor folders, shipped names or LUT folders (raw LUT)")
    co.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    co.add_argument("--split", default="test", choices=["test", "train", "all"])
    co.add_argument("--plot", help="PNG: predicted vs measured, and error vs device-seconds")
    co.add_argument("--json", help="write the rows as JSON")
    co.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="the shipped predictors, one line each")
    ls.add_argument("--json", action="store_true", help="the whole manifest entries as JSON")
    ls.set_defaults(func=cmd_list)

    im = sub.add_parser("import", help="turn another tool's latency CSV into the schema")
    im.add_argument("--data", required=True, help="the foreign CSV")
    im.add_argument("--arch-column", default="arch")
    im.add_argument("--latency-column", default="latency_ms")
    im.add_argument("--latency-unit", default="ms", choices=["ms", "s", "us"])
    im.add_argument("--image-size-column", default=None,
                    help="column of the resolution, when the arch does not hold 'r'")
    im.add_argument("--space", default="ofa_mbv3_w1.2", choices=list_spaces())
    im.add_argument("--set", nargs="*", metavar="COL=VALUE",
                    help="setting of every row, e.g. device='Jetson Orin' backend=onnxruntime "
                         "batch_size=1 threads=4")
    im.add_argument("--source", default=None, help="who measured it (default: the file name)")
    im.add_argument("--out", required=True, help="CSV to write")
    im.set_defaults(func=cmd_import)
    return p


def main(argv=None) -> int:
    """Entry point of the ``ofa-latency`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage errors (code 2)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(args.func, args, args.debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
