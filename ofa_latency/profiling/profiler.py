"""Profile a list of subnets on one backend setting into a resumable measurement table."""

from __future__ import annotations

import json
import logging
import math
from typing import Iterable, Optional

import pandas as pd

from ..datasets import MeasurementLog, assign_split, utc_timestamp
from .timing import TimingProtocol, calibrate, measure

logger = logging.getLogger(__name__)

__all__ = ["reference_subnet", "profile_subnets"]


def reference_subnet(space):
    """The fixed mid-size subnet every measurement is drift-corrected against:
    kernel 5, expand 4, depth 3 everywhere, resolution 176."""
    return space.validate({"ks": [5] * space.n_blocks, "e": [4] * space.n_blocks,
                           "d": [3] * space.n_stages, "image_size": 176})


def _setting_mask(df, space, backend, batch_size):
    return ((df["space"] == space.name) & (df["backend"] == backend.name)
            & (df["batch_size"] == batch_size) & (df["device_type"] == backend.device)
            & (df["threads"].astype(float) == float(backend.threads))
            & (df["precision"] == backend.precision)
            & (df["device"].astype(str) == backend.device_name()))


def profile_subnets(space, backend, subnets: Iterable, batch_size: int, out_path,
                    protocol: TimingProtocol = TimingProtocol(), drift_correction: bool = True,
                    progress: bool = True, hardware: Optional[dict] = None,
                    ref_baseline_ms: Optional[float] = None) -> pd.DataFrame:
    """Measure ``subnets`` and append one row each to ``out_path``; resume where it stopped.

    Subnets already in the table for the same setting (space, backend, device, threads,
    batch size, precision) are skipped, so re-running the same call after a kill continues
    with no row lost or duplicated.

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
        Timing parameters.
    drift_correction : bool
        Time the reference subnet in each window and scale to its calibrated latency.
    hardware : dict, optional
        Hardware descriptor, written once beside a new table as ``<out>.hardware.json``.
    ref_baseline_ms : float, optional
        Use this calibrated reference latency (ms) instead of calibrating; a table that
        already has rows of this setting always keeps its own baseline.

    Returns
    -------
    pandas.DataFrame
        The rows of this setting for the requested subnets (old and new).
    """
    from tqdm.auto import tqdm

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r}; must be an int >= 1")
    subs = list(dict.fromkeys(space.validate(a) for a in subnets))
    log = MeasurementLog(out_path)
    if hardware is not None:
        hw_path = log.path.with_name(log.path.name + ".hardware.json")
        if not hw_path.exists():
            hw_path.write_text(json.dumps(hardware, indent=1))
    existing = log.read()
    mine = existing[_setting_mask(existing, space, backend, batch_size)]
    done = set(zip(mine["arch"], mine["image_size"].astype(int)))
    todo = [s for s in subs if (s.arch_json(), s.image_size) not in done]
    logger.info("%s: %d of %d subnets already measured, %d to go", log.path,
                len(subs) - len(todo), len(subs), len(todo))

    ref_runner, baseline = None, None
    if todo and drift_correction:
        ref_runner = backend.prepare(space, reference_subnet(space), batch_size)
        old = mine["ref_baseline_ms"].dropna()
        if len(old):
            baseline = float(old.iloc[0])
        elif ref_baseline_ms is not None:
            baseline = float(ref_baseline_ms)
        else:
            baseline = calibrate(ref_runner, protocol)
        logger.info("reference subnet baseline: %.3f ms", baseline)

    device_name = backend.device_name()
    versions = json.dumps(backend.versions(), sort_keys=True)
    bar = tqdm(total=len(subs), initial=len(subs) - len(todo), disable=not progress,
               unit="subnet", desc=f"{backend.name}/{backend.device} t{backend.threads} "
                                   f"b{batch_size}")
    for sub in todo:
        runner = backend.prepare(space, sub, batch_size)
        res = measure(runner, ref_runner, baseline, protocol)
        log.append({
            "space": space.name, "arch": sub.arch_json(), "image_size": sub.image_size,
            "batch_size": batch_size, "backend": backend.name, "device_type": backend.device,
            "device": device_name, "threads": backend.threads, "precision": backend.precision,
            "latency_ms": round(res.latency_ms, 5), "latency_raw_ms": round(res.latency_raw_ms, 5),
            "spread_pct": round(res.spread_pct, 3), "n_runs": res.n_runs,
            "n_rounds": res.n_rounds,
            "ref_latency_ms": None if math.isnan(res.ref_latency_ms) else round(res.ref_latency_ms, 5),
            "ref_baseline_ms": None if baseline is None else round(baseline, 5),
            "split": assign_split(space.name, sub), "timestamp": utc_timestamp(), "versions": versions,
            "source": "ofa-latency",
        })
        bar.update(1)
        bar.set_postfix(last_ms=f"{res.latency_ms:.2f}")
    bar.close()
    table = log.read()
    table = table[_setting_mask(table, space, backend, batch_size)]
    keys = {(s.arch_json(), s.image_size) for s in subs}
    sel = [(a, int(r)) in keys for a, r in zip(table["arch"], table["image_size"])]
    return table[sel].reset_index(drop=True)
