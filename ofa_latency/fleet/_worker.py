"""The device actor: one per physical device, on that device's host, holding one backend
setting; its timing methods run one at a time (Ray concurrency group ``timing`` of size 1),
its status method beside them."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

from ..profiling.conversions import require

ray = require("ray")

logger = logging.getLogger(__name__)

__all__ = ["DeviceWorker", "device_keys", "LOCK_DIR"]

LOCK_DIR = Path(tempfile.gettempdir()) / "ofa-latency-fleet"
"""Where the device locks live on each host (one file per core or GPU)."""

_PREPARED = 4  # remote runners kept per device (verification and LUT building through it)


def device_keys(setting: dict, name: str, cores=None) -> list[str]:
    """The physical resources a device worker times on, each held by at most one worker of a
    host: its CPU cores (``cpu<k>``; every core the process may use when ``cores`` is None),
    or its GPU (``cuda<k>``); a simulated (``fake``) device holds only its name."""
    if setting["backend"] == "fake":
        return [f"fake-{name}"]
    if setting["device_type"] == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        return [f"cuda{visible}"]
    use = sorted(cores) if cores else sorted(os.sched_getaffinity(0))
    return [f"cpu{c}" for c in use]


def _lock_all(keys) -> list:
    from ..datasets import LockHeld, hold_lock

    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    held = []
    for k in keys:
        try:
            fh = hold_lock(LOCK_DIR / f"{k}.lock", f"device worker pid {os.getpid()}")
        except LockHeld as taken:
            for h in held:
                h.close()
            raise RuntimeError(f"{k} of this host is already timed by {taken.holder}: at most "
                               f"one device worker per core or GPU (stop it first: "
                               f"ofa-latency fleet stop)") from None
        if fh is not None:
            held.append(fh)
    return held


def normal_priority(all_threads: bool = False) -> int:
    """Undo Ray's niceness for a timing worker (Ray starts workers at nice 15, so any other
    process on the host would preempt a measurement): nice 0 for the calling thread (Linux
    niceness is per thread), or every thread of the process. Returns the niceness now; a
    process without the right to lower it keeps its own (start Ray with
    ``RAY_worker_niceness=0`` then)."""
    if not hasattr(os, "setpriority"):
        return 0
    tids = [0]
    if all_threads and Path("/proc/self/task").is_dir():
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) > 0:
                os.setpriority(os.PRIO_PROCESS, tid, 0)
        except (PermissionError, ProcessLookupError):
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)


@ray.remote(concurrency_groups={"timing": 1, "control": 2})
class DeviceWorker:
    """One device of the fleet (a Ray actor; create it with :func:`.start_device`).

    Parameters
    ----------
    name : str
        The device's unique name (its actor name).
    label : str
        What kind of device it is; identical devices share a label and its tables.
    setting : dict
        ``space``, ``backend``, ``device_type``, ``threads``, ``precision``, ``batch_size``.
    cores : list of int, optional
        CPU cores to pin the worker to (its timings then use only them).
    backend_options : dict, optional
        Extra keyword arguments of the backend (e.g. a fake device's ``realtime``).
    measure_hardware : bool
        Measure the descriptor's throughputs (not for a ``fake`` device).
    """

    def __init__(self, name, label, setting, cores=None, backend_options=None,
                 measure_hardware=True):
        from ..hardware import describe_hardware
        from ..profiling import create_backend
        from ..spaces import get_space

        if cores:
            os.sched_setaffinity(0, set(cores))
        self.niceness = normal_priority(all_threads=True)
        if self.niceness > 0:
            logger.warning("device %s times at nice %d (no permission to lower it): other "
                           "processes preempt its measurements; start Ray with "
                           "RAY_worker_niceness=0", name, self.niceness)
        self.name, self.label, self.setting = name, label, dict(setting)
        self.cores = sorted(cores) if cores else None
        self._locks = _lock_all(device_keys(setting, name, cores))
        self.backend = create_backend(setting["backend"], threads=setting["threads"],
                                      device=setting["device_type"],
                                      precision=setting["precision"],
                                      **(backend_options or {}))
        self.space = get_space(setting["space"])
        self.hardware = describe_hardware(setting["backend"], setting["threads"],
                                          setting["device_type"],
                                          measure=measure_hardware and
                                          setting["backend"] != "fake",
                                          precision=setting["precision"])
        self._stats_path = LOCK_DIR / f"{name}.stats.json"
        self._stats = {"started": time.time(), "done": 0, "errors": 0, "busy_s": 0.0,
                       "last_error": None, "restarts": 0}
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # restarted by Ray after its process died: its counters go on
            try:
                old = json.loads(self._stats_path.read_text())
                self._stats.update({k: old[k] for k in self._stats if k in old})
            except (OSError, ValueError) as exc:
                logger.warning("device %s restarted without its counters (%s)", name, exc)
            self._stats["restarts"] += 1
        self.started = self._stats.pop("started")
        self._save_stats()
        self._current = None
        self._reference = None
        self._prepared = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._mutex = threading.Lock()

    def _save_stats(self):
        # beside the device locks: a worker restarted by Ray on this host goes on counting
        tmp = self._stats_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({**self._stats, "started": self.started}))
            os.replace(tmp, self._stats_path)
        except OSError as exc:  # counters are a convenience: never stop a timing for them
            logger.debug("device %s: counters not saved: %s", self.name, exc)

    # -- status (its own concurrency group: answers while a timing job runs) --
    @ray.method(concurrency_group="control")
    def info(self) -> dict:
        """Who and where this device is, its setting, descriptor and counters."""
        with self._mutex:
            stats = dict(self._stats)
            current = self._current
        return {"name": self.name, "label": self.label, "setting": self.setting,
                "device": self.backend.device_name(), "hostname": platform.node(),
                "host_ip": socket.gethostbyname(socket.gethostname()), "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(), "cores": self.cores,
                "niceness": self.niceness,
                "hardware": self.hardware, "versions": self.backend.versions(),
                "started": self.started, "current": current, **stats}

    # -- timing (one at a time per device) --
    def _begin(self, what):
        # this thread (Ray's concurrency-group threads start niced)
        self.niceness = normal_priority()
        with self._mutex:
            self._current = {"what": what, "since": time.time()}

    def _end(self, t0, ok=True, error=None):
        with self._mutex:
            self._stats["busy_s"] += time.perf_counter() - t0
            self._stats["done" if ok else "errors"] += 1
            if error is not None:
                self._stats["last_error"] = error
            self._current = None
            self._save_stats()

    def _reference_runner(self, batch_size):
        from ..spaces import reference_subnet

        if self._reference is None or self._reference[0] != batch_size:
            self._reference = (batch_size, self.backend.prepare(
                self.space, reference_subnet(self.space), batch_size))
        return self._reference[1]

    @ray.method(concurrency_group="timing")
    def measure(self, arch: dict, protocol: dict, drift_correction: bool = True) -> dict:
        """Time one subnet (``arch`` in OFA's form, ``image_size`` included) with the
        profiler's protocol, its windows interleaved with the reference subnet; returns the
        windows' results (dicts of :class:`~ofa_latency.profiling.TimingResult`) and the
        seconds spent."""
        sub = self.space.validate(arch)
        batch = self.setting["batch_size"]
        return self._windows(sub.key(), lambda: self.backend.prepare(self.space, sub, batch),
                             (lambda: self._reference_runner(batch)) if drift_correction
                             else None, protocol)

    @ray.method(concurrency_group="timing")
    def measure_module(self, module, input_shape, protocol: dict) -> dict:
        """Time one layer (a torch module, inputs of ``input_shape`` per image) like
        :meth:`measure` times a subnet: what a lookup table holds."""
        batch = self.setting["batch_size"]
        return self._windows(
            f"layer {type(module).__name__} {tuple(input_shape)}",
            lambda: self.backend.prepare_module(module, tuple(input_shape), batch),
            lambda: self._reference_runner(batch), protocol)

    def _windows(self, what, prepare, reference, protocol: dict) -> dict:
        """The profiler's windows of one item (``prepare``: its runner; ``reference``: the
        reference subnet's runner, or None), counted in the device's status."""
        from ..profiling.timing import TimingProtocol, measure_windows

        t0 = time.perf_counter()
        self._begin(what)
        try:
            windows = measure_windows(prepare, reference() if reference else None,
                                      TimingProtocol(**protocol))
        except Exception as exc:
            self._end(t0, ok=False, error=f"{type(exc).__name__}: {exc}")
            raise
        self._end(t0)
        return {"windows": [dataclasses.asdict(w) for w in windows],
                "device_s": time.perf_counter() - t0, "worker": self.name}

    def _keep(self, runner) -> int:
        handle = next(self._ids)
        self._prepared[handle] = runner
        while len(self._prepared) > _PREPARED:
            self._prepared.popitem(last=False)
        return handle

    @ray.method(concurrency_group="timing")
    def prepare(self, arch: dict, batch_size: int) -> int:
        """Prepare a subnet (``arch`` with ``r``) and keep its runner; returns its handle."""
        sub = self.space.validate(arch)
        self.niceness = normal_priority()
        return self._keep(self.backend.prepare(self.space, sub, batch_size))

    @ray.method(concurrency_group="timing")
    def prepare_module(self, module, input_shape, batch_size: int) -> int:
        """Prepare one layer (a torch module) and keep its runner; returns its handle."""
        self.niceness = normal_priority()
        return self._keep(self.backend.prepare_module(module, tuple(input_shape), batch_size))

    @ray.method(concurrency_group="timing")
    def run(self, handle: int, n: int) -> list:
        """``n`` timed forward passes of a prepared runner (seconds each)."""
        t0 = time.perf_counter()
        self._begin(f"runner {handle}")
        try:
            if handle not in self._prepared:
                raise KeyError(f"runner {handle} is no longer prepared on {self.name} (the "
                               f"worker keeps the last {_PREPARED}, or it restarted)")
            out = list(self._prepared[handle].run(int(n)))
        except Exception as exc:
            self._end(t0, ok=False, error=f"{type(exc).__name__}: {exc}")
            raise
        with self._mutex:
            self._stats["busy_s"] += time.perf_counter() - t0
            self._current = None
        return out

    @ray.method(concurrency_group="timing")
    def release(self, handle: int) -> None:
        """Forget a prepared runner."""
        self._prepared.pop(handle, None)
