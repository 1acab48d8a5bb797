"""A table's scale from all of its windows, and the check that a machine has not changed.

Every drift-corrected row stores its target/reference ratio (``ratio``) and the reference
subnet's latency in its own window (``ref_latency_ms``). A table's reference level is a low
quantile of its windows' reference latencies, and ``latency_ms = ratio * level`` is recomputed
whenever the table is read, so the scale comes from all windows so far, not from one moment.

Why the 5 % quantile: cutting each committed CPU table into consecutive chunks of 50 rows (as
if each had been a separate table of the same day), the chunk levels spread least with it:
coefficient of variation 1.3 % on the quiet onnxruntime table against 4.3 % for the median of
the windows and 8.2 % for a short calibration at the start (``scripts/scale_estimator.py``,
BENCHMARKS.md). Interference only adds time, so the fast windows are the reproducible ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["REF_LEVEL_QUANTILE", "MACHINE_CHANGE_PCT", "PROBE_WINDOWS", "reference_level_ms",
           "probe_reference_level_ms", "apply_table_scale", "level_change_pct"]

REF_LEVEL_QUANTILE = 0.05
MACHINE_CHANGE_PCT = 7.0  # a reference level this far (either way) from a table's is another state
PROBE_WINDOWS = 10  # reference-only windows timed to tell the machine's current level

_SETTING = ["space", "batch_size", "backend", "device_type", "device", "threads", "precision"]


def reference_level_ms(ref_window_ms) -> float:
    """The reference level (ms) of windows whose reference latencies are ``ref_window_ms``
    (their :data:`REF_LEVEL_QUANTILE` quantile; nan when there is none)."""
    ref = np.asarray(ref_window_ms, dtype=np.float64)
    ref = ref[np.isfinite(ref) & (ref > 0)]
    return float(np.quantile(ref, REF_LEVEL_QUANTILE)) if len(ref) else float("nan")


def probe_reference_level_ms(ref_runner, protocol=None, windows: int = PROBE_WINDOWS) -> float:
    """The machine's reference level now (ms): ``windows`` windows of the prepared reference
    subnet alone, summarised as a table's windows are (:func:`reference_level_ms`)."""
    from .timing import TimingProtocol, measure

    protocol = protocol or TimingProtocol()
    return reference_level_ms([measure(ref_runner, None, None, protocol).latency_raw_ms
                               for _ in range(windows)])


def level_change_pct(level_ms: float, table_level_ms: float) -> float:
    """How far ``level_ms`` is from a table's level, in percent (positive: slower now)."""
    return 100.0 * (level_ms / table_level_ms - 1.0)


def apply_table_scale(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``latency_ms`` and ``ref_baseline_ms`` of drift-corrected rows from the
    reference level of their setting's windows (in place on a copy; other rows unchanged)."""
    if "ratio" not in df.columns or "ref_latency_ms" not in df.columns or df.empty:
        return df
    df = df.copy()
    ratio = pd.to_numeric(df["ratio"], errors="coerce")
    ref = pd.to_numeric(df["ref_latency_ms"], errors="coerce")
    scaled = ratio.notna() & ref.notna()
    if not scaled.any():
        return df
    keys = df.loc[scaled, [c for c in _SETTING if c in df.columns]].astype(str).agg("|".join,
                                                                                    axis=1)
    df["ref_baseline_ms"] = pd.to_numeric(df["ref_baseline_ms"], errors="coerce")
    for key in keys.unique():
        rows = keys.index[keys == key]
        level = reference_level_ms(ref[rows])
        df.loc[rows, "latency_ms"] = (ratio[rows] * level).round(5)
        df.loc[rows, "ref_baseline_ms"] = round(level, 5)
    return df
