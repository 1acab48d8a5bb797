"""After the search: verify the candidates on the device, choose by *measured* latency,
re-search with a tightened budget when none fits, and export the winner with its evidence.

:func:`search_and_verify` runs the loop; :func:`deploy` writes ``subnet.onnx`` (or the format of
the runtime it was verified with; checked against
PyTorch), ``subnet.config.json`` (OFA net config), ``report.json`` and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from ..hardware import OTHERS_BUSY_WARN_PCT, others_busy_text
from ..profiling.timing import TimingProtocol
from .finders import SearchResult, search

logger = logging.getLogger(__name__)

__all__ = ["Verification", "verify", "confirm", "confirm_choice", "search_and_verify",
           "deploy", "search_verify_deploy", "SearchOutcome", "NOISE_FLOOR_PCT",
           "CONFIRM_NEAR_PCT", "CONFIRM_CANDIDATES"]

# A measured latency this far above the budget is a violation beyond the profiler's noise
# (the scale-free noise floor of onnxruntime on this project's CPU host is about 1 %;
# BENCHMARKS.md section 3).
NOISE_FLOOR_PCT = 1.0


@dataclasses.dataclass
class Verification:
    """Candidates measured on the device: predicted vs measured (with each measurement's own
    90 % interval), and the one chosen."""

    budget_ms: float
    search_budget_ms: float
    # [{"arch", "accuracy", "predicted_ms", "measured_ms", "own_ci_pct", "ci_pct",
    #   "measured_upper_ms", "meets", "round"}], search order; ``ci_pct`` is the larger of the
    #   row's own half-width and ``window_ci_pct``
    rows: list
    chosen: int | None
    table: str
    round: int = 1
    refitted: bool = False  # the search of this round ran on a predictor refitted on earlier rounds
    level_ms: float | None = None  # the reference level the measurements are expressed at
    # how busy other processes kept the profiled CPUs while the candidates were timed (percent;
    # :func:`~ofa_latency.hardware.others_busy_pct`, None where unknown)
    others_busy_pct: float | None = None
    # the half-width (percent) of a two-window measurement from the window-to-window spread of
    # every row of the verification table pooled (None without rows of two or more windows)
    window_ci_pct: float | None = None
    # where this round's candidates' models came from (``profile_subnets``' count: made in
    # the timing process, read from the model store, made ahead by a helper process)
    models: dict | None = None
    # seconds of reference runs spent waiting for the fast state before the candidates
    waited_s: float | None = None

    @property
    def chosen_row(self) -> dict | None:
        return None if self.chosen is None else self.rows[self.chosen]

    def measured_over_predicted(self) -> float:
        """Median measured / predicted latency of this round's candidates (above 1: the
        predictor was optimistic where the search looked, the winner's curse)."""
        mine = [r for r in self.rows if r.get("round", self.round) == self.round] or self.rows
        return float(np.median([r["measured_ms"] / r["predicted_ms"] for r in mine]))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# the confirmation, and each verified candidate, is timed once the reference runs within this
# of the level its latency is expressed at (the machine's fast state, waited for; a
# confirmation window found farther off is timed again): in a window about 10 % slower, a
# large int8 subnet read 1.6-5.7 % faster relative to the reference than in the fast state
# (BENCHMARKS.md section 16.36); confirmed this way its reading moved from 2.0-3.2 % under
# its fast-state one to 0.7-1.0 % (section 16.37)
CONFIRM_NEAR_PCT = 5.0

# subnets the confirmation tries at most: one the confirmation puts over the budget (in two
# fresh windows) is replaced by the next most accurate candidate that met it in verification
CONFIRM_CANDIDATES = 3

# candidates are timed in two windows, each a fresh preparation, so their interval also sees
# the preparation effects one window cannot (:func:`~ofa_latency.profiling.timing.combine_windows`)
VERIFY_PROTOCOL = TimingProtocol(windows=2)


def _finite(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _window_ci_pct(rows, n_windows: int) -> float | None:
    """The pooled window-to-window half-width of the table ``rows`` measured in two or more
    windows (:func:`~ofa_latency.profiling.timing.pooled_window_ci_pct`; None without)."""
    from ..profiling.timing import pooled_window_ci_pct

    if "window_sd_pct" not in rows.columns:
        return None
    return _finite(pooled_window_ci_pct(rows["window_sd_pct"].to_numpy(dtype=float),
                                        n_windows=n_windows))


def _judge(row: dict, window_ci_pct: float | None, budget_ms: float) -> dict:
    """``row`` with its half-width (the larger of its own, ``own_ci_pct``, and the table's
    pooled ``window_ci_pct``; :data:`NOISE_FLOOR_PCT` when neither is known), its measured
    upper bound and whether that meets ``budget_ms``."""
    known = [v for v in (row.get("own_ci_pct"), window_ci_pct) if v is not None]
    ci = max(known) if known else None
    upper = row["measured_ms"] * (1 + (NOISE_FLOOR_PCT if ci is None else ci) / 100)
    return {**row, "ci_pct": None if ci is None else round(ci, 3),
            "measured_upper_ms": round(upper, 5), "meets": upper <= budget_ms}


def verify(result: SearchResult, space, backend, batch_size: int, table, top_k: int = 5,
           constraint: int = 0, budget_ms: float | None = None, progress: bool = True,
           owned: bool = False, allow_machine_change: bool = False,
           protocol: TimingProtocol = VERIFY_PROTOCOL, round_no: int = 1,
           level_tables=(), convert_jobs: int | str = 0,
           near_pct: float | None = CONFIRM_NEAR_PCT) -> Verification:
    """Profile the ``top_k`` best candidates of ``result`` on ``backend`` (appended to the
    resumable ``table``, each until its own interval is tight: ``protocol``) and choose the
    most accurate whose measured *upper bound* (the measurement plus its 90 % half-width)
    meets the budget of constraint ``constraint`` (or ``budget_ms``). A row's half-width is
    the larger of its own (its rounds, and half its windows' gap) and the window-to-window
    spread of every row of ``table`` pooled (:func:`~ofa_latency.profiling.timing.
    pooled_window_ci_pct`): two windows that agree by chance do not make a row more certain
    than the host is. ``owned``: the table was
    created by this run, so appending to it skips the machine-state check; ``round_no``: the
    loop's round, recorded in each row; ``level_tables``: tables of the same setting this run
    measured on the same machine (the profiling table the predictor was fitted on): the
    measurements are expressed at their reference level
    (:func:`~ofa_latency.profiling.profiler.run_level_ms`), not at the verification table's own.
    ``convert_jobs``: helper processes that make the candidates' models ahead of their timing
    (:func:`~ofa_latency.profiling.profile_subnets`; ``"auto"``, the command line's default:
    one for int8 and LiteRT settings where this process is pinned and another CPU is free), so
    that a candidate is measured as ``profile`` measured the table its predictor learned.
    ``near_pct``: each candidate is timed once the reference runs within this (percent) of
    the level (``level_tables``', else the verification table's own once it has windows),
    waiting up to ``protocol.off_state_wait_s`` seconds of reference runs, as :func:`confirm`
    does (``waited_s`` in the result; None: no wait)."""
    from ..datasets import read_measurements
    from ..profiling import profile_subnets

    cands = result.candidates[:top_k]
    budget = float(budget_ms if budget_ms is not None else result.budgets_ms[constraint])
    subs = [space.validate(c["arch"]) for c in cands]
    level = _level_ms(space, backend, batch_size, level_tables)
    df = profile_subnets(space, backend, subs, batch_size, table, progress=progress,
                         check_machine=not owned, allow_machine_change=allow_machine_change,
                         protocol=protocol, convert_jobs=convert_jobs,
                         wait_near_pct=near_pct, level_ms=level)
    if "ratio" not in df.columns:  # not drift-corrected: nothing to express at a level
        level = None
    if level is not None:
        df = df.assign(latency_ms=np.where(df["ratio"].notna(), df["ratio"] * level,
                                           df["latency_ms"]))
    ci = df["ci_pct"] if "ci_pct" in df.columns else [float("nan")] * len(df)
    measured = {(a, int(r)): (float(v), float(c)) for a, r, v, c in
                zip(df["arch"], df["image_size"], df["latency_ms"], ci)}
    window_ci = _window_ci_pct(read_measurements(table), protocol.windows)  # every round's
    rows = []
    for c, s in zip(cands, subs):
        m, half = measured[(s.arch_json(), s.image_size)]
        rows.append(_judge({"arch": s.to_dict(), "accuracy": c["accuracy"],
                            "predicted_ms": c["latency_ms"][constraint], "measured_ms": m,
                            "own_ci_pct": _finite(half), "round": round_no},
                           window_ci, budget))
    return Verification(budget_ms=budget, search_budget_ms=result.budgets_ms[constraint],
                        rows=rows, chosen=_most_accurate(rows), table=str(table),
                        round=round_no, level_ms=level,
                        others_busy_pct=df.attrs.get("others_busy_pct"),
                        models=df.attrs.get("models"), waited_s=df.attrs.get("waited_s"),
                        window_ci_pct=None if window_ci is None else round(window_ci, 3))


def _level_ms(space, backend, batch_size: int, level_tables) -> float | None:
    """The reference level ``level_tables`` give the setting ``backend`` measures (None
    without them, or when none of their rows of that setting is drift-corrected)."""
    from ..datasets import read_measurements
    from ..profiling.profiler import backend_setting, run_level_ms

    if not level_tables:
        return None
    level = run_level_ms(backend_setting(space, backend, batch_size),
                         [read_measurements(t) for t in level_tables if Path(t).exists()])
    if not np.isfinite(level):
        logger.warning("%s: no drift-corrected row of the verified setting; the measurements "
                       "stay at the verification table's own level",
                       ", ".join(str(t) for t in level_tables))
        return None
    return level


def confirm(space, backend, arch, batch_size: int, table, budget_ms: float,
            level_tables=(), near_pct: float | None = CONFIRM_NEAR_PCT,
            protocol: TimingProtocol = TimingProtocol()) -> dict:
    """Re-measure the chosen subnet in a fresh window (a new preparation, interleaved with the
    reference) and express it at the verification table's reference level (or at
    ``level_tables``', as :func:`verify` does): the confirmation written into ``report.json``.
    ``meets``: the confirmed latency is within the budget plus ``tolerance_pct``, the larger
    of :data:`NOISE_FLOOR_PCT` and what one window moves on this host (the verification
    table's window-to-window spread pooled, :func:`~ofa_latency.profiling.timing.
    pooled_window_ci_pct` of one window).

    The window is timed in the machine's fast state: first the reference alone runs until a
    round comes within ``near_pct`` percent of that level (up to ``protocol.off_state_wait_s``
    seconds of runs, :func:`~ofa_latency.profiling.scale.wait_for_fast_state`), and a window
    whose fastest reference round still ran farther above it is timed again, up to
    ``protocol.off_state_retries`` times; the window nearest the level is kept. A slower state
    does not slow every subnet as it slows the reference (BENCHMARKS.md sections 16.31-16.36),
    so a window there can read a large subnet a few percent fast. ``state_pct`` in the result:
    how far above the level the kept window's fastest reference round ran; ``windows``: how
    many were timed; ``waited_s``: the seconds of reference runs spent waiting. ``near_pct``
    None: one window, whatever the state."""
    from ..datasets import read_measurements
    from ..profiling.scale import wait_for_fast_state
    from ..profiling.timing import measure
    from ..spaces import reference_subnet

    if near_pct is not None and not (near_pct > 0 and np.isfinite(near_pct)):
        raise ValueError(f"near_pct = {near_pct}; must be a finite number > 0 (percent above "
                         f"the level) or None")
    sub = space.validate(arch)
    rows = read_measurements(table)
    level = _level_ms(space, backend, batch_size, level_tables) or \
        float(rows["ref_baseline_ms"].iloc[0])
    ref = backend.prepare(space, reference_subnet(space), batch_size)
    res, state, windows, waited = None, float("nan"), 0, 0.0
    for _ in range(1 + (protocol.off_state_retries if near_pct is not None else 0)):
        if near_pct is not None and np.isfinite(level):
            waited += wait_for_fast_state(ref, level, protocol.off_state_wait_s,
                                          protocol.runs_per_round, near_pct)[1]
        r = measure(backend.prepare(space, sub, batch_size), ref, None, protocol)
        windows += 1
        s = 100 * (r.ref_min_ms / level - 1)
        if res is None or s < state:
            res, state = r, s
        if near_pct is None or not s > near_pct:  # NaN (no reference minimum): keep it
            break
    if near_pct is not None and state > near_pct:
        logger.warning("the confirmation's %d window(s) never saw the machine's fast state: "
                       "the reference ran %.1f %% above its level %.4g ms at best (a large "
                       "int8 subnet can read a few percent fast there)", windows, state, level)
    ms = float(res.ratio * level) if res.ratio == res.ratio else float(res.latency_raw_ms)
    tolerance = max(NOISE_FLOOR_PCT, _window_ci_pct(rows, 1) or 0.0)
    out = {"measured_ms": round(ms, 4), "ratio": round(float(res.ratio), 6),
           "spread_pct": round(float(res.spread_pct), 2),
           "ci_pct": round(float(res.ci_pct), 3), "budget_ms": budget_ms,
           "over_budget_pct": round(100 * (ms / budget_ms - 1), 2),
           "tolerance_pct": round(tolerance, 3),
           "meets": bool(ms <= budget_ms * (1 + tolerance / 100)),
           "state_pct": _finite(round(state, 2)), "near_pct": near_pct, "windows": windows,
           "waited_s": round(waited, 2)}
    if not out["meets"]:
        logger.warning("the chosen subnet re-measured %.3f ms in a fresh window, %.1f %% over "
                       "the %.3f ms budget (beyond the %.1f %% a window moves on this host)",
                       ms, out["over_budget_pct"], budget_ms, tolerance)
    return out


def confirm_choice(space, backend, verification: Verification, batch_size: int, table,
                   level_tables=(), candidates: int = CONFIRM_CANDIDATES,
                   near_pct: float | None = CONFIRM_NEAR_PCT,
                   protocol: TimingProtocol = TimingProtocol()) -> dict:
    """Confirm the subnet ``verification`` chose (:func:`confirm`), and do not let one noisy
    window decide. A first window over the budget by more than one window moves on this host
    is followed by a second fresh one, and the two are judged together (their geometric mean
    against what two windows move). A subnet both windows put over the budget is not
    deployed: the next most accurate candidate whose measured upper bound met the budget is
    confirmed the same way, up to ``candidates`` subnets in all; ``verification.chosen``
    becomes the confirmed one.

    Returns
    -------
    dict
        The confirmation of the subnet chosen in the end (:func:`confirm`'s fields; with two
        windows, ``measured_ms`` is their geometric mean and ``window_ms`` each), with
        ``attempts``: every subnet tried, in order (its accuracy, measured and confirmed
        latency, whether it was confirmed).

    Raises
    ------
    UsageError
        No candidate tried was confirmed (the closest is named; every candidate is in
        ``table``).
    """
    from ..datasets import read_measurements
    from ..errors import UsageError

    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates = {candidates!r}; must be an int >= 1")
    rows = verification.rows
    budget = float(verification.budget_ms)
    attempts, tried, out = [], set(), None
    while verification.chosen is not None and len(attempts) < candidates:
        row = rows[verification.chosen]
        tried.add(verification.chosen)
        conf = [confirm(space, backend, row["arch"], batch_size, table, budget,
                        level_tables=level_tables, near_pct=near_pct, protocol=protocol)]
        if not conf[0]["meets"]:  # a second fresh window, judged with the first
            conf.append(confirm(space, backend, row["arch"], batch_size, table, budget,
                                level_tables=level_tables, near_pct=near_pct,
                                protocol=protocol))
        out = dict(conf[0])
        if len(conf) == 2:  # judged against what two windows move on this host
            tolerance2 = max(NOISE_FLOOR_PCT, _window_ci_pct(read_measurements(table), 2) or 0.0)
            ms = float(np.exp(np.mean([np.log(c["measured_ms"]) for c in conf])))
            out.update({"measured_ms": round(ms, 4),
                        "window_ms": [c["measured_ms"] for c in conf],
                        "ratio": round(float(np.exp(np.mean([np.log(c["ratio"])
                                                             for c in conf]))), 6),
                        "over_budget_pct": round(100 * (ms / budget - 1), 2),
                        "tolerance_pct": round(tolerance2, 3),
                        "meets": bool(ms <= budget * (1 + tolerance2 / 100)),
                        # the farther of the two windows from the level
                        "state_pct": max((c["state_pct"] for c in conf
                                          if c["state_pct"] is not None), default=None),
                        "windows": sum(c["windows"] for c in conf),
                        "waited_s": round(sum(c["waited_s"] for c in conf), 2)})
        attempts.append({"arch": row["arch"], "accuracy": row["accuracy"],
                         "measured_ms": row["measured_ms"],
                         "confirmed_ms": out["measured_ms"],
                         "confirmation_windows": len(conf), "meets": out["meets"]})
        if out["meets"]:
            break
        rest = [r if i not in tried else {**r, "meets": False} for i, r in enumerate(rows)]
        verification.chosen = _most_accurate(rest)
        logger.warning("the chosen subnet (accuracy %.4f) confirmed %.3f ms in %d fresh "
                       "windows, %.1f %% over the %.3f ms budget: not deployed%s",
                       row["accuracy"], out["measured_ms"], len(conf),
                       out["over_budget_pct"], budget,
                       "; the next most accurate candidate that met it is confirmed instead"
                       if verification.chosen is not None and len(attempts) < candidates
                       else "")
    if out is None or not out["meets"]:
        best = min(attempts, key=lambda a: a["confirmed_ms"]) if attempts else None
        raise UsageError(
            f"no candidate was confirmed under {budget} ms: "
            + (f"{len(attempts)} tried in fresh windows; the closest confirmed "
               f"{best['confirmed_ms']:.3f} ms (measured {best['measured_ms']:.3f} ms in "
               f"verification, accuracy {best['accuracy']:.4f}): {json.dumps(best['arch'])}"
               if best else "none to try")
            + f"; every candidate is in {table}")
    out["attempts"] = attempts
    return out


def _margin_pct(rows) -> float:
    """The 90th percentile of the measured candidates' own half-widths (percent), or
    :data:`NOISE_FLOOR_PCT` when none has one."""
    ci = [r["ci_pct"] for r in rows if r.get("ci_pct") is not None]
    return float(np.percentile(ci, 90)) if ci else NOISE_FLOOR_PCT


def _level_shift(estimator, rows) -> float:
    """Median measured / predicted latency of the measured ``rows`` under ``estimator`` (the
    refitted one): above 1 when the device runs slower now than the level the refit is at. A
    refit on verified rows sees them at its own table's reference level (their ratios, not
    their milliseconds), so a machine that is busier now than when that table was measured
    (the same machine, 10 % slower beside another job) stays invisible to it."""
    rows = list(rows)
    if not rows:
        return 1.0
    pred = estimator.predict([r["arch"] for r in rows])
    return float(np.median([r["measured_ms"] / p for r, p in zip(rows, pred)]))


def _key(row) -> str:
    return json.dumps(row["arch"], sort_keys=True)


def _most_accurate(rows) -> int | None:
    """The index of the most accurate row that meets the budget (None when none does)."""
    ok = [i for i, r in enumerate(rows) if r["meets"]]
    return max(ok, key=lambda i: rows[i]["accuracy"]) if ok else None


def search_and_verify(constraints, acc, backend, batch_size: int, table, finder: str = "fast",
                      seed: int = 0, top_k: int = 5, max_rounds: int = 3, progress: bool = True,
                      allow_machine_change: bool = False, refit=None, level_tables=(),
                      convert_jobs: int | str = 0, **params):
    """Search, verify the top candidates on the device (constraint 0's budget), and search
    again, at most ``max_rounds`` searches in all. ``level_tables``, ``convert_jobs``: see
    :func:`verify`.

    With ``refit`` (a callable taking the verification table as a DataFrame and returning a
    new estimator for constraint 0, e.g. the fine-tuned predictor refitted with the measured
    candidates added to its data) the loop is closed: after every round the predictor is
    refitted on what was measured and the search runs again (under the budget less the
    measurements' margin, and less what the measured candidates still run above the refitted
    predictor: a device slower now than its table's level), until a search proposes no
    candidate that is not measured yet (converged) or the rounds run out; the answer is the
    most accurate candidate of any round whose measured upper bound meets the budget. Without
    ``refit``, a round where none meets it is followed by a search under the budget tightened
    by the candidates' median measured/predicted ratio. Every round resumes from the table.

    Returns
    -------
    (SearchResult, list of Verification)
        The last search and every round's verification; the last one's ``rows`` are every
        candidate measured in any round and its ``chosen`` is the answer (None when no
        candidate met the budget measured).
    """
    from ..datasets import read_measurements

    constraints = list(constraints)
    budget = constraints[0].latency_ms
    owned = not Path(table).exists()  # a table this run creates: its own rounds never fail
    rounds, pool = [], {}
    current = constraints
    res = None
    for k in range(max_rounds):
        res = search(current, acc, finder, seed=seed, top_k=max(top_k, 10), **params)
        new = [c for c in res.candidates[:top_k] if _key(c) not in pool]
        if k and refit is not None and not new:
            logger.info("round %d: the refitted search proposes only measured candidates "
                        "(converged)", k + 1)
            break
        ver = verify(res, acc.space, backend, batch_size, table, top_k=top_k, budget_ms=budget,
                     progress=progress, owned=owned,
                     allow_machine_change=allow_machine_change, round_no=k + 1,
                     level_tables=level_tables, convert_jobs=convert_jobs)
        ver.refitted = bool(k and refit is not None)
        for r in ver.rows:
            pool.setdefault(_key(r), r)
        rounds.append(ver)
        logger.info("round %d: search budget %.3f ms, %d of %d candidates meet %.3f ms by their "
                    "measured upper bound (measured/predicted %.3f median)", k + 1,
                    current[0].latency_ms, sum(r["meets"] for r in ver.rows), len(ver.rows),
                    budget, ver.measured_over_predicted())
        # the next search leaves room for the measurement's own uncertainty: a candidate
        # passes on its measured upper bound, so its point must sit that far under the budget
        margin = 1 + _margin_pct(pool.values()) / 100
        if refit is not None:
            if k + 1 < max_rounds:
                est = refit(read_measurements(table))
                # what the refit cannot see: the device's level now against the refit's
                shift = max(_level_shift(est, pool.values()), 1.0)
                if shift > 1.0 + NOISE_FLOOR_PCT / 100:
                    logger.info("round %d: the measured candidates run %.1f %% above the "
                                "refitted predictor; the next search leaves that room",
                                k + 1, 100 * (shift - 1))
                else:
                    shift = 1.0
                current = [dataclasses.replace(
                    current[0], estimator=est,
                    latency_ms=constraints[0].latency_ms / margin / shift)] + current[1:]
            continue
        if ver.chosen is not None:
            break
        tighter = current[0].latency_ms / max(ver.measured_over_predicted(), 1.0) / margin
        current = [dataclasses.replace(current[0], latency_ms=tighter)] + current[1:]
    last = rounds[-1]
    # every round's rows judged again with the spread pooled over all of them
    last.rows = [_judge(r, last.window_ci_pct, budget) for r in pool.values()]
    last.chosen = _most_accurate(last.rows)
    if last.chosen is None:
        logger.warning("no candidate met %.3f ms measured after %d searches", budget,
                       len(rounds))
    return res, rounds


@dataclasses.dataclass
class SearchOutcome:
    """What :func:`search_verify_deploy` did: the last search, every verification round
    (empty without a device), the report written to ``report.json`` and the output folder."""

    result: SearchResult
    rounds: list
    report: dict
    out_dir: Path

    @property
    def summary(self) -> str:
        return summary_text(self.report)


def search_verify_deploy(constraints, acc, out_dir, backend=None, batch_size: int = 1,
                         finder: str = "fast", seed: int = 0, top_k: int = 5,
                         export: bool = True, progress: bool = True, estimators=(),
                         setting: dict | None = None, hardware: dict | None = None,
                         allow_machine_change: bool = False, refit=None, max_rounds: int = 3,
                         level_tables=(), weights=None, calibration_images=None,
                         n_calibration_images: int = 2000, convert_jobs: int | str = 0,
                         **params) -> SearchOutcome:
    """The whole search step: search under ``constraints``; with ``backend``, verify the top
    ``top_k`` candidates on the device (:func:`search_and_verify`, table
    ``out_dir/verify.csv``; with ``refit``, the closed loop that refits the predictor on the
    measured candidates between rounds) and keep the most accurate whose measured upper bound
    meets the budget, then confirm it in a fresh window (:func:`confirm_choice`: a second
    window when the first is over, the next candidate when both are); write ``search.json``,
    ``report.json`` (with every round's measured/predicted ratio: the winner's curse, before
    and after refitting), ``summary.md`` and (``export``) the subnet in the format of the
    runtime and precision it was verified with (``subnet.onnx`` for onnxruntime fp32), with
    the trained ``weights`` of a supernet checkpoint and ``calibration_images`` when given
    (:func:`ofa_latency.export.export_model`; both checked before the search).
    ``level_tables``: tables this run measured of the same setting on the same machine (e.g.
    the profiling table the predictor was fitted on): the verification and the confirmation
    are expressed at their reference level, the predictor's (:func:`verify`).
    ``convert_jobs``: helper processes that make the candidates' models ahead of their timing
    (:func:`verify`).

    Raises
    ------
    UsageError
        When verification, or the confirmation, confirmed no candidate (the closest ones are
        in ``verify.csv``).
    """
    from ..errors import UsageError

    constraints = list(constraints)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise UsageError(f"top_k = {top_k!r}; the number of candidates must be an int >= 1")
    first = constraints[0].estimator
    setting = setting if setting is not None else first.setting
    fmt = None
    if export:  # the format, and a missing runtime said now, not after the search
        from ..export import check_deploy_runtime, check_export_sources

        where = {"backend": backend.name, "precision": backend.precision} \
            if backend is not None else setting or {}
        fmt = check_deploy_runtime(where.get("backend"), where.get("precision") or "fp32")
        check_export_sources(first.space, weights, calibration_images)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("searching %s: %s finder, %d budget(s), %s", first.space.name, finder,
                len(constraints), acc.label)
    ver, rounds = None, []
    if backend is not None:
        res, rounds = search_and_verify(constraints, acc, backend, batch_size, out / "verify.csv",
                                        finder=finder, seed=seed, top_k=top_k,
                                        progress=progress,
                                        allow_machine_change=allow_machine_change,
                                        refit=refit, max_rounds=max_rounds,
                                        level_tables=level_tables,
                                        convert_jobs=convert_jobs, **params)
        ver = rounds[-1]
        if ver.chosen is None:
            best = min(ver.rows, key=lambda r: r["measured_upper_ms"])
            ci = best["ci_pct"]
            raise UsageError(
                f"no candidate met {constraints[0].latency_ms} ms measured on {backend.name} "
                f"after {len(rounds)} searches; the closest measured {best['measured_ms']:.3f} "
                f"ms" + (f" +- {ci:.1f} % (90 % interval up to {best['measured_upper_ms']:.3f} "
                         f"ms)" if ci is not None else "")
                + f" (accuracy {best['accuracy']:.4f}): {json.dumps(best['arch'])}; every "
                  f"candidate is in {out / 'verify.csv'}")
        confirmation = confirm_choice(first.space, backend, ver, batch_size,
                                      out / "verify.csv", level_tables=level_tables)
        arch = ver.chosen_row["arch"]
    else:
        res = search(constraints, acc, finder, seed=seed, top_k=top_k, **params)
        arch, confirmation = res.arch, None
    (out / "search.json").write_text(json.dumps(res.to_dict(), indent=1))
    report = deploy(out, first.space, arch, res, ver, batch_size=batch_size, setting=setting,
                    hardware=hardware if hardware is not None else first.hardware,
                    estimators=list(estimators) or [c.name for c in constraints],
                    export=export, accuracy_source=getattr(acc, "source", None),
                    accuracy_note=getattr(acc, "note", None), confirmation=confirmation,
                    rounds=rounds,
                    verified_with=None if backend is None else verification_setting(backend),
                    export_format=fmt, weights=weights, calibration_images=calibration_images,
                    n_calibration_images=n_calibration_images)
    return SearchOutcome(res, rounds, report, out)


def verification_setting(backend) -> dict:
    """What ``report.json`` says the chosen subnet was verified with: the backend's setting
    and its runtime options (:data:`~ofa_latency.profiling.runtimes.RUNTIME_OPTIONS`)."""
    from ..profiling.runtimes import RUNTIME_OPTIONS

    versions = backend.versions()
    return {"backend": backend.name, "device": backend.device, "threads": backend.threads,
            "precision": backend.precision} | {k: versions[k] for k in RUNTIME_OPTIONS
                                                if k in versions}


def deploy(out_dir, space, arch: dict, result: SearchResult, verification: Verification | None,
           batch_size: int = 1, setting: dict | None = None, hardware: dict | None = None,
           estimators=(), export: bool = True, accuracy_source: str | None = None,
           accuracy_note: str | None = None, confirmation: dict | None = None,
           rounds=(), verified_with: dict | None = None, export_format: str | None = None,
           weights=None, calibration_images=None, n_calibration_images: int = 2000) -> dict:
    """Write the chosen subnet and its evidence into ``out_dir``; returns the report.

    The subnet is exported (``export``) in ``export_format``, by default the format of the
    runtime and precision it was verified with (``verified_with``; else the predictor's
    ``setting``): :func:`ofa_latency.export.deploy_format`, ONNX fp32 for torch; with random
    weights, or the trained ``weights`` of a supernet checkpoint (batch norms and int8 ranges
    calibrated on ``calibration_images``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sub = space.validate(arch)
    row = next((r for r in (verification.rows if verification else [])
                if space.validate(r["arch"]) == sub), None)
    cand = next((c for c in result.candidates if space.validate(c["arch"]) == sub), None)
    user = result.extra.get("user_budgets_ms", result.budgets_ms)
    report = {
        "space": space.name, "arch": sub.to_dict(), "finder": result.finder,
        # the chosen subnet may come from an earlier round's search than the last one
        "accuracy": cand["accuracy"] if cand else (row["accuracy"] if row else result.accuracy),
        "accuracy_label": result.accuracy_label,
        "accuracy_source": accuracy_source,
        "accuracy_note": accuracy_note,
        "predicted_ms": cand["latency_ms"] if cand else (
            [row["predicted_ms"]] + [None] * (len(result.budgets_ms) - 1) if row else None),
        # the user's budgets (a re-search after verification searched under a tighter one)
        "budgets_ms": ([verification.budget_ms] + user[1:]) if verification else user,
        "confidence": result.extra.get("confidence"),
        "search_budgets_ms": result.budgets_ms,
        "estimators": list(estimators),
        "measured_ms": row["measured_ms"] if row else None,
        "meets_budget_measured": row["meets"] if row else None,
        "measured_upper_ms": row.get("measured_upper_ms") if row else None,
        "confirmation": confirmation,
        # the winner's curse: how far the candidates each round's search chose measured above
        # their predictions, before (round 1) and after refitting on what was measured
        "rounds": [{"round": v.round, "refitted": v.refitted,
                    "search_budget_ms": v.search_budget_ms,
                    "candidates": sum(r.get("round") == v.round for r in v.rows) or len(v.rows),
                    "measured_over_predicted": round(v.measured_over_predicted(), 4),
                    "others_busy_pct": v.others_busy_pct, "models": v.models,
                    "waited_s": v.waited_s}
                   for v in rounds],
        "batch_size": batch_size, "setting": setting, "hardware": hardware,
        "search_seconds": result.seconds, "search_extra": result.extra,
        "verification": verification.to_dict() if verification else None,
        "verified_with": verified_with,
        "net_config": space.net_config(sub),
    }
    if export:
        from ..export import FORMATS, deploy_format, export_model

        where = verified_with or setting or {}
        fmt = export_format or deploy_format(where.get("backend"), where.get("precision") or
                                             "fp32")
        name = "subnet" + FORMATS[fmt][2]
        info = export_model(space, sub, out / name, fmt, batch_size=batch_size,
                            weights=weights, calibration_images=calibration_images,
                            n_calibration_images=n_calibration_images)
        report["deployed"] = {"path": name, "config": "subnet.config.json", "format": fmt,
                              "runtime": info["runtime"], "precision": info["precision"],
                              "quantization": info["quantization"],
                              "weights": info["weights"],
                              "agreement_with_torch": info["agreement"],
                              "size_mb": round(info["size_mb"], 3)}
        if fmt == "onnx":
            report["onnx"] = {"path": name, "config": "subnet.config.json",
                              "max_abs_diff_vs_torch": info["agreement"]["max_abs_diff"],
                              "size_mb": round(info["size_mb"], 3)}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "summary.md").write_text(summary_text(report))
    return report


def _state_text(confirmation: dict) -> str:
    """How near the machine's fast state the confirmation was timed, for the summary."""
    state, near = confirmation.get("state_pct"), confirmation.get("near_pct")
    if state is None:
        return ""
    if near is not None and state > near:
        return (f"; in a window {state:.1f} % above the fast state, never within {near:g} % "
                f"in {confirmation.get('windows', 1)} tries (there a large int8 subnet can "
                f"read a few percent fast)")
    return f"; the reference ran {state:+.1f} % from its level"


def summary_text(report: dict) -> str:
    """A short human-readable summary of a :func:`deploy` report."""
    acc = report["accuracy"]
    proxy = "proxy" in (report["accuracy_label"] or "").lower()
    lines = [f"# Chosen subnet ({report['space']}, {report['finder']} finder)", ""]
    if report.get("accuracy_note"):
        lines += [f"**{report['accuracy_note']}**", ""]
    lines += [
             f"- {'score (MACs proxy, not accuracy)' if proxy else 'predicted top-1 accuracy'}: "
             f"{acc:.4f}" + ("" if proxy else f" ({100 * acc:.2f} %)")]
    for i, b in enumerate(report["budgets_ms"]):
        name = report["estimators"][i] if i < len(report["estimators"]) else f"constraint {i}"
        pred = (report["predicted_ms"] or [None] * (i + 1))[i]
        pred = float("nan") if pred is None else pred
        sb = report["search_budgets_ms"][i]
        conf = (report.get("confidence") or [None] * (i + 1))[i]
        why = f"its {conf:g} upper bound meets the budget" if conf else "after verification"
        lines.append(f"- budget {b:.3f} ms ({name}): predicted {pred:.3f} ms"
                     + (f" (searched under {sb:.3f} ms: {why})" if abs(sb - b) > 1e-9 else ""))
    if report["measured_ms"] is not None:
        upper = report.get("measured_upper_ms")
        lines.append(f"- measured on the device: {report['measured_ms']:.3f} ms"
                     + (f" (90 % upper bound {upper:.3f} ms)" if upper else "")
                     + f" ({'meets' if report['meets_budget_measured'] else 'EXCEEDS'} the "
                       f"budget)")
        wci = (report.get("verification") or {}).get("window_ci_pct")
        if wci is not None:
            lines.append(f"  - from one fresh preparation to the next, this host moves a "
                         f"two-window measurement by +-{wci:.2f} % (90 %, pooled over every "
                         f"candidate); every candidate's upper bound lies at least that far "
                         f"above its measurement")
        for r in report.get("rounds") or []:
            lines.append(f"  - round {r['round']}"
                         + (" (predictor refitted on the measured candidates)"
                            if r["refitted"] else "")
                         + (f", searched under {r['search_budget_ms']:.3f} ms"
                            if r.get("search_budget_ms") else "")
                         + f": {r['candidates']} candidates measured "
                           f"{100 * (r['measured_over_predicted'] - 1):+.1f} % against their "
                           f"predictions (median)"
                         + (f"; {others_busy_text(r['others_busy_pct'])}"
                            if (r.get("others_busy_pct") or 0) >= OTHERS_BUSY_WARN_PCT else ""))
    elif any(report.get("confidence") or ()):
        lines.append("- not verified on the device: the upper bound holds for random subnets, "
                     "but a search picks those its predictor is most optimistic about, so an "
                     "unverified pick runs over more often than that (BENCHMARKS.md section "
                     "10.3); `--verify RUNTIME` measures the candidates and confirms the pick")
    else:
        lines.append("- not verified on the device (`--verify RUNTIME` measures the candidates "
                     "and confirms the pick)")
    if report.get("confirmation"):
        c = report["confirmation"]
        two = len(c.get("window_ms") or ()) == 2
        tol = c.get("tolerance_pct", NOISE_FLOOR_PCT)
        lines.append(f"- confirmed in {'two fresh windows' if two else 'a fresh window'}: "
                     f"{c['measured_ms']:.3f} ms"
                     + (f" (geometric mean of {c['window_ms'][0]:.3f} and "
                        f"{c['window_ms'][1]:.3f} ms: the first was over the budget by more "
                        f"than one window moves here)" if two else "")
                     + f" ({c['over_budget_pct']:+.1f} % against the budget; "
                     + (f"meets it within +{tol:.1f} %" if c["meets"] else
                        f"EXCEEDS it by more than +{tol:.1f} %")
                     + f", what {'two windows move' if two else 'one window moves'} here)"
                     + _state_text(c))
        for a in (c.get("attempts") or [])[:-1]:
            lines.append(f"  - not deployed: a more accurate candidate ({a['accuracy']:.4f}, "
                         f"measured {a['measured_ms']:.3f} ms in verification) confirmed "
                         f"{a['confirmed_ms']:.3f} ms in two fresh windows, over the budget")
    if report.get("deployed"):
        o = report["deployed"]
        a = o["agreement_with_torch"]
        w = o.get("weights") or {}
        inputs = a.get("inputs", "random")
        lines.append(f"- deployed as {o['format']} ({o['runtime']} {o['precision']}): "
                     f"{o['path']} "
                     f"({o['size_mb']:.1f} MB; against PyTorch fp32 on "
                     f"{'random inputs' if inputs == 'random' else inputs}: top-1 agreement "
                     f"{100 * a['top1_agreement']:.0f} %, max abs difference "
                     f"{a['max_abs_diff']:.1e}); OFA net config: {o['config']}")
        lines.append(f"  - weights: trained, from {w['path']} (batch norms: {w['batchnorm']})"
                     if w.get("path") else
                     "  - weights: random (a stand-in with the deployed network's latency; "
                     "'ofa-latency export' or 'search' with --weights and OFA's supernet "
                     "checkpoint export the trained subnet)")
    lines += ["", "```json", json.dumps(report["arch"]), "```", ""]
    return "\n".join(lines)

