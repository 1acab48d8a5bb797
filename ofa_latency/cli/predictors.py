"""Commands from tables to predictors: train, evaluate, predict, finetune, compare, list."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ._common import (add_hardware_options, check_out_folder, filters, load_estimator,
                      parse_arch, parse_pairs, print_metrics, read_archs_file)


def cmd_train(args) -> int:
    from ..training import train_conditioned, train_on_table

    check_out_folder(args.out)
    params = parse_pairs(args.param, "--param")
    if args.conditioned:
        from ..datasets import read_measurements
        from ..spaces import get_space

        refs = []
        if args.references:
            space = read_measurements(args.data[0], filters(args))["space"].iloc[0]
            refs = read_archs_file(args.references, get_space(space))
        _, rows = train_conditioned(args.data, args.model, filters(args), params, refs,
                                    out=args.out, progress=not args.quiet)
        print(f"conditioned {args.model} over {len(rows)} settings -> {args.out}")
        for r in rows:
            m = r["metrics"]
            print(f"  {r['name']}: " + (f"held-out MAPE {m['mape_pct']:.2f} %, Kendall tau "
                                        f"{m['kendall_tau']:.3f} ({r['n_test']} subnets)"
                                        if m else "no held-out rows"))
        return 0
    if len(args.data) > 1:
        raise UsageError(f"{len(args.data)} tables given to --data; one predictor is fitted on "
                         f"one table (several are for --conditioned)")
    _, metrics, meta = train_on_table(args.data[0], args.model, filters(args), params,
                                      out=args.out, progress=not args.quiet, split=args.split)
    s, d = meta["setting"], meta["data"]
    print(f"{args.model} on {s['space']} / {s['device']} ({s['backend']}, batch "
          f"{s['batch_size']}): fitted on {d['n_train']} subnets"
          + (f", {d['n_test']} held out" if d["n_test"] else " (all rows; none held out)")
          + f" -> {args.out}")
    if metrics:
        print_metrics(metrics)
    return 0


def cmd_evaluate(args) -> int:
    from ..evaluation import plot_predicted_vs_measured
    from ..training import evaluate_on_table

    est = load_estimator(args.predictor, args)
    m, rows, pred, split = evaluate_on_table(est.predictor, args.data, filters(args),
                                             args.split)
    print(f"{len(rows)} subnets of {args.data} ({split} rows):")
    print_metrics(m)
    if args.plot:
        plot_predicted_vs_measured(rows.latency_ms.to_numpy(), pred, args.plot,
                                   title=f"{args.predictor} on {Path(args.data).name} ({split})")
        print(f"plot -> {args.plot}")
    return 0


def cmd_predict(args) -> int:
    est = load_estimator(args.predictor, args)
    arch = parse_arch(args.arch)
    ms = est.get_efficiency(arch)
    if getattr(est.predictor, "interval_", None) is not None:
        lo, hi = est.predictor.interval_factors(args.coverage)
        print(f"{ms:.4f} ms ({100 * args.coverage:g} % interval {ms * lo:.4f} .. "
              f"{ms * hi:.4f} ms)")
    else:
        print(f"{ms:.4f} ms")
    return 0


def cmd_finetune(args) -> int:
    from ..training import finetune_on_table

    check_out_folder(args.out)
    pred = finetune_on_table(args.base, args.data, args.out, filters(args), args.methods,
                             args.cv, args.seed, mix=args.mix or (), hardware=args.hardware,
                             batch_size=args.batch_size, split=args.split, luts=args.lut,
                             choice=args.choice)
    rep = pred.adaptation_
    if rep.cv_mape_pct:
        print(f"{rep.folds}-fold cross-validated MAPE on {rep.n_samples} subnets"
              + (f" ({rep.repeats} repeats)" if rep.repeats > 1 else "") + ":")
        width = max(len(m) for m in rep.cv_mape_pct)
        for m, v in sorted(rep.cv_mape_pct.items(), key=lambda kv: kv[1]):
            w = rep.weights.get(m)
            mark = "  <- chosen" if m == rep.method else (f"  weight {w:.2f}" if w else "")
            print(f"  {m:{width}s} {v:7.2f} %{mark}")
    for w in rep.warnings:
        print(f"warning: {w}")
    print(f"base: {rep.base}")
    print(f"chosen: {rep.method} ({rep.reason}); fitted on {rep.n_samples} subnets in "
          f"{rep.seconds:.1f} s -> {args.out}")
    if rep.expected_error:
        lo, hi = rep.expected_error["interval_90_pct"]
        k = rep.expected_error["interval_samples"]
        print(f"expected error: {rep.expected_error['cv_mape_pct']:.2f} % MAPE; 90 % of new "
              f"subnets within {lo:+.1f} % .. {hi:+.1f} % of the prediction"
              + ("" if k == rep.n_samples else
                 f" (calibrated on the {k} subnets not chosen by design)"))
    return 0


def cmd_compare(args) -> int:
    from ..evaluation import plot_compare
    from ..resolve import locate_predictor, resolve_predictor
    from ..training import compare_on_table

    preds = {}
    for item in args.predictors:
        src = locate_predictor(item)  # --hardware resolves the conditioned ones
        pred = resolve_predictor(item, args.hardware if src.kind == "conditioned" else None,
                                 args.batch_size)
        preds[item if src.label in preds else src.label] = pred
    rows, y, predictions, info = compare_on_table(preds, args.data, filters(args), args.split)
    left = info["left_out"]
    print(f"{info['n']} subnets of {args.data} ({info['split']} rows)"
          + (f"; {sum(left.values())} left out at resolutions {sorted(left)} that not every "
             f"predictor answers for" if left else "") + ":")
    print(f"  {'predictor':40s} {'RMSE ms':>9s} {'MAPE %':>7s} {'+-10 %':>7s} {'tau':>6s} "
          f"{'device-s':>9s}")
    for r in rows:
        ds = "?" if r["device_seconds"] is None else f"{r['device_seconds']:.0f}"
        print(f"  {r['name']:40s} {r['rmse_ms']:9.4f} {r['mape_pct']:7.2f} "
              f"{r['within_10pct']:7.1f} {r['kendall_tau']:6.3f} {ds:>9s}")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"rows": rows, **info}, indent=1, default=str))
    if args.plot:
        plot_compare(y, predictions, rows, args.plot,
                     title=f"{Path(args.data).name} ({info['split']})")
        print(f"plot -> {args.plot}")
    return 0


_NAME_SUFFIXES = {
    "_alone": "measured with nothing else running on the machine",
    "_host2": "a second host of the same CPU model (another device: the cross-host case)",
}


def cmd_list(args) -> int:
    import json

    from ..pretrained import list_pretrained

    entries = list_pretrained()
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    rows = [("name", "device", "backend", "precision", "threads", "batch", "MAPE %", "tau")]
    for e in entries:
        m = e.get("heldout_metrics") or {}
        backend = "not recorded (HELP)" if e.get("backend") == "help" else str(e.get("backend"))
        threads = "-" if e.get("threads") is None or e.get("device_type") == "cuda" \
            else str(e["threads"])
        rows.append((e["name"], str(e.get("device")), backend, str(e.get("precision") or "fp32"),
                     threads,
                     str(e.get("batch_size")), f"{m.get('mape_pct', float('nan')):.2f}",
                     f"{m.get('kendall_tau', float('nan')):.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) if i < 4 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))))
    print(f"{len(entries)} shipped predictors; metrics on each setting's held-out subnets "
          f"(tau below 0.8: rankings of close subnets are unreliable).")
    print("help_<gpu>_<batch>_*: trained on HELP's GPU latencies (HELP does not record the "
          "runtime); threads '-' for GPU settings.")
    for suffix, meaning in _NAME_SUFFIXES.items():
        print(f"*{suffix}_*: {meaning}.")
    return 0


def register(sub) -> None:
    from ..datasets import SPLITS

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
    tr.add_argument("--split", default="train", choices=["train", "all"],
                    help="train (default): fit on the train rows, report on the test rows of "
                         "the table's split column; all: fit on every row")
    tr.add_argument("--model", default="xgb", help="predictor kind (xgb, mlp, table, lut)")
    tr.add_argument("--param", nargs="*", metavar="NAME=VALUE", help="hyper-parameters")
    tr.add_argument("--out", required=True, help="predictor folder to write")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    split_help = ("rows to score: auto (default) = the test rows when the predictor was "
                  "fitted on this table, else all rows")
    ev = sub.add_parser("evaluate", help="metrics of a predictor on a measurement table")
    ev.add_argument("--predictor", "--estimator", required=True,
                    help="predictor folder, shipped name, LUT folder or conditioned folder")
    ev.add_argument("--data", required=True)
    ev.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    ev.add_argument("--split", default="auto", choices=SPLITS, help=split_help)
    ev.add_argument("--plot", help="write a predicted-vs-measured scatter plot (PNG)")
    add_hardware_options(ev)
    ev.set_defaults(func=cmd_evaluate)

    pd_ = sub.add_parser("predict", help="predicted latency of one subnet")
    pd_.add_argument("--predictor", "--estimator", required=True,
                     help="predictor folder, shipped name, LUT folder or conditioned folder")
    pd_.add_argument("--arch", required=True,
                     help="arch dict as JSON or as OFA prints it (either OFA form)")
    pd_.add_argument("--coverage", type=float, default=0.9,
                     help="of the prediction interval shown (when the predictor has one)")
    add_hardware_options(pd_)
    pd_.set_defaults(func=cmd_predict)

    ft = sub.add_parser("finetune", help="adapt a shipped or saved predictor to a new device "
                                         "from a few measured subnets")
    ft.add_argument("--base", default=None, help="shipped predictor name or predictor folder "
                    "(a conditioned folder is resolved for the data's device); default: every "
                    "shipped predictor of the data's device type, the best-fitting one as the "
                    "base and the others in the mix")
    ft.add_argument("--data", required=True, help="the new device's measurement table")
    ft.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    ft.add_argument("--split", default="all", choices=["all", "train", "test"],
                    help="rows to fine-tune on (default all: every measured subnet)")
    ft.add_argument("--methods", nargs="+", default=None,
                    help="candidate methods (default: all; chosen by cross-validation)")
    ft.add_argument("--mix", nargs="+", metavar="NAME_OR_DIR",
                    help="more bases (other devices' predictors): adds the 'mix' method, a "
                         "non-negative combination of all bases' tables")
    ft.add_argument("--lut", nargs="+", metavar="DIR", default=(),
                    help="OFA-format lookup tables built on the device ('ofa-latency build-lut'): "
                         "each joins the mix and is a candidate by its own scale")
    ft.add_argument("--choice", default=None, metavar="{blend,average,stack,one_se}",
                    help="how the candidates are combined (default blend: half weights on "
                         "their cross-validated scores, half stacked weights; one_se keeps one)")
    ft.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--out", required=True, help="predictor folder to write")
    add_hardware_options(ft)
    ft.set_defaults(func=cmd_finetune)

    co = sub.add_parser("compare", help="metrics and cost of several predictors (LUTs "
                                        "included) on the same measured subnets")
    co.add_argument("--data", required=True)
    co.add_argument("--predictors", nargs="+", required=True,
                    help="predictor folders, shipped names, LUT folders (raw LUT) or "
                         "conditioned folders (with --hardware)")
    co.add_argument("--filter", nargs="*", metavar="COL=VALUE")
    co.add_argument("--split", default="auto", choices=SPLITS, help=split_help)
    co.add_argument("--plot", help="PNG: predicted vs measured, and error vs device-seconds")
    co.add_argument("--json", help="write the rows as JSON")
    add_hardware_options(co)
    co.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="the shipped predictors, one line each")
    ls.add_argument("--json", action="store_true", help="the whole manifest entries as JSON")
    ls.set_defaults(func=cmd_list)
