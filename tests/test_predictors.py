import json

import numpy as np
import pytest

from ofa_latency import create_backend
from ofa_latency.predictors import (NotFittedError, create_predictor, list_predictors,
                                    load_predictor)

SMALL = {"xgb": dict(n_estimators=60, max_depth=4), "mlp": dict(epochs=30, hidden=64)}


@pytest.fixture(scope="module")
def data(mbv3):
    be = create_backend("fake", seed=0)
    subs = mbv3.sample(260, seed=21)
    y = np.array([be.true_latency_ms(mbv3, s) for s in subs])
    return subs[:200], y[:200], subs[200:], y[200:]


def test_registry():
    assert {"xgb", "mlp"} <= set(list_predictors())
    with pytest.raises(ValueError, match="unknown predictor 'svm'.*mlp"):
        create_predictor("svm")


@pytest.mark.parametrize("name", list_predictors())
def test_contract(name, data, tmp_path):
    tr_x, tr_y, te_x, te_y = data
    p = create_predictor(name, **SMALL.get(name, {}))
    with pytest.raises(NotFittedError):
        p.predict(te_x)
    assert p.fit(tr_x, tr_y) is p
    pred = p.predict(te_x)
    assert pred.shape == (len(te_x),) and np.all(np.isfinite(pred)) and np.all(pred > 0)
    # learns the fake device: far better than predicting the mean
    err = np.mean(np.abs(pred - te_y) / te_y)
    base = np.mean(np.abs(np.mean(tr_y) - te_y) / te_y)
    assert err < 0.5 * base
    # single dict in either form
    assert p.predict(te_x[0].to_tutorial_dict())[0] == pytest.approx(pred[0], rel=1e-6)
    # save -> load gives identical predictions
    p.save(tmp_path / "m", metadata={"device": "fake"})
    q = load_predictor(tmp_path / "m")
    np.testing.assert_array_equal(q.predict(te_x), pred)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["units"] == "ms"
    # same seed, same model
    r = create_predictor(name, **SMALL.get(name, {})).fit(tr_x, tr_y)
    np.testing.assert_allclose(r.predict(te_x), pred, rtol=1e-6)


@pytest.mark.parametrize("name", list_predictors())
def test_bad_input(name, data):
    tr_x, tr_y, _, _ = data
    p = create_predictor(name, **SMALL.get(name, {}))
    with pytest.raises(ValueError, match="shape"):
        p.fit(tr_x, tr_y[:-1])
    with pytest.raises(ValueError, match="> 0"):
        p.fit(tr_x, -tr_y)
    with pytest.raises(ValueError, match="y is required"):
        p.fit(tr_x)
    p.fit(tr_x, tr_y)
    with pytest.raises(ValueError, match="kernel sizes"):
        p.predict([dict(tr_x[0].to_dict(), ks=[9] * 20)])


def _saved(tmp_path, data, name="xgb"):
    tr_x, tr_y, _, _ = data
    d = tmp_path / name
    create_predictor(name, **SMALL[name]).fit(tr_x, tr_y).save(d)
    return d


def test_load_rejects_newer_format(tmp_path, data):
    d = _saved(tmp_path, data)
    cfg = json.loads((d / "config.json").read_text())
    cfg["format_version"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 99"):
        load_predictor(d)


def test_load_rejects_other_space_schema(tmp_path, data):
    d = _saved(tmp_path, data)
    cfg = json.loads((d / "config.json").read_text())
    cfg["feature_schema"]["onehot_size"] = 7
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="feature schema does not match"):
        load_predictor(d)


@pytest.mark.parametrize("name", ["xgb", "mlp"])
def test_load_rejects_truncated_weights(tmp_path, data, name):
    d = _saved(tmp_path, data, name)
    w = d / json.loads((d / "config.json").read_text())["weights"]
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 3])
    with pytest.raises(ValueError, match=str(w.name)):
        load_predictor(d)


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a predictor folder"):
        load_predictor(tmp_path)


def test_mlp_is_differentiable(data, mbv3):
    import torch
    from ofa_latency.predictors import feature_matrix

    tr_x, tr_y, te_x, _ = data
    p = create_predictor("mlp", **SMALL["mlp"]).fit(tr_x, tr_y)
    x = torch.tensor(feature_matrix(mbv3, te_x[:3]), requires_grad=True)
    p.torch_module()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    np.testing.assert_allclose(np.exp(p.torch_module()(x).detach().numpy()),
                               p.predict(te_x[:3]), rtol=1e-4)
