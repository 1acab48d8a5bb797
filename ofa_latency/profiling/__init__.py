"""Profiling backends (torch, onnxruntime, fake), the timing protocol and the profiler."""

from ._base import ProfilingBackend as ProfilingBackend
from ._base import Runner as Runner
from ._base import create_backend as create_backend
from ._base import list_backends as list_backends
from ._base import register_backend as register_backend
from . import backends as _backends  # noqa: F401  (registers the built-in backends)
from .profiler import MachineChangedError as MachineChangedError
from .profiler import hardware_differences as hardware_differences
from .profiler import profile_subnets as profile_subnets
from .profiler import reference_subnet as reference_subnet
from .profiler import table_hardware_path as table_hardware_path
from .scale import apply_table_scale as apply_table_scale
from .scale import reference_level_ms as reference_level_ms
from .timing import TimingProtocol as TimingProtocol
from .timing import TimingResult as TimingResult
from .timing import measure as measure

__all__ = ["ProfilingBackend", "Runner", "create_backend", "list_backends", "register_backend",
           "profile_subnets", "reference_subnet", "TimingProtocol", "TimingResult", "measure",
           "MachineChangedError", "hardware_differences", "table_hardware_path",
           "apply_table_scale", "reference_level_ms"]
