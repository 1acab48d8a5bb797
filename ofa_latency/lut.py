"""OFA's per-layer latency lookup tables, loaded offline (the baseline the predictors replace)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["load_ofa_lut"]


def load_ofa_lut(lut_dir, resolutions=None):
    """OFA's own ``ofa.tutorial`` ``LatencyTable`` over local ``<R>_lookup_table.yaml`` files.

    OFA's loader downloads the tables and calls ``yaml.load`` without a Loader (which fails on
    PyYAML >= 6); this builds the same objects from a local folder with ``yaml.safe_load``.
    Query with ``table.predict_efficiency({'ks', 'e', 'd', 'r': [R]})`` (ms, sum over layers).

    Parameters
    ----------
    lut_dir : str or Path
        Folder with ``<R>_lookup_table.yaml`` files (e.g. OFA's Note10 tables).
    resolutions : iterable of int, optional
        Resolutions to load; default all files found.
    """
    import yaml
    from ofa.tutorial.latency_table import LatencyEstimator, LatencyTable

    lut_dir = Path(lut_dir)
    if not lut_dir.is_dir():
        raise FileNotFoundError(f"lookup-table folder not found: {lut_dir}")
    found = {int(m.group(1)): p for p in lut_dir.glob("*_lookup_table.yaml")
             if (m := re.match(r"(\d+)_lookup_table\.yaml$", p.name))}
    if not found:
        raise FileNotFoundError(f"no <R>_lookup_table.yaml files in {lut_dir}")
    wanted = sorted(found) if resolutions is None else list(resolutions)
    missing = [r for r in wanted if r not in found]
    if missing:
        raise FileNotFoundError(f"{lut_dir} has no tables for resolutions {missing}; "
                                f"found {sorted(found)}")
    table = LatencyTable.__new__(LatencyTable)
    table.latency_tables = {}
    for r in wanted:
        est = LatencyEstimator.__new__(LatencyEstimator)
        with open(found[r]) as fh:
            est.lut = yaml.safe_load(fh)
        table.latency_tables[r] = est
    logger.info("loaded %d lookup tables from %s", len(wanted), lut_dir)
    return table
