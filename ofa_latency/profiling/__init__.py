"""Profiling backends (torch, onnxruntime, fake; openvino and litert with their extras), the timing protocol, the table-wide scale and
the profiler. Names are imported on first use (the timing protocol needs only numpy)."""

import importlib

_PUBLIC = {
    "ProfilingBackend": "._base", "Runner": "._base", "create_backend": "._base",
    "list_backends": "._base", "register_backend": "._base",
    "profile_subnets": ".profiler", "reference_fingerprint_ms": ".profiler",
    "MachineChangedError": ".profiler",
    "table_hardware_path": ".profiler",
    "reference_subnet": ".profiler",
    "TimingProtocol": ".timing", "TimingResult": ".timing", "measure": ".timing",
    "apply_table_scale": ".scale", "reference_level_ms": ".scale",
}

__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        if _PUBLIC[name] in ("._base", ".profiler"):
            importlib.import_module(".backends", __name__)  # registers the built-in backends
            importlib.import_module(".runtimes", __name__)
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ofa_latency.profiling' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
