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
    from ofa_latency.pretrained import sha256_of

    be = create_backend("fake")
    subs = mbv3.sample(40, seed=1)
    p = create_predictor("xgb", n_estimators=10).fit(subs, [be.true_latency_ms(mbv3, s) for s in subs])
    p.save(tmp_path / "a")
    names = json.loads((tmp_path / "a" / "config.json").read_text())["weights"]
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "predictors": [
        {"name": "a", "path": "a", "sha256": {n: sha256_of(tmp_path / "a" / n) for n in names}}]}))
    w = tmp_path / "a" / names[0]
    assert pretrained_path("a", root=tmp_path) == tmp_path / "a"
    w.write_bytes(w.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        pretrained_path("a", root=tmp_path)
