"""A table's scale from all its windows, machine-state checks and re-timed preparations, on a
fake device that drifts, slows down and sometimes prepares a subnet badly."""

import json

import numpy as np
import pandas as pd
import pytest

from ofa_latency import create_backend, profile_subnets
from ofa_latency.datasets import LEGACY_COLUMNS, MeasurementLog, read_measurements
from ofa_latency.errors import UsageError
from ofa_latency.profiling import MachineChangedError, TimingProtocol, reference_subnet
from ofa_latency.profiling.scale import MACHINE_CHANGE_PCT, reference_level_ms

DRIFT = dict(drift=0.3, phase_runs=7)  # slow phases 30 % slower, switching every 7 runs


def _true(be, space, subs):
    return np.array([be.true_latency_ms(space, s) for s in subs])


def test_scale_comes_from_all_windows_on_a_drifting_machine(tmp_path, mbv3):
    be = create_backend("fake", **DRIFT)
    subs = mbv3.sample(40, seed=3)
    df = profile_subnets(mbv3, be, subs, 1, tmp_path / "a.csv", progress=False)
    true = _true(be, mbv3, subs)
    got = df.set_index(["arch", "image_size"]).loc[
        [(s.arch_json(), s.image_size) for s in subs], "latency_ms"].to_numpy()
    assert np.median(np.abs(got / true - 1)) < 0.02
    # one level for the whole table, close to the reference's fast-phase latency
    ref_true = be.true_latency_ms(mbv3, reference_subnet(mbv3))
    assert df.ref_baseline_ms.nunique() == 1
    assert df.ref_baseline_ms.iloc[0] == pytest.approx(ref_true, rel=0.03)
    # latency_ms is ratio x level, recomputed on read
    np.testing.assert_allclose(df.latency_ms, df.ratio * df.ref_baseline_ms, rtol=1e-5)


def test_two_tables_made_separately_agree_in_scale(tmp_path, mbv3):
    subs = mbv3.sample(50, seed=4)
    tables = []
    for k in range(2):
        be = create_backend("fake", machine_seed=100 + k, **DRIFT)
        tables.append(profile_subnets(mbv3, be, subs, 1, tmp_path / f"t{k}.csv",
                                      progress=False))
    m = tables[0].merge(tables[1], on=["arch", "image_size"])
    assert len(m) == 50
    assert np.median(m.latency_ms_y / m.latency_ms_x) == pytest.approx(1.0, abs=0.02)


def test_a_slower_machine_is_refused_when_appending(tmp_path, mbv3):
    subs = mbv3.sample(30, seed=5)
    out = tmp_path / "m.csv"
    profile_subnets(mbv3, create_backend("fake"), subs[:20], 1, out, progress=False)
    # same machine state: appends
    profile_subnets(mbv3, create_backend("fake", machine_seed=7), subs[:22], 1, out,
                    progress=False)
    assert len(read_measurements(out)) == 22
    # 10 % slower: refused, saying by how much
    slow = create_backend("fake", speed=1.10, machine_seed=8)
    with pytest.raises(MachineChangedError,
                       match=r"\+(9|10|11)\.\d % over \d+ probe windows") as exc:
        profile_subnets(mbv3, slow, subs, 1, out, progress=False)
    assert "--allow-machine-change" in str(exc.value) and "same machine" in str(exc.value)
    assert len(read_measurements(out)) == 22  # nothing appended
    # 10 % faster too
    with pytest.raises(MachineChangedError, match=r"-(8|9|10)\.\d %"):
        profile_subnets(mbv3, create_backend("fake", speed=0.90), subs, 1, out, progress=False)
    # told to: appends
    profile_subnets(mbv3, slow, subs, 1, out, progress=False, allow_machine_change=True)
    assert len(read_measurements(out)) == 30
    assert MACHINE_CHANGE_PCT < 10


def test_a_changed_descriptor_is_refused(tmp_path, mbv3):
    subs = mbv3.sample(6, seed=6)
    out = tmp_path / "d.csv"
    hw = {"cpu_model": "CPU A", "logical_cores": 2, "matmul_gflops": 97.0}
    profile_subnets(mbv3, create_backend("fake"), subs[:3], 1, out, progress=False, hardware=hw)
    # measured throughput within noise: fine
    profile_subnets(mbv3, create_backend("fake"), subs[:4], 1, out, progress=False,
                    hardware=dict(hw, matmul_gflops=85.0))
    # a measured throughput far away is not identity (a busy machine moves it): a warning
    profile_subnets(mbv3, create_backend("fake"), subs[:5], 1, out, progress=False,
                    hardware=dict(hw, matmul_gflops=45.0))
    assert len(read_measurements(out)) == 5
    with pytest.raises(MachineChangedError, match="cpu_model: 'CPU A' -> 'CPU B'"):
        profile_subnets(mbv3, create_backend("fake"), subs, 1, out, progress=False,
                        hardware=dict(hw, cpu_model="CPU B"))
    # the recorded descriptor is never overwritten
    assert json.loads(out.with_name("d.csv.hardware.json").read_text()) == hw


def test_a_run_never_trips_over_its_own_table(tmp_path, mbv3):
    """Verification rounds append to the table their run created: no machine-state check
    there, however the machine's speed moves between rounds; a table from before the run is
    still checked."""
    from ofa_latency.search import SearchResult
    from ofa_latency.search.workflow import verify

    subs = mbv3.sample(4, seed=9)
    out = tmp_path / "v.csv"
    profile_subnets(mbv3, create_backend("fake"), subs[:2], 1, out, progress=False)
    res = SearchResult("fast", subs[2].to_dict(), 0.7, [1.0], [100.0],
                       [{"arch": s.to_dict(), "accuracy": 0.7, "latency_ms": [1.0]}
                        for s in subs[2:]], 0.1, 2, "test")
    busy = create_backend("fake", speed=1.25, machine_seed=3)
    with pytest.raises(MachineChangedError):
        verify(res, mbv3, busy, 1, out, top_k=2, progress=False)
    ver = verify(res, mbv3, busy, 1, out, top_k=2, progress=False, owned=True)
    assert len(ver.rows) == 2 and len(read_measurements(out)) == 4


def test_one_setting_per_table(tmp_path, mbv3):
    subs = mbv3.sample(3, seed=7)
    out = tmp_path / "s.csv"
    be = create_backend("fake")
    profile_subnets(mbv3, be, subs, 1, out, progress=False)
    with pytest.raises(UsageError, match="another setting.*batch 1.*batch 8.*--allow-mixed"):
        profile_subnets(mbv3, be, subs, 8, out, progress=False)
    df = profile_subnets(mbv3, be, subs, 8, out, progress=False, allow_mixed_settings=True)
    assert (df.batch_size == 8).all() and len(read_measurements(out)) == 6
    # each setting keeps its own scale
    table = read_measurements(out)
    assert table.groupby("batch_size").ref_baseline_ms.nunique().eq(1).all()
    assert table.ref_baseline_ms.nunique() == 2


def test_legacy_table_is_read_and_migrated(tmp_path, mbv3):
    subs = mbv3.sample(4, seed=8)
    rows = []
    for i, s in enumerate(subs):
        rows.append({"space": mbv3.name, "arch": s.arch_json(), "image_size": s.image_size,
                     "batch_size": 1, "backend": "fake", "device_type": "cpu",
                     "device": "fake-device", "threads": 1, "precision": "fp32",
                     "latency_ms": 2.0 * (i + 1), "latency_raw_ms": 2.1 * (i + 1),
                     "spread_pct": 1.0, "n_runs": 18, "n_rounds": 6,
                     "ref_latency_ms": [10.0, 10.4, 12.0, 10.2][i], "ref_baseline_ms": 9.0,
                     "split": "train", "timestamp": "", "versions": "", "source": "ofa-latency"})
    p = tmp_path / "old.csv"
    pd.DataFrame(rows, columns=LEGACY_COLUMNS).to_csv(p, index=False)
    df = read_measurements(p)
    np.testing.assert_allclose(df.ratio, [2 / 9, 4 / 9, 6 / 9, 8 / 9], rtol=1e-6)
    level = reference_level_ms([10.0, 10.4, 12.0, 10.2])
    np.testing.assert_allclose(df.latency_ms, df.ratio * level, rtol=1e-6)
    assert p.read_text().splitlines()[0].split(",") == LEGACY_COLUMNS  # reading changes nothing
    MeasurementLog(p)  # opening it to append migrates the file
    assert "ratio" in p.read_text().splitlines()[0].split(",")
    np.testing.assert_allclose(read_measurements(p).latency_ms, df.latency_ms)
    # and profiling appends to it
    profile_subnets(mbv3, create_backend("fake"), subs, 1, p, progress=False,
                    allow_machine_change=True)


def test_bad_preparations_are_retimed_in_a_second_window(tmp_path, mbv3):
    subs = mbv3.sample(300, seed=9)
    errs = {}
    for windows in (1, 2):
        be = create_backend("fake", bad_prepare=0.1, machine_seed=11)
        df = profile_subnets(mbv3, be, subs, 1, tmp_path / f"w{windows}.csv", progress=False,
                             protocol=TimingProtocol(windows=windows, max_windows=3))
        got = df.set_index(["arch", "image_size"]).loc[
            [(s.arch_json(), s.image_size) for s in subs], "latency_ms"].to_numpy()
        errs[windows] = np.abs(got / _true(be, mbv3, subs) - 1)
    bad1, bad2 = (errs[1] > 0.15).sum(), (errs[2] > 0.15).sum()
    # a tenth of single windows come from bad copies (about 30 rows); with two windows (a third
    # when they disagree) only two bad copies out of two or three get through (about 1 in 35)
    assert bad1 >= 20
    assert bad2 <= bad1 / 2


def test_the_level_band_widens_with_the_tables_own_noise():
    import pandas as pd

    from ofa_latency.profiling.scale import level_band_pct

    quiet = pd.DataFrame({"ref_latency_ms": np.linspace(10.0, 10.2, 40),
                          "ref_min_ms": np.linspace(9.0, 9.2, 40)})
    busy = pd.DataFrame({"ref_latency_ms": np.linspace(10.0, 14.0, 40),
                         "ref_min_ms": np.linspace(9.0, 12.6, 40)})
    assert level_band_pct(quiet) == MACHINE_CHANGE_PCT
    assert 15 < level_band_pct(busy) < 20  # its median window is ~18 % above its level


def test_auto_windows_follow_how_far_a_fresh_preparation_moves_a_subnet(tmp_path, mbv3):
    """On a host whose preparations differ by 3 % the table learns to time every subnet in
    two windows and its rows come closer to the truth than one window's; where they do not
    differ it keeps one window but for its checks."""
    subs = mbv3.sample(40, seed=4)
    auto = TimingProtocol(auto_windows=True, max_windows=2)
    errs, attrs = {}, {}
    for name, jitter, protocol in (("one", 3.0, TimingProtocol()), ("auto", 3.0, auto),
                                   ("steady", 0.0, auto)):
        be = create_backend("fake", prepare_jitter_pct=jitter, machine_seed=5)
        df = profile_subnets(mbv3, be, subs, 1, tmp_path / f"{name}.csv", progress=False,
                             protocol=protocol)
        got = df.set_index(["arch", "image_size"]).loc[
            [(s.arch_json(), s.image_size) for s in subs], "ratio"].to_numpy()
        truth = _true(be, mbv3, subs) / be.true_latency_ms(mbv3, reference_subnet(mbv3))
        errs[name] = float(np.sqrt(np.mean(np.log(got / truth) ** 2)))
        attrs[name] = df.attrs.get("auto_windows")
    assert attrs["one"] is None
    assert attrs["auto"]["two_windows"] >= 38 and attrs["auto"]["one_window_ci_pct"] > 3
    assert errs["auto"] < 0.85 * errs["one"]  # two windows: the jitter's sd / sqrt(2)
    assert attrs["steady"]["two_windows"] <= 6 + 8 and attrs["steady"]["one_window_ci_pct"] < 1
    # resumed, the table remembers its spread: the new subnets get two windows at once
    be = create_backend("fake", prepare_jitter_pct=3.0, machine_seed=6)
    df = profile_subnets(mbv3, be, subs + mbv3.sample(5, seed=40), 1, tmp_path / "auto.csv",
                         progress=False, protocol=auto)
    assert df.attrs["auto_windows"]["two_windows"] == df.attrs["auto_windows"]["timed"] == 5
