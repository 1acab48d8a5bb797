import json

import numpy as np
import pandas as pd
import pytest

from ofa_latency.datasets import (COLUMNS, HELP_SETTINGS, MeasurementLog, assign_split,
                                  import_table, read_help, read_measurements, subnets_of)
from ofa_latency.errors import UsageError

_SUBS = None


def _sub(i):
    global _SUBS
    if _SUBS is None:
        from ofa_latency import get_space

        _SUBS = get_space("ofa_mbv3_w1.2").sample(20, seed=4)
    return _SUBS[i]


def _row(i):
    s = _sub(i)
    return {"space": "ofa_mbv3_w1.2", "arch": s.arch_json(), "image_size": s.image_size,
            "batch_size": 1, "backend": "fake", "latency_ms": 1.0 + i}


def test_log_appends_and_repairs_a_torn_line(tmp_path, caplog):
    p = tmp_path / "t.csv"
    log = MeasurementLog(p)
    for i in range(3):
        log.append(_row(i))
    log.close()
    with open(p, "a") as fh:
        fh.write('ofa_mbv3_w1.2,"{""ks"":[3,3,3,3],""e""')  # killed mid-write
    log2 = MeasurementLog(p)
    assert log2.repaired_rows == 1
    df = log2.read()
    assert len(df) == 3 and list(df.latency_ms) == [1.0, 2.0, 3.0]
    log2.append(_row(3))
    assert len(read_measurements(p)) == 4


def test_log_drops_a_malformed_middle_line(tmp_path):
    p = tmp_path / "t.csv"
    log = MeasurementLog(p)
    log.append(_row(0))
    with open(p, "a") as fh:
        fh.write("garbage,line\n")
    log.append(_row(1))
    log.close()
    assert len(MeasurementLog(p).read()) == 2


def test_log_rejects_foreign_files_and_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header does not match"):
        MeasurementLog(p)
    log = MeasurementLog(tmp_path / "y.csv")
    with pytest.raises(ValueError, match="unknown columns"):
        log.append({"latency": 1})
    with pytest.raises(FileNotFoundError):
        read_measurements(tmp_path / "missing.csv")


def test_filters(tmp_path):
    log = MeasurementLog(tmp_path / "f.csv")
    for i in range(4):
        log.append(dict(_row(i), batch_size=1 + i % 2))
    assert len(read_measurements(log.path, {"batch_size": 2})) == 2
    with pytest.raises(ValueError, match="filter column 'nope'"):
        read_measurements(log.path, {"nope": 1})


def test_split_is_fixed_by_canonical_subnet(mbv3):
    subs = mbv3.sample(2000, seed=5)
    splits = [assign_split(mbv3.name, s) for s in subs]
    frac = splits.count("train") / len(splits)
    assert 0.77 < frac < 0.83
    assert splits == [assign_split(mbv3.name, s) for s in subs]
    i = next(i for i, s in enumerate(subs) if s.d[0] < 4)  # stage 0 has inactive blocks
    a = subs[i].to_dict()
    d0 = a["d"][0]
    a["ks"][d0:4] = [7] * (4 - d0)  # change only inactive entries
    assert a["ks"] != list(subs[i].ks)
    assert assign_split(mbv3.name, mbv3.validate(a)) == splits[i]


def test_read_help(help_dir):
    df = read_help(help_dir, "2080ti_64")
    assert list(df.columns) == COLUMNS
    assert 4900 < len(df) <= 5000
    assert (df.latency_ms > 0).all() and (df.batch_size == 64).all()
    assert df.device.iloc[0] == "NVIDIA GeForce RTX 2080 Ti"
    assert not df.duplicated(["arch", "image_size"]).any()
    subs = subnets_of(df.head(50))
    assert [assign_split("ofa_mbv3_w1.2", s) for s in subs] == list(df.split.head(50))
    b1 = read_help(help_dir, "2080ti_1")
    assert b1.latency_ms.median() < df.latency_ms.median()
    with pytest.raises(ValueError, match="HELP settings"):
        read_help(help_dir, "a100_8")
    assert len(HELP_SETTINGS) == 9


def test_minimal_foreign_table_is_read_and_normalised(tmp_path, mbv3):
    """Only arch, latency_ms and the resolution are required; archs may be JSON or the
    Python-dict form OFA prints, in either OFA form; split is computed."""
    subs = mbv3.sample(6, seed=2)
    rows = []
    for i, s in enumerate(subs):
        if i % 3 == 0:
            rows.append({"arch": json.dumps(s.to_dict()), "latency_ms": 1.0 + i})
        elif i % 3 == 1:
            rows.append({"arch": repr(dict(s.to_tutorial_dict(), wid=None)), "latency_ms": 1.0 + i})
        else:  # resolution in its own column, arch without it, inactive blocks filled in
            a = s.to_dict()
            a.pop("image_size")
            a["ks"] = [k or 7 for k in a["ks"]]
            rows.append({"arch": json.dumps(a), "image_size": s.image_size, "latency_ms": 1.0 + i})
    p = tmp_path / "mini.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    df = read_measurements(p)
    assert list(df.columns) == COLUMNS
    assert list(df.arch) == [s.arch_json() for s in subs]
    assert list(df.image_size) == [s.image_size for s in subs]
    assert list(df.split) == [assign_split(mbv3.name, s) for s in subs]
    assert (df.space == "ofa_mbv3_w1.2").all() and (df.batch_size == 1).all()
    # a predictor trains on it directly
    from ofa_latency import create_predictor

    pred = create_predictor("xgb", n_estimators=5).fit(df)
    assert pred.predict(df).shape == (6,)


@pytest.mark.parametrize("text, message", [
    ("arch,latency_ms\n", None),  # header only: an empty table is fine
    ("arch,image_size\n\"ARCH\",160\n", "missing columns ['latency_ms']"),
    ("arch,latency_ms\n\"ARCH\",1.0\n", "row 1: arch has no resolution"),
    ("arch,latency_ms,image_size\nnot-an-arch,1.0,160\n", "row 1 arch is neither JSON"),
    ("arch,latency_ms,image_size\n\"ARCH\",1.0,160\n\"ARCH\",-1,160\n",
     "row 2: latency_ms = -1"),
])
def test_minimal_table_errors_name_file_and_row(tmp_path, mbv3, text, message):
    p = tmp_path / "bad.csv"
    text = text.replace("ARCH", mbv3.sample(1)[0].arch_json().replace('"', '""'))
    p.write_text(text)
    if message is None:
        assert len(read_measurements(p)) == 0
        return
    with pytest.raises(UsageError) as exc:
        read_measurements(p)
    assert "bad.csv" in str(exc.value) and message in str(exc.value)


def test_import_foreign_csv(tmp_path, mbv3):
    subs = mbv3.sample(5, seed=3)
    p = tmp_path / "theirs.csv"
    pd.DataFrame({"child_arch": [repr(dict(s.to_tutorial_dict(), wid=None)) for s in subs],
                  "latency": [0.001 * (i + 1) for i in range(5)]}).to_csv(p, index=False)
    df = import_table(p, arch_column="child_arch", latency_column="latency", latency_unit="s",
                      setting={"device": "Board X", "backend": "onnxruntime", "batch_size": 1,
                               "threads": 4})
    np.testing.assert_allclose(df.latency_ms, [1, 2, 3, 4, 5])
    assert (df.device == "Board X").all() and (df.threads == 4).all()
    assert (df.source == "theirs.csv").all()
    assert list(df.arch) == [s.arch_json() for s in subs]
    with pytest.raises(UsageError, match="unknown setting columns \\['colour'\\]"):
        import_table(p, "child_arch", "latency", setting={"colour": "red"})
    with pytest.raises(UsageError, match="no column 'lat'"):
        import_table(p, "child_arch", "lat")


def test_a_second_writer_is_refused_while_the_first_holds_the_table(tmp_path):
    from ofa_latency.datasets import TableLockedError

    p = tmp_path / "t.csv"
    with MeasurementLog(p) as log:
        log.append(_row(0))
        with pytest.raises(TableLockedError, match="being written by process"):
            MeasurementLog(p)
    with MeasurementLog(p) as log:  # released: the next writer may go on
        log.append(_row(1))
    assert len(read_measurements(p)) == 2


def test_two_profile_processes_on_one_table_leave_no_duplicate(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "x.csv"
    cmd = [sys.executable, "-m", "ofa_latency.cli", "profile", "--backend", "fake", "--n", "40",
           "--rounds", "2", "--max-rounds", "2", "--quiet", "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # both (one after the other) or one refused
    for code, err in results:
        if code == 2:
            assert "is being written by" in err
    df = read_measurements(out)
    assert len(df) == 40 and not df.duplicated(["arch", "image_size"]).any()


def test_a_row_torn_inside_a_number_is_never_read(tmp_path, caplog):
    p = tmp_path / "t.csv"
    with MeasurementLog(p) as log:
        for i in range(3):
            log.append(_row(i))
    text = p.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cut = last.index(",3.0,") + 3  # inside the latency of the last row ("3.0" -> "3.")
    p.write_text(text.rstrip("\n").rsplit("\n", 1)[0] + "\n" + last[:cut])
    df = read_measurements(p)
    assert len(df) == 2 and "without a newline" in caplog.text
    with MeasurementLog(p) as log:  # opening to append drops it; the profiler re-measures
        assert log.repaired_rows == 1


def test_duplicate_rows_are_counted_once(tmp_path, caplog):
    p = tmp_path / "d.csv"
    with MeasurementLog(p) as log:
        log.append(_row(0))
        log.append(_row(1))
        log.append(dict(_row(0), latency_ms=9.0))
    df = read_measurements(p)
    assert len(df) == 2 and df.latency_ms.iloc[0] == 1.0
    assert "repeat a subnet already measured" in caplog.text


def test_the_latency_column_on_disk_is_the_one_the_product_uses(tmp_path):
    """Every row's stored latency_ms is ratio x the table's current level, also for the first
    rows, whose level moved as later windows came in."""
    import csv

    from ofa_latency import get_space
    from ofa_latency.profiling import TimingProtocol, create_backend, profile_subnets

    sp = get_space("ofa_mbv3_w1.2")
    out = tmp_path / "t.csv"
    be = create_backend("fake", drift=0.3, phase_runs=7, seed=3)
    profile_subnets(sp, be, sp.sample(15, seed=1), 1, out, progress=False,
                    protocol=TimingProtocol(rounds=2, max_rounds=2, off_state_retries=0))
    with open(out, newline="") as fh:
        stored = [float(r["latency_ms"]) for r in csv.DictReader(fh)]
    used = read_measurements(out).latency_ms.to_numpy()
    assert np.allclose(stored, used, rtol=0, atol=1e-5)
    levels = {r for r in read_measurements(out).ref_baseline_ms}
    assert len(levels) == 1


def test_a_row_from_the_fast_state_is_kept_over_a_tighter_one_from_a_slow_state(tmp_path):
    """A subnet timed again because its window never saw the machine's fast state keeps the
    fast-state row, although the slow window's rounds agreed more closely."""
    p = tmp_path / "s.csv"
    drift = dict(ref_latency_ms=10.0)
    with MeasurementLog(p) as log:
        for i in range(2, 8):  # the table's level: windows at 10 ms
            log.append(dict(_row(i), ratio=1.0 + i, ref_min_ms=10.0, ci_pct=1.0, **drift))
        log.append(dict(_row(0), ratio=1.40, ref_min_ms=14.0, ci_pct=0.3, **drift))  # slow
        log.append(dict(_row(0), ratio=1.50, ref_min_ms=10.1, ci_pct=0.9, **drift))  # fast
        log.append(dict(_row(1), ratio=2.00, ref_min_ms=10.0, ci_pct=0.8, **drift))
        log.append(dict(_row(1), ratio=2.10, ref_min_ms=10.2, ci_pct=0.4, **drift))  # tighter
    df = read_measurements(p).set_index("arch")
    assert len(df) == 8
    assert df.loc[_sub(0).arch_json(), "ratio"] == 1.50
    # both fast: combined, at the table's level
    one = df.loc[_sub(1).arch_json()]
    assert one["ratio"] == pytest.approx(_weighted([2.00, 2.10], [0.8, 0.4]))
    assert one["latency_ms"] == pytest.approx(one["ratio"] * one["ref_baseline_ms"], abs=1e-4)


def test_a_table_made_with_a_tighter_off_state_threshold_reads_its_rows_by_it(tmp_path):
    """A row 15 % off the table's level is off the fast state for a table made with
    ``--off-state-pct 10`` (recorded in its rows' ``versions``), so the subnet's fast row is
    kept alone; a table made with the default 25 % combines both rows."""
    def table(path, versions):
        with MeasurementLog(path) as log:
            for i in range(2, 8):
                log.append(dict(_row(i), ratio=1.0 + i, ref_min_ms=10.0, ci_pct=1.0,
                                ref_latency_ms=10.0, versions=versions))
            log.append(dict(_row(0), ratio=1.40, ref_min_ms=11.5, ci_pct=0.5,
                            ref_latency_ms=11.5, versions=versions))  # 15 % off
            log.append(dict(_row(0), ratio=1.50, ref_min_ms=10.1, ci_pct=0.5,
                            ref_latency_ms=10.1, versions=versions))
        return read_measurements(path).set_index("arch").loc[_sub(0).arch_json()]

    tight = table(tmp_path / "t.csv", '{"off_state_pct": 10.0, "python": "3.11"}')
    default = table(tmp_path / "d.csv", '{"python": "3.11"}')
    assert tight["ratio"] == 1.50
    assert default["ratio"] == pytest.approx(_weighted([1.40, 1.50], [0.5, 0.5]))


def test_table_noise_counts_rows_timed_only_in_a_slower_state(tmp_path):
    from ofa_latency.datasets import noise_text, table_noise

    p = tmp_path / "n.csv"
    with MeasurementLog(p) as log:
        for i in range(9):  # the table's level: windows whose fastest reference round is 10 ms
            log.append(dict(_row(i), ratio=1.0 + i, ref_latency_ms=10.5, ref_min_ms=10.0,
                            ci_pct=1.0))
        log.append(dict(_row(9), ratio=3.0, ref_latency_ms=14.5, ref_min_ms=14.0, ci_pct=0.5))
    noise = table_noise(read_measurements(p))
    assert noise["off_state_rows_pct"] == 10.0
    assert "10 % of rows timed only while the machine was in a slower state" in noise_text(noise)
    quiet = table_noise(read_measurements(p).iloc[:9])
    assert quiet["off_state_rows_pct"] == 0.0 and "slower state" not in noise_text(quiet)


def test_table_noise_says_how_far_the_hosts_state_moved_while_the_table_was_made(tmp_path):
    """Rows timed in states farther apart disagree more (BENCHMARKS.md 16.31-16.32): the
    noise line says how far above the table's level its windows' fastest reference rounds
    ran."""
    from ofa_latency.datasets import noise_text, table_noise

    p = tmp_path / "s.csv"
    ref_min = [10.0, 10.0, 10.0, 10.4, 10.5, 10.6, 10.7, 10.8]
    with MeasurementLog(p) as log:
        for i, r in enumerate(ref_min):
            log.append(dict(_row(i), ratio=1.0 + i, ref_latency_ms=r + 0.5, ref_min_ms=r,
                            ci_pct=1.0))
    df = read_measurements(p)
    level = float(df["ref_baseline_ms"].iloc[0])
    noise = table_noise(df)
    expected = 100 * (np.array(ref_min) / level - 1)
    assert noise["state_above_level_pct"] == pytest.approx(np.median(expected), abs=0.01)
    assert noise["p90_state_above_level_pct"] == pytest.approx(np.quantile(expected, 0.9),
                                                               abs=0.01)
    m, p90 = noise["state_above_level_pct"], noise["p90_state_above_level_pct"]
    assert f"windows a median {m:.1f} % (90th percentile {p90:.1f} %) slower than the " \
           f"table's fastest state" in noise_text(noise)
    steady = table_noise(df.iloc[:3])  # every window in the fast state
    assert steady["state_above_level_pct"] == pytest.approx(0.0, abs=0.01)
    # tables without reference columns (imported data): unknown, not said
    bare = table_noise(df.drop(columns=["ref_min_ms", "ref_baseline_ms"]))
    assert bare["state_above_level_pct"] is None
    assert "fastest state" not in noise_text(bare)


def test_table_noise_says_how_busy_other_processes_kept_the_cpus(tmp_path):
    from ofa_latency.datasets import noise_text, table_noise

    p = tmp_path / "b.csv"
    with MeasurementLog(p) as log:
        for i in range(4):
            log.append(dict(_row(i), ratio=1.0 + i, ref_latency_ms=10.5, ref_min_ms=10.0,
                            ci_pct=1.0 if i else 3.0))  # one row of four wider than 2 %
    df = read_measurements(p)
    assert table_noise(df)["others_busy_pct"] is None  # read from disk: unknown, not said
    assert "other processes" not in noise_text(table_noise(df))
    assert "25 % of rows wider than +-2 %" in noise_text(table_noise(df))
    assert "'--retime-above 0' every subnet" in noise_text(table_noise(df))
    df.attrs["others_busy_pct"] = 45.0  # as profile_subnets returns it
    text = noise_text(table_noise(df))
    assert "other processes kept 45 % of the profiled CPUs busy" in text and "taskset" in text
    df.attrs["others_busy_pct"] = 1.0  # nobody else busy, rows still wide: below the system
    text = noise_text(table_noise(df))
    assert "kept 1 %" in text and "below this system" in text and "taskset" not in text
    df.attrs["others_busy_pct"] = 10.0  # in between: the figure, no advice
    text = noise_text(table_noise(df))
    assert "kept 10 %" in text and "below this system" not in text and "taskset" not in text

    # a table read later: each row says how busy the others were while it was timed
    q = tmp_path / "rows.csv"
    with MeasurementLog(q) as log:
        for i, busy in enumerate([0.0, 2.0, 40.0, None]):
            log.append(dict(_row(i), ratio=1.0 + i, ref_latency_ms=10.5, ref_min_ms=10.0,
                            ci_pct=1.0, others_busy_pct=busy))
    noise = table_noise(read_measurements(q))
    assert noise["others_busy_pct"] == 14.0 and noise["busy_rows_pct"] == pytest.approx(33.3)
    assert "33.3 % of rows timed while they kept >= 20 % busy" in noise_text(noise)


def _weighted(values, ci_pct):
    """The geometric mean of ``values`` weighted by 1 / (ci_pct**2 + 1 %**2)."""
    w = 1 / (np.asarray(ci_pct) ** 2 + 1.0)
    return float(np.exp(np.sum(w * np.log(values)) / w.sum()))


def test_repeated_rows_with_intervals_are_combined_as_windows(tmp_path, caplog):
    """A subnet timed again (another pass, or ``--retime-above``) is one row whose estimate is
    the geometric mean of its rows', weighted by their own intervals floored at the
    profiler's 1 % target; runs, rounds and seconds add up, and the interval is at least
    half the rows' gap."""
    p = tmp_path / "d.csv"
    with MeasurementLog(p) as log:
        log.append(dict(_row(0), latency_ms=10.0, ci_pct=2.0, n_runs=30, n_rounds=10,
                        timed_s=1.0, spread_pct=5.0))
        log.append(dict(_row(1), latency_ms=7.0, ci_pct=0.5, n_runs=30, n_rounds=10,
                        timed_s=1.0, spread_pct=2.0))
        log.append(dict(_row(2), latency_ms=4.0, ci_pct=0.8, n_runs=30, n_rounds=10,
                        timed_s=1.0, spread_pct=2.0))  # measured once
        log.append(dict(_row(0), latency_ms=10.4, ci_pct=1.0, n_runs=45, n_rounds=15,
                        timed_s=2.0, spread_pct=3.0))  # timed again
        for ms in (7.1, 7.0):
            log.append(dict(_row(1), latency_ms=ms, ci_pct=0.5, n_runs=30, n_rounds=10,
                            timed_s=1.0, spread_pct=1.0))
    df = read_measurements(p).set_index("arch")
    assert len(df) == 3 and "repeat a subnet already measured" not in caplog.text
    zero, one, two = (df.loc[_sub(i).arch_json()] for i in range(3))
    assert zero["latency_ms"] == pytest.approx(_weighted([10.0, 10.4], [2.0, 1.0]))
    assert 10.2 < zero["latency_ms"] < 10.4  # the tighter row counts more
    assert (zero["n_runs"], zero["n_rounds"], zero["timed_s"], zero["spread_pct"]) == \
        (75, 25, 3.0, 5.0)
    # half the gap (1.96 %) is wider than the rows' own half-widths combined (0.91 %)
    assert zero["ci_pct"] == pytest.approx(50 * np.log(10.4 / 10.0))
    assert zero["window_sd_pct"] == pytest.approx(100 * np.log(10.4 / 10.0) / np.sqrt(2))
    assert one["latency_ms"] == pytest.approx((7.0 * 7.1 * 7.0) ** (1 / 3))
    assert one["n_runs"] == 90 and one["spread_pct"] == 2.0
    assert one["ci_pct"] == pytest.approx(50 * np.log(7.1 / 7.0))  # > 0.5 / sqrt(3)
    assert (two["latency_ms"], two["ci_pct"], two["n_runs"]) == (4.0, 0.8, 30)
    assert df["n_runs"].dtype.kind == "i"
    # a row timed beside other work gives way to a quieter one, even a looser one; quiet
    # rows (unknown: not busy) are combined
    q = tmp_path / "busy.csv"
    with MeasurementLog(q) as log:
        log.append(dict(_row(0), ci_pct=0.5, others_busy_pct=45.0))
        log.append(dict(_row(0), latency_ms=9.0, ci_pct=1.5, others_busy_pct=3.0))
        log.append(dict(_row(1), ci_pct=0.5, others_busy_pct=None, timed_s=1.0))
        log.append(dict(_row(1), latency_ms=2.1, ci_pct=1.5, others_busy_pct=2.0, timed_s=3.0))
    df = read_measurements(q).set_index("arch")
    zero, one = (df.loc[_sub(i).arch_json()] for i in range(2))
    assert (zero["latency_ms"], zero["ci_pct"], zero["others_busy_pct"]) == (9.0, 1.5, 3.0)
    assert one["latency_ms"] == pytest.approx(_weighted([2.0, 2.1], [0.5, 1.5]))
    assert one["others_busy_pct"] == 2.0  # the only row that knows


def test_a_table_timed_twice_counts_both_passes_in_its_device_seconds(tmp_path):
    """A subnet's rows combined keep the first pass's timestamp; what the table says a subnet
    cost still counts the second pass (and retries) as written."""
    from ofa_latency.datasets import table_noise

    p = tmp_path / "two.csv"
    with MeasurementLog(p) as log:
        for k in range(2):  # two passes over 3 subnets, a row every 4 s
            for i in range(3):
                log.append(dict(_row(i), ci_pct=1.0,
                                timestamp=f"2026-01-01T00:00:{4 * (3 * k + i):02d}+00:00"))
    df = read_measurements(p)
    assert len(df) == 3
    assert table_noise(df)["device_seconds_per_subnet"] == 8.0  # 4 s a row, two rows each
    assert table_noise(df.iloc[:2])["device_seconds_per_subnet"] == 8.0
    once = tmp_path / "once.csv"
    with MeasurementLog(once) as log:
        for i in range(3):
            log.append(dict(_row(i), ci_pct=1.0, timestamp=f"2026-01-01T00:00:{4 * i:02d}Z"))
    assert table_noise(read_measurements(once))["device_seconds_per_subnet"] == 4.0


def test_rows_say_how_long_their_timed_rounds_took_and_the_noise_line_splits_it(tmp_path):
    """Each profiled row records the seconds of its timed rounds (``timed_s``); the table's
    noise line tells them apart from the wall time per subnet, which also pays for making
    models, warm-up and waits."""
    import time

    from ofa_latency import create_backend, get_space, profile_subnets
    from ofa_latency.datasets import noise_text, table_noise
    from ofa_latency.profiling import TimingProtocol

    sp = get_space("ofa_mbv3_w1.2")
    out = tmp_path / "t.csv"
    be = create_backend("fake", seed=3, realtime=True, prepare_s=0.05)  # runs take their time
    start = time.perf_counter()
    df = profile_subnets(sp, be, sp.sample(6, seed=2), 1, out, progress=False,
                         protocol=TimingProtocol(rounds=3, max_rounds=3, off_state_retries=0))
    wall = time.perf_counter() - start
    timed = df["timed_s"].to_numpy(dtype=float)
    # the models' making (0.05 s a subnet) is not in the timed rounds
    assert len(timed) == 6 and (timed > 0).all() and timed.sum() + 6 * 0.05 <= wall
    noise = table_noise(df.assign(timestamp=[f"2026-01-01T00:00:{2 * i:02d}+00:00"
                                             for i in range(6)]))
    assert noise["device_seconds_per_subnet"] == 2.0
    assert noise["timed_seconds_per_subnet"] == round(float(timed.mean()), 2)
    assert "2.00 device-s per subnet (" in noise_text(noise) and "in timed rounds" in \
        noise_text(noise)
    # an older table (no such column) says nothing about it
    older = table_noise(df.drop(columns="timed_s"))
    assert older["timed_seconds_per_subnet"] is None
    assert "timed rounds" not in noise_text(older)


def test_table_noise_pools_the_window_spread_of_rows_timed_in_two_windows(tmp_path):
    """A table says how far a fresh preparation moves a row, from the rows that had two
    windows (their first two windows' spread pooled); a one-window table says nothing of it."""
    from ofa_latency.datasets import noise_text, table_noise
    from ofa_latency.profiling.timing import pooled_window_ci_pct

    p = tmp_path / "w.csv"
    sds = [0.5, 1.5, None, 1.0]  # the third row had one window
    with MeasurementLog(p) as log:
        for i, sd in enumerate(sds):
            log.append(dict(_row(i), ratio=1.0 + i, ref_latency_ms=10.5, ref_min_ms=10.0,
                            ci_pct=1.0, window_sd_pct=sd))
    noise = table_noise(read_measurements(p))
    assert noise["window_rows"] == 3
    assert noise["window_ci_pct"] == pytest.approx(pooled_window_ci_pct([0.5, 1.5, 1.0]),
                                                   abs=1e-3)
    assert f"+-{noise['window_ci_pct']:.2f} %" in noise_text(noise)
    # a one-window row of the same table (windows auto) moves by sqrt(2) times more
    assert noise["one_window_ci_pct"] == pytest.approx(np.sqrt(2) * noise["window_ci_pct"],
                                                       abs=2e-3)
    assert f"a one-window row by +-{noise['one_window_ci_pct']:.2f} %" in noise_text(noise)
    one = table_noise(read_measurements(p).iloc[2:3])
    assert one["window_ci_pct"] is None and "fresh preparation" not in noise_text(one)
    assert one["one_window_ci_pct"] is None
