"""A table's scale from all of its windows, and the check that a machine has not changed.

Every drift-corrected row stores its target/reference ratio (``ratio``) and the reference
subnet's fastest round in its own window (``ref_min_ms``; tables written before that column
existed have only the window's median, ``ref_latency_ms``). A table's reference level is a low
quantile of those window values, and ``latency_ms = ratio * level`` is recomputed whenever the
table is read, so the scale comes from all windows so far, not from one moment.

Why a low quantile: cutting each committed CPU table into consecutive chunks of 50 rows (as if
each had been a separate table of the same day), the chunk levels spread least with the 5 %
quantile of the window medians: coefficient of variation 1.3 % on the quiet onnxruntime table
against 4.3 % for their median and 8.2 % for a short calibration at the start
(``scripts/scale_estimator.py``, BENCHMARKS.md). Interference only adds time, so the fast
windows are the reproducible ones; and the fastest round of a window finds the machine's fast
state even in a noisy window, where the window's median does not (two tables made 3 minutes
apart, one in a noisy phase, had window-median levels 2.9 % apart).

A window whose fastest reference round is more than :data:`OFF_STATE_PCT` above its table's
level never saw the machine's fast state (:func:`off_state`): on a host that jumps between
states its row's ratio is off by several percent, so the profiler times it again and a table
keeps each subnet's row from the fast state (BENCHMARKS.md section 14.5).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..hardware import wait_until_quiet
from .timing import OFF_STATE_PCT

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["REF_LEVEL_QUANTILE", "MACHINE_CHANGE_PCT", "PROBE_WINDOWS", "reference_level_ms",
           "table_level_ms", "probe_reference_level_ms", "apply_table_scale", "level_change_pct",
           "row_levels_ms", "probe_reference_windows_ms", "level_band_pct", "PROBE_MORE_WINDOWS",
           "OFF_STATE_PCT", "off_state", "off_state_keys", "retry_off_state",
           "off_state_record", "rows_off_state_pct",
           "wait_for_fast_state", "busy_keys", "retry_keys", "note_quietest"]

REF_LEVEL_QUANTILE = 0.05
MACHINE_CHANGE_PCT = 7.0  # the least level change that can mean another machine state
PROBE_WINDOWS = 10  # reference-only windows timed to tell the machine's current level
PROBE_MORE_WINDOWS = 30  # more of them when the first ones disagree with the table (a busy phase)

_SETTING = ["space", "batch_size", "backend", "device_type", "device", "threads", "precision"]


def _window_values(rows: pd.DataFrame):
    """The per-window reference values a table's level is taken from, and which statistic
    they are: ``"min"`` (``ref_min_ms``) when every drift-corrected row has it, else
    ``"median"`` (``ref_latency_ms``, tables from before ``ref_min_ms``)."""
    import pandas as pd

    med = pd.to_numeric(rows["ref_latency_ms"], errors="coerce") \
        if "ref_latency_ms" in rows.columns else pd.Series(np.nan, index=rows.index)
    if "ref_min_ms" in rows.columns:
        mins = pd.to_numeric(rows["ref_min_ms"], errors="coerce")
        if mins[med.notna()].notna().all() and mins.notna().any():
            return mins, "min"
    return med, "median"


def reference_level_ms(ref_window_ms) -> float:
    """The reference level (ms) of windows whose reference latencies are ``ref_window_ms``
    (their :data:`REF_LEVEL_QUANTILE` quantile; nan when there is none)."""
    ref = np.asarray(ref_window_ms, dtype=np.float64)
    ref = ref[np.isfinite(ref) & (ref > 0)]
    return float(np.quantile(ref, REF_LEVEL_QUANTILE)) if len(ref) else float("nan")


def table_level_ms(rows: pd.DataFrame) -> tuple[float, str]:
    """The reference level (ms) of one setting's rows, and the window statistic it used."""
    values, statistic = _window_values(rows)
    return reference_level_ms(values), statistic


def probe_reference_windows_ms(ref_runner, protocol=None, windows: int = PROBE_WINDOWS,
                               statistic: str = "min") -> list[float]:
    """``windows`` windows of the prepared reference subnet alone, each summarised by
    ``statistic`` (``"min"``: its fastest round, as ``ref_min_ms``; ``"median"``: as
    ``ref_latency_ms``), in ms."""
    from .timing import TimingProtocol, measure

    protocol = protocol or TimingProtocol()
    results = [measure(ref_runner, None, None, protocol) for _ in range(windows)]
    return [r.min_ms if statistic == "min" else r.latency_raw_ms for r in results]


def probe_reference_level_ms(ref_runner, protocol=None, windows: int = PROBE_WINDOWS,
                             statistic: str = "min") -> float:
    """The machine's reference level now (ms): :func:`probe_reference_windows_ms` summarised
    as a table's windows are."""
    return reference_level_ms(probe_reference_windows_ms(ref_runner, protocol, windows,
                                                         statistic))


def level_band_pct(rows: pd.DataFrame) -> float:
    """How far (%) a probe of the same machine may land from a table's level: the table's own
    spread of window values (its median window against its level, the 5 % quantile), and at
    least :data:`MACHINE_CHANGE_PCT`. On a quiet host the band is the floor; on a busy one,
    where windows spread by 10-30 %, it widens with them, so noise is not taken for a new
    machine."""
    values, _ = _window_values(rows)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) < 2:
        return MACHINE_CHANGE_PCT
    return max(MACHINE_CHANGE_PCT, 100.0 * (float(np.median(v)) / reference_level_ms(v) - 1.0))


def off_state(ref_min_ms, level_ms, pct: float = OFF_STATE_PCT) -> np.ndarray:
    """Whether windows whose fastest reference rounds were ``ref_min_ms`` missed the fast
    state of a table whose level is ``level_ms`` (more than ``pct`` percent above it); False
    where either is unknown (NaN)."""
    ref_min = np.asarray(ref_min_ms, dtype=np.float64)
    level = np.asarray(level_ms, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray(ref_min > level * (1.0 + pct / 100.0)) & np.isfinite(ref_min) & \
            np.isfinite(level)


def off_state_record(pct: float) -> dict:
    """What a row's ``versions`` records of the off-state threshold ``pct`` its table was made
    with: nothing at :data:`OFF_STATE_PCT`, else ``{"off_state_pct": pct}``."""
    return {} if float(pct) == OFF_STATE_PCT else {"off_state_pct": float(pct)}


def rows_off_state_pct(versions) -> np.ndarray:
    """Each row's off-state threshold (percent) from its ``versions`` (JSON text, as
    :func:`off_state_record` wrote it): :data:`OFF_STATE_PCT` where none is recorded."""
    import json

    def pct(text) -> float:
        if isinstance(text, str) and "off_state_pct" in text:
            try:
                return float(json.loads(text)["off_state_pct"])
            except (ValueError, KeyError, TypeError):
                pass
        return OFF_STATE_PCT

    known: dict = {}  # a table's rows share a few texts: each parsed once
    return np.array([known[t] if t in known else known.setdefault(t, pct(t))
                     for t in versions], dtype=float)


def off_state_keys(fastest: dict, refs, pct: float = OFF_STATE_PCT) -> list:
    """The keys of ``fastest`` (a subnet -> the fastest reference round of its windows, ms)
    none of whose windows met the fast state of a table whose windows' fastest reference rounds
    are ``refs`` (:func:`off_state` against their level, ``pct`` percent), in order."""
    if not fastest or not len(refs):
        return []
    keys = list(fastest)
    flags = off_state([fastest[k] for k in keys], reference_level_ms(refs), pct)
    return [k for k, f in zip(keys, flags) if f]


def wait_for_fast_state(ref_runner, level_ms: float, max_s: float, runs: int = 3,
                        pct: float = OFF_STATE_PCT) -> tuple[bool, float]:
    """Time rounds of ``runs`` runs of the prepared reference subnet until one round's fastest
    run is within ``pct`` percent of ``level_ms`` (the machine is in its fast state again) or
    ``max_s`` seconds of runs are spent. Returns whether the fast state came and the seconds
    spent (the runs' own time, so a fake device's simulated time counts as a real one's)."""
    spent = 0.0
    while spent < max_s:
        times = [float(t) for t in ref_runner.run(runs)]
        spent += sum(times)
        if not off_state(1e3 * min(times), level_ms, pct):
            return True, spent
    return False, spent


def busy_keys(quietest: dict, busy_pct: float | None) -> list:
    """The keys of ``quietest`` (a subnet -> the lowest share of its CPUs other processes kept
    busy in any of its windows, percent) that never had them under ``busy_pct``, in order;
    none where ``busy_pct`` is None."""
    if busy_pct is None:
        return []
    return [k for k, v in quietest.items() if v >= busy_pct]


def retry_keys(fastest: dict, refs, quietest: dict | None = None,
               busy_pct: float | None = None, pct: float = OFF_STATE_PCT) -> list:
    """What :func:`retry_off_state` times again: the subnets off the fast state
    (:func:`off_state_keys` at ``pct``), then those timed only beside other work
    (:func:`busy_keys`)."""
    off = off_state_keys(fastest, refs, pct)
    off_set = set(off)
    return off + [k for k in busy_keys(quietest or {}, busy_pct) if k not in off_set]


def note_quietest(quietest: dict, key, windows) -> None:
    """Lower ``quietest[key]`` to the lowest ``others_busy_pct`` among ``windows`` (timing
    results of ``key``) that know it (:func:`busy_keys`' input)."""
    known = [w.others_busy_pct for w in windows if not np.isnan(w.others_busy_pct)]
    if known:
        quietest[key] = min(quietest.get(key, np.inf), *known)


def retry_off_state(fastest: dict, refs: list, retries: int, measure, where="table",
                    ref_runner=None, wait_s: float = 0.0, runs: int = 3,
                    quietest: dict | None = None, busy_pct: float | None = None,
                    pct: float = OFF_STATE_PCT) -> list:
    """Time again, up to ``retries`` times, the subnets of ``fastest`` none of whose windows
    met the fast state (:func:`off_state_keys`) and, with ``busy_pct``, those of ``quietest``
    all of whose windows shared their CPUs with other processes at least that busy
    (:func:`busy_keys`): ``measure(key)`` times one, appends its windows' fastest reference
    rounds to ``refs``, lowers ``fastest[key]`` and ``quietest[key]``. With a prepared
    ``ref_runner`` and ``wait_s`` > 0, an off-state subnet is timed again only once the
    machine is back in its fast state (:func:`wait_for_fast_state`, up to ``wait_s`` seconds
    of reference runs), and a busy one only once the others have been quieter than
    ``busy_pct`` for a probe (:func:`~ofa_latency.hardware.wait_until_quiet`, up to
    ``wait_s``): a spell longer than that ends the try, so it costs ``wait_s`` per try rather
    than windows that cannot do better. ``pct``: how far (percent) above the table's level a
    window's fastest reference round is off the fast state. Returns the keys still off the
    fast state or busy (warned about)."""
    quietest = {} if quietest is None else quietest
    waited = 0.0
    for attempt in range(retries):
        again = retry_keys(fastest, refs, quietest, busy_pct, pct)
        if not again:
            break
        off_set = set(off_state_keys(fastest, refs, pct))
        logger.info("%s: of %d subnets, %d were timed while the machine was in a slower state "
                    "(the reference's fastest round > %g %% above the table's level %.4g ms) "
                    "and %d only beside other processes keeping their CPUs >= %g %% busy: "
                    "timing them again (%d of %d)", where, max(len(fastest), len(quietest)),
                    len(off_set), pct,
                    reference_level_ms(refs) if len(refs) else float("nan"),
                    len(again) - len(off_set), busy_pct if busy_pct is not None else float("nan"),
                    attempt + 1, retries)
        for i, key in enumerate(again):
            if wait_s > 0 and busy_pct is not None and quietest.get(key, -1.0) >= busy_pct:
                came, spent = wait_until_quiet(busy_pct, wait_s)
                waited += spent
                if not came:
                    logger.info("%s: other processes kept the CPUs >= %g %% busy for %.3g s; "
                                "%d subnet(s) not timed again in try %d", where, busy_pct,
                                spent, len(again) - i, attempt + 1)
                    break
            if ref_runner is not None and wait_s > 0 and key in off_set:
                came, spent = wait_for_fast_state(ref_runner, reference_level_ms(refs), wait_s,
                                                  runs, pct)
                waited += spent
                if not came:
                    logger.info("%s: the machine stayed in its slower state for %.3g s of "
                                "reference runs; %d subnet(s) not timed again in try %d", where,
                                spent, len(again) - i, attempt + 1)
                    break
            measure(key)
    left = retry_keys(fastest, refs, quietest, busy_pct, pct) if retries else []
    off = len(set(left) & set(off_state_keys(fastest, refs, pct)))
    busy = len(left) - off
    if waited:
        logger.info("%s: %.3g s spent waiting for the fast state or for quieter CPUs", where,
                    waited)
    if off:
        logger.warning("%s: %d subnet(s) were timed only while the machine was in a slower "
                       "state (up to %d tries each); their rows are kept (the same call again "
                       "tries them again)", where, off, retries + 1)
    if busy:
        logger.warning("%s: %d subnet(s) were timed only beside other processes keeping their "
                       "CPUs >= %g %% busy (up to %d tries each); their rows are kept (the same "
                       "call again, once the machine is quiet, tries them again)", where,
                       busy, busy_pct, retries + 1)
    return left


def level_change_pct(level_ms: float, table_level_ms: float) -> float:
    """How far ``level_ms`` is from a table's level, in percent (positive: slower now)."""
    return 100.0 * (level_ms / table_level_ms - 1.0)


def row_levels_ms(keys, ratio, ref_latency_ms, ref_min_ms) -> np.ndarray:
    """Per row, the reference level (ms) of its setting's windows; NaN for rows that are not
    drift-corrected (no ``ratio`` or no reference latency).

    Parameters
    ----------
    keys : sequence of str
        One key per row naming its setting (rows of one key share a level).
    ratio, ref_latency_ms, ref_min_ms : array-like of float
        The rows' columns, NaN where empty.
    """
    keys = np.asarray(keys, dtype=object)
    ratio, med, mins = (np.asarray(v, dtype=np.float64) for v in (ratio, ref_latency_ms,
                                                                  ref_min_ms))
    out = np.full(len(keys), np.nan)
    scaled = np.isfinite(ratio) & np.isfinite(med)
    for key in dict.fromkeys(keys[scaled]):
        rows = scaled & (keys == key)
        m = mins[rows]
        values = m if np.isfinite(m).all() else med[rows]  # "min" only when every row has it
        out[rows] = reference_level_ms(values)
    return out


def apply_table_scale(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``latency_ms`` and ``ref_baseline_ms`` of drift-corrected rows from the
    reference level of their setting's windows (on a copy; other rows unchanged)."""
    import pandas as pd

    if "ratio" not in df.columns or "ref_latency_ms" not in df.columns or df.empty:
        return df
    num = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) if c in df.columns
           else np.full(len(df), np.nan) for c in ("ratio", "ref_latency_ms", "ref_min_ms")}
    cols = [c for c in _SETTING if c in df.columns]
    keys = ["|".join(map(str, t)) for t in zip(*(df[c] for c in cols))]
    level = row_levels_ms(keys, num["ratio"], num["ref_latency_ms"],
                          num["ref_min_ms"])
    scaled = np.isfinite(level)
    if not scaled.any():
        return df
    df = df.copy()
    df["ref_baseline_ms"] = pd.to_numeric(df["ref_baseline_ms"], errors="coerce")
    df.loc[scaled, "latency_ms"] = np.round(num["ratio"][scaled] * level[scaled], 5)
    df.loc[scaled, "ref_baseline_ms"] = np.round(level[scaled], 5)
    return df
