"""Measurement tables: one CSV schema, resumable appends, the fixed train/test split, HELP import.

Schema (one row per measured subnet and setting; times in milliseconds):

==================  =====================================================================
column              meaning
==================  =====================================================================
space               search space name, e.g. ``ofa_mbv3_w1.2``
arch                canonical JSON ``{"ks": [...], "e": [...], "d": [...]}``; inactive blocks 0
image_size          input resolution (pixels)
batch_size          images per forward pass
backend             ``torch``, ``onnxruntime``, ``fake`` (HELP rows: ``help``)
device_type         ``cpu`` or ``cuda``
device              device name (CPU model or GPU name)
threads             intra-op threads (empty for GPU rows of foreign data)
precision           ``fp32`` or ``fp16``
latency_ms          drift-corrected robust latency per batch (ms): ``ratio`` times the table's
                    reference level from all its windows; the file is rewritten whenever
                    an appended row moves the level, so the value on disk is always the
                    one the product uses
latency_raw_ms      median over rounds of the round minima, uncorrected (ms)
ratio               the measurement: median over rounds of target / reference subnet latency
                    (empty without drift correction and for foreign data)
spread_pct          (max - min) / median of the per-round estimates (%)
ci_pct              the row's own uncertainty: half-width of a distribution-free 90 % interval
                    of its ratio, percent of it (with two or more windows, also half their
                    gap); empty in tables measured before it existed and for foreign data
window_sd_pct       with two or more windows (fresh preparations) of the subnet, the standard
                    deviation of their ratios, percent (log terms); the verification pools
                    it over all its rows (:func:`~ofa_latency.profiling.timing.
                    pooled_window_ci_pct`); empty with one window and in older tables
others_busy_pct     how busy other processes kept the profiler's CPUs while it timed the row,
                    percent of their time (:func:`ofa_latency.hardware.others_busy_pct`;
                    empty where unknown, in older tables and for foreign data)
n_runs, n_rounds    timed runs of the subnet and rounds they were grouped in
timed_s             seconds the row's timed rounds took on the device (the subnet's and the
                    reference's runs, every window; warm-up, model making and waits left
                    out); empty in older tables and for foreign data
ref_latency_ms      the reference subnet's latency in the same window (ms): median round minimum
ref_min_ms          the reference subnet's fastest round minimum in the same window (ms)
ref_baseline_ms     the table's reference level (ms): the 5 % quantile of its windows'
                    ``ref_min_ms`` (see :mod:`ofa_latency.profiling.scale`)
split               ``train`` or ``test``: seeded 80/20 by canonical subnet (resolution included)
timestamp           UTC ISO 8601 time of the measurement
versions            JSON of library versions
source              who measured it (``ofa-latency`` or the foreign dataset's citation)
==================  =====================================================================

One row per subnet and setting: a table read with repeated rows of the same subnet and setting
(timed again) combines each subnet's rows into one, as a subnet's windows combine, or, without
intervals, keeps the first, with a warning (:func:`drop_duplicate_rows`). One writer
at a time: :class:`MeasurementLog` holds an exclusive lock on ``<table>.lock`` while it writes.
Rows that are not whole (a write cut short) are left out on read and re-measured by the
profiler (:func:`complete_rows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from .errors import UsageError
from .spaces import arch_from_text, get_space, list_spaces

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["COLUMNS", "SETTING_COLUMNS", "REQUIRED_COLUMNS", "assign_split", "MeasurementLog",
           "TableLockedError", "complete_rows",
           "read_measurements", "normalise_table", "import_table", "read_help", "HELP_SETTINGS",
           "HELP_CITATION", "utc_timestamp", "setting_differences", "drop_duplicate_rows",
           "profiling_seconds_per_subnet", "single_setting", "subnets_of", "SPLITS",
           "table_noise", "noise_text"]

COLUMNS = ["space", "arch", "image_size", "batch_size", "backend", "device_type", "device",
           "threads", "precision", "latency_ms", "latency_raw_ms", "ratio", "spread_pct",
           "ci_pct", "window_sd_pct", "others_busy_pct", "n_runs", "n_rounds", "timed_s",
           "ref_latency_ms", "ref_min_ms", "ref_baseline_ms", "split", "timestamp", "versions",
           "source"]
# tables written before ``ratio`` and ``ref_min_ms`` existed: read by deriving the ratio
# (latency_ms / ref_baseline_ms); their level comes from ``ref_latency_ms``; tables written
# before ``ci_pct`` (a row's own uncertainty), ``window_sd_pct``, ``others_busy_pct`` or
# ``timed_s`` existed: read with them empty
_ADDED_COLUMNS = ("ratio", "ref_min_ms", "ci_pct", "window_sd_pct", "others_busy_pct",
                  "timed_s")
LEGACY_COLUMNS = [c for c in COLUMNS if c not in _ADDED_COLUMNS]


def _own_header(header: list) -> bool:
    """Whether ``header`` is this package's schema, of now or of an earlier version (the
    current columns, in order, less some of those added since)."""
    return header == [c for c in COLUMNS if c in header] and \
        set(COLUMNS) - set(header) <= set(_ADDED_COLUMNS)
SETTING_COLUMNS = ["space", "batch_size", "backend", "device_type", "device", "threads",
                   "precision"]
TRAIN_FRACTION = 0.8
# which rows a predictor is scored on: "auto" = a table's test rows when the predictor was
# fitted on that table, else all rows (:func:`ofa_latency.training.rows_to_score`)
SPLITS = ("auto", "test", "train", "all")

HELP_CITATION = ("HELP: Hardware-Adaptive Efficient Latency Prediction for NAS via Meta-Learning "
                 "(Lee et al., NeurIPS 2021), MIT licence")
HELP_SETTINGS = [f"{g}_{b}" for g in ("2080ti", "titan_xp", "v100") for b in (1, 32, 64)]
_HELP_GPU_NAMES = {"2080ti": "NVIDIA GeForce RTX 2080 Ti", "titan_xp": "NVIDIA TITAN Xp",
                   "v100": "NVIDIA Tesla V100"}


def assign_split(space: str, subnet, seed: int = 0) -> str:
    """``'train'`` or ``'test'`` for a canonical subnet: a fixed hash, 80 % train.

    The same subnet (same canonical arch and resolution) always lands on the same side, in
    every dataset and setting.
    """
    h = hashlib.sha256(f"{seed}|{space}|{subnet.key()}".encode()).digest()
    return "train" if int.from_bytes(h[:8], "little") / 2 ** 64 < TRAIN_FRACTION else "test"


def utc_timestamp() -> str:
    """The current UTC time as ISO 8601, to the second (the ``timestamp`` column)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_NUMERIC_COLUMNS = ("image_size", "batch_size", "threads", "latency_ms", "latency_raw_ms", "ratio",
                    "spread_pct", "ci_pct", "window_sd_pct", "others_busy_pct", "n_runs",
                    "n_rounds", "timed_s", "ref_latency_ms", "ref_min_ms", "ref_baseline_ms")
_SCALE_KEY = ("space", "batch_size", "backend", "device_type", "device", "threads", "precision")
_ROW_KEY = (*_SCALE_KEY, "arch", "image_size")


class TableLockedError(UsageError):
    """Another process is writing the same measurement table."""


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def complete_rows(text: str, where: str = "table") -> tuple[list[str], list[str]]:
    """The lines of a measurement table written by this package that are whole rows, and a
    description of each line that is not.

    A row is whole when it ends with a newline, has one field per column and every numeric
    column holds a number or nothing: a write cut short by a kill (even inside a number, e.g.
    ``12.9`` of ``12.94``, which ends without its newline) is never read as a measurement.
    The first line (the header) is returned as it is.
    """
    lines = text.split("\n")
    good, bad = lines[:1], []
    header = next(csv.reader([lines[0]]), [])
    numeric = [i for i, c in enumerate(header) if c in _NUMERIC_COLUMNS]
    for i, line in enumerate(lines[1:-1], start=2):
        fields = next(csv.reader([line]), [])
        if len(fields) != len(header):
            bad.append(f"{where} line {i} has {len(fields)} fields, expected {len(header)}")
        elif any(fields[j] and not _is_number(fields[j]) for j in numeric):
            bad.append(f"{where} line {i} holds a non-number in a numeric column")
        else:
            good.append(line)
    if lines[-1]:
        bad.append(f"{where} line {len(lines)} ends without a newline (a write cut short)")
    return good, bad


class LockHeld(OSError):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def hold_lock(lock_path, note: str):
    """The exclusive ``flock`` on ``lock_path`` for this process, ``note`` written into the
    file for whoever finds it taken; the open file (closing it releases the lock), None on a
    platform without ``fcntl``, or :class:`LockHeld` naming the holder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise LockHeld(holder) from None
    fh.seek(0)
    fh.truncate()
    fh.write(note + "\n")
    fh.flush()
    return fh


def _lock(path: Path):
    """An exclusive lock on ``<table>.lock`` for this process, or :class:`TableLockedError`."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fh = hold_lock(lock_path, f"process {os.getpid()} since {utc_timestamp()}")
    except LockHeld as held:
        raise TableLockedError(f"{path} is being written by {held.holder} (lock {lock_path}); "
                               f"wait for it to finish, or write to another --out") from None
    if fh is None:  # pragma: no cover - not POSIX
        logger.warning("%s: no file locking on this platform; do not write it from two "
                       "processes at once", path)
    return fh


class MeasurementLog:
    """A measurement table open for writing by this process alone; it survives being killed
    at any moment and always says on disk what the product means.

    * Opening it takes an exclusive lock (``<table>.lock``): a second writer, in this or
      another process, gets :class:`TableLockedError` until :meth:`close` (or the end of a
      ``with`` block, or the process).
    * Opening it drops rows that are not whole (:func:`complete_rows`); the profiler then
      measures those subnets again.
    * ``latency_ms`` on disk is always ``ratio`` times the table's current reference level
      (:mod:`ofa_latency.profiling.scale`): when an appended row moves the level, the whole
      file is rewritten with the new values (a temporary sibling, fsynced, then
      ``os.replace``), so a reader with any tool sees the latencies the product uses.

    Parameters
    ----------
    path : str or Path
        The CSV file; created with a header when missing.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_rows = 0
        self._lock = _lock(self.path)
        try:
            if not self.path.exists() or self.path.stat().st_size == 0:
                self._write_lines([",".join(COLUMNS)])
            else:
                self._repair()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the lock (the table stays as it is)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _write_lines(self, lines: list[str]) -> None:
        """Replace the file with ``lines`` atomically (temporary sibling, fsync, rename)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _repair(self):
        raw = self.path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        header = next(csv.reader([text.split("\n", 1)[0]]))
        if header != COLUMNS and _own_header(header):
            self._migrate()
            return self._repair()
        if header != COLUMNS:
            raise ValueError(f"{self.path}: header does not match the measurement schema; "
                             f"expected columns {COLUMNS}, found {header}")
        good, bad = complete_rows(text, str(self.path))
        for b in bad:
            logger.warning("%s; dropped (it will be measured again)", b)
        self.repaired_rows = len(bad)
        if bad:
            self._write_lines(good)

    def _migrate(self):
        """Rewrite a table of an older schema with the added columns (``ratio`` derived)."""
        import pandas as pd

        df = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        header = list(df.columns)
        if "ratio" not in df.columns:
            df = _derive_ratio(df)
        for c in _ADDED_COLUMNS:
            if c not in df.columns:
                df[c] = ""
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        df[COLUMNS].to_csv(tmp, index=False)
        os.replace(tmp, self.path)
        logger.info("%s: migrated to the current schema (added %s)", self.path,
                    ", ".join(c for c in _ADDED_COLUMNS if c not in header))

    def read(self) -> pd.DataFrame:
        """All rows so far."""
        return read_measurements(self.path)

    def append(self, row: dict) -> None:
        """Append one row (missing columns left empty); its ``latency_ms`` and
        ``ref_baseline_ms`` (and every earlier row's, when the reference level moved) are set
        from the table's reference level. Durable (fsynced) when it returns."""
        from .profiling.scale import row_levels_ms  # profiling imports this module

        if self._lock is None and os.name == "posix":
            raise ValueError(f"{self.path}: this MeasurementLog was closed")
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; schema: {COLUMNS}")
        good, bad = complete_rows(self.path.read_text(), str(self.path))
        for b in bad:
            logger.warning("%s; dropped (it will be measured again)", b)
        rows = [next(csv.reader([line])) for line in good]
        rows.append(["" if row.get(c) is None else str(row.get(c)) for c in COLUMNS])
        body = rows[1:]
        col = {c: i for i, c in enumerate(COLUMNS)}

        def num(c):
            return np.array([float(r[col[c]]) if r[col[c]] else np.nan for r in body])

        keys = ["|".join(r[col[c]] for c in _SCALE_KEY) for r in body]
        level = row_levels_ms(keys, num("ratio"), num("ref_latency_ms"), num("ref_min_ms"))
        ratio = num("ratio")
        changed_before = bool(bad)
        for k, (r, lv) in enumerate(zip(body, level)):
            if not np.isfinite(lv):
                continue
            new = (str(round(float(ratio[k] * lv), 5)), str(round(float(lv), 5)))
            old = (r[col["latency_ms"]], r[col["ref_baseline_ms"]])
            if new != old:
                r[col["latency_ms"]], r[col["ref_baseline_ms"]] = new
                changed_before = changed_before or k < len(body) - 1
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if changed_before:
            writer.writerows(rows)
            self._write_lines(buf.getvalue().rstrip("\n").split("\n"))
        else:
            writer.writerow(rows[-1])
            with open(self.path, "a", newline="") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())


DEFAULT_SPACE = "ofa_mbv3_w1.2"
REQUIRED_COLUMNS = ["arch", "latency_ms"]  # and image_size, unless the arch holds 'r'
_DEFAULTS = {"batch_size": 1, "backend": "unknown", "device_type": "unknown",
             "device": "unknown", "threads": None, "precision": "fp32"}


def setting_differences(recorded: dict, other: dict) -> list[str]:
    """The setting columns on which two settings (dicts of :data:`SETTING_COLUMNS`) differ,
    as ``"column: recorded -> other"``; columns missing or empty on either side are skipped."""
    def norm(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return str(v)

    out = []
    for c in SETTING_COLUMNS:
        a, b = norm(recorded.get(c)), norm(other.get(c))
        if a is not None and b is not None and a != b:
            out.append(f"{c}: {a} -> {b}")
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV as a DataFrame; a table with this package's header loses the rows that are not
    whole (a torn write: :func:`complete_rows`), with a warning."""
    import pandas as pd

    source = path
    try:
        text = path.read_bytes().decode("utf-8")
        header = next(csv.reader([text.split("\n", 1)[0]]), [])
        if _own_header(header):
            good, bad = complete_rows(text, str(path))
            for b in bad:
                logger.warning("%s; left out (not a whole row)", b)
            if bad:
                source = io.StringIO("\n".join(good) + "\n")
        return pd.read_csv(source, dtype={"arch": str, "versions": str, "device": str})
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path} is empty: a measurement table needs a header line with at "
                         f"least the columns {REQUIRED_COLUMNS} (and image_size)") from None
    except pd.errors.ParserError as exc:
        raise UsageError(f"{path} is not a well-formed CSV file: "
                         f"{str(exc).strip().splitlines()[-1]}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not a text CSV file ({exc.reason})") from None


def _floats(df: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats (nan where absent or not a number)."""
    import pandas as pd

    if column not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)


def _row_thresholds(df: pd.DataFrame):
    """Each row's off-state threshold (percent) from its ``versions``, or the default one
    where the table has no such column."""
    from .profiling.scale import OFF_STATE_PCT, rows_off_state_pct  # profiling imports this

    if "versions" not in df.columns:
        return OFF_STATE_PCT
    return rows_off_state_pct(df["versions"].to_numpy(dtype=object))


def drop_duplicate_rows(df: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """Keep one row per subnet and setting: a subnet measured twice must not count as two
    samples (it would also make cross-validation look better than it is).

    A row timed while the machine was in its fast state is preferred to one that never saw it
    (its fastest reference round more than its table's off-state threshold, recorded in its
    ``versions`` when not :data:`~ofa_latency.profiling.scale.OFF_STATE_PCT`, above the level
    in ``ref_baseline_ms``: a subnet timed again by ``profile_subnets`` for that reason),
    then one timed while other processes kept the CPUs less than
    :data:`~ofa_latency.hardware.OTHERS_BUSY_WARN_PCT` busy (``others_busy_pct``). Where the
    rows carry their own interval (``ci_pct``: this package's profiler), the subnet's rows of
    that preferred kind are then combined into one, as a subnet's windows are
    (:func:`_combined_row`): a subnet timed again, by ``profile_subnets(...,
    retime_above_pct=...)`` or by a second pass over the same subnets, has been timed in more
    windows. On host8 two passes read this way erred 0.77-0.80x as much as when the row with
    the smallest ``ci_pct`` was kept, which was no better than one pass (BENCHMARKS.md
    section 14.21). Rows without intervals: the first measured, with a warning."""
    import pandas as pd

    from .profiling.scale import off_state  # profiling imports this module

    cols = [c for c in _ROW_KEY if c in df.columns]
    keys = df[cols].astype(str)
    if not keys.duplicated().any():
        return df
    from .hardware import OTHERS_BUSY_WARN_PCT

    ci = _floats(df, "ci_pct")
    slow = off_state(_floats(df, "ref_min_ms"), _floats(df, "ref_baseline_ms"),
                     _row_thresholds(df))
    with np.errstate(invalid="ignore"):
        busy = _floats(df, "others_busy_pct") >= OTHERS_BUSY_WARN_PCT  # False where unknown
    order = np.lexsort((np.arange(len(df)), busy, slow))
    first = order[~keys.iloc[order].duplicated(keep="first").to_numpy()]
    dup = keys.duplicated(keep=False).to_numpy()
    if not np.isfinite(ci[dup]).any():
        keep = np.zeros(len(df), dtype=bool)
        keep[first] = True
        logger.warning("%s: %d row(s) repeat a subnet already measured in the same setting; "
                       "kept the first measurement of each (%d rows left)", where,
                       int((~keep).sum()), int(keep.sum()))
        return _with_cost(df[keep], df)
    # each subnet's rows of the preferred kind (the kind of its first row in that order)
    # that carry an interval: combined where there are several
    group = [tuple(r) for r in keys.itertuples(index=False)]
    best = {group[i]: (slow[i], busy[i]) for i in first}
    members: dict = {}
    for i in range(len(df)):
        if np.isfinite(ci[i]) and (slow[i], busy[i]) == best[group[i]]:
            members.setdefault(group[i], []).append(i)
    chosen = sorted(members.get(group[i], [i])[0] for i in first)
    out = df.iloc[chosen].copy()
    updates = {pos: _combined_row(df.iloc[members[group[i]]])
               for pos, i in enumerate(chosen) if len(members.get(group[i], ())) > 1}
    for c in sorted({c for u in updates.values() for c in u} & set(out.columns)):
        was_int = pd.api.types.is_integer_dtype(out[c])
        col = _floats(out, c).copy()
        for pos, u in updates.items():
            col[pos] = u[c]
        out[c] = col.astype(int) if was_int and np.isfinite(col).all() else col
    logger.info("%s: %d subnet(s) measured more than once (timed again): %d combined from "
                "several rows of the machine's fast state timed beside the least other work, "
                "the others kept their one such row (%d rows left)", where,
                int(keys[dup].drop_duplicates().shape[0]), len(updates), len(out))
    return _with_cost(out, df)


def _with_cost(out: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``out`` (one row per subnet, read from ``rows`` as written) with what a subnet cost in
    ``attrs["seconds_per_subnet"]``: every row's cost, its passes and retries included."""
    per_row = profiling_seconds_per_subnet(rows)
    if per_row is not None and len(out):
        out.attrs["seconds_per_subnet"] = per_row * len(rows) / len(out)
    return out


def _combined_row(rows: pd.DataFrame) -> dict:
    """The measurement columns of one row made from several rows of the same subnet and
    setting, each timed in its own window(s) with a fresh preparation: what
    :func:`~ofa_latency.profiling.timing.combine_windows` does for one run's windows, by its
    own rule (the rows' intervals weigh them; BENCHMARKS.md section 14.21).

    ``ratio``, ``latency_raw_ms``, ``ref_latency_ms`` and (without a ratio) ``latency_ms``
    are weighted geometric means of the rows', each row weighted by ``1 / (ci_pct**2 +
    floor**2)``: its own 90 % half-width, floored by the profiler's default target half-width
    (:class:`~ofa_latency.profiling.timing.TimingProtocol` ``target_ci_pct``, 1 %), where
    rows stop adding rounds, so that below it a row's interval says it stopped, not how
    certain it is, and a preparation's own error, which its rounds cannot see, gets a say
    (BENCHMARKS.md section 14.21). With a ratio, ``latency_ms`` is that mean at the first
    row's level ``ref_baseline_ms``. ``ci_pct``: the half-width of the weighted mean of
    independent estimates, at least half the gap between the rows' extremes.
    ``window_sd_pct``: the rows' own window spreads pooled or, where none has one, the
    standard deviation of their estimates. Runs, rounds and timed seconds add up;
    ``spread_pct`` is the largest, ``ref_min_ms`` the smallest, ``others_busy_pct`` the mean
    over the rows' timed seconds. Columns not named keep the first row's value."""
    from .profiling.timing import TimingProtocol  # profiling imports this module

    def num(c):
        return _floats(rows, c)

    ci = num("ci_pct")
    weights = 1 / (ci ** 2 + TimingProtocol.target_ci_pct ** 2)
    weights = weights / weights.sum()

    def geo(v):
        return float(np.exp(weights @ np.log(v))) if np.all(v > 0) else float("nan")

    def of_finite(v, f):
        return float(f(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")

    ratio = geo(num("ratio"))
    level = num("ref_baseline_ms")[0]
    est = num("ratio") if np.isfinite(ratio) else num("latency_ms")
    log_est = np.log(est) if np.all(est > 0) else np.full(len(rows), np.nan)
    sd = num("window_sd_pct")
    busy, secs = num("others_busy_pct"), num("timed_s")
    known = np.isfinite(busy)
    secs_known = np.where(np.isfinite(secs[known]) & (secs[known] > 0), secs[known], 1.0)
    return {"ratio": ratio, "latency_raw_ms": geo(num("latency_raw_ms")),
            "latency_ms": (ratio * level if np.isfinite(ratio) and np.isfinite(level)
                           else geo(num("latency_ms"))),
            "ref_latency_ms": geo(num("ref_latency_ms")),
            "ref_min_ms": of_finite(num("ref_min_ms"), np.min),
            "ci_pct": max(float(np.sqrt(np.sum((weights * ci) ** 2))),
                          50 * float(np.ptp(log_est))),
            "window_sd_pct": (float(np.sqrt(np.mean(sd[np.isfinite(sd)] ** 2)))
                              if np.isfinite(sd).any()
                              else float(100 * np.std(log_est, ddof=1))),
            "spread_pct": of_finite(num("spread_pct"), np.max),
            "n_runs": float(np.nansum(num("n_runs"))),
            "n_rounds": float(np.nansum(num("n_rounds"))),
            "timed_s": float(np.nansum(secs)) if np.isfinite(secs).any() else float("nan"),
            "others_busy_pct": (float(np.average(busy[known], weights=secs_known))
                                if known.any() else float("nan"))}


def _derive_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``ratio`` to a legacy table: its rows were ``ratio * ref_baseline_ms``."""
    import pandas as pd

    df = df.copy()
    lat = pd.to_numeric(df["latency_ms"], errors="coerce")
    base = pd.to_numeric(df["ref_baseline_ms"], errors="coerce")
    df["ratio"] = (lat / base).where(base > 0).round(7)  # NaN (an empty cell) where none
    return df


def normalise_table(df: pd.DataFrame, where: str = "table",
                    space: str | None = None) -> pd.DataFrame:
    """Bring a measurement table to the schema: only ``arch`` (either OFA form, as JSON or a
    Python-dict string), ``latency_ms`` and the resolution (``image_size``, or ``r`` /
    ``image_size`` inside the arch) are required.

    Archs are validated and written canonically; missing setting columns get defaults
    (``space`` the given one or ``ofa_mbv3_w1.2``, batch size 1, precision fp32, the rest
    ``unknown`` or empty); ``split`` is computed where missing. Errors name ``where`` and the
    row.
    """
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UsageError(f"{where}: missing columns {missing}; a measurement table needs "
                         f"'arch', 'latency_ms' and 'image_size' (or 'r' inside the arch); "
                         f"it has {list(df.columns)}")
    df = df.copy()
    if "space" not in df.columns or df["space"].isna().any():
        df["space"] = df["space"].fillna(space or DEFAULT_SPACE) if "space" in df.columns \
            else (space or DEFAULT_SPACE)
    unknown = sorted(set(df["space"].astype(str)) - set(list_spaces()))
    if unknown:
        raise UsageError(f"{where}: unknown search space {unknown}; known: {list_spaces()}")
    has_size = "image_size" in df.columns
    archs = []
    for i, (text, sp_name) in enumerate(zip(df["arch"], df["space"])):
        row = f"{where} row {i + 1}"
        if not isinstance(text, str):
            raise UsageError(f"{row}: arch is empty")
        try:
            a = arch_from_text(text, f"{row} arch")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if has_size and not pd.isna(df["image_size"].iloc[i]):
            a.pop("r", None)
            value = df["image_size"].iloc[i]
            if float(value) != int(value):
                raise UsageError(f"{row}: image_size = {value!r}; expected an integer")
            a["image_size"] = int(value)
        try:
            sub = get_space(sp_name).validate(a)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{row}: {exc}") from None
        archs.append(sub)
    df["arch"] = [s.arch_json() for s in archs]
    df["image_size"] = [s.image_size for s in archs]
    lat = pd.to_numeric(df["latency_ms"], errors="coerce")
    bad = ~(np.isfinite(lat.to_numpy(dtype=float)) & (lat.to_numpy(dtype=float) > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise UsageError(f"{where} row {i + 1}: latency_ms = {df['latency_ms'].iloc[i]}; "
                         f"latencies must be finite numbers > 0 (ms)")
    df["latency_ms"] = lat.astype(float)
    for col, default in _DEFAULTS.items():
        if col not in df.columns:
            df[col] = default
    if "split" not in df.columns or df["split"].isna().any():
        computed = [assign_split(sp_name, sub) for sp_name, sub in zip(df["space"], archs)]
        df["split"] = df["split"].fillna(pd.Series(computed, index=df.index)) \
            if "split" in df.columns else computed
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def read_measurements(path, filters: dict | None = None, space: str | None = None
                      ) -> pd.DataFrame:
    """Read a measurement CSV; optionally keep rows where ``column == value`` for each item of
    ``filters``.

    A table written by this package is read as it is; any other (missing columns, archs in
    another form) goes through :func:`normalise_table` (``space`` is the search space of
    rows that do not name one).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    UsageError
        For an empty or malformed file, missing required columns, an invalid arch or latency
        (naming the file and the row), or a filter on a column the table lacks.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no measurement table at {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; expected a measurement CSV file")
    from .profiling.scale import apply_table_scale  # profiling imports this module

    df = _read_csv(path)
    if all(c in df.columns for c in LEGACY_COLUMNS) and \
            not all(c in df.columns for c in _ADDED_COLUMNS):
        if "ratio" not in df.columns:
            df = _derive_ratio(df)
        for c in _ADDED_COLUMNS:
            if c not in df.columns:
                df[c] = np.nan
        df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    own = all(c in df.columns for c in COLUMNS) and \
        df["arch"].astype(str).str.startswith('{"ks":[').all()
    if not own:
        df = normalise_table(df, str(path), space)
    df = drop_duplicate_rows(apply_table_scale(df), str(path))
    for col, val in (filters or {}).items():
        if col not in df.columns:
            raise UsageError(f"filter column {col!r} is not in {path}; columns: "
                             f"{list(df.columns)}")
        df = df[df[col].astype(str) == str(val)]
    return df.reset_index(drop=True)


def import_table(path, arch_column: str = "arch", latency_column: str = "latency_ms",
                 image_size_column: str | None = None, latency_unit: str = "ms",
                 setting: dict | None = None, space: str = DEFAULT_SPACE,
                 source: str | None = None) -> pd.DataFrame:
    """Turn a CSV written by another tool into this package's schema.

    Parameters
    ----------
    path : str or Path
        The foreign CSV.
    arch_column, latency_column : str
        Its columns holding the arch (either OFA form, JSON or Python-dict string) and the
        latency.
    image_size_column : str, optional
        Its column holding the resolution, when the arch does not hold ``r``/``image_size``.
    latency_unit : {"ms", "s", "us"}
        Unit of ``latency_column``; converted to ms.
    setting : dict, optional
        Setting columns for every row (``device``, ``backend``, ``batch_size``, ``threads``,
        ``device_type``, ``precision``; ``split`` to bring your own side; ``space`` must
        equal ``space``).
    space : str
        Search space of the archs.
    source : str, optional
        Who measured it (default: the file name).
    """
    import pandas as pd

    scale = {"ms": 1.0, "s": 1e3, "us": 1e-3}
    if latency_unit not in scale:
        raise UsageError(f"latency_unit = {latency_unit!r}; one of {sorted(scale)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    raw = _read_csv(path)
    for col in (arch_column, latency_column, image_size_column):
        if col is not None and col not in raw.columns:
            raise UsageError(f"{path} has no column {col!r}; its columns: {list(raw.columns)}")
    setting = dict(setting or {})
    if "space" in setting:
        if setting["space"] != space:
            raise UsageError(f"setting space={setting['space']!r} but space={space!r}; give one")
        setting.pop("space")
    unknown = set(setting) - set(SETTING_COLUMNS) - {"source", "split"}
    if unknown:
        raise UsageError(f"unknown setting columns {sorted(unknown)}; allowed: "
                         f"{[c for c in SETTING_COLUMNS if c != 'space'] + ['split']}")
    if "split" in setting and setting["split"] not in ("train", "test"):
        raise UsageError(f"split={setting['split']!r}; a row's split is 'train' or 'test'")
    df = pd.DataFrame({"arch": raw[arch_column].astype(str),
                       "latency_ms": pd.to_numeric(raw[latency_column], errors="coerce")
                       * scale[latency_unit]})
    if image_size_column is not None:
        df["image_size"] = raw[image_size_column]
    for col, value in setting.items():
        df[col] = value
    df["space"] = space
    df["source"] = source or path.name
    return normalise_table(df, str(path), space)


def _load_help_pt(path):
    import torch
    from numpy._core.multiarray import scalar

    allowed = [np.dtype, (scalar, "numpy.core.multiarray.scalar"),
               type(np.dtype("int64")), type(np.dtype("float64"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


@functools.lru_cache(maxsize=4)
def _help_subnets(arch_path: str, stamp: tuple, space: str) -> tuple:
    """HELP's 5,000 archs as ``(subnet, arch JSON, split)`` of ``space`` (Subnets are
    frozen), parsed once per file version (``stamp``: its size and modification time) and
    shared by every setting read from it."""
    sp = get_space(space)
    subs = (sp.validate({"ks": a["ks"], "e": a["e"], "d": a["d"], "image_size": int(a["r"])})
            for a in _load_help_pt(arch_path)["arch"])
    return tuple((sub, sub.arch_json(), assign_split(space, sub)) for sub in subs)


def read_help(help_dir, setting: str, space: str = "ofa_mbv3_w1.2") -> pd.DataFrame:
    """Import one setting of HELP's OFA MobileNetV3 w1.2 latencies into the schema.

    Parameters
    ----------
    help_dir : str or Path
        The folder holding ``ofa_archs.pt`` and ``latency/<gpu>_<batch>.pt``.
    setting : str
        ``<gpu>_<batch>``, one of :data:`HELP_SETTINGS`.

    Returns
    -------
    pandas.DataFrame
        One row per distinct canonical subnet (duplicates in HELP's list are merged by their
        median latency).
    """
    import pandas as pd

    help_dir = Path(help_dir)
    if setting not in HELP_SETTINGS:
        raise ValueError(f"setting = {setting!r}; HELP settings are {HELP_SETTINGS}")
    arch_path, lat_path = help_dir / "ofa_archs.pt", help_dir / "latency" / f"{setting}.pt"
    for p in (arch_path, lat_path):
        if not p.exists():
            raise FileNotFoundError(f"HELP file not found: {p}")
    st = arch_path.stat()
    subs = _help_subnets(str(arch_path.resolve()), (st.st_size, st.st_mtime_ns), space)
    lat = _load_help_pt(lat_path)
    if len(subs) != len(lat):
        raise ValueError(f"{lat_path}: {len(lat)} latencies for {len(subs)} archs")
    gpu, batch = setting.rsplit("_", 1)
    by_sub: dict = {}
    text = {}  # subnet -> (arch JSON, split)
    for (sub, *txt), ms in zip(subs, lat):
        by_sub.setdefault(sub, []).append(float(ms))
        text[sub] = txt
    n_dup = len(subs) - len(by_sub)
    if n_dup:
        logger.info("HELP %s: %d duplicate subnets merged", setting, n_dup)
    med = {sub: v[0] if len(v) == 1 else float(np.median(v)) for sub, v in by_sub.items()}
    rows = [{
        "space": space, "arch": text[sub][0], "image_size": sub.image_size,
        "batch_size": int(batch), "backend": "help", "device_type": "cuda",
        "device": _HELP_GPU_NAMES[gpu], "threads": None, "precision": "fp32",
        "latency_ms": med[sub], "latency_raw_ms": med[sub],
        "ratio": None, "ref_min_ms": None,
        "spread_pct": 100.0 * (max(v) - min(v)) / med[sub] if len(v) > 1 else None,
        "n_runs": None, "n_rounds": None, "ref_latency_ms": None, "ref_baseline_ms": None,
        "split": text[sub][1], "timestamp": None, "versions": None,
        "source": HELP_CITATION,
    } for sub, v in by_sub.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def single_setting(df: pd.DataFrame, where: str = "table") -> dict:
    """The one device setting of ``df``; raise naming the columns to filter on if several."""
    if df.empty:
        raise ValueError(f"{where} has no rows (check --filter)")
    cols = [c for c in SETTING_COLUMNS if c in df.columns]
    settings = df[cols].astype(str).drop_duplicates()
    if len(settings) > 1:
        varying = [c for c in cols if settings[c].nunique() > 1]
        raise ValueError(f"{where} holds {len(settings)} device settings (they differ in "
                         f"{varying}); keep one with --filter, e.g. "
                         f"{varying[0]}={settings[varying[0]].iloc[0]}")
    import pandas as pd

    row = df.iloc[0]
    return {c: (None if pd.isna(row[c]) else row[c].item() if hasattr(row[c], "item") else row[c])
            for c in cols}


def subnets_of(df: pd.DataFrame) -> list:
    """Canonical :class:`~ofa_latency.spaces.Subnet` objects of a table's rows."""
    out = []
    for space, arch, r in zip(df["space"], df["arch"], df["image_size"]):
        a = json.loads(arch)
        a["image_size"] = int(r)
        out.append(get_space(space).validate(a))
    return out


def profiling_seconds_per_subnet(df: pd.DataFrame) -> float | None:
    """The wall time one row of a profiled table cost (seconds): the mean gap between
    consecutive timestamps (whole seconds, so the mean over many rows, not the median), gaps
    over 5 minutes (another session) left out; None without timestamps. A table read with a
    subnet's rows combined (:func:`drop_duplicate_rows`) knows it from the rows as written,
    all its passes and retries included (``df.attrs["seconds_per_subnet"]``): its kept rows'
    timestamps are the first passes' only."""
    import pandas as pd

    if df.attrs.get("seconds_per_subnet") is not None:
        return float(df.attrs["seconds_per_subnet"])
    if "timestamp" not in df.columns:
        return None
    t = pd.to_datetime(df["timestamp"], errors="coerce", utc=True).dropna().sort_values()
    gaps = t.diff().dt.total_seconds().dropna()
    gaps = gaps[(gaps >= 0) & (gaps < 300)]
    return float(gaps.mean()) if len(gaps) >= 2 else None


# a row whose 90 % half-width is above this was measured in a noisy window: in tables mixing
# machine states predictors erred about twice as much on such rows (BENCHMARKS.md section
# 16.8); within one state about as much as on the others (section 16.9)
WIDE_ROW_PCT = 2.0
# other processes below this share of the profiled CPUs (percent) leave the machine's noise
# to what this system cannot see
_QUIET_OTHERS_PCT = 5.0


def table_noise(df: pd.DataFrame) -> dict:
    """How certain a table's rows are: the median and 90th percentile of their own interval
    half-widths (``ci_pct``, percent; None for tables measured before rows carried one), the
    share of rows wider than :data:`WIDE_ROW_PCT` (``wide_rows_pct``), the share of rows
    timed only while the machine was in a slower state (``off_state_rows_pct``:
    :func:`~ofa_latency.profiling.scale.off_state`; None without reference columns), the
    median within-window spread, the rounds per row, the device-seconds per row
    (:func:`profiling_seconds_per_subnet`: wall time, models made and retries included) and
    the mean seconds of a row's timed rounds (``timed_seconds_per_subnet``, column
    ``timed_s``; None where no row knows it), how busy other processes kept the profiler's CPUs
    (``others_busy_pct``: for the rows a profiling call just returned, over the whole call,
    from ``df.attrs``; otherwise the mean of the rows' own ``others_busy_pct``; None where no
    row knows it) and the share of the rows that know it timed while others kept at least
    :data:`~ofa_latency.hardware.OTHERS_BUSY_WARN_PCT` busy (``busy_rows_pct``); for rows
    timed in two or more windows, the half-width of a two-window measurement from their
    window-to-window spread pooled (``window_ci_pct``,
    :func:`~ofa_latency.profiling.timing.pooled_window_ci_pct`; None without such rows) and
    of a one-window measurement (``one_window_ci_pct``: what one window's rows of the same
    table are known to, though their own ``ci_pct`` sees only their rounds); how far the
    host's state moved while the table was made: the median and 90th percentile of how far
    its rows' fastest reference rounds ran above the table's level (``state_above_level_pct``,
    ``p90_state_above_level_pct``, percent; None without reference columns). A subnet's
    ratio to the reference moves with the host's state, more the farther it is from the
    reference in size, so rows timed in states farther apart disagree more (BENCHMARKS.md
    sections 16.31-16.32)."""
    from .hardware import OTHERS_BUSY_WARN_PCT
    import pandas as pd

    def values(col):
        return pd.to_numeric(df[col], errors="coerce").dropna() if col in df.columns else []

    def q(col, p):
        v = values(col)
        return round(float(np.quantile(v, p)), 3) if len(v) else None

    from .profiling.scale import off_state  # profiling imports this module
    from .profiling.timing import pooled_window_ci_pct

    per = profiling_seconds_per_subnet(df)
    timed = values("timed_s")
    ci = values("ci_pct")
    wide = round(float(100 * (ci > WIDE_ROW_PCT).sum() / len(df)), 1) if len(ci) else None
    slow = state = state90 = None
    if len(df) and {"ref_min_ms", "ref_baseline_ms"} <= set(df.columns):
        ref_min, level = _floats(df, "ref_min_ms"), _floats(df, "ref_baseline_ms")
        flags = off_state(ref_min, level, _row_thresholds(df))
        slow = round(float(100 * flags.sum() / len(df)), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            above = 100 * (ref_min / level - 1)
        above = above[np.isfinite(above)]
        if len(above):
            state = round(float(np.median(above)), 2)
            state90 = round(float(np.quantile(above, 0.9)), 2)
    row_busy = values("others_busy_pct")
    busy = df.attrs.get("others_busy_pct")
    if busy is None and len(row_busy):
        busy = round(float(np.mean(row_busy)), 1)
    busy_rows = round(float(100 * (row_busy >= OTHERS_BUSY_WARN_PCT).mean()), 1) \
        if len(row_busy) else None
    sd = np.asarray(values("window_sd_pct"), dtype=float)
    window = round(pooled_window_ci_pct(sd), 3) if len(sd) else None
    one = round(pooled_window_ci_pct(sd, 1), 3) if len(sd) else None
    return {"n": int(len(df)), "median_ci_pct": q("ci_pct", 0.5), "p90_ci_pct": q("ci_pct", 0.9),
            "wide_rows_pct": wide, "off_state_rows_pct": slow,
            "state_above_level_pct": state, "p90_state_above_level_pct": state90,
            "median_spread_pct": q("spread_pct", 0.5), "median_rounds": q("n_rounds", 0.5),
            "device_seconds_per_subnet": None if per is None else round(per, 2),
            "timed_seconds_per_subnet": round(float(np.mean(timed)), 2) if len(timed) else None,
            "others_busy_pct": busy, "busy_rows_pct": busy_rows,
            "window_ci_pct": window, "one_window_ci_pct": one, "window_rows": int(len(sd))}


def noise_text(noise: dict) -> str:
    """One line for :func:`table_noise`'s dict."""
    ci = "no per-row intervals (measured before rows carried them)" \
        if noise["median_ci_pct"] is None else \
        f"rows known to +-{noise['median_ci_pct']:.2f} % (median; 90th percentile " \
        f"+-{noise['p90_ci_pct']:.2f} %) at 90 %"
    sec, timed = noise["device_seconds_per_subnet"], noise.get("timed_seconds_per_subnet")
    wide, slow = noise.get("wide_rows_pct"), noise.get("off_state_rows_pct")
    state = noise.get("state_above_level_pct")
    busy, busy_rows = noise.get("others_busy_pct"), noise.get("busy_rows_pct")
    from .hardware import OTHERS_BUSY_WARN_PCT, others_busy_text
    rounds, spread = noise["median_rounds"], noise["median_spread_pct"]
    window, one = noise.get("window_ci_pct"), noise.get("one_window_ci_pct")
    return (f"noise: {ci}"
            + (f"; from one fresh preparation to the next a two-window row moves by "
               f"+-{window:.2f} %" + (f", a one-window row by +-{one:.2f} %" if one else "")
               + f" (90 %, pooled over the {noise['window_rows']} rows timed in two windows)"
               if window is not None else "")
            + (f"; median {rounds:g} rounds" if rounds is not None else "")
            + (f"; within-window spread {spread:.1f} %" if spread is not None else "")
            + (f"; {sec:.2f} device-s per subnet" if sec is not None else "")
            + (f" ({timed:.2f} s of them in timed rounds; the rest making models, warming "
               f"up, waiting and timing again)" if sec is not None and timed is not None
               else "")
            + (f"; {wide:.0f} % of rows wider than +-{WIDE_ROW_PCT:g} % (noisy windows: "
               f"'profile --retime-above {WIDE_ROW_PCT:g}' measures them again, "
               f"'--retime-above 0' every subnet; the table combines a subnet's rows)"
               if wide else "")
            + (f"; {slow:g} % of rows timed only while the machine was in a slower state "
               f"(profiling them again into the same table retries them)" if slow else "")
            + (f"; windows a median {state:.1f} % (90th percentile "
               f"{noise['p90_state_above_level_pct']:.1f} %) slower than the table's fastest "
               f"state" if state is not None else "")
            + (f"; {others_busy_text(busy)}"
               + (" (so the noise comes from below this system: other tenants of a shared "
                  "host, clock changes)" if busy < _QUIET_OTHERS_PCT and (wide or 0) >= 25
                  else "") if busy is not None else "")
            + (f"; {busy_rows:g} % of rows timed while they kept >= "
               f"{OTHERS_BUSY_WARN_PCT:g} % busy (column others_busy_pct)" if busy_rows else ""))
