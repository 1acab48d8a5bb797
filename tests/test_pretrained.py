import json

import numpy as np
import pytest

from ofa_latency import LatencyEstimator, list_pretrained
from ofa_latency.pretrained import pretrained_path


def test_every_shipped_predictor_loads_and_predicts(mbv3):
    entries = list_pretrained()
    for e in entries:
        est = LatencyEstimator.from_pretrained(e["name"])
        assert est.space.name == e["space"]
        sp = est.space
        pred = est.predict([s.to_dict() for s in sp.sample(5, seed=0)])
        assert np.all(np.isfinite(pred)) and np.all(pred > 0)
        cfg = json.loads((pretrained_path(e["name"]) / "config.json").read_text())
        assert cfg["metadata"]["heldout_metrics"] == e["heldout_metrics"]


def test_unknown_name():
    with pytest.raises(ValueError, match="no shipped predictor called 'nope'"):
        LatencyEstimator.from_pretrained("nope")


def test_checksum_mismatch_is_caught(tmp_path, mbv3):
    from ofa_latency import create_backend, create_predictor
    from ofa_latency.pretrained import folder_sha256

    be = create_backend("fake")
    subs = mbv3.sample(40, seed=1)
    p = create_predictor("xgb", n_estimators=10).fit(subs, [be.true_latency_ms(mbv3, s) for s in subs])
    p.save(tmp_path / "a")
    manifest = {"format_version": 1, "predictors": [
        {"name": "a", "path": "a", "sha256": folder_sha256(tmp_path / "a")}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert set(manifest["predictors"][0]["sha256"]) == {"config.json", "linear.safetensors",
                                                        "model.ubj", "files.json",
                                                        "table.safetensors"}
    assert pretrained_path("a", root=tmp_path) == tmp_path / "a"
    # every file is checked, the config included
    for name in ("config.json", "linear.safetensors", "model.ubj"):
        f = tmp_path / "a" / name
        original = f.read_bytes()
        f.write_bytes(original + b" ")
        with pytest.raises(ValueError, match=f"{name} has sha256"):
            pretrained_path("a", root=tmp_path)
        f.write_bytes(original)
    (tmp_path / "a" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not in the manifest: \\['extra.bin'\\]"):
        pretrained_path("a", root=tmp_path)


def test_shipped_manifest_hashes_every_file_and_configs_hold_no_absolute_paths():
    from ofa_latency.pretrained import folder_sha256

    for e in list_pretrained():
        folder = pretrained_path(e["name"])
        assert e["sha256"] == folder_sha256(folder)
        path = json.loads((folder / "config.json").read_text())["metadata"]["data"]["path"]
        assert not path.startswith("/"), (e["name"], path)


def test_shipped_predictors_reach_their_manifest_metrics(help_dir_or_none):
    """Re-evaluate each shipped predictor on the held-out split of the table it was trained
    on (the committed tables; HELP's when ../shared is there) and compare with the manifest."""
    from pathlib import Path

    from ofa_latency.datasets import read_help, read_measurements
    from ofa_latency.evaluation import latency_metrics

    root = Path(__file__).resolve().parent.parent
    checked = 0
    for e in list_pretrained():
        est = LatencyEstimator.from_pretrained(e["name"])
        data_path = est.predictor.config_["metadata"]["data"]["path"]
        if e["backend"] == "help":
            if help_dir_or_none is None:
                continue
            df = read_help(help_dir_or_none, e["name"][len("help_"):].rsplit("_", 1)[0])
        else:
            df = read_measurements(root / data_path)
        test = df[df.split == "test"]
        m = latency_metrics(test.latency_ms.to_numpy(), est.predictor.predict(test))
        assert m["n"] == e["heldout_metrics"]["n"], e["name"]
        for k in ("mape_pct", "kendall_tau", "rmse_ms"):
            # Kendall tau of tied latencies moves by ~1e-5 between scipy versions
            tol = {"rel": 1e-6, "abs": 1e-4 if k == "kendall_tau" else 1e-9}
            assert m[k] == pytest.approx(e["heldout_metrics"][k], **tol), (e["name"], k)
        checked += 1
    assert checked >= 16


def test_loading_a_poorly_ranking_predictor_warns(caplog):
    entries = list_pretrained()
    low = next(e for e in entries if e["heldout_metrics"]["kendall_tau"] < 0.8)
    high = next(e for e in entries if e["heldout_metrics"]["kendall_tau"] > 0.95)
    with caplog.at_level("WARNING", logger="ofa_latency"):
        LatencyEstimator.from_pretrained(high["name"])
        assert not caplog.records
        LatencyEstimator.from_pretrained(low["name"])
    assert len(caplog.records) == 1
    assert low["name"] in caplog.text and "Kendall tau" in caplog.text
