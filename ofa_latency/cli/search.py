"""Commands from predictors to a deployed subnet: search, demo, get-accuracy-predictor."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UsageError
from ._common import (add_convert_jobs_option, add_litert_delegate_option, add_weights_options,
                      check_out_folder, litert_delegate_option, load_estimator, positive_int,
                      resolutions)

logger = logging.getLogger(__name__)


def _accuracy_predictor(args, space):
    from ..search import SEARCH_RESOLUTIONS, MacsProxy, OFAAccuracyPredictor

    res = resolutions(args.resolutions) if args.resolutions else SEARCH_RESOLUTIONS
    if args.proxy:
        if args.accuracy_predictor:
            raise UsageError("--proxy macs and --accuracy-predictor exclude each other")
        print("searching with a MACs proxy: results are NOT accuracy predictions")
        return MacsProxy(space, resolutions=res)
    return OFAAccuracyPredictor.load(args.accuracy_predictor,
                                     download=args.download_accuracy_predictor, space=space,
                                     resolutions=res)


DEFAULT_CONFIDENCE = 0.9  # without --verify; measured: BENCHMARKS.md section 10.1


def _confidence(args, est):
    """``--confidence``: a number, ``point``, or ``auto`` (the default): the one-sided 0.9
    upper bound when the search is not verified on the device and the estimator has an
    interval calibration, else the point prediction (verification's measurements decide)."""
    text = str(args.confidence).lower()
    if text == "point":
        return None
    if text == "auto":
        if args.verify or args.verify_on or getattr(est.predictor, "interval_", None) is None:
            return None
        return DEFAULT_CONFIDENCE
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--confidence {args.confidence!r}: a number in [0.5, 1), 'point' or "
                         f"'auto'") from None


def print_verification(rounds):
    for ver in rounds:
        mine = [(i, r) for i, r in enumerate(ver.rows) if r.get("round", ver.round) == ver.round]
        print(f"verification round {ver.round} (search budget {ver.search_budget_ms:.3f} ms"
              + (", predictor refitted on the measured candidates" if ver.refitted else "")
              + f"; measured budget {ver.budget_ms:.3f} ms, met by the measured 90 % upper "
                f"bound):")
        print(f"  {'#':>2s} {'accuracy':>9s} {'predicted ms':>13s} {'measured ms':>12s} "
              f"{'+-90 %':>7s} {'meas/pred':>9s}  meets")
        for i, r in mine:
            mark = "  <- chosen" if ver is rounds[-1] and i == ver.chosen else ""
            ci = f"{r['ci_pct']:6.1f}%" if r.get("ci_pct") is not None else "     - "
            print(f"  {i:2d} {r['accuracy']:9.4f} {r['predicted_ms']:13.3f} "
                  f"{r['measured_ms']:12.3f} {ci} {r['measured_ms'] / r['predicted_ms']:9.3f}  "
                  f"{'yes' if r['meets'] else 'NO'}{mark}")
    last = rounds[-1] if rounds else None
    if last is not None and last.chosen is not None and \
            last.chosen_row.get("round", last.round) != last.round:
        r = last.chosen_row
        print(f"chosen: round {r['round']}'s candidate, {r['measured_ms']:.3f} ms measured "
              f"(accuracy {r['accuracy']:.4f})")


def cmd_search(args) -> int:
    from ..search import Constraint
    from ..search.workflow import search_verify_deploy

    if len(args.estimator) != len(args.latency_ms):
        raise UsageError(f"{len(args.estimator)} --estimator and {len(args.latency_ms)} "
                         f"--latency-ms given; give one budget per estimator, in order")
    bad = [b for b in args.latency_ms if not b > 0]
    if bad:
        raise UsageError(f"--latency-ms {bad[0]}: a budget must be > 0 ms")
    check_out_folder(args.out)
    # --hardware is for the first estimator (a conditioned one); the others are as named
    ests = [load_estimator(args.estimator[0], args)] + [load_estimator(e)
                                                        for e in args.estimator[1:]]
    space = ests[0].space.name
    if args.space and args.space != space:
        raise UsageError(f"--space {args.space} but the estimator is for {space}")
    acc = _accuracy_predictor(args, space)
    constraints = [Constraint(e, float(b), name, confidence=_confidence(args, e))
                   for e, b, name in zip(ests, args.latency_ms, args.estimator)]
    params = {"lam": args.lam} if args.finder == "gradient" and args.lam is not None else {}
    backend = None
    if args.verify and args.verify_on:
        raise UsageError("--verify (a backend here) and --verify-on (a device of the fleet): "
                         "give one")
    if args.refit and not (args.verify or args.verify_on):
        raise UsageError("--refit refits the predictor on the candidates --verify measures; "
                         "give --verify or --verify-on too")
    if args.verify:
        from ..profiling import create_backend

        backend = create_backend(args.verify, threads=args.threads, device=args.device,
                                 precision=_verify_precision(args, ests[0]),
                                 **litert_delegate_option(args, args.verify))
    elif args.verify_on:
        from .. import fleet

        fleet.connect(args.address)
        backend = fleet.remote_backend(args.verify_on)
        batch = backend.fleet_device.info["setting"]["batch_size"]
        if batch != args.batch_size:
            raise UsageError(f"--batch-size {args.batch_size}, but the devices of "
                             f"{args.verify_on} measure batch {batch}")
    if args.level_table and not args.verify:
        raise UsageError("--level-table sets the level --verify measures at; give --verify")
    missing = [t for t in args.level_table if not Path(t).is_file()]
    if missing:
        raise UsageError(f"--level-table {missing[0]}: no such table")
    refit = _refitter(args.estimator[0]) if args.refit else None
    outcome = search_verify_deploy(constraints, acc, args.out, backend=backend,
                                   batch_size=args.batch_size, finder=args.finder,
                                   seed=args.seed, top_k=args.top_k, export=not args.no_export,
                                   progress=not args.quiet, estimators=args.estimator,
                                   refit=refit, max_rounds=args.rounds,
                                   level_tables=args.level_table,
                                   weights=args.weights,
                                   calibration_images=args.calibration_images,
                                   n_calibration_images=args.calibration_count,
                                   convert_jobs=args.convert_jobs, **params)
    print_verification(outcome.rounds)
    print(outcome.summary)
    res = outcome.result
    print(f"search: {res.finder} finder, {res.n_evaluated} subnets scored in {res.seconds:.2f} s; "
          f"files in {args.out}/ (report.json, summary.md"
          + (f", {outcome.report['deployed']['path']}" if outcome.report.get("deployed") else "")
          + ")")
    return 0


def _verify_precision(args, est) -> str:
    """``--precision``, by default the precision the first predictor was measured in (an int8
    predictor's budgets are verified in int8), else fp32; a precision other than the
    predictor's is verified as asked, with a warning."""
    own = (est.setting or {}).get("precision")
    if args.precision is None:
        return own or "fp32"
    if own and own != args.precision:
        logger.warning("--precision %s: the predictor was measured in %s; its predictions are "
                       "verified in %s as asked, where the search's choices may be wrong",
                       args.precision, own, args.precision)
    return args.precision


def _refitter(spec):
    """The closed loop's refit for the predictor folder ``spec`` names; refused at once (not
    after the first round) when it cannot be refitted."""
    from ..estimator import LatencyEstimator
    from ..resolve import locate_predictor
    from ..training import refit_source, refit_with

    folder = locate_predictor(spec).path
    try:
        refit_source(folder)
    except UsageError as exc:
        raise UsageError(f"--refit: {exc}") from None
    return lambda verified: LatencyEstimator(refit_with(folder, verified), check_machine=False)


def cmd_demo(args) -> int:
    from ..demo import run_demo
    from ..profiling import create_backend

    backend = create_backend(args.backend, threads=1, precision=args.precision)
    outcome = run_demo(args.out, n=args.n, base=args.base, latency_ms=args.latency_ms,
                       accuracy_predictor=args.accuracy_predictor, proxy=args.proxy,
                       top_k=args.top_k, seed=args.seed, progress=not args.quiet,
                       on_step=print, allow_machine_change=args.allow_machine_change,
                       backend=backend, convert_jobs=args.convert_jobs)
    print_verification(outcome.rounds)
    print()
    print(outcome.summary)
    return 0


def cmd_get_accuracy_predictor(args) -> int:
    from ..search import get_accuracy_predictor

    path = get_accuracy_predictor(args.source)
    print(f"OFA's accuracy predictor is at {path}; search and demo find it there")
    return 0


def register(sub) -> None:
    from ..demo import DEMO_BASE

    se = sub.add_parser("search", help="the most accurate subnet under latency budgets, "
                                       "verified on the device and exported")
    se.add_argument("--space", default=None, help="checked against the estimators' space")
    se.add_argument("--estimator", "--predictor", action="append", required=True,
                    metavar="NAME_OR_DIR",
                    help="a latency predictor (shipped name, folder, LUT folder, conditioned "
                         "folder with --hardware); repeat with --latency-ms for several devices")
    se.add_argument("--latency-ms", action="append", required=True, type=float,
                    help="the budget for the estimator at the same position")
    se.add_argument("--hardware", help="for a conditioned first estimator: the target "
                    "(descriptor JSON, measurement table or GPU name with --batch-size)")
    se.add_argument("--accuracy-predictor", help="OFA's acc_predictor.pth (default: "
                    "$OFA_LATENCY_ACC_PREDICTOR or OFA's cache ~/.torch/acc_predictor.pth; "
                    "'ofa-latency get-accuracy-predictor' puts it there)")
    se.add_argument("--download-accuracy-predictor", action="store_true",
                    help="fetch OFA's accuracy predictor when not found (needs internet)")
    se.add_argument("--proxy", choices=["macs"], help="no accuracy predictor: maximise MACs "
                    "instead (results labelled as a proxy)")
    se.add_argument("--confidence", default="auto",
                    help="meet each budget with the one-sided upper bound at this confidence "
                         "(e.g. 0.9) of the estimator's calibrated prediction interval; "
                         "'point' for the point prediction; default auto: 0.9 without --verify "
                         "(when the estimator is calibrated), the point prediction with it")
    se.add_argument("--finder", default="fast", choices=["fast", "ofa", "gradient"])
    se.add_argument("--lambda", dest="lam", type=float, default=None,
                    help="gradient finder: the latency weight (default: bisection to the budget)")
    se.add_argument("--resolutions", default=None,
                    help="comma-separated resolutions to search (default 160,176,192,208,224: "
                         "the accuracy predictor's)")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--top-k", type=positive_int, default=5,
                    help="candidates verified on the device")
    se.add_argument("--verify", choices=["onnxruntime", "openvino", "litert", "torch", "fake"],
                    default=None,
                    help="profile the top candidates with this backend here and choose by "
                         "measured latency (against the first budget); the chosen subnet is "
                         "exported in this runtime's format")
    se.add_argument("--verify-on", metavar="LABEL", default=None,
                    help="verify on a device of the fleet with this label instead (its backend "
                         "setting; needs the fleet extra and --address)")
    se.add_argument("--address", default="auto",
                    help="with --verify-on: the fleet's Ray cluster (default auto)")
    se.add_argument("--refit", action="store_true",
                    help="with --verify and a predictor made by 'ofa-latency finetune': refit "
                         "it on the measured candidates between rounds and search again (the "
                         "closed loop)")
    se.add_argument("--level-table", action="append", default=[], metavar="TABLE",
                    help="with --verify: a table this session measured of the same setting on "
                         "this machine (e.g. the one the predictor was fine-tuned on; "
                         "repeatable): the candidates and the confirmation are expressed at "
                         "its reference level, the predictor's, not at the verification "
                         "table's own (a host whose speed moves between states)")
    se.add_argument("--rounds", type=positive_int, default=3,
                    help="with --verify: searches at most (default 3)")
    se.add_argument("--threads", type=positive_int, default=1)
    se.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    se.add_argument("--precision", default=None, choices=["fp32", "fp16", "int8"],
                    help="with --verify: the precision verified and deployed (int8: "
                         "onnxruntime, openvino, litert; default: the predictor's own, else "
                         "fp32)")
    add_litert_delegate_option(se, "with --verify litert")
    add_convert_jobs_option(se, "with --verify")
    se.add_argument("--batch-size", type=positive_int, default=1)
    se.add_argument("--no-export", action="store_true", help="skip the export")
    add_weights_options(se)
    se.add_argument("--out", required=True, help="folder for report.json, summary.md, "
                    "the exported subnet (subnet.onnx, .xml or .tflite) and the "
                    "verification table")
    se.add_argument("--quiet", action="store_true")
    se.set_defaults(func=cmd_search)

    de = sub.add_parser("demo", help="the whole path on this machine: profile, fine-tune, "
                                     "search, verify, export (a few minutes)")
    de.add_argument("--out", default="runs/demo")
    de.add_argument("--n", type=positive_int, default=40, help="subnets to profile (>= 5)")
    de.add_argument("--base", default=DEMO_BASE, help="shipped predictor to fine-tune (of "
                    "any runtime or precision: fine-tuning carries it to --backend's)")
    de.add_argument("--backend", default="onnxruntime",
                    choices=["onnxruntime", "openvino", "litert", "torch"],
                    help="the runtime profiled, verified and deployed (1 thread; default "
                         "onnxruntime; openvino and litert need their extras)")
    de.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                    help="int8: onnxruntime, openvino, litert (post-training static "
                         "quantization, calibrated on random inputs)")
    add_convert_jobs_option(de)
    de.add_argument("--latency-ms", type=float, default=None,
                    help="budget (default: the 30th percentile of the profiled subnets)")
    de.add_argument("--accuracy-predictor", default=None)
    de.add_argument("--proxy", action="store_true", help="use the MACs proxy (no accuracy)")
    de.add_argument("--top-k", type=positive_int, default=5)
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--allow-machine-change", action="store_true",
                    help="resume into the folder's tables although this machine's speed "
                         "moved beyond their own noise since they were measured")
    de.add_argument("--quiet", action="store_true")
    de.set_defaults(func=cmd_demo)

    ga = sub.add_parser("get-accuracy-predictor",
                        help="put OFA's accuracy predictor where search and demo find it "
                             "(download it, or copy it --from a file)")
    ga.add_argument("--from", dest="source", default=None,
                    help="a copy of acc_predictor.pth (offline machines)")
    ga.set_defaults(func=cmd_get_accuracy_predictor)
