"""Profile a list of subnets on one backend setting into a resumable measurement table."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from ..datasets import SETTING_COLUMNS, MeasurementLog, assign_split, utc_timestamp
from ..errors import UsageError
from ..spaces import reference_subnet
from ..hardware import (OTHERS_BUSY_WARN_PCT, cpu_snapshot, hardware_differences,
                        others_busy_pct, others_busy_text)
from .conversions import CACHE
from .modelstore import model_store
from .scale import (PROBE_MORE_WINDOWS, level_band_pct, level_change_pct, note_quietest,
                    off_state_record, probe_reference_level_ms, probe_reference_windows_ms,
                    reference_level_ms, retry_keys, retry_off_state, table_level_ms,
                    wait_for_fast_state)
from .timing import (TimingProtocol, WindowChooser, busy_mean, combine_windows,
                     measure_windows)

logger = logging.getLogger(__name__)

__all__ = ["profile_subnets", "MachineChangedError", "table_hardware_path",
           "reference_fingerprint_ms", "run_level_ms"]


class MachineChangedError(UsageError):
    """The machine (its descriptor or its speed) differs from the one a table was measured on."""


def backend_setting(space, backend, batch_size) -> dict:
    """The setting columns of a table row measured on ``backend`` (one table holds one)."""
    return {"space": space.name, "batch_size": batch_size, "backend": backend.name,
            "device_type": backend.device, "device": backend.device_name(),
            "threads": backend.threads, "precision": backend.precision}


def setting_mask(df, setting):
    """Which rows of ``df`` belong to ``setting`` (:func:`backend_setting`)."""
    return ((df["space"] == setting["space"]) & (df["backend"] == setting["backend"])
            & (df["batch_size"] == setting["batch_size"])
            & (df["device_type"] == setting["device_type"])
            & (df["threads"].astype(float) == float(setting["threads"]))
            & (df["precision"] == setting["precision"])
            & (df["device"].astype(str) == setting["device"]))


def _describe(setting) -> str:
    return (f"{setting['backend']}/{setting['device_type']} {setting['threads']} thread(s) "
            f"batch {setting['batch_size']} {setting['precision']} on {setting['device']} "
            f"({setting['space']})")


def check_one_setting(log, existing, setting, allow_mixed=False):
    """Refuse (:class:`UsageError`) to append ``setting`` to a table of another one."""
    mine = setting_mask(existing, setting)
    if allow_mixed or mine.all():
        return
    other = existing[~mine][SETTING_COLUMNS].drop_duplicates().iloc[0].to_dict()
    raise UsageError(f"{log.path} holds measurements of another setting "
                     f"({_describe(other)}); this run is {_describe(setting)}. A table holds "
                     f"one setting: use another --out, or --allow-mixed-settings to mix them")


def run_level_ms(setting: dict, tables) -> float:
    """The reference level (ms) that the tables ``tables`` (DataFrames) give ``setting``
    (:func:`backend_setting`): their windows of that setting together. A run that profiles a
    machine and then verifies on it (the demo) expresses its verification at its profiling
    table's level, the level its predictor was fitted at, rather than at the verification
    table's own.

    Each table alone takes the level of the moments it saw; a shared host that moves between
    a fast and a 30-45 % slower state for minutes at a time (BENCHMARKS.md 15.1) gives a
    one-minute table that saw only the slow state a level that far above a longer table's,
    though their ratios agree. NaN when no row of that setting is drift-corrected."""
    parts = [o[setting_mask(o, setting)] for o in tables
             if len(o) and "ref_latency_ms" in o.columns]
    parts = [p for p in parts if len(p)]
    if not parts:
        return float("nan")
    return table_level_ms(pd.concat(parts, ignore_index=True))[0]


def check_runtime_options(log, mine, versions: dict, allow_mixed=False):
    """Refuse (:class:`UsageError`) to append rows measured with other runtime options
    (:data:`~.runtimes.RUNTIME_OPTIONS`, e.g. LiteRT's delegate) than the table's rows
    ``mine``; ``versions`` is this run's backend's."""
    from .runtimes import option_conflicts, runtime_options

    options = runtime_options(versions)
    if allow_mixed or not options or not len(mine):
        return
    for text in mine["versions"].dropna().unique():
        recorded = runtime_options(text)
        conflicts = option_conflicts(recorded, options) if recorded is not None else []
        if conflicts:
            raise UsageError(f"{log.path} was measured with other runtime options "
                             f"({'; '.join(conflicts)}). A table holds one: use another "
                             f"--out, or --allow-mixed-settings to mix them")


def _check_machine(log, hw_path, hardware, mine, ref_runner, protocol, allow_change):
    """Refuse to append when the machine's identity or its reference level moved beyond the
    table's own noise (see :func:`profile_subnets`)."""
    problems = []
    if hardware is not None and hw_path.exists():
        recorded = json.loads(hw_path.read_text())
        diffs = hardware_differences(recorded, hardware, measured=False)
        if diffs:
            problems.append("its hardware differs: " + "; ".join(diffs))
        moved = sorted(set(hardware_differences(recorded, hardware)) - set(diffs))
        if moved:
            logger.warning("%s: measured throughput moved (%s); a busy machine moves these, "
                           "so they are not taken as another machine", log.path, "; ".join(moved))
    level_now = float("nan")
    if ref_runner is not None and mine["ref_latency_ms"].notna().any():
        table_level, statistic = table_level_ms(mine)
        band = level_band_pct(mine)
        probes = probe_reference_windows_ms(ref_runner, protocol, statistic=statistic)
        level_now = reference_level_ms(probes)
        if abs(level_change_pct(level_now, table_level)) > band:  # a busy phase, or a change?
            probes += probe_reference_windows_ms(ref_runner, protocol, PROBE_MORE_WINDOWS,
                                                 statistic)
            level_now = reference_level_ms(probes)
        change = level_change_pct(level_now, table_level)
        logger.info("%s: reference level now %.3f ms over %d windows, table %.3f ms (%+.1f %%, "
                    "band +-%.1f %%)", log.path, level_now, len(probes), table_level, change, band)
        if abs(change) > band:
            problems.append(f"the reference subnet runs at {level_now:.3f} ms now against "
                            f"{table_level:.3f} ms in the table ({change:+.1f} % over "
                            f"{len(probes)} probe windows; the table's own windows spread by "
                            f"+-{band:.1f} %)")
    if problems and not allow_change:
        raise MachineChangedError(
            f"{log.path} was measured on another machine state: " + "; ".join(problems)
            + ". If this is the same machine, only busy now: re-run when it is quieter, or "
              "append anyway with --allow-machine-change (rows keep their ratio to the "
              "reference; the table's level is recomputed from all windows; but a shared "
              "host's state also moves which subnets are fast, so a table mixing states "
              "trains a worse predictor than one measured within one state). If it is "
              "another machine or a lasting new state: profile it into a new table (another "
              "--out) and fine-tune to it")
    for p in problems:
        logger.warning("%s: appending although %s (--allow-machine-change)", log.path, p)
    return level_now


def profile_subnets(space, backend, subnets: Iterable, batch_size: int, out_path,
                    protocol: TimingProtocol = TimingProtocol(), drift_correction: bool = True,
                    progress: bool = True, hardware: Optional[dict] = None,
                    allow_mixed_settings: bool = False,
                    allow_machine_change: bool = False,
                    check_machine: bool = True,
                    retime_above_pct: Optional[float] = None,
                    convert_jobs: int | str = 0, wait_near_pct: Optional[float] = None,
                    level_ms: Optional[float] = None) -> pd.DataFrame:
    """Measure ``subnets`` and append one row each to ``out_path``; resume where it stopped.

    Subnets already in the table for the same setting (space, backend, device, threads,
    batch size, precision) are skipped, so re-running the same call after a kill continues
    with no row lost or duplicated. A table holds one setting on one machine state: appending
    another setting, or to a table whose machine differs (its identity: CPU model, cores, GPU,
    backend, threads; :func:`~ofa_latency.hardware.hardware_differences`) or whose reference
    level the machine no longer reaches (probed for 10 windows, 30 more when they disagree,
    against a band from the table's own window spread: :func:`~.scale.level_band_pct`) raises
    unless allowed. A requested subnet none of whose windows saw the machine's fast state
    (:func:`~.scale.off_state`) is timed again at the end, up to
    ``protocol.off_state_retries`` times, each once the machine is back in its fast state
    (waiting up to ``protocol.off_state_wait_s``); the table keeps its fast-state row. So is
    one all of whose windows shared their CPUs with other processes keeping them at least
    ``protocol.busy_retry_pct`` busy, each try once they are quieter; the table keeps its
    quietest-timed row.

    Parameters
    ----------
    space : SearchSpace
    backend : ProfilingBackend
    subnets : iterable of arch dicts or Subnet
    batch_size : int
        Images per forward pass.
    out_path : str or Path
        The CSV measurement table (created if missing).
    protocol : TimingProtocol
        Timing parameters (rounds, windows per subnet; with ``auto_windows`` the table
        chooses one or two windows from its own window-to-window spread:
        :class:`~.timing.WindowChooser`).
    drift_correction : bool
        Time the reference subnet in each window and store the target/reference ratio; the
        table's scale comes from all its windows (:mod:`.scale`).
    hardware : dict, optional
        Hardware descriptor, written beside a new table as ``<out>.hardware.json`` and
        compared with the recorded one when appending.
    allow_mixed_settings, allow_machine_change : bool
        Append although the table holds another setting / another machine state.
    check_machine : bool
        False for a table this run owns (created by the same search or demo a moment ago):
        no probe, no machine-state check.
    retime_above_pct : float, optional
        Also measure again, once per call, every requested subnet already in the table whose
        row's own 90 % half-width (``ci_pct``) is above this (percent), or unknown (0:
        every one, a second pass): a row measured in a noisy window gets another window,
        and the table combines each subnet's rows
        (:func:`~ofa_latency.datasets.drop_duplicate_rows`). Within one machine state: a
        later state can move which subnets are fast by more than a row's interval sees
        (BENCHMARKS.md section 16.8; section 14.20: over twelve hours, one host did not).
    convert_jobs : int or "auto"
        For a backend whose models are slow to make (OpenVINO, LiteRT, ONNX Runtime on CPU:
        :meth:`~._base.ProfilingBackend.convert`), make the next subnets' models in this many
        helper processes on the CPUs this process is not pinned to, while it times the
        current one (:class:`~.ahead.ConvertAhead`). 0: convert each subnet here, then time it.
        ``"auto"`` (``profile``'s default): one helper for int8 and LiteRT settings where this
        process is pinned and another CPU is free, else 0 (:func:`~.ahead.auto_convert_jobs`).
    wait_near_pct : float, optional
        Before each subnet, run the reference alone until a round comes within this (percent)
        of ``level_ms`` (the machine's fast state), for up to ``protocol.off_state_wait_s``
        seconds of runs (:func:`~.scale.wait_for_fast_state`): verification times its
        candidates so, as the confirmation does (in a slower state a large int8 subnet reads
        a few percent fast, BENCHMARKS.md sections 16.36-16.37). None: no wait.
    level_ms : float, optional
        The level ``wait_near_pct`` waits for (e.g. the profiling table's, the predictor's);
        default the table's own, once it has windows.

    Returns
    -------
    pandas.DataFrame
        The rows of this setting for the requested subnets (old and new), with the table's
        current scale. ``attrs["others_busy_pct"]``: how busy other processes kept the CPUs
        this process ran on while it timed (percent of their time, over this call's windows,
        or over the whole call where no window knows it;
        :func:`~ofa_latency.hardware.others_busy_pct`; None where unknown or nothing was
        timed), logged as a warning from :data:`~ofa_latency.hardware.OTHERS_BUSY_WARN_PCT`.
        ``attrs["waited_s"]``: seconds of reference runs ``wait_near_pct`` waited.
        ``attrs["models"]``: how many runtime models this call converted in this process
        (``converted``; the reference's included) and read from the model cache
        (``from_cache``, :mod:`.modelstore`), and how many subnets' models helper processes
        made ahead (``subnets_ahead``). ``attrs["auto_windows"]`` (with
        ``protocol.auto_windows``): how many of this call's subnets were timed in two windows
        (``two_windows`` of ``timed``) and one window's pooled half-width at the end
        (``one_window_ci_pct``, percent; None while unknown), and that in one line
        (``summary``).

    Raises
    ------
    UsageError
        Another setting in the table, or rows measured with other runtime options
        (:data:`RUNTIME_OPTIONS`; without ``allow_mixed_settings``).
    MachineChangedError
        Another machine state (without ``allow_machine_change``).
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r}; must be an int >= 1")
    if convert_jobs != "auto" and (isinstance(convert_jobs, bool)
                                   or not isinstance(convert_jobs, int) or convert_jobs < 0):
        raise ValueError(f"convert_jobs = {convert_jobs!r}; must be an int >= 0 or 'auto'")
    check_retime_above(retime_above_pct)
    if wait_near_pct is not None and not (wait_near_pct > 0 and math.isfinite(wait_near_pct)):
        raise ValueError(f"wait_near_pct = {wait_near_pct!r}; must be a finite number > 0 "
                         f"(percent above the level) or None")
    subs = list(dict.fromkeys(space.validate(a) for a in subnets))
    waited_s = 0.0
    with MeasurementLog(out_path) as log:  # the lock is held until every row is written
        made_before = (CACHE.conversions, CACHE.store_hits)
        models = {"converted": 0, "from_cache": 0, "subnets_ahead": 0}
        hw_path = table_hardware_path(log.path)
        setting = backend_setting(space, backend, batch_size)
        existing = log.read()
        check_one_setting(log, existing, setting, allow_mixed_settings)
        mine = existing[setting_mask(existing, setting)]
        versions = backend.versions()
        check_runtime_options(log, mine, versions, allow_mixed_settings)
        done = set(zip(mine["arch"], mine["image_size"].astype(int)))
        todo = [s for s in subs if (s.arch_json(), s.image_size) not in done]
        logger.info("%s: %d of %d subnets already measured, %d to go", log.path,
                    len(subs) - len(todo), len(subs), len(todo))
        if retime_above_pct is not None and len(mine):
            todo += subnets_to_retime(subs, mine, retime_above_pct, log.path)[0]
        refs = [float(v) for v in mine["ref_min_ms"].dropna()]
        # per requested subnet: the fastest reference round of its windows so far (ms), and
        # the lowest share of its CPUs other processes kept busy in them (percent)
        fastest = _lowest_per_subnet(subs, mine, "ref_min_ms") \
            if drift_correction and protocol.off_state_retries else {}
        busy_pct = protocol.busy_retry_pct if protocol.off_state_retries else None
        quietest = _lowest_per_subnet(subs, mine, "others_busy_pct") \
            if busy_pct is not None else {}
        pct = protocol.off_state_pct
        retry_old = retry_keys(fastest, refs, quietest, busy_pct, pct)

        ref_runner = None
        if (todo or retry_old) and drift_correction:
            ref_runner = backend.prepare(space, reference_subnet(space), batch_size)
        if (todo or retry_old) and len(mine) and check_machine:
            _check_machine(log, hw_path, hardware, mine, ref_runner, protocol,
                           allow_machine_change)
        if hardware is not None and not hw_path.exists():
            hw_path.write_text(json.dumps(hardware, indent=1))

        versions = json.dumps({**versions, **off_state_record(pct)}, sort_keys=True)
        bar = tqdm(total=len(subs), initial=len(subs) - len(todo), disable=not progress,
                   unit="subnet", desc=f"{backend.name}/{backend.device} t{backend.threads} "
                                       f"b{batch_size}")

        chooser = WindowChooser(protocol, pd.to_numeric(mine["window_sd_pct"], errors="coerce")
                                if "window_sd_pct" in mine.columns else ())

        def measure_one(sub, again=False):
            nonlocal waited_s
            if wait_near_pct is not None and ref_runner is not None:
                lvl = level_ms if level_ms is not None else \
                    (reference_level_ms(refs) if refs else math.nan)
                if math.isfinite(lvl):
                    waited_s += wait_for_fast_state(ref_runner, lvl, protocol.off_state_wait_s,
                                                   protocol.runs_per_round, wait_near_pct)[1]
            windows = measure_windows(lambda: backend.prepare(space, sub, batch_size), ref_runner,
                                      protocol, chooser.next_windows())
            chooser.add(windows)
            res = combine_windows(windows)
            if not math.isnan(res.ref_min_ms):
                refs.extend(w.ref_min_ms for w in windows)
                fastest[sub] = min(fastest.get(sub, math.inf), res.ref_min_ms)
            timed.extend(w for w in windows if not math.isnan(w.others_busy_pct))
            if busy_pct is not None:
                note_quietest(quietest, sub, windows)
            row = measurement_row(space, setting, sub, res, refs, versions)
            log.append(row)
            bar.total += again
            bar.update(1)
            bar.set_postfix(last_ms=row["latency_ms"], windows=len(windows),
                            **({"again": True} if again else {}))

        ahead = None
        if len(todo) > 1 and convert_jobs:
            from .ahead import ConvertAhead, auto_convert_jobs

            jobs = auto_convert_jobs(backend) if convert_jobs == "auto" else convert_jobs
            if jobs and backend.convert(space, todo[0], batch_size):
                ahead = ConvertAhead(backend, space, todo[1:], batch_size, jobs)

        def ready_then_measure(sub, again=False):
            if ahead is not None:
                ahead.ready(sub)
            measure_one(sub, again)

        before = cpu_snapshot() if todo or retry_old else None
        timed = []  # this call's windows that know how busy the others were
        try:
            for sub in todo:
                ready_then_measure(sub)
            if ahead is not None and protocol.off_state_retries:
                # the subnets about to be timed again: their models left the memory cache
                # long ago (the model store has them, unless it is off or they did not fit)
                ahead.add(retry_keys(fastest, refs, quietest, busy_pct, pct))
            retry_off_state(fastest, refs, protocol.off_state_retries,
                            lambda sub: ready_then_measure(sub, again=True), str(log.path),
                            ref_runner=ref_runner, wait_s=protocol.off_state_wait_s,
                            runs=protocol.runs_per_round, quietest=quietest, busy_pct=busy_pct,
                            pct=pct)
        finally:
            if ahead is not None:
                ahead.close()
                logger.info("%s: %d subnets' models converted ahead (of %d timed, retries "
                            "included); %.1f s spent waiting for them", log.path,
                            ahead.handed_over, ahead.timed, ahead.seconds_waited)
            models = {"converted": CACHE.conversions - made_before[0],
                      "from_cache": CACHE.store_hits - made_before[1],
                      "subnets_ahead": ahead.handed_over if ahead is not None else 0}
            if any(models.values()):
                store = model_store()
                logger.info("%s: %d models converted in this process, %d read from the model "
                            "cache %s", log.path, models["converted"], models["from_cache"],
                            store.folder if store is not None else "(off)")
        bar.close()
        if protocol.auto_windows:
            logger.info("%s: %s", log.path, chooser.summary())
        # what the timings shared their CPUs with: the windows' own shares (a conversion
        # between them, in a helper process, is not), else the whole call's
        busy = busy_mean(timed) if timed else others_busy_pct(before, cpu_snapshot())
        if busy is not None:
            (logger.warning if busy >= OTHERS_BUSY_WARN_PCT else logger.info)(
                "%s: while it timed, %s", log.path, others_busy_text(busy))
    table = log.read()
    table = table[setting_mask(table, setting)]
    keys = {(s.arch_json(), s.image_size) for s in subs}
    sel = [(a, int(r)) in keys for a, r in zip(table["arch"], table["image_size"])]
    out = table[sel].reset_index(drop=True)
    out.attrs["others_busy_pct"] = busy
    out.attrs["models"] = models
    out.attrs["waited_s"] = round(waited_s, 2)
    if waited_s:
        logger.info("%s: %.3g s of reference runs spent waiting for the fast state before "
                    "subnets", out_path, waited_s)
    if protocol.auto_windows:
        w = chooser.one_window_ci_pct
        out.attrs["auto_windows"] = {"two_windows": chooser.two_windows, "timed": chooser.timed,
                                     "one_window_ci_pct": round(w, 3) if np.isfinite(w) else None,
                                     "summary": chooser.summary()}
    return out


def _lowest_per_subnet(subs, rows: pd.DataFrame, column: str) -> dict:
    """Per subnet of ``subs`` with a value of ``column`` in ``rows``: its lowest (e.g. its
    windows' fastest reference round, ``ref_min_ms``)."""
    by_key = {(s.arch_json(), s.image_size): s for s in subs}
    out = {}
    if not len(rows) or column not in rows.columns:
        return out
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
    for key, v in zip(zip(rows["arch"], rows["image_size"].astype(int)), values):
        sub = by_key.get(key)
        if sub is not None and np.isfinite(v):
            out[sub] = min(out.get(sub, math.inf), float(v))
    return out


def check_retime_above(retime_above_pct) -> None:
    """Raise ValueError unless ``retime_above_pct`` is None or a finite number >= 0 (percent;
    0: every subnet)."""
    if retime_above_pct is not None and not (isinstance(retime_above_pct, (int, float))
                                             and not isinstance(retime_above_pct, bool)
                                             and 0 <= retime_above_pct < math.inf):
        raise ValueError(f"retime_above_pct = {retime_above_pct!r}; must be a finite number "
                         f">= 0 (percent; 0: every subnet)")


def subnets_to_retime(subs, rows: pd.DataFrame, retime_above_pct: float,
                      where="table") -> tuple[list, set]:
    """What ``retime_above_pct`` measures again: the subnets of ``subs`` whose row in
    ``rows`` has an own 90 % half-width (``ci_pct``) above ``retime_above_pct`` or unknown
    (0: every one, a second pass), and the ``(arch, image_size)`` keys of those rows (logged
    for ``where``)."""
    ci = rows["ci_pct"] if "ci_pct" in rows.columns else pd.Series(np.nan, rows.index)
    loose = {k for k, c in zip(zip(rows["arch"], rows["image_size"].astype(int)), ci)
             if retime_above_pct == 0 or not (np.isfinite(c) and c <= retime_above_pct)}
    again = [s for s in subs if (s.arch_json(), s.image_size) in loose]
    logger.info("%s: %d of them measured again (their row's 90 %% half-width is above %g %% "
                "or unknown)", where, len(again), retime_above_pct)
    return again, loose


def measurement_row(space, setting: dict, sub, result, refs, versions: str,
                    source: str = "ofa-latency") -> dict:
    """One table row: ``setting`` (:func:`backend_setting`), the subnet, the combined
    measurement ``result`` (:class:`~.timing.TimingResult`) at the reference level of the
    windows ``refs`` so far (reference minima, ms; the table re-levels on append), its split,
    timestamp, library ``versions`` (JSON) and ``source``."""
    level = reference_level_ms(refs) if refs else float("nan")
    return {**setting, "arch": sub.arch_json(), "image_size": sub.image_size,
            **result.columns(level), "split": assign_split(space.name, sub),
            "timestamp": utc_timestamp(), "versions": versions, "source": source}


def table_hardware_path(table_path) -> Path:
    """Where a table's hardware descriptor lives: ``<table>.hardware.json``."""
    p = Path(table_path)
    return p.with_name(p.name + ".hardware.json")


def reference_fingerprint_ms(backend: str = "onnxruntime", threads: int = 1, device: str = "cpu",
                             batch_size: int = 1, space: str = "ofa_mbv3_w1.2") -> float:
    """The reference subnet's latency (ms) on a backend setting: one number that says how fast
    this machine is for it, directly comparable with a table's ``ref_baseline_ms`` (the same
    statistic: :func:`~.scale.probe_reference_level_ms`; a few seconds).
    """
    from ..spaces import get_space
    from . import create_backend  # registers the built-in backends

    sp = get_space(space)
    be = create_backend(backend, threads=threads, device=device)
    return probe_reference_level_ms(be.prepare(sp, reference_subnet(sp), batch_size))
