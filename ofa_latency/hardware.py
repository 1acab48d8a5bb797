"""Hardware descriptors: measured (this machine) and spec-sheet (``data/hardware.csv``)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["cpu_model_name", "describe_hardware", "load_gpu_specs",
           "hardware_differences", "DESCRIPTOR_CHANGE_PCT", "CpuSnapshot", "cpu_snapshot",
           "others_busy_pct", "others_busy_text", "OTHERS_BUSY_WARN_PCT", "wait_until_quiet",
           "cpu_has_vnni"]

DESCRIPTOR_CHANGE_PCT = 30.0  # measured throughput this far from a recorded one: another machine
_IDENTITY_KEYS = ("cpu_model", "logical_cores", "gpu_name", "backend", "device",
                  "threads_in_use", "precision")
_MEASURED_KEYS = ("matmul_gflops", "memory_bandwidth_gbs", "gpu_bandwidth_gbs",
                  "gpu_matmul_fp32_gflops")


# other processes keeping this share (percent) of the profiler's CPUs busy: a warning
OTHERS_BUSY_WARN_PCT = 20.0


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    """CPU time counters at one moment (:func:`cpu_snapshot`), in seconds.

    Attributes
    ----------
    busy_s, total_s : dict
        Per CPU index: time spent busy (user, nice, system, irq, softirq and steal: time the
        hypervisor gave to others) and in all (busy, idle and iowait).
    own_s : float
        This process's CPU time (user + system, every thread).
    steal_s : dict
        Per CPU index: the steal part of ``busy_s`` alone.
    """

    busy_s: dict
    total_s: dict
    own_s: float
    steal_s: dict = dataclasses.field(default_factory=dict)


def cpu_snapshot(stat_path="/proc/stat", own_s: float | None = None) -> CpuSnapshot | None:
    """The machine's per-CPU time counters (Linux ``/proc/stat``) and this process's CPU time
    (``own_s``, default :func:`os.times`); None where there is no such file."""
    try:
        lines = Path(stat_path).read_text().splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy, total, stolen = {}, {}, {}
    for line in lines:
        name, *fields = line.split() or [""]
        if not (name.startswith("cpu") and name[3:].isdigit()) or len(fields) < 5:
            continue
        v = [float(x) / tick for x in fields[:8]] + [0.0] * (8 - min(8, len(fields)))
        user, nice, system, idle, iowait, irq, softirq, steal = v
        b = user + nice + system + irq + softirq + steal
        cpu = int(name[3:])
        busy[cpu], total[cpu], stolen[cpu] = b, b + idle + iowait, steal
    if not busy:
        return None
    if own_s is None:
        t = os.times()
        own_s = t.user + t.system
    return CpuSnapshot(busy, total, float(own_s), stolen)


def others_busy_pct(before: CpuSnapshot | None, after: CpuSnapshot | None,
                    cpus=None, min_seconds: float = 0.1) -> float | None:
    """How busy other processes kept ``cpus`` between two snapshots, in percent of their time:
    the CPUs' busy time less this process's own CPU time (this process is taken to have run on
    ``cpus``), over their elapsed time. Helper processes of this one count as others.

    Parameters
    ----------
    before, after : CpuSnapshot or None
    cpus : iterable of int, optional
        Default: the CPUs this process may run on (:func:`os.sched_getaffinity`), so a
        profiler pinned to one CPU (``taskset -c 1``) is told about that CPU alone.
    min_seconds : float
        Less time than this between the snapshots (per CPU) says nothing: the kernel counts
        in ticks of 10 ms.

    Returns
    -------
    float or None
        None without snapshots or with under ``min_seconds`` elapsed.
    """
    if before is None or after is None:
        return None
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else after.busy_s
    cpus = [c for c in cpus if c in before.busy_s and c in after.busy_s]
    total = sum(after.total_s[c] - before.total_s[c] for c in cpus)
    if not (total > 0 and total >= min_seconds * len(cpus)):
        return None
    busy = sum(after.busy_s[c] - before.busy_s[c] for c in cpus)
    others = busy - (after.own_s - before.own_s)
    return round(float(min(100.0, max(0.0, 100.0 * others / total))), 1)


def wait_until_quiet(busy_pct: float, max_s: float, probe_s: float = 0.5,
                     stat_path="/proc/stat") -> tuple[bool, float]:
    """Sleep in probes of ``probe_s`` seconds until other processes keep this process's CPUs
    less than ``busy_pct`` percent busy over one probe (:func:`others_busy_pct`), or
    ``max_s`` seconds have passed. Returns whether it came quiet (True where the share cannot
    be known) and the seconds spent."""
    t0 = time.perf_counter()
    while True:
        before = cpu_snapshot(stat_path)
        if before is None:
            return True, time.perf_counter() - t0
        time.sleep(probe_s)
        busy = others_busy_pct(before, cpu_snapshot(stat_path), min_seconds=probe_s / 2)
        spent = time.perf_counter() - t0
        if busy is None or busy < busy_pct:
            return True, spent
        if spent >= max_s:
            return False, spent


def others_busy_text(pct: float) -> str:
    """How :func:`others_busy_pct` is said: the share, and from :data:`OTHERS_BUSY_WARN_PCT`
    the remedy."""
    return (f"other processes kept {pct:.0f} % of the profiled CPUs busy"
            + (" (stop them, or pin the profiler to an idle CPU: taskset -c N)"
               if pct >= OTHERS_BUSY_WARN_PCT else ""))


@functools.lru_cache(maxsize=None)
def cpu_model_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def cpu_has_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU has an int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX);
    None where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return None
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def measure_memory_bandwidth_gbs(size_mb: int = 256, repeats: int = 5) -> float:
    """Host memory bandwidth (GB/s) of a large array copy, counting bytes read and written."""
    src = np.ones(size_mb * 2 ** 20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best, _ = _best_of(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / best / 1e9


def measure_matmul_gflops(threads: int = 1, n: int = 1024, repeats: int = 5) -> float:
    """float32 matrix-multiply throughput (GFLOP/s) through PyTorch with ``threads`` threads."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        a @ b
        best, _ = _best_of(lambda: a @ b, repeats)
    finally:
        torch.set_num_threads(old)
    return 2 * n ** 3 / best / 1e9


def _gpu_descriptor(repeats=5):
    import torch

    props = torch.cuda.get_device_properties(0)
    desc = {"gpu_name": props.name, "gpu_sm_count": props.multi_processor_count,
            "gpu_memory_gb": round(props.total_memory / 1e9, 2)}
    # bandwidth: device-to-device copy of 1 GiB, bytes read + written
    src = torch.empty(2 ** 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record(); dst.copy_(src); end.record(); end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    desc["gpu_bandwidth_gbs"] = round(2 * src.numel() * 4 / min(times) / 1e9, 1)
    del src, dst
    # launch overhead: many tiny kernels back to back, host-side wall time per launch
    x = torch.zeros(1, device="cuda")
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    n = 2000
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1)
        torch.cuda.synchronize()
        per.append((time.perf_counter() - t0) / n)
    desc["gpu_launch_overhead_us"] = round(min(per) * 1e6, 2)
    a = torch.randn(4096, 4096, device="cuda")
    a @ a
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start.record(); a @ a; end.record(); end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    desc["gpu_matmul_fp32_gflops"] = round(2 * 4096 ** 3 / min(times) / 1e9, 1)
    return desc


def describe_hardware(backend: str = "torch", threads: int = 1, device: str = "cpu",
                      measure: bool = True, precision: str = "fp32") -> dict:
    """Describe this machine for a backend setting.

    Parameters
    ----------
    backend : str
        The profiling backend the description is for.
    threads : int
        Threads the backend uses (``threads_in_use``; also used for the matmul measurement).
    device : str
        ``"cpu"`` or ``"cuda"``; with ``"cuda"`` the GPU is described and measured too.
    measure : bool
        Measure memory bandwidth (GB/s) and matmul throughput (GFLOP/s); a few seconds.
    precision : str
        The setting's precision (``fp32``, ``fp16``, ``int8``), recorded as ``precision``.

    Returns
    -------
    dict
        JSON-serialisable: CPU model, physical/logical cores, threads in use, memory (GB),
        measured ``memory_bandwidth_gbs`` and ``matmul_gflops``; with CUDA also ``gpu_name``,
        ``gpu_sm_count``, ``gpu_memory_gb``, ``gpu_bandwidth_gbs``, ``gpu_launch_overhead_us``.
    """
    import psutil

    desc = {
        "hostname": platform.node(),
        "cpu_model": cpu_model_name(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 2),
        "backend": backend,
        "device": device,
        "threads_in_use": threads,
        "precision": precision,
        "platform": platform.platform(),
    }
    if measure:
        desc["memory_bandwidth_gbs"] = round(measure_memory_bandwidth_gbs(), 2)
        desc["matmul_gflops"] = round(measure_matmul_gflops(threads), 2)
    if device == "cuda":
        desc.update(_gpu_descriptor())
    return desc


def load_gpu_specs(path=None) -> pd.DataFrame:
    """Spec-sheet facts of GPUs (one row per GPU), from ``data/hardware.csv`` by default.

    Columns: ``key``, ``name``, ``architecture``, ``cuda_cores``, ``sm_count``, ``memory_gb``,
    ``memory_bandwidth_gbs``, ``boost_clock_mhz``, ``fp32_tflops``, ``source``.
    """
    import pandas as pd

    from ._paths import data_dir

    path = Path(path) if path is not None else data_dir() / "hardware.csv"
    if not path.exists():
        raise FileNotFoundError(f"GPU spec table not found at {path}")
    return pd.read_csv(path, comment="#")


def hardware_differences(recorded: dict, current: dict, measured: bool = True) -> list[str]:
    """What differs between two hardware descriptors beyond noise: identity fields that are
    not equal, and (``measured``) measured throughputs more than
    :data:`DESCRIPTOR_CHANGE_PCT` apart. Measured throughputs move with a busy machine, so
    they are not identity: the profiler only warns about them."""
    out = []
    for k in _IDENTITY_KEYS:
        if k in recorded and k in current and recorded[k] != current[k]:
            out.append(f"{k}: {recorded[k]!r} -> {current[k]!r}")
    for k in _MEASURED_KEYS if measured else ():
        a, b = recorded.get(k), current.get(k)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and \
                abs(b / a - 1) * 100 > DESCRIPTOR_CHANGE_PCT:
            out.append(f"{k}: {a} -> {b} ({100 * (b / a - 1):+.0f} %)")
    return out
