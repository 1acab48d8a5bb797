import json

import pytest

from ofa_latency.datasets import (COLUMNS, HELP_SETTINGS, MeasurementLog, assign_split,
                                  read_help, read_measurements, subnets_of)


def _row(i):
    return {"space": "ofa_mbv3_w1.2", "arch": json.dumps({"i": i}), "image_size": 128,
            "batch_size": 1, "backend": "fake", "latency_ms": 1.0 + i}


def test_log_appends_and_repairs_a_torn_line(tmp_path, caplog):
    p = tmp_path / "t.csv"
    log = MeasurementLog(p)
    for i in range(3):
        log.append(_row(i))
    with open(p, "a") as fh:
        fh.write('ofa_mbv3_w1.2,"{""i"": 9}",12')  # killed mid-write
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
    a = subs[0].to_dict()
    d0 = a["d"][0]
    a["ks"][d0:4] = [7] * (4 - d0)  # change only inactive entries
    assert assign_split(mbv3.name, mbv3.validate(a)) == splits[0]


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
