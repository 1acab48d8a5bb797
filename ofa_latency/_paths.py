"""Where the project's files are: its shipped artifacts, the package ``ofa_latency.data``
(``data/`` of the repository, installed with the wheel), and the user's cache folder."""

from __future__ import annotations

import functools
import importlib.resources as resources
import os
from pathlib import Path

__all__ = ["data_dir", "user_cache_dir"]


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


def user_cache_dir() -> Path:
    """``ofa-latency`` in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``):
    what can be made again (the accuracy predictor's arrays, converted models). Read at each
    call."""
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "ofa-latency"
