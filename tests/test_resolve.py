"""One resolver for "a predictor": a shipped name, a predictor folder, a LUT folder (raw) and a
conditioned folder with hardware mean the same in every command and in LatencyEstimator.load."""

import json

import pytest

from ofa_latency import LatencyEstimator
from ofa_latency.cli import main
from ofa_latency.errors import UsageError
from ofa_latency.resolve import locate_predictor, resolve_predictor


@pytest.fixture(scope="module")
def lut_and_table(tmp_path_factory):
    """A LUT built for 160 and 192 px on the fake device, and a table of that device at every
    resolution."""
    d = tmp_path_factory.mktemp("resolve")
    lut, data = d / "lut", d / "all.csv"
    assert main(["build-lut", "--backend", "fake", "--resolutions", "160,192", "--out", str(lut),
                 "--quiet"]) == 0
    assert main(["profile", "--backend", "fake", "--n", "60", "--seed", "2", "--out", str(data),
                 "--quiet", "--rounds", "2", "--max-rounds", "2"]) == 0
    return lut, data


def test_every_kind_of_name_is_located(lut_and_table, tmp_path):
    lut, data = lut_and_table
    assert locate_predictor("help_v100_64_xgb").kind == "shipped"
    assert locate_predictor(str(lut)).kind == "lut"
    assert main(["train", "--data", str(data), "--model", "table", "--out",
                 str(tmp_path / "p"), "--quiet"]) == 0
    assert locate_predictor(str(tmp_path / "p")).kind == "folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="neither a predictor"):
        locate_predictor(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="no shipped predictor called 'nope'"):
        locate_predictor("nope")
    raw = resolve_predictor(str(lut))
    assert raw.kind == "lut" and raw.table.resolutions == (160, 192)
    assert raw.config_["metadata"]["device_seconds"] > 0
    est = LatencyEstimator.load(str(lut))
    assert est.predictor.kind == "lut"
    with pytest.raises(UsageError, match="only for hardware-conditioned"):
        resolve_predictor(str(lut), hardware="v100", batch_size=64)


def test_a_lut_folder_works_in_predict_evaluate_search_and_compare(lut_and_table, tmp_path,
                                                                    capsys):
    lut, data = lut_and_table
    arch = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 160})
    assert main(["predict", "--predictor", str(lut), "--arch", arch]) == 0
    assert capsys.readouterr().out.strip().endswith(" ms")
    sub = tmp_path / "at160.csv"
    import pandas as pd

    df = pd.read_csv(data)
    df[df.image_size.isin([160, 192])].to_csv(sub, index=False)
    assert main(["evaluate", "--predictor", str(lut), "--data", str(sub)]) == 0
    assert "all rows" in capsys.readouterr().out  # the LUT never saw this table: every row
    assert main(["search", "--estimator", str(lut), "--latency-ms", "50", "--proxy", "macs",
                 "--resolutions", "160,192", "--no-export", "--out", str(tmp_path / "s")]) == 0
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["arch"]["image_size"] in (160, 192)
    # compare on a table with other resolutions: the rows the LUT covers, saying how many left
    assert main(["train", "--data", str(data), "--model", "table", "--split", "all", "--out",
                 str(tmp_path / "t"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", "--data", str(data), "--predictors", str(lut), str(tmp_path / "t"),
                 "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "c.json").read_text())
    n_cover = int(df.image_size.isin([160, 192]).sum())
    assert info["n"] == n_cover and sum(info["left_out"].values()) == len(df) - n_cover
    assert f"{len(df) - n_cover} left out" in out
