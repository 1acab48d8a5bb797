import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from ofa_latency import create_backend, list_backends, profile_subnets
from ofa_latency.datasets import COLUMNS, read_measurements
from ofa_latency.hardware import cpu_snapshot
from ofa_latency.profiling import TimingProtocol


def test_registry():
    assert {"fake", "onnxruntime", "torch"} <= set(list_backends())
    with pytest.raises(ValueError, match="unknown backend 'tpu'.*fake"):
        create_backend("tpu")
    with pytest.raises(ValueError, match="threads"):
        create_backend("fake", threads=0)
    with pytest.raises(ValueError, match="device"):
        create_backend("fake", device="cuda")


@pytest.mark.parametrize("name", list_backends())
def test_backend_contract(name, mbv3, smallest):
    """Every registered backend: validated settings, a runner that returns one positive time
    per run, a device name and the versions that affect timings."""
    from ofa_latency.profiling import ProfilingBackend, Runner

    try:
        be = create_backend(name, threads=1)
    except ImportError as exc:  # an optional runtime (openvino, litert) without its extra
        assert "ofa-latency[" in str(exc)
        pytest.skip(str(exc))
    except (RuntimeError, ValueError) as exc:  # a GPU-only backend on a machine without one
        assert "cuda" in str(exc).lower() or "gpu" in str(exc).lower()
        pytest.skip(str(exc))
    assert isinstance(be, ProfilingBackend) and be.name == name
    assert be.threads == 1 and be.device == "cpu" and be.precision == "fp32"
    runner = be.prepare(mbv3, smallest, 1)
    assert isinstance(runner, Runner)
    times = runner.run(4)
    assert len(times) == 4 and all(isinstance(t, float) and 0 < t < 5 for t in times)
    assert isinstance(be.device_name(), str) and be.device_name()
    assert "ofa_latency" in be.versions()
    # every backend that runs real inference on the CPU fixes glibc's malloc thresholds, so
    # a subnet's time does not depend on what the process ran before (e.g. making its model);
    # the fake device has nothing to steady
    if name == "fake":
        assert "steady_allocator" not in be.versions()
    elif sys.platform.startswith("linux"):
        assert be.versions()["steady_allocator"] is True
    # `profile --convert-jobs auto` has a helper make the models ahead for int8 and LiteRT
    # (BENCHMARKS.md 16.26), at fp32 for LiteRT only (a conversion takes 11-27 s)
    assert be.converts_ahead is (name == "litert")
    with pytest.raises(ValueError, match="threads = 0"):
        create_backend(name, threads=0)
    with pytest.raises(ValueError, match="precision"):
        create_backend(name, precision="int3")


def test_fake_pipeline_rows_and_resume(tmp_path, mbv3):
    be = create_backend("fake", threads=1)
    subs = mbv3.sample(12, seed=3)
    out = tmp_path / "m.csv"
    df = profile_subnets(mbv3, be, subs[:5], 1, out, progress=False, hardware={"cpu": "x"})
    assert len(df) == 5 and list(read_measurements(out).columns) == COLUMNS
    assert json.loads((tmp_path / "m.csv.hardware.json").read_text()) == {"cpu": "x"}
    df = profile_subnets(mbv3, be, subs, 1, out, progress=False)
    table = read_measurements(out)
    assert len(table) == 12 and len(df) == 12
    # the fake device's windows are shorter than the kernel's counters can see: how busy
    # other processes were is unknown, not 0 or 100 (test_rows_say_how_busy_others_were)
    assert table["others_busy_pct"].dropna().between(0, 100).all()
    assert profile_subnets(mbv3, be, subs, 1, out, progress=False).attrs[
        "others_busy_pct"] is None  # nothing left to time
    assert not table.duplicated(["arch", "image_size"]).any()
    assert set(table.split) <= {"train", "test"}
    # the fake latency is recovered through the protocol within its 1 % noise
    true = np.array([be.true_latency_ms(mbv3, s) for s in subs])
    got = table.set_index(["arch", "image_size"]).loc[
        [(s.arch_json(), s.image_size) for s in subs], "latency_ms"].to_numpy()
    np.testing.assert_allclose(got, true, rtol=0.02)
    assert (table.ref_baseline_ms == table.ref_baseline_ms.iloc[0]).all()
    # another batch size is another setting: refused in the same table unless asked for
    with pytest.raises(ValueError, match="another setting"):
        profile_subnets(mbv3, be, subs[:2], 64, out, progress=False)
    df64 = profile_subnets(mbv3, be, subs[:2], 64, out, progress=False,
                           allow_mixed_settings=True)
    assert len(df64) == 2 and (df64.batch_size == 64).all()
    assert df64.latency_ms.iloc[0] > 30 * got[0]


def test_fake_backend_is_deterministic(mbv3):
    a, b = create_backend("fake", seed=1), create_backend("fake", seed=1)
    s = mbv3.sample(3, seed=0)
    assert [a.true_latency_ms(mbv3, x) for x in s] == [b.true_latency_ms(mbv3, x) for x in s]
    assert a.prepare(mbv3, s[0], 1).run(5) == b.prepare(mbv3, s[0], 1).run(5)


@pytest.mark.parametrize("name", ["onnxruntime", "torch"])
def test_real_backends_run_a_small_subnet(name, mbv3, smallest, tmp_path):
    from ofa_latency.profiling import TimingProtocol

    be = create_backend(name, threads=1)
    times = be.prepare(mbv3, smallest, 1).run(3)
    assert len(times) == 3 and all(0 < t < 5 for t in times)
    p = TimingProtocol(warmup_runs=1, rounds=2, runs_per_round=2, max_rounds=2)
    df = profile_subnets(mbv3, be, [smallest], 1, tmp_path / "r.csv", protocol=p,
                         progress=False)
    row = df.iloc[0]
    assert row.backend == name and row.threads == 1 and row.latency_ms > 0
    versions = json.loads(row.versions)
    assert "torch" in versions and "ofa_latency" in versions
    if name == "onnxruntime":
        assert "onnxruntime" in versions


def test_onnxruntime_windows_prepare_fresh_sessions_from_one_export(mbv3):
    """A subnet's later windows (and retries) make a new session from the cached fp32 export
    instead of exporting it again; the export is deterministic, so the bytes are the ones a
    fresh export gives. `convert` makes it (for a helper process, `--convert-jobs`)."""
    from ofa_latency.profiling.conversions import CACHE
    from ofa_latency.spaces.building import onnx_bytes

    be = create_backend("onnxruntime", threads=1)
    sub = mbv3.validate({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 136})
    n0 = CACHE.conversions
    assert be.convert(mbv3, sub, 1)
    first, second = be.prepare(mbv3, sub, 1), be.prepare(mbv3, sub, 1)
    assert CACHE.conversions - n0 == 1 and first is not second
    assert len(first.run(2)) == 2 and len(second.run(2)) == 2
    assert be.model_bytes(mbv3, sub, 1) == onnx_bytes(mbv3.build(sub), 136, 1)
    assert not create_backend("torch", threads=1).convert(mbv3, sub, 1)


def test_torch_cuda_unavailable_is_clear():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        create_backend("torch", device="cuda")


def test_retime_measures_noisy_rows_again_and_combines_them(tmp_path, mbv3):
    """Rows whose own interval is wide are measured once more per call; the table reads one
    row per subnet, its rows combined (the noisy one counting little); a second call finds
    nothing left to re-time."""
    import pandas as pd

    be = create_backend("fake", threads=1)
    subs = mbv3.sample(4, seed=5)
    out = tmp_path / "m.csv"
    profile_subnets(mbv3, be, subs, 1, out, progress=False)
    raw = pd.read_csv(out)
    raw.loc[[1, 3], "ci_pct"] = 50.0  # two rows as if from a noisy window
    raw.to_csv(out, index=False)
    noisy = set(raw.arch[[1, 3]])
    df = profile_subnets(mbv3, be, subs, 1, out, progress=False, retime_above_pct=5.0)
    assert len(pd.read_csv(out)) == 6  # both rows kept on disk: nothing lost
    assert len(df) == 4 and not df.duplicated(["arch", "image_size"]).any()
    assert (df.ci_pct < 5).all()
    assert set(read_measurements(out).arch) == set(raw.arch)
    profile_subnets(mbv3, be, subs, 1, out, progress=False, retime_above_pct=5.0)
    assert len(pd.read_csv(out)) == 6
    # a tighter bound re-times every row once more; each subnet's rows are combined, each
    # weighted by 1 / (ci_pct**2 + 1 %**2)
    df2 = profile_subnets(mbv3, be, subs, 1, out, progress=False, retime_above_pct=1e-6)
    rows = pd.read_csv(out)
    assert len(rows) == 10 and len(df2) == 4 and set(df2.arch) == set(rows.arch)
    w = 1 / (rows.ci_pct ** 2 + 1.0)
    expected = (w * np.log(rows.ratio)).groupby(rows.arch).sum() / w.groupby(rows.arch).sum()
    assert np.allclose(np.log(df2.set_index("arch").ratio.loc[expected.index]), expected)
    assert (df2.set_index("arch").n_runs.loc[list(noisy)] ==
            rows[rows.arch.isin(noisy)].groupby("arch").n_runs.sum().loc[list(noisy)]).all()
    for bad in (-1, float("inf"), True):
        with pytest.raises(ValueError, match="retime_above_pct"):
            profile_subnets(mbv3, be, subs, 1, out, progress=False, retime_above_pct=bad)


def _ratio_errors_pct(be, space, subs, table):
    from ofa_latency.spaces import reference_subnet

    ref = be.true_latency_ms(space, reference_subnet(space))
    true = {s.arch_json(): be.true_latency_ms(space, s) / ref for s in subs}
    return np.array([100 * (r / true[a] - 1) for a, r in zip(table.arch, table.ratio)])


def test_windows_that_missed_the_fast_state_are_timed_again(tmp_path, mbv3, caplog):
    """A machine that spends half its time in a state 40 % slower, in which a subnet's ratio
    to the reference is 6 % lower (as host6's): without retries about half the rows carry the
    slow state's ratio; with them the table keeps the fast-state rows of nearly every subnet."""
    import logging

    import pandas as pd

    subs = mbv3.sample(20, seed=2)
    bad = {}
    for retries in (0, 2):
        be = create_backend("fake", drift=0.4, phase_runs=400, slow_skew=0.06, seed=3)
        out = tmp_path / f"r{retries}.csv"
        with caplog.at_level(logging.INFO, logger="ofa_latency"):
            df = profile_subnets(mbv3, be, subs, 1, out, progress=False,
                                 protocol=TimingProtocol(off_state_retries=retries))
        assert len(df) == 20 and not df.duplicated(["arch", "image_size"]).any()
        bad[retries] = int((_ratio_errors_pct(be, mbv3, subs, df) < -3).sum())
        if retries:
            assert len(pd.read_csv(out)) > 20  # the retried windows' rows are on disk too
            assert "timing them again" in caplog.text
    assert bad[0] >= 6
    assert bad[2] <= bad[0] // 3
    # nothing to retry on a steady machine
    steady = tmp_path / "steady.csv"
    profile_subnets(mbv3, create_backend("fake", seed=1), subs, 1, steady, progress=False)
    assert len(pd.read_csv(steady)) == 20
    with pytest.raises(ValueError, match="off_state_retries"):
        TimingProtocol(off_state_retries=-1)


def test_retries_wait_for_the_fast_state(tmp_path, mbv3):
    """Slow spells long enough to outlast back-to-back retries (host6's, BENCHMARKS.md section
    14.6): waiting for the fast state before each retry keeps fewer slow-state rows."""
    subs = mbv3.sample(20, seed=2)
    bad = {0.0: 0, 10.0: 0}
    for seed in range(3, 9):
        for wait_s in bad:
            be = create_backend("fake", drift=0.4, phase_runs=150, slow_skew=0.06, seed=seed)
            df = profile_subnets(mbv3, be, subs, 1, tmp_path / f"s{seed}_{wait_s}.csv",
                                 progress=False, protocol=TimingProtocol(off_state_wait_s=wait_s))
            bad[wait_s] += int((_ratio_errors_pct(be, mbv3, subs, df) < -3).sum())
    assert bad[0.0] >= 15
    assert bad[10.0] <= 0.7 * bad[0.0]
    with pytest.raises(ValueError, match="off_state_wait_s"):
        TimingProtocol(off_state_wait_s=-1.0)


class _ScriptedReference:
    """A reference subnet whose runs take ``ms_per_round[i]`` ms in round ``i`` (then the last)."""

    def __init__(self, ms_per_round):
        self.ms, self.calls = list(ms_per_round), 0

    def run(self, n):
        ms = self.ms[min(self.calls, len(self.ms) - 1)]
        self.calls += 1
        return [ms / 1e3] * n


def test_wait_for_fast_state_and_a_spell_that_outlasts_it(caplog):
    import logging

    from ofa_latency.profiling.scale import retry_off_state, wait_for_fast_state

    came, spent = wait_for_fast_state(_ScriptedReference([15, 15, 10.5]), 10.0, max_s=1.0)
    assert came and spent == pytest.approx(3 * (15 + 15 + 10.5) / 1e3)
    came, spent = wait_for_fast_state(_ScriptedReference([15]), 10.0, max_s=0.5)
    assert not came and 0.5 <= spent < 0.5 + 3 * 15 / 1e3
    # a spell longer than the wait: nothing is timed again, the keys are returned and warned about
    fastest, refs, timed = {"a": 14.0, "b": 10.1}, [10.0] * 20, []
    with caplog.at_level(logging.INFO, logger="ofa_latency"):
        left = retry_off_state(fastest, refs, 2, timed.append, ref_runner=_ScriptedReference([14]),
                               wait_s=0.2)
    assert left == ["a"] and timed == []
    assert "stayed in its slower state" in caplog.text
    # without waiting it is timed twice more
    retry_off_state(fastest, refs, 2, timed.append)
    assert timed == ["a", "a"]


def test_a_tighter_off_state_threshold_times_again_what_the_default_keeps(tmp_path, mbv3):
    """``off_state_pct``: a window 15 % off the table's level is timed again at 10 %, not at
    the default 25 %; ``profile --off-state-pct`` records a threshold other than the default in
    its rows, and refuses one that is not a positive number."""
    from ofa_latency.cli import main
    from ofa_latency.profiling.scale import OFF_STATE_PCT, retry_off_state

    fastest, refs = {"a": 11.5, "b": 10.1}, [10.0] * 20
    timed = []
    retry_off_state(fastest, refs, 1, timed.append)
    assert timed == [] and OFF_STATE_PCT == 25.0
    retry_off_state(fastest, refs, 1, timed.append, pct=10.0)
    assert timed == ["a"]
    with pytest.raises(ValueError, match="off_state_pct"):
        TimingProtocol(off_state_pct=0.0)
    out = tmp_path / "t.csv"
    assert main(["profile", "--backend", "fake", "--n", "3", "--out", str(out),
                 "--off-state-pct", "10", "--quiet"]) == 0
    versions = [json.loads(v) for v in read_measurements(out)["versions"]]
    assert all(v["off_state_pct"] == 10.0 for v in versions)
    assert main(["profile", "--backend", "fake", "--n", "3", "--out", str(out),
                 "--off-state-pct", "0"]) == 2  # argparse's usage error


def _quietest_cpu(probe_s=0.5):
    """The CPU of this process's that other processes kept least busy over ``probe_s``
    seconds, and how busy (percent)."""
    from ofa_latency.hardware import others_busy_pct

    cpus = sorted(os.sched_getaffinity(0))
    before = cpu_snapshot()
    time.sleep(probe_s)
    after = cpu_snapshot()
    busy = {c: others_busy_pct(before, after, cpus=[c], min_seconds=probe_s / 2) or 0.0
            for c in cpus}
    cpu = min(busy, key=busy.get)
    return cpu, busy[cpu]


def _beside_a_spinner(seconds, fn, cpu=None):
    """``fn()`` run on one CPU (default the lowest of this process's) shared with a process
    spinning for ``seconds`` (None: until ``fn`` returns)."""
    old = os.sched_getaffinity(0)
    cpu = min(old) if cpu is None else cpu
    code = "while True: pass" if seconds is None else \
        f"import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass"
    loop = subprocess.Popen([sys.executable, "-c", code])
    try:
        os.sched_setaffinity(loop.pid, {cpu})
        os.sched_setaffinity(0, {cpu})  # the profiler shares its CPU with a spinning process
        return fn()
    finally:
        loop.kill()
        loop.wait()
        os.sched_setaffinity(0, old)


def test_rows_say_how_busy_other_processes_kept_the_profiled_cpu(tmp_path, mbv3, caplog):
    import logging

    from ofa_latency.datasets import noise_text, table_noise

    if cpu_snapshot() is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux /proc/stat and CPU affinity")
    be = create_backend("fake", threads=1, realtime=True)  # sleeps its latencies
    # beside a process spinning throughout: no quieter moment to time them again in
    with caplog.at_level(logging.INFO, logger="ofa_latency"):
        df = _beside_a_spinner(None, lambda: profile_subnets(
            mbv3, be, mbv3.sample(3, seed=1), 1, tmp_path / "b.csv", progress=False,
            protocol=TimingProtocol(off_state_wait_s=0.6)))
    assert df.attrs["others_busy_pct"] > 60
    assert "not timed again" in caplog.text and "timed only beside other processes" in caplog.text
    assert len(pd.read_csv(tmp_path / "b.csv")) == 3  # nothing timed again
    rows = read_measurements(tmp_path / "b.csv")  # read later: each row still says it
    assert (rows["others_busy_pct"] > 60).all(), rows["others_busy_pct"].tolist()
    text = noise_text(table_noise(rows))
    assert "100 % of rows timed while they kept >= 20 % busy" in text and "taskset" in text


def test_subnets_timed_beside_other_work_are_timed_again_once_it_stops(tmp_path, mbv3):
    if cpu_snapshot() is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux /proc/stat and CPU affinity")
    cpu, busy = _quietest_cpu()
    if busy >= 20:  # the subnets would stay busy after the spinner stops: nothing to observe
        pytest.skip(f"other work keeps every CPU of this process >= 20 % busy ({busy:.0f} %)")
    subs = mbv3.sample(4, seed=2)
    be = create_backend("fake", threads=1, realtime=True)
    kept = {}
    for name, pct in (("retry", 20.0), ("never", None)):
        out = tmp_path / f"{name}.csv"
        # a process spinning for the first second or so of a ~2 s profile
        _beside_a_spinner(1.0, lambda: profile_subnets(
            mbv3, be, subs, 1, out, progress=False,
            protocol=TimingProtocol(busy_retry_pct=pct)), cpu)
        on_disk = pd.read_csv(out)
        assert (on_disk["others_busy_pct"] >= 20).any(), on_disk["others_busy_pct"].tolist()
        kept[name] = read_measurements(out)["others_busy_pct"]
        assert len(kept[name]) == 4
        if pct is not None:  # the busy ones were timed again, after the spinner stopped
            assert len(on_disk) > 4
        else:
            assert len(on_disk) == 4
    assert (kept["retry"] < 20).all(), kept["retry"].tolist()  # their quiet rows are kept
    assert (kept["never"] >= 20).any()
    with pytest.raises(ValueError, match="busy_retry_pct"):
        TimingProtocol(busy_retry_pct=0)
