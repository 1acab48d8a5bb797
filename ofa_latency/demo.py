"""The whole path on this machine, as one library function (``ofa-latency demo`` calls it):
profile random subnets, fine-tune a shipped predictor to them, search under a budget, verify
the top candidates on the device and export the winner. Every step resumes after a kill.

Offline and without OFA's accuracy predictor it still walks the whole path, with the MACs
proxy, saying so first (``on_step``), in ``summary.md`` and in ``report.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .errors import UsageError

logger = logging.getLogger(__name__)

__all__ = ["run_demo", "DEMO_BASE", "DEMO_SPACE"]

DEMO_SPACE = "ofa_mbv3_w1.2"
DEMO_BASE = "ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_xgb"


def run_demo(out="runs/demo", n: int = 40, base: str = DEMO_BASE,
             latency_ms: float | None = None, accuracy_predictor=None, proxy: bool = False,
             top_k: int = 5, seed: int = 0, progress: bool = True, on_step=None,
             backend=None, allow_machine_change: bool = False,
             convert_jobs: int | str = 0):
    """Profile ``n`` subnets here, fine-tune ``base`` to them, search under ``latency_ms``
    (default: the 30th percentile of the profiled subnets), verify the top ``top_k`` and
    export the winner into ``out``, in the format of ``backend``'s runtime and precision.

    Parameters
    ----------
    accuracy_predictor : path, optional
        OFA's ``acc_predictor.pth``; default: ``$OFA_LATENCY_ACC_PREDICTOR``, OFA's cache, a
        download, else the MACs proxy (:func:`~ofa_latency.search.accuracy_predictor_or_proxy`).
    proxy : bool
        Use the MACs proxy from the start.
    on_step : callable, optional
        Called with one line of text per step, in the order the steps run.
    backend : ProfilingBackend, optional
        The runtime and precision profiled, verified and deployed (e.g.
        ``create_backend("openvino", threads=1, precision="int8")``); default onnxruntime
        fp32, 1 thread (tests pass the fake device). ``base`` may be of another runtime or
        precision: fine-tuning and the closed loop's refits carry it to this one.
    allow_machine_change : bool
        Resume into ``out``'s tables although the machine's speed moved beyond their own
        noise (:func:`~ofa_latency.profiling.profile_subnets`); within one run its tables
        are never checked against themselves.
    convert_jobs : int or "auto"
        Helper processes that make the next subnets' models ahead of their timing, in the
        profiling and the verification (:func:`~ofa_latency.profiling.profile_subnets`;
        ``"auto"``: one for int8 and LiteRT settings where this process is pinned to a CPU and
        another is free).

    Returns
    -------
    SearchOutcome
    """
    from .adapt import finetune, save_adapted
    from .estimator import LatencyEstimator
    from .hardware import describe_hardware
    from .datasets import noise_text, table_noise
    from .profiling import create_backend, profile_subnets, table_hardware_path
    from .search import Constraint, MacsProxy, accuracy_predictor_or_proxy
    from .search.workflow import search_verify_deploy
    from .spaces import get_space
    from .datasets import single_setting

    say = on_step or (lambda text: logger.info("%s", text))
    if isinstance(n, bool) or not isinstance(n, int) or n < 5:
        raise UsageError(f"n = {n!r}: the demo profiles at least 5 subnets (fine-tuning "
                         f"chooses its method by cross-validation on them)")
    if latency_ms is not None and not latency_ms > 0:
        raise UsageError(f"latency_ms = {latency_ms!r}: a budget must be > 0 ms")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UsageError(f"top_k = {top_k!r}: verify at least 1 candidate")
    space = get_space(DEMO_SPACE)
    base_est = LatencyEstimator.load(base, check_machine=False)  # fails early on a bad name
    if proxy:
        acc, note = MacsProxy(space.name), None
    else:
        acc, note = accuracy_predictor_or_proxy(accuracy_predictor, download=True,
                                                space=space.name)
    if note:
        say(f"NOTE: {note}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = backend or create_backend("onnxruntime", threads=1)
    table = out / "measurements.csv"
    say(f"[1/4] profiling {n} random subnets on this machine ({backend.name} "
        f"{backend.precision}, {backend.threads} thread(s)) -> {table}")
    hw = describe_hardware(backend.name, backend.threads, backend.device,
                           measure=backend.name != "fake" and
                           not table_hardware_path(table).exists(),
                           precision=backend.precision)
    df = profile_subnets(space, backend, space.sample(n, seed=seed), 1, table,
                         progress=progress, hardware=hw,
                         allow_machine_change=allow_machine_change, convert_jobs=convert_jobs)
    say(f"      {len(df)} subnets: {df.latency_ms.min():.2f} .. {df.latency_ms.max():.2f} ms "
        f"(median {df.latency_ms.median():.2f})")
    say("      " + noise_text(table_noise(df)))
    pred_dir = out / "predictor"
    say(f"[2/4] fine-tuning the shipped {base} to this machine -> {pred_dir}")
    ft = finetune(base_est.predictor, df, random_state=seed, base_name=base)
    hw_path = table_hardware_path(table)
    save_adapted(ft, pred_dir, metadata={
        "setting": single_setting(df, str(table)),
        "hardware": json.loads(hw_path.read_text()) if hw_path.exists() else None,
        "data": {"path": str(table), "n_train": len(df)}})
    rep = ft.adaptation_
    say(f"      method {rep.method}"
        + (f" of {', '.join(f'{m} {w:.2f}' for m, w in rep.weights.items())}"
           if rep.weights else "")
        + f" (cross-validated MAPE {rep.cv_mape_pct.get(rep.method, float('nan')):.2f} %), "
          f"{rep.seconds:.1f} s")
    budget = latency_ms or round(float(np.quantile(df.latency_ms, 0.3)), 1)
    est = LatencyEstimator.load(pred_dir, check_machine=False)
    say(f"[3/4] searching the most {'MACs-heavy (proxy)' if acc.is_proxy else 'accurate'} "
        f"subnet under {budget} ms ("
        f"{'given' if latency_ms else '30th percentile of the measured subnets'}), "
        f"profiling its top {top_k} candidates here, refitting the predictor on them and "
        f"searching again (at most 3 rounds), then confirming and exporting the most accurate "
        f"whose measured upper bound meets the budget")
    def refit(verified):
        """The fine-tuned predictor refitted with the verified candidates added to its data
        (at the measurement table's reference level: both tables hold ratios to the same
        reference subnet)."""
        from .training import with_rows

        data = with_rows(df, verified)
        again = finetune(base_est.predictor, data, random_state=seed, base_name=base)
        say(f"      refitted on {len(data)} subnets ({len(data) - len(df)} verified): "
            f"{again.adaptation_.method}")
        return LatencyEstimator(again, check_machine=False)

    outcome = search_verify_deploy([Constraint(est, budget, "this machine")], acc, out,
                                   backend=backend, batch_size=1, seed=seed, top_k=top_k,
                                   progress=progress, estimators=[str(pred_dir)],
                                   allow_machine_change=allow_machine_change, refit=refit,
                                   level_tables=[table], convert_jobs=convert_jobs)
    deployed = outcome.report["deployed"]  # the demo always exports
    say(f"[4/4] exported the chosen subnet -> {out / deployed['path']} "
        f"({deployed['runtime']} {deployed['precision']}; report.json, summary.md)")
    return outcome
