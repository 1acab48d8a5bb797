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
latency_ms          drift-corrected robust latency per batch (ms)
latency_raw_ms      median over rounds of the round minima, uncorrected (ms)
spread_pct          (max - min) / median of the per-round estimates (%)
n_runs, n_rounds    timed runs of the subnet and rounds they were grouped in
ref_latency_ms      the reference subnet's latency in the same window (ms)
ref_baseline_ms     the reference's calibrated latency the correction scales to (ms)
split               ``train`` or ``test``: seeded 80/20 by canonical subnet (resolution included)
timestamp           UTC ISO 8601 time of the measurement
versions            JSON of library versions
source              who measured it (``ofa-latency`` or the foreign dataset's citation)
==================  =====================================================================
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .spaces import get_space

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "SETTING_COLUMNS", "assign_split", "MeasurementLog", "read_measurements",
           "read_help", "HELP_SETTINGS", "HELP_CITATION"]

COLUMNS = ["space", "arch", "image_size", "batch_size", "backend", "device_type", "device",
           "threads", "precision", "latency_ms", "latency_raw_ms", "spread_pct", "n_runs",
           "n_rounds", "ref_latency_ms", "ref_baseline_ms", "split", "timestamp", "versions",
           "source"]
SETTING_COLUMNS = ["space", "batch_size", "backend", "device_type", "device", "threads",
                   "precision"]
TRAIN_FRACTION = 0.8

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


class MeasurementLog:
    """An append-only CSV of measurements that survives being killed at any moment.

    Opening it repairs a torn last line (a write cut short by a kill); every append is
    flushed and fsynced before the next measurement starts.

    Parameters
    ----------
    path : str or Path
        The CSV file; created with a header when missing.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_rows = 0
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(COLUMNS)
                fh.flush(); os.fsync(fh.fileno())
        else:
            self._repair()

    def _repair(self):
        raw = self.path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        lines = text.split("\n")
        header = next(csv.reader([lines[0]]))
        if header != COLUMNS:
            raise ValueError(f"{self.path}: header does not match the measurement schema; "
                             f"expected columns {COLUMNS}, found {header}")
        complete = lines[:-1]  # the part after the last newline is torn (or empty)
        good = [complete[0]]
        for i, line in enumerate(complete[1:], start=2):
            fields = next(csv.reader([line]), [])
            if len(fields) != len(COLUMNS):
                logger.warning("%s: line %d has %d fields, expected %d; dropped (torn write)",
                               self.path, i, len(fields), len(COLUMNS))
                self.repaired_rows += 1
                continue
            good.append(line)
        if lines[-1]:
            logger.warning("%s: last line has no newline (torn write); dropped", self.path)
            self.repaired_rows += 1
        fixed = "\n".join(good) + "\n"
        if fixed.encode() != raw:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(fixed)
            os.replace(tmp, self.path)

    def read(self) -> pd.DataFrame:
        """All rows so far."""
        return read_measurements(self.path)

    def append(self, row: dict) -> None:
        """Append one row (missing columns left empty) and fsync it."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; schema: {COLUMNS}")
        buf = io.StringIO()
        csv.writer(buf).writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
        with open(self.path, "a", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush(); os.fsync(fh.fileno())


def read_measurements(path, filters: dict | None = None) -> pd.DataFrame:
    """Read a measurement CSV, checking its schema; optionally keep rows where
    ``column == value`` for each item of ``filters``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no measurement table at {path}")
    df = pd.read_csv(path, dtype={"arch": str, "versions": str, "device": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; schema: {COLUMNS}")
    for col, val in (filters or {}).items():
        if col not in df.columns:
            raise ValueError(f"filter column {col!r} is not in {path}; columns: {list(df.columns)}")
        df = df[df[col].astype(str) == str(val)]
    return df.reset_index(drop=True)


def _load_help_pt(path):
    import torch
    from numpy._core.multiarray import scalar

    allowed = [np.dtype, (scalar, "numpy.core.multiarray.scalar"),
               type(np.dtype("int64")), type(np.dtype("float64"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


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
    help_dir = Path(help_dir)
    if setting not in HELP_SETTINGS:
        raise ValueError(f"setting = {setting!r}; HELP settings are {HELP_SETTINGS}")
    arch_path, lat_path = help_dir / "ofa_archs.pt", help_dir / "latency" / f"{setting}.pt"
    for p in (arch_path, lat_path):
        if not p.exists():
            raise FileNotFoundError(f"HELP file not found: {p}")
    archs = _load_help_pt(arch_path)["arch"]
    lat = _load_help_pt(lat_path)
    if len(archs) != len(lat):
        raise ValueError(f"{lat_path}: {len(lat)} latencies for {len(archs)} archs")
    sp = get_space(space)
    gpu, batch = setting.rsplit("_", 1)
    by_sub: dict = {}
    for a, ms in zip(archs, lat):
        sub = sp.validate({"ks": a["ks"], "e": a["e"], "d": a["d"], "image_size": int(a["r"])})
        by_sub.setdefault(sub, []).append(float(ms))
    n_dup = len(archs) - len(by_sub)
    if n_dup:
        logger.info("HELP %s: %d duplicate subnets merged", setting, n_dup)
    rows = [{
        "space": space, "arch": sub.arch_json(), "image_size": sub.image_size,
        "batch_size": int(batch), "backend": "help", "device_type": "cuda",
        "device": _HELP_GPU_NAMES[gpu], "threads": None, "precision": "fp32",
        "latency_ms": float(np.median(v)), "latency_raw_ms": float(np.median(v)),
        "spread_pct": 100.0 * (max(v) - min(v)) / float(np.median(v)) if len(v) > 1 else None,
        "n_runs": None, "n_rounds": None, "ref_latency_ms": None, "ref_baseline_ms": None,
        "split": assign_split(space, sub), "timestamp": None, "versions": None,
        "source": HELP_CITATION,
    } for sub, v in by_sub.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def subnets_of(df: pd.DataFrame) -> list:
    """Canonical :class:`~ofa_latency.spaces.Subnet` objects of a table's rows."""
    out = []
    for space, arch, r in zip(df["space"], df["arch"], df["image_size"]):
        a = json.loads(arch)
        a["image_size"] = int(r)
        out.append(get_space(space).validate(a))
    return out
