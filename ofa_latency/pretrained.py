"""Shipped predictors: ``data/predictors/manifest.json`` and the folders it lists."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ._paths import data_dir

logger = logging.getLogger(__name__)

__all__ = ["list_pretrained", "pretrained_path", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"


def _manifest(root=None) -> dict:
    root = Path(root) if root is not None else data_dir() / "predictors"
    path = root / MANIFEST_NAME
    if not path.exists():
        return {"format_version": 1, "predictors": []}
    return json.loads(path.read_text())


def list_pretrained(root=None) -> list[dict]:
    """Shipped predictors: one dict each with ``name``, ``kind``, ``space``, ``device``,
    ``backend``, ``threads``, ``batch_size``, ``precision``, ``heldout_metrics`` and
    ``source``."""
    return [dict(e) for e in _manifest(root)["predictors"]]


def sha256_of(path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pretrained_path(name: str, root=None) -> Path:
    """The folder of shipped predictor ``name``, after checking its weight files' sha256
    (the manifest's ``sha256``: file name -> hex digest)."""
    root = Path(root) if root is not None else data_dir() / "predictors"
    entries = {e["name"]: e for e in _manifest(root)["predictors"]}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ValueError(f"no shipped predictor called {name!r}; shipped: {known}")
    e = entries[name]
    folder = root / e["path"]
    for fname, expected in e["sha256"].items():
        weights = folder / fname
        if not weights.exists():
            raise FileNotFoundError(f"shipped predictor {name!r}: {weights} is missing")
        digest = sha256_of(weights)
        if digest != expected:
            raise ValueError(f"shipped predictor {name!r}: {weights} has sha256 {digest}, the "
                             f"manifest says {expected} (corrupted or replaced)")
    return folder
