"""Where the project's shipped artifacts are: the package ``ofa_latency.data`` (``data/`` of
the repository, installed with the wheel)."""

from __future__ import annotations

import functools
import importlib.resources as resources
from pathlib import Path

__all__ = ["data_dir"]


@functools.lru_cache(maxsize=None)
def data_dir() -> Path:
    """The folder holding ``hardware.csv``, ``predictors/`` and ``net_configs/``.

    ``ofa_latency.data`` is a regular package, so :func:`importlib.resources.files` gives its
    folder on disk (installed wheel, editable install or checkout alike).
    """
    folder = resources.files("ofa_latency.data")
    path = Path(folder) if isinstance(folder, Path) else Path(str(folder.joinpath("")))
    if not (path / "hardware.csv").is_file():
        raise FileNotFoundError(f"ofa-latency's shipped data is missing at {path} (a broken "
                                f"install: reinstall ofa-latency)")
    return path
