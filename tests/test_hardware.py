import os
import subprocess
import sys
import time

import pytest

from ofa_latency.hardware import describe_hardware, load_gpu_specs


def test_gpu_spec_table():
    df = load_gpu_specs()
    for key in ("2080ti", "titan_xp", "v100", "t4", "a10", "a100_40gb", "l4", "h100_sxm", "h200",
                "rtx3090", "rtx4090", "jetson_agx_orin_64gb", "titan_rtx", "rtx2060", "rtx2070",
                "rtx2080", "rtx3060", "rtx3070", "rtx3080", "rtx4060", "rtx4070", "rtx4080",
                "jetson_agx_xavier_32gb", "jetson_xavier_nx_8gb", "jetson_orin_nx_16gb",
                "jetson_orin_nano_8gb"):
        assert key in set(df.key), key
    assert (df.memory_bandwidth_gbs > 0).all() and (df.fp32_tflops > 0).all()
    assert df.source.str.len().gt(10).all()  # every row says where its numbers come from
    # fp32 throughput agrees with cores x clock x 2 (a typo check on the spec sheets)
    implied = df.cuda_cores * df.boost_clock_mhz * 2 / 1e6
    assert ((df.fp32_tflops / implied - 1).abs() < 0.12).all(), df[["key", "fp32_tflops"]]
    assert df.key.is_unique
    with pytest.raises(FileNotFoundError):
        load_gpu_specs("/nonexistent.csv")


def test_describe_measures_this_machine():
    d = describe_hardware("onnxruntime", threads=1)
    assert d["threads_in_use"] == 1 and d["logical_cores"] >= 1
    assert d["memory_bandwidth_gbs"] > 0.1 and d["matmul_gflops"] > 0.1


def _stat(tmp_path, name, cpus):
    """A /proc/stat with per-CPU (busy, idle) ticks (user and idle columns only)."""
    lines = ["cpu  1 0 0 1 0 0 0 0 0 0"] + [f"cpu{i} {b} 0 0 {i_} 0 0 0 0 0 0"
                                           for i, (b, i_) in enumerate(cpus)]
    p = tmp_path / name
    p.write_text("\n".join(lines + ["", "intr 5 0", "ctxt 7"]) + "\n")
    return p


def test_other_processes_share_of_the_profiled_cpus(tmp_path):
    from ofa_latency.hardware import cpu_snapshot, others_busy_pct

    tick = os.sysconf("SC_CLK_TCK")
    # 10 s on two CPUs: CPU 0 busy 9 s (4 of them this process), CPU 1 busy 1 s
    a = cpu_snapshot(_stat(tmp_path, "a", [(0, 0), (0, 0)]), own_s=2.0)
    b = cpu_snapshot(_stat(tmp_path, "b", [(9 * tick, 1 * tick), (1 * tick, 9 * tick)]),
                     own_s=6.0)
    assert a.busy_s == {0: 0.0, 1: 0.0} and b.total_s == {0: 10.0, 1: 10.0}
    assert others_busy_pct(a, b, cpus=[0]) == 50.0  # 9 s busy - 4 s own, of 10 s
    assert others_busy_pct(a, b, cpus=[0, 1]) == 30.0  # (10 - 4) of 20 s
    assert others_busy_pct(a, b, cpus=[1]) == 0.0  # never negative
    assert others_busy_pct(a, a, cpus=[0]) is None  # no time passed
    assert others_busy_pct(None, b) is None
    assert cpu_snapshot(tmp_path / "missing") is None  # not Linux: unknown, not an error


def test_a_snapshot_keeps_the_time_the_hypervisor_stole(tmp_path):
    from ofa_latency.hardware import cpu_snapshot

    tick = os.sysconf("SC_CLK_TCK")
    p = tmp_path / "stat"  # user nice system idle iowait irq softirq steal
    p.write_text(f"cpu  1 0 0 1 0 0 0 0\ncpu0 {2 * tick} 0 0 {5 * tick} 0 0 0 {3 * tick}\n")
    snap = cpu_snapshot(p, own_s=0.0)
    assert snap.steal_s == {0: 3.0} and snap.busy_s == {0: 5.0} and snap.total_s == {0: 10.0}


def test_a_busy_loop_on_the_same_cpu_is_seen():
    from ofa_latency.hardware import cpu_snapshot, others_busy_pct

    if cpu_snapshot() is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux /proc/stat and CPU affinity")
    cpu = min(os.sched_getaffinity(0))
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(loop.pid, {cpu})
        time.sleep(0.2)
        before = cpu_snapshot()
        time.sleep(1.0)  # this process sleeps: the CPU's busy time is the loop's
        busy = others_busy_pct(before, cpu_snapshot(), cpus=[cpu])
    finally:
        loop.kill()
        loop.wait()
    assert busy > 60, busy  # a spinning process holds an otherwise idle CPU


def test_cpu_has_vnni_reads_the_flags(tmp_path):
    """VNNI from the CPU flags; None where they cannot be read."""
    from ofa_latency.hardware import cpu_has_vnni

    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(str(avx2)) is False and cpu_has_vnni(str(vnni)) is True
    assert cpu_has_vnni(str(tmp_path / "missing")) is None
