"""Fit a predictor on one setting of a measurement table and record what it was fitted on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .datasets import SETTING_COLUMNS, read_measurements
from .evaluation import latency_metrics
from .predictors import create_predictor
from ._folders import sha256_of
from .profiling import table_hardware_path

logger = logging.getLogger(__name__)

__all__ = ["single_setting", "train_on_table", "training_device_seconds", "lut_build_seconds"]


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
    row = df.iloc[0]
    return {c: (None if pd.isna(row[c]) else row[c].item() if hasattr(row[c], "item") else row[c])
            for c in cols}


def _portable_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it (no machine-specific
    absolute paths in saved configs), else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def train_on_table(path, model: str, filters: dict | None = None, params: dict | None = None,
                   out=None, progress: bool = True, max_train: int | None = None):
    """Fit ``model`` on the ``train`` rows of one setting of the table at ``path`` and
    evaluate it on its ``test`` rows.

    Returns
    -------
    (predictor, metrics, metadata)
        ``metrics`` on the held-out split; ``metadata`` as stored in the saved config.
    """
    path = Path(path)
    df = read_measurements(path, filters)
    setting = single_setting(df, str(path))
    space = setting["space"]
    train, test = df[df.split == "train"], df[df.split == "test"]
    if max_train is not None:
        train = train.iloc[:max_train]
    if len(train) < 2 or len(test) < 2:
        raise ValueError(f"{path}: need train and test rows, have {len(train)} and {len(test)}")
    pred = create_predictor(model, space=space, **(params or {}))
    pred.fit(train, progress=progress)
    metrics = latency_metrics(test.latency_ms.to_numpy(), pred.predict(test))
    hw_path = table_hardware_path(path)
    metadata = {
        "device_seconds": training_device_seconds(df, len(train), params),
        "setting": setting,
        "hardware": json.loads(hw_path.read_text()) if hw_path.exists() else None,
        "heldout_metrics": metrics,
        "data": {"path": _portable_path(path), "sha256": sha256_of(path),
                 "filters": filters or {}, "n_train": int(len(train)), "n_test": int(len(test)),
                 "source": sorted(set(df.source.dropna().astype(str)))},
    }
    if out is not None:
        pred.save(out, metadata=metadata)
    return pred, metrics, metadata


def lut_build_seconds(lut_dir) -> float | None:
    """Device-seconds recorded by ``build-lut`` in ``lut_dir/build.json`` (None when absent:
    e.g. OFA's Note10 tables, built elsewhere)."""
    from .lut import BUILD_INFO

    p = Path(lut_dir) / BUILD_INFO
    return float(json.loads(p.read_text())["device_seconds"]) if p.exists() else None


def training_device_seconds(df: pd.DataFrame, n_rows: int, params: dict | None = None):
    """Device-seconds behind a predictor fitted on ``n_rows`` rows of ``df``: the rows'
    profiling time (:func:`~ofa_latency.datasets.profiling_seconds_per_subnet`), plus the
    lookup table's build time for a calibrated LUT; None when unknown."""
    from .datasets import profiling_seconds_per_subnet

    per = profiling_seconds_per_subnet(df)
    total = None if per is None else per * n_rows
    lut_dir = (params or {}).get("lut_dir")
    if lut_dir:
        lut_s = lut_build_seconds(lut_dir)
        total = None if lut_s is None or total is None else total + lut_s
    return None if total is None else round(total, 1)
