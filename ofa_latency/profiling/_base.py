"""Abstract profiling backend and the backend registry."""

from __future__ import annotations

import abc
import platform
import time
from typing import Sequence

from .._registry import Registry

__all__ = ["Runner", "TimedRunner", "ProfilingBackend", "register_backend", "create_backend",
           "list_backends", "steady_allocator"]


_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest mmap threshold on 64-bit
_TRIM_THRESHOLD_BYTES = 1 << 30


def steady_allocator() -> bool:
    """Fix glibc malloc's thresholds for this process (Linux with glibc; a no-op elsewhere).

    PyTorch's eager CPU inference allocates every activation anew. glibc serves large blocks
    with ``mmap`` (a fresh, page-faulting mapping each time) until a freed block raises its
    *dynamic* threshold, so the same subnet ran up to 20 % slower early in a process, or after
    another history of allocations, than later: measured here
    (``scripts/torch_allocator_probe.py``), the first subnet of a process took a ratio of
    1.69-1.80 to the reference in three processes with the default, and 1.46-1.47 with the
    fixed thresholds. Fixing them (blocks up to 32 MB from the heap, which
    is kept) makes a measurement independent of what the process ran before. The runtimes
    need it too: an OpenVINO int8 model made in the profiling process (NNCF's calibration
    inference just before its timing) against the same model read from the model store made
    two tables of the same subnets disagree by a trend in the subnets' size, which fixed
    thresholds removed (BENCHMARKS.md section 16.26).

    Returns
    -------
    bool
        Whether the thresholds were set.
    """
    import ctypes
    import ctypes.util

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD_BYTES)) and \
            bool(libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False


class Runner(abc.ABC):
    """A prepared subnet on a backend: ``run(n)`` executes ``n`` forward passes."""

    @abc.abstractmethod
    def run(self, n: int) -> Sequence[float]:
        """Execute ``n`` forward passes; return the seconds each took."""


class TimedRunner(Runner):
    """A runner whose forward pass is one synchronous call (``_once``), timed on the host
    clock: the runtimes' sessions, compiled models and interpreters."""

    @abc.abstractmethod
    def _once(self) -> None:
        """One forward pass of the prepared input."""

    def run(self, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self._once()
            out.append(time.perf_counter() - t0)
        return out


class ProfilingBackend(abc.ABC):
    """Runs subnets of a search space on one device setting.

    Parameters
    ----------
    threads : int
        Intra-op threads (CPU backends).
    device : str
        ``"cpu"`` or ``"cuda"``.
    precision : str
        ``"fp32"`` (``"fp16"`` on CUDA where the backend supports it).
    """

    name: str = ""
    devices: tuple[str, ...] = ("cpu",)
    precisions: tuple[str, ...] = ("fp32",)
    steadies_allocator: bool = False
    """On CPU, fix glibc malloc's thresholds for the process (:func:`steady_allocator`) and
    record it in :meth:`versions`: a backend that runs real inference sets it, so a subnet's
    time depends neither on what the process allocated before nor on whether its model was
    made in the process just before (an int8 model's calibration inference can raise glibc's
    dynamic threshold) or read from the model store."""

    def __init__(self, threads: int = 1, device: str = "cpu", precision: str = "fp32"):
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads = {threads!r}; must be an int >= 1")
        if device not in self.devices:
            raise ValueError(f"device = {device!r}; backend {self.name!r} supports {self.devices}")
        if precision not in self.precisions:
            raise ValueError(f"precision = {precision!r}; backend {self.name!r} supports "
                             f"{self.precisions}")
        self.threads = threads
        self.device = device
        self.precision = precision
        if device == "cpu" and self.steadies_allocator:
            self.steady_allocator = steady_allocator()

    @abc.abstractmethod
    def prepare(self, space, subnet, batch_size: int) -> Runner:
        """Build ``subnet`` of ``space`` for input batch ``batch_size``; return its runner."""

    def prepare_module(self, module, input_shape, batch_size: int) -> Runner:
        """Prepare one layer (a ``torch.nn.Module``) for inputs of shape ``(batch_size,
        *input_shape)``: what a per-layer lookup table times. Backends that cannot time a
        single layer raise :class:`NotImplementedError`."""
        raise NotImplementedError(f"backend {self.name!r} cannot time single layers")

    def convert(self, space, subnet, batch_size: int) -> bool:
        """Make the model ``subnet`` is prepared from and keep it in this process's
        conversion cache, where making it is slow work that a helper process can do ahead of
        the timing (:mod:`.ahead`): quantization, OpenVINO or LiteRT conversion. Returns False
        for a backend that converts nothing (the default)."""
        return False

    @property
    def converts_ahead(self) -> bool:
        """Whether ``profile --convert-jobs auto`` (the default) has a helper process make this
        setting's models ahead of the timing, where the profiler is pinned and another CPU is
        free (:func:`~.ahead.auto_convert_jobs`). False here; True where making a model in the
        timing process is slow or changes its timings: int8 (ONNX Runtime int8 tables whose
        models were made in the timing process were tilted by the subnets' size in three runs
        of three, made ahead in two of five: BENCHMARKS.md sections 16.26-16.27) and LiteRT
        (11-27 s per conversion)."""
        return False

    def options(self) -> dict:
        """Constructor arguments beyond ``threads``, ``device`` and ``precision``: with them
        :func:`create_backend` makes the same backend in another process."""
        return {}

    @abc.abstractmethod
    def device_name(self) -> str:
        """Human-readable name of the device that runs the model (CPU model or GPU name)."""

    def versions(self) -> dict:
        """Library versions that affect the timings."""
        from .._version import __version__

        v = {"python": platform.python_version(), "ofa_latency": __version__}
        if self.device == "cpu" and self.steadies_allocator:
            v["steady_allocator"] = self.steady_allocator  # set by __init__, same condition
        return v


_BACKENDS = Registry("backend", "name")


def register_backend(name: str):
    """Class decorator: make a backend available to :func:`create_backend` under ``name``."""
    return _BACKENDS.register(name)


def list_backends() -> list[str]:
    """Registered backend names."""
    return _BACKENDS.names()


def create_backend(name: str, **kwargs) -> ProfilingBackend:
    """Instantiate the backend registered as ``name`` with ``kwargs``."""
    return _BACKENDS.create(name, **kwargs)
