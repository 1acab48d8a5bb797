"""ofa-latency: learned latency predictors for Once-for-All neural architecture search.

The public names below are imported on first use, so ``import ofa_latency`` (and the board
profiler, ``python -m ofa_latency.board``) needs neither torch, ofa nor pandas.
"""

import importlib

from ._version import __version__ as __version__

_PUBLIC = {
    "Subnet": ".spaces", "get_space": ".spaces", "list_spaces": ".spaces",
    "create_backend": ".profiling", "list_backends": ".profiling",
    "profile_subnets": ".profiling", "read_measurements": ".datasets",
    "describe_hardware": ".hardware", "create_predictor": ".predictors",
    "list_predictors": ".predictors", "LatencyEstimator": ".estimator",
    "list_pretrained": ".pretrained", "UsageError": ".errors", "finetune": ".adapt",
    "resolve_predictor": ".resolve",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ofa_latency' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
