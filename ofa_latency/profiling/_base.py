"""Abstract profiling backend and the backend registry."""

from __future__ import annotations

import abc
import platform
import time
from typing import Sequence

from .._registry import Registry

__all__ = ["Runner", "TimedRunner", "ProfilingBackend", "register_backend", "create_backend", "list_backends"]


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

        return {"python": platform.python_version(), "ofa_latency": __version__}


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
