"""Converting ahead: helper processes make the next subnets' models while the profiler times
the current one.

A deployment runtime's model is slow to make (NNCF quantization for OpenVINO int8 several
seconds per subnet, a LiteRT conversion 11-27 s on a 2-core host, ONNX Runtime's static
quantization about one, even its fp32 export 0.5-0.8 s) and the timing of a subnet takes one
to a few seconds, so a table of such a setting is mostly conversion. :class:`ConvertAhead`
runs the conversions in ``jobs`` helper processes (spawned, one thread each) on the CPUs the
timing process is *not* pinned to, at most ``2 * jobs`` subnets ahead, and hands each model
over (bytes; OpenVINO models as IR bytes; through files in a temporary folder, read between
subnets) to this process's conversion cache just before its subnet is timed: the windows then
prepare it from the cache as they would a model converted here. The rows do not change; what
runs beside the timing does, so pin the profiler to its own core (``taskset -c 1``):
unpinned, the helpers share its cores (a warning says so).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor

from .conversions import CACHE, from_portable

logger = logging.getLogger(__name__)

__all__ = ["ConvertAhead", "auto_convert_jobs", "helper_cpus"]

_WORKER: dict = {}


def helper_cpus() -> set | None:
    """The CPUs helper processes run on: those this process is not pinned to (None when it
    may run on every CPU, or on all but none)."""
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if mine is None:
        return None
    rest = set(range(os.cpu_count() or 1)) - set(mine)
    return rest or None


def auto_convert_jobs(backend) -> int:
    """How many helper processes ``convert_jobs="auto"`` (the default of ``profile`` and of
    ``search --verify``) gives ``backend``: one where it makes its models ahead
    (:attr:`~._base.ProfilingBackend.converts_ahead`: int8, LiteRT) and this process is pinned
    with another CPU free (:func:`helper_cpus`), else none (unpinned, a helper would share the
    timing's cores; a warning says how to pin)."""
    if not backend.converts_ahead:
        return 0
    if helper_cpus() is None:
        logger.warning("%s %s models are made in the timing process, one subnet at a time: "
                       "pin this process to one CPU (e.g. taskset -c 1 ofa-latency ...) and a "
                       "helper process makes them ahead on another (--convert-jobs; an int8 "
                       "table made in the timing process can be tilted by the subnets' size)",
                       backend.name, backend.precision)
        return 0
    return 1


def _init(name: str, kwargs: dict, cpus, folder: str) -> None:
    """(In a helper process.) Pin it, one thread, and make the backend."""
    _WORKER["folder"] = folder
    if cpus:
        os.sched_setaffinity(0, cpus)
    import torch

    torch.set_num_threads(1)
    from . import create_backend

    _WORKER["backend"] = create_backend(name, **kwargs)
    CACHE.keep_portable = True  # the form made for the model store is the one handed over


def _convert(space_name: str, arch: dict, batch_size: int) -> dict:
    """(In a helper process.) Convert one subnet; return what the cache got, portable, each
    part written to a file of the shared folder: ``{key: (kind, [path, ...])}``.

    Files, not the result itself: ``concurrent.futures`` receives a result in a thread of the
    profiling process, on the core it times on, while it times (a 20-35 MB model; tables made
    that way were 1.4-4.6x noisier, BENCHMARKS.md section 14.17). A path crosses in
    microseconds, and the profiler reads the file between subnets (:meth:`ConvertAhead.ready`).
    """
    import uuid

    from ..spaces import get_space

    backend = _WORKER["backend"]
    space = get_space(space_name)
    CACHE.take()  # hand over only this subnet's models
    backend.convert(space, space.validate(arch), batch_size)
    out = {}
    for key, (kind, parts) in CACHE.take_portable().items():
        paths = []
        for part in parts:
            path = os.path.join(_WORKER["folder"], uuid.uuid4().hex)
            with open(path, "wb") as f:
                f.write(part)
            paths.append(path)
        out[key] = (kind, paths)
    return out


def _read_parts(items: dict) -> dict:
    """The ``(kind, [bytes, ...])`` of :func:`_convert`'s ``(kind, [path, ...])``, each file
    removed once read."""
    out = {}
    for key, (kind, paths) in items.items():
        parts = []
        for path in paths:
            with open(path, "rb") as f:
                parts.append(f.read())
            os.unlink(path)
        out[key] = (kind, parts)
    return out


def _adopt(items: dict) -> None:
    for key, item in items.items():
        value = from_portable(item)
        if value is not None:
            CACHE.put(key, value)


class ConvertAhead:
    """Convert ``subnets`` of ``space`` for ``backend`` in ``jobs`` helper processes, in order,
    at most ``2 * jobs`` ahead of the one being timed; :meth:`ready` hands a subnet's models
    to this process's cache (waiting for them if need be). A context manager: leaving it stops
    the helpers. Helpers that fail (a conversion error) leave that subnet to be converted here,
    as without them.

    Parameters
    ----------
    backend : ProfilingBackend
        Made again in each helper (``create_backend(name, threads, device, precision,
        **options())``).
    """

    def __init__(self, backend, space, subnets, batch_size: int, jobs: int):
        import multiprocessing

        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs = {jobs!r}; must be an int >= 1")
        self.space, self.batch_size, self.jobs = space, batch_size, jobs
        self._todo = list(subnets)
        self._next = 0
        self._futures: dict = {}
        self.handed_over = 0
        self.timed = 0
        self.seconds_waited = 0.0
        cpus = helper_cpus()
        if cpus is None:
            logger.warning("converting ahead on the profiler's own CPUs: pin the profiler "
                           "(e.g. taskset -c 1) so that %d helper(s) run beside it, not on "
                           "its core", jobs)
        kwargs = {"threads": backend.threads, "device": backend.device,
                  "precision": backend.precision, **backend.options()}
        self._folder = tempfile.mkdtemp(prefix="ofa-latency-ahead-")  # the models handed over
        self._pool = ProcessPoolExecutor(max_workers=jobs,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init,
                                         initargs=(backend.name, kwargs, cpus, self._folder))
        logger.info("converting ahead in %d helper process(es) on CPUs %s", jobs,
                    sorted(cpus) if cpus else "shared with the profiler")
        self._fill()

    def _fill(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        while self._next < len(self._todo) and len(self._futures) < 2 * self.jobs:
            sub = self._todo[self._next]
            try:
                self._futures[sub] = self._pool.submit(_convert, self.space.name, sub.to_dict(),
                                                       self.batch_size)
            except (BrokenProcessPool, RuntimeError) as exc:  # a helper died (e.g. memory)
                logger.warning("the conversion helpers stopped (%s); the remaining subnets "
                               "are converted here", exc)
                self._next = len(self._todo)
                return
            self._next += 1

    def add(self, subnets) -> None:
        """Convert ``subnets`` too, after those given so far (e.g. the ones the profiler will
        time again); subnets already waiting for :meth:`ready` are not converted twice."""
        queued = set(self._todo[self._next:]) | set(self._futures)
        self._todo += [s for s in dict.fromkeys(subnets) if s not in queued]
        self._fill()

    def ready(self, sub) -> bool:
        """Hand ``sub``'s models to this process's cache; False when no helper made them
        (not submitted, or its conversion failed: the profiler converts it itself)."""
        import time

        self.timed += 1
        fut = self._futures.pop(sub, None)
        if fut is None:
            return False
        t0 = time.perf_counter()
        try:
            items = _read_parts(fut.result())
        except Exception as exc:  # the profiler converts it itself and says what failed
            logger.warning("converting %s ahead failed (%s: %s); converting it here",
                           sub.arch_json(), type(exc).__name__, exc)
            items = None
        self.seconds_waited += time.perf_counter() - t0
        self._fill()
        if not items:
            return False
        _adopt(items)
        self.handed_over += 1
        return True

    def close(self) -> None:
        """Stop the helpers (conversions not yet started are dropped)."""
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._folder, ignore_errors=True)  # models made but never handed over

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
