"""Shipped predictors: ``data/predictors/manifest.json`` and the folders it lists.

Every file of a shipped predictor's folder (``config.json`` included) is listed in its manifest
entry with its sha256, and :func:`pretrained_path` checks them all before the folder is used.
``scripts/update_manifest.py`` rewrites the hashes after a deliberate change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ._folders import folder_sha256, sha256_of
from ._paths import data_dir
from .errors import UsageError

logger = logging.getLogger(__name__)

__all__ = ["list_pretrained", "pretrained_path", "folder_sha256", "sha256_of", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"


def _root(root=None) -> Path:
    return Path(root) if root is not None else data_dir() / "predictors"


def _manifest(root=None) -> dict:
    path = _root(root) / MANIFEST_NAME
    if not path.exists():
        return {"format_version": 1, "predictors": []}
    return json.loads(path.read_text())


def list_pretrained(root=None) -> list[dict]:
    """Shipped predictors: one dict each with ``name``, ``kind``, ``space``, ``device``,
    ``backend``, ``threads``, ``batch_size``, ``precision``, ``heldout_metrics`` and
    ``source``."""
    return [dict(e) for e in _manifest(root)["predictors"]]


def pretrained_path(name: str, root=None) -> Path:
    """The folder of shipped predictor ``name``, after checking the sha256 of every file in it
    against the manifest (a missing, changed or unlisted file is an error)."""
    root = _root(root)
    entries = {e["name"]: e for e in _manifest(root)["predictors"]}
    if name not in entries:
        raise UsageError(f"no shipped predictor called {name!r}; 'ofa-latency list' (or "
                         f"list_pretrained()) shows the {len(entries)} shipped ones")
    e = entries[name]
    folder = root / e["path"]
    expected = e.get("sha256") or {}
    if "config.json" not in expected:
        raise ValueError(f"shipped predictor {name!r}: the manifest does not hash its "
                         f"config.json; regenerate it (scripts/update_manifest.py)")
    for fname, digest in expected.items():
        f = folder / fname
        if not f.exists():
            raise FileNotFoundError(f"shipped predictor {name!r}: {f} is missing")
        actual = sha256_of(f)
        if actual != digest:
            raise ValueError(f"shipped predictor {name!r}: {f} has sha256 {actual}, the "
                             f"manifest says {digest} (corrupted or replaced)")
    unlisted = sorted(set(p.name for p in folder.iterdir() if p.is_file()) - set(expected))
    if unlisted:
        raise ValueError(f"shipped predictor {name!r}: files not in the manifest: {unlisted} "
                         f"(in {folder})")
    return folder
