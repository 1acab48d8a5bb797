"""Where the project's shipped artifacts (``data/``) are: installed package data, or the checkout."""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["data_dir"]


@functools.lru_cache(maxsize=None)
def data_dir() -> Path:
    """The folder holding ``hardware.csv`` and ``predictors/`` (installed as
    ``ofa_latency.data``; in a source checkout or editable install, the repository's ``data/``)."""
    try:
        import importlib.resources as resources

        p = Path(str(resources.files("ofa_latency.data")))
        if (p / "hardware.csv").exists():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "data"
