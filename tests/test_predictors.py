import json

import numpy as np
import pytest

from ofa_latency import create_backend
from ofa_latency.predictors import (NotFittedError, create_predictor, list_predictors,
                                    load_predictor)

SMALL = {"xgb": dict(n_estimators=60), "mlp": dict(epochs=20, hidden=32, lr=1e-3)}


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
    with pytest.raises(ValueError, match="no parameter 'n_estimatorz'.*n_estimators"):
        create_predictor("xgb", n_estimatorz=5)
    with pytest.raises(ValueError, match="n_estimators = 'abc'; expected int"):
        create_predictor("xgb", n_estimators="abc")
    with pytest.raises(ValueError, match="lr = True; expected float"):
        create_predictor("mlp", lr=True)
    assert create_predictor("mlp", lr=1).lr == 1  # an int where a float is expected is fine


# the kinds fitted on measured subnets (the 'lut' kind reads a lookup table: tests/test_lut.py)
LEARNED = [k for k in list_predictors() if k != "lut"]


@pytest.mark.parametrize("name", LEARNED)
def test_fit_from_a_base_table(name, data):
    """A new device whose latency is a known transform of a fitted predictor's (1.25x): ten
    samples fitted from that predictor as base recover it within 1 %, better than from
    scratch."""
    tr_x, tr_y, _, _ = data
    base = create_predictor(name, **SMALL.get(name, {})).fit(tr_x, tr_y)
    from ofa_latency import get_space

    sp = get_space(base.space)
    test = sp.sample(460, seed=21)[260:]
    new = lambda subs: 1.25 * base.predict(subs)  # noqa: E731
    few = tr_x[:10]
    scratch = create_predictor(name, **SMALL.get(name, {})).fit(few, new(few))
    adapted = create_predictor(name, **SMALL.get(name, {})).fit(few, new(few), base=base)
    mape = lambda p: float(np.mean(np.abs(p.predict(test) / new(test) - 1)))  # noqa: E731
    assert mape(adapted) < 0.01
    assert mape(adapted) < 0.5 * mape(scratch)
    with pytest.raises(TypeError, match="base must be"):
        create_predictor(name).fit(few, new(few), base="nope")


@pytest.mark.parametrize("name", LEARNED)
def test_contract(name, data, tmp_path):
    tr_x, tr_y, te_x, te_y = data
    p = create_predictor(name, **SMALL.get(name, {}))
    with pytest.raises(NotFittedError):
        p.predict(te_x)
    assert p.fit(tr_x, tr_y) is p
    pred = p.predict(te_x)
    assert pred.shape == (len(te_x),) and np.all(np.isfinite(pred)) and np.all(pred > 0)
    # learns the fake device to near its irreducible +-3 % per-subnet factor (MAPE about 1.5 %);
    # predicting the mean would be off by about 23 %
    err = np.mean(np.abs(pred - te_y) / te_y)
    assert err < 0.03
    # single dict in either form, batch and pure-Python single path agree
    assert p.predict(te_x[0].to_tutorial_dict())[0] == pytest.approx(pred[0], rel=1e-6)
    assert [p.predict_one(s.to_dict()) for s in te_x] == pytest.approx(pred, rel=1e-9)
    assert p.predict_one(te_x[1].to_tutorial_dict()) == pytest.approx(pred[1], rel=1e-9)
    # encoded arrays
    ks = np.array([s.ks for s in te_x]); e = np.array([s.e for s in te_x])
    d = np.array([s.d for s in te_x]); r = np.array([s.image_size for s in te_x])
    np.testing.assert_allclose(p.predict(p.space_.encode_arrays(ks, e, d, r)), pred, rtol=1e-12)
    # save -> load gives identical predictions
    p.save(tmp_path / "m", metadata={"device": "fake"})
    q = load_predictor(tmp_path / "m")
    np.testing.assert_array_equal(q.predict(te_x), pred)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["units"] == "ms"
    # same seed, same model
    r = create_predictor(name, **SMALL.get(name, {})).fit(tr_x, tr_y)
    np.testing.assert_allclose(r.predict(te_x), pred, rtol=1e-6)


@pytest.mark.parametrize("name", LEARNED)
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


def _relist(d):
    """Re-hash a folder edited by hand (as if another version had saved it so)."""
    from ofa_latency._folders import FILES_NAME, folder_sha256

    (d / FILES_NAME).write_text(json.dumps({"format_version": 1, "sha256": folder_sha256(
        d, exclude=(FILES_NAME,))}))


def test_load_rejects_other_space_schema(tmp_path, data):
    d = _saved(tmp_path, data)
    cfg = json.loads((d / "config.json").read_text())
    cfg["feature_schema"]["image_sizes"] = [224]
    (d / "config.json").write_text(json.dumps(cfg))
    _relist(d)
    with pytest.raises(ValueError, match="feature schema does not match"):
        load_predictor(d)


@pytest.mark.parametrize("name", ["xgb", "mlp"])
@pytest.mark.parametrize("which", [0, 1])
def test_load_rejects_truncated_weights(tmp_path, data, name, which):
    d = _saved(tmp_path, data, name)
    w = d / json.loads((d / "config.json").read_text())["weights"][which]
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 3])
    with pytest.raises(ValueError, match=str(w.name)):
        load_predictor(d)


def test_a_folder_mixing_two_saves_refuses_to_load(tmp_path, data):
    """What a kill between two writes of the old in-place save left: one predictor's config
    beside another's weights."""
    import shutil

    a, b = _saved(tmp_path, data, "xgb"), tmp_path / "b"
    tr_x, tr_y, _, _ = data
    create_predictor("xgb", **dict(SMALL["xgb"], alpha=5.0)).fit(tr_x[:40], tr_y[:40]).save(b)
    shutil.copy(b / "config.json", a / "config.json")
    with pytest.raises(ValueError, match=r"changed since it was saved \['config.json'\]"):
        load_predictor(a)
    (a / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not listed"):
        load_predictor(a)


def test_save_is_atomic_and_files_are_readable_by_others(tmp_path, data, monkeypatch):
    import stat

    tr_x, tr_y, te_x, _ = data
    d = _saved(tmp_path, data)
    before = load_predictor(d).predict(te_x)
    for p in d.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044, p  # not 0600
    other = create_predictor("xgb", **SMALL["xgb"]).fit(tr_x[:30], tr_y[:30])

    def killed(*a, **k):
        raise KeyboardInterrupt  # a kill half-way through writing the new folder

    monkeypatch.setattr(type(other), "_save_weights", killed)
    with pytest.raises(KeyboardInterrupt):
        other.save(d)
    np.testing.assert_array_equal(load_predictor(d).predict(te_x), before)  # the old one, whole
    assert not list(tmp_path.glob(".xgb.*"))  # no temporary folder left


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a predictor folder"):
        load_predictor(tmp_path)


def test_mlp_is_differentiable(data, mbv3):
    import torch

    tr_x, tr_y, te_x, _ = data
    p = create_predictor("mlp", **SMALL["mlp"]).fit(tr_x, tr_y)
    x = torch.tensor(mbv3.onehot(te_x[:3]), requires_grad=True)
    p.torch_module()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the module is the same function as the compiled table on hard one-hot rows
    np.testing.assert_allclose(p.torch_module()(x).detach().numpy(), p.predict(te_x[:3]),
                               rtol=1e-5)
    # the correction network was trained (not left at its zero initialisation)
    assert np.abs(p.table.block_ms - p.linear_.block_ms).max() > 0


def test_xgb_trees_compile_exactly(data, mbv3):
    import xgboost as xgb

    from ofa_latency.predictors.xgb import _tree_inputs

    tr_x, tr_y, te_x, _ = data
    p = create_predictor("xgb", **SMALL["xgb"]).fit(tr_x, tr_y)
    enc = mbv3.encode(te_x)
    trees = p.booster_.predict(xgb.DMatrix(_tree_inputs(mbv3, enc),
                                           base_margin=p.linear_.predict_encoded(enc)))
    np.testing.assert_allclose(p.predict(te_x), trees, rtol=1e-5)
    assert np.abs(p.table.block_ms - p.linear_.block_ms).max() > 0


def test_linear_table_fits_an_additive_device(mbv3):
    """On a noise-free additive latency the min-MAPE table is near exact, and a few gross
    outliers (timing glitches) barely move it."""
    from ofa_latency.predictors._table import _design, fit_linear_table

    G, H, _, _ = _design(mbv3.name)
    rng = np.random.default_rng(0)
    coef = np.abs(rng.normal(size=len(G))) * (rng.random(len(G)) < 0.2)
    subs = mbv3.sample(400, seed=5)
    enc = mbv3.encode(subs)
    from ofa_latency.predictors._table import AdditiveTable

    true = AdditiveTable(mbv3, np.tensordot(coef, H, 1) + 5.0, np.tensordot(coef, G, 1))
    y = true.predict_encoded(enc)
    y_noisy = y.copy()
    y_noisy[::40] *= 1.5  # 2.5 % of the rows are 50 % too slow
    fit = fit_linear_table(mbv3, enc, y_noisy, alpha=0.01)
    test = mbv3.encode(mbv3.sample(600, seed=6)[400:])
    err = np.abs(fit.predict_encoded(test) / true.predict_encoded(test) - 1)
    assert err.mean() < 0.01


def _dw_elements(space, subs, k, per_area=False):
    """Depthwise output elements of the blocks with kernel ``k`` (millions), per subnet;
    ``per_area``: each block's weighted by its feature map's area over 28x28."""
    from ofa_latency.predictors._table import AdditiveTable

    g = space.cost_grid["dw_elements_m"]
    ne = len(space.e_choices)
    g = g * (np.repeat(space.ks_choices, ne) == k)
    if per_area:
        g = g * (space.costs.h_out.T[:, :, None].astype(float) ** 2 / 28 ** 2)
    table = AdditiveTable(space, np.zeros(len(space.image_sizes)), g)
    return table.predict_encoded(space.encode(subs))


@pytest.mark.parametrize("per_area", [False, True], ids=["per_element", "growing_with_area"])
def test_table_learns_a_slow_kernel_size(mbv3, per_area):
    """A runtime whose 7x7 depthwise kernel is slow per element (LiteRT's XNNPACK on some
    CPUs: most of an int8 subnet's latency), or slow by an amount that grows with the feature
    map, is learned from 150 subnets: the table's shared per-kernel-size depthwise terms carry
    it to subnets it never saw."""
    be = create_backend("fake", seed=0)
    subs = mbv3.sample(300, seed=8)
    base = np.array([be.true_latency_ms(mbv3, s) for s in subs])
    slow = 40.0 * _dw_elements(mbv3, subs, 7, per_area)  # 40 ms per million 7x7 elements
    y = (base + slow) * np.random.default_rng(1).lognormal(0, 0.005, len(base))  # 0.5 % noise
    assert np.median(slow / y) > 0.5  # the slow kernel dominates
    p = create_predictor("table").fit(subs[:150], y[:150])
    mape = np.mean(np.abs(p.predict(subs[150:]) / y[150:] - 1))
    assert mape < 0.015
    # the same fit without the per-kernel-size terms learns it block by block, worse
    from ofa_latency.predictors._table import fit_linear_table

    without = fit_linear_table(mbv3, mbv3.encode(subs[:150]), y[:150], kernel_terms=False)
    mape_without = np.mean(np.abs(without.predict_encoded(mbv3.encode(subs[150:])) / y[150:] - 1))
    assert mape_without > 2 * mape


def test_predict_one_falls_back_to_validation(data):
    tr_x, tr_y, te_x, _ = data
    p = create_predictor("xgb", **SMALL["xgb"]).fit(tr_x, tr_y)
    bad = dict(te_x[0].to_dict(), e=[5] * 20)
    assert p.table.predict_one(bad) is None
    with pytest.raises(ValueError, match="expand ratios"):
        p.predict_one(bad)
    # inactive blocks may hold anything OFA would accept; extra keys are refused
    assert p.table.predict_one(dict(te_x[0].to_dict(), extra=1)) is None


def test_xgb_capacity_chosen_by_validation(data, tmp_path):
    tr_x, tr_y, te_x, te_y = data
    p = create_predictor("xgb", n_estimators=400, learning_rate=0.2,
                         validation_fraction=0.2).fit(tr_x, tr_y)
    assert 1 <= p.n_trees_ < 400  # stopped early on held-out MAPE
    assert np.mean(np.abs(p.predict(te_x) / te_y - 1)) < 0.03
    p.save(tmp_path / "v")
    np.testing.assert_array_equal(load_predictor(tmp_path / "v").predict(te_x), p.predict(te_x))
    with pytest.raises(ValueError, match="validation_fraction"):
        create_predictor("xgb", validation_fraction=0.7)


def test_xgb_interaction_trees_learn_what_a_table_cannot(mbv3, tmp_path):
    """A device where two blocks together cost more than apart: the additive model cannot
    represent it, the interaction booster (chosen by validation) can; saved and loaded, and
    the estimator's single query agrees with the batch."""
    from ofa_latency import LatencyEstimator, create_backend
    from ofa_latency.predictors import load_predictor

    be = create_backend("fake", seed=0)
    subs = mbv3.sample(1500, seed=51)
    both = np.array([s.ks[0] == 7 and s.ks[4] == 7 for s in subs])
    y = np.array([be.true_latency_ms(mbv3, s) for s in subs]) * np.where(both, 1.25, 1.0)
    train, test = slice(0, 1200), slice(1200, None)
    tr, te = subs[train], subs[test]
    plain = create_predictor("xgb", n_estimators=100).fit(tr, y[train])
    inter = create_predictor("xgb", n_estimators=100, interaction_trees=300).fit(tr, y[train])
    assert plain.additive and not inter.additive and inter.n_interaction_trees_ > 0

    def mape(p):
        return float(np.mean(np.abs(p.predict(te) / y[test] - 1)))

    assert mape(inter) < 0.5 * mape(plain)
    inter.save(tmp_path / "i")
    back = load_predictor(tmp_path / "i")
    np.testing.assert_allclose(back.predict(te), inter.predict(te), rtol=1e-6)
    est = LatencyEstimator(back, check_machine=False)
    assert abs(est.get_efficiency(te[0].to_dict()) - float(inter.predict(te[:1])[0])) < 1e-6
    # on an additive device, validation keeps no interaction tree or a harmless few
    y_add = np.array([be.true_latency_ms(mbv3, s) for s in subs])
    calm = create_predictor("xgb", n_estimators=100, interaction_trees=300).fit(tr, y_add[train])
    assert np.mean(np.abs(calm.predict(te) / y_add[test] - 1)) < \
        1.1 * np.mean(np.abs(plain.fit(tr, y_add[train]).predict(te) / y_add[test] - 1)) + 1e-4
