"""Fine-tuning a base predictor to a new device: a fake new device whose latency is a known
transform of the base's must be recovered, and the automatic choice must pick a method that
can represent the transform."""

import json

import numpy as np
import pytest

from ofa_latency import create_backend, create_predictor
from ofa_latency.adapt import finetune, list_methods
from ofa_latency.predictors import load_predictor


@pytest.fixture(scope="module")
def base(mbv3):
    be = create_backend("fake", seed=0)
    subs = mbv3.sample(200, seed=31)
    y = [be.true_latency_ms(mbv3, s) for s in subs]
    return create_predictor("xgb", n_estimators=40).fit(subs, y)


@pytest.fixture(scope="module")
def pool(mbv3):
    subs = mbv3.sample(500, seed=32)
    return subs[:300], subs[300:]


@pytest.fixture(scope="module")
def between(base, pool, mbv3):
    """A second fake device's predictor and a new device halfway between it and ``base``."""
    be2 = create_backend("fake", seed=5)
    train, _ = pool
    other = create_predictor("xgb", n_estimators=40).fit(
        train[:200], [be2.true_latency_ms(mbv3, s) for s in train[:200]])
    return other, lambda s: 0.5 * base.predict(s) + 0.5 * other.predict(s)


def _mape(pred, subs, y):
    return float(np.mean(np.abs(pred.predict(subs) / y - 1)))


def test_a_scaled_device_is_recovered_by_scaling(base, pool):
    train, test = pool
    new = lambda s: 1.3 * base.predict(s)  # noqa: E731
    ft = finetune(base, train[:20], new(train[:20]))
    assert _mape(ft, test, new(test)) < 0.005
    rep = ft.adaptation_
    assert set(rep.cv_mape_pct) - {"average"} == set(list_methods(base))
    assert rep.method in ("scale", "stage_scales", "affine", "residual", "average")
    assert rep.n_samples == 20 and rep.folds == 5 and rep.repeats == 3
    assert "cross-validation repeated 3 times" in rep.reason


def test_a_device_with_one_slower_stage_needs_more_than_a_scale(base, pool, mbv3):
    train, test = pool
    enc_stage = lambda subs: np.array(  # noqa: E731  each subnet's active blocks in stage 3
        [sum(1 for b in range(12, 16) if s.ks[b]) for s in subs])
    new = lambda s: 1.1 * base.predict(s) + 0.4 * enc_stage(s)  # noqa: E731
    ft = finetune(base, train[:60], new(train[:60]))
    only_scale = finetune(base, train[:60], new(train[:60]), methods=["scale"])
    assert only_scale.adaptation_.method == "scale" and only_scale.adaptation_.folds == 0
    assert ft.adaptation_.method != "scale"
    assert _mape(ft, test, new(test)) < 0.5 * _mape(only_scale, test, new(test))
    assert _mape(ft, test, new(test)) < 0.02


def test_result_is_a_normal_predictor_folder_naming_base_and_method(base, pool, tmp_path):
    from ofa_latency.adapt import save_adapted

    train, test = pool
    ft = finetune(base, train[:15], 0.8 * base.predict(train[:15]), base_name="fake_base")
    save_adapted(ft, tmp_path / "ft")
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["metadata"]["adaptation"]["base"] == "fake_base"
    assert cfg["metadata"]["adaptation"]["method"] == ft.adaptation_.method
    back = load_predictor(tmp_path / "ft")
    np.testing.assert_allclose(back.predict(test), ft.predict(test), rtol=1e-12)


def test_bad_input(base, pool):
    train, _ = pool
    with pytest.raises(ValueError, match="at least 2"):
        finetune(base, train[:1], [1.0])
    with pytest.raises(ValueError, match="unknown fine-tuning methods \\['magic'\\]"):
        finetune(base, train[:5], base.predict(train[:5]), methods=["magic"])
    with pytest.raises(ValueError, match="> 0"):
        finetune(base, train[:5], -base.predict(train[:5]))
    with pytest.raises(TypeError, match="fitted LatencyPredictor"):
        finetune("help_v100_64_xgb", train[:5], [1.0] * 5)


def test_cli_finetune(base, pool, tmp_path, capsys, mbv3):
    import pandas as pd

    from ofa_latency.cli import main

    train, _ = pool
    base.save(tmp_path / "base")
    y = 1.2 * base.predict(train[:30])
    pd.DataFrame({"arch": [json.dumps(s.to_dict()) for s in train[:30]], "latency_ms": y}
                 ).to_csv(tmp_path / "new.csv", index=False)
    assert main(["finetune", "--base", str(tmp_path / "base"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    assert "chosen:" in out and "scale" in out and "cross-validated MAPE" in out
    assert (tmp_path / "ft" / "config.json").exists()
    assert main(["finetune", "--base", str(tmp_path / "nope"), "--data",
                 str(tmp_path / "new.csv"), "--out", str(tmp_path / "ft2")]) == 2
    capsys.readouterr()
    assert main(["finetune", "--base", str(tmp_path / "base"), "--mix", str(tmp_path / "base"),
                 "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "ft3")]) == 0
    assert "mix" in capsys.readouterr().out
    # the choice is recorded, and a refit combines the candidates the same way
    from ofa_latency.training import refit_with

    assert main(["finetune", "--base", str(tmp_path / "base"), "--data", str(tmp_path / "new.csv"),
                 "--choice", "one_se", "--out", str(tmp_path / "ft4")]) == 0
    cfg = json.loads((tmp_path / "ft4" / "config.json").read_text())
    assert cfg["metadata"]["refit"]["choice"] == "one_se"
    from ofa_latency.datasets import read_measurements

    pd.DataFrame({"arch": [json.dumps(s.to_dict()) for s in train[30:35]],
                  "latency_ms": 1.2 * base.predict(train[30:35])}
                 ).to_csv(tmp_path / "more.csv", index=False)
    again = refit_with(tmp_path / "ft4", read_measurements(tmp_path / "more.csv"))
    assert again.adaptation_.n_samples == 35 and not again.adaptation_.weights
    assert "simplest" in again.adaptation_.reason  # one_se's rule, not the default's weights
    assert main(["finetune", "--base", str(tmp_path / "base"), "--data", str(tmp_path / "new.csv"),
                 "--choice", "best", "--out", str(tmp_path / "ft5")]) == 2
    assert "choice" in capsys.readouterr().err


def test_mix_of_bases_recovers_a_device_between_two(base, pool, mbv3):
    """A new device that is 0.6 x device A + 0.5 x device B: mixing the two bases recovers it."""
    be2 = create_backend("fake", seed=5)
    train, test = pool
    other = create_predictor("xgb", n_estimators=40).fit(
        train[:200], [be2.true_latency_ms(mbv3, s) for s in train[:200]])
    new = lambda s: 0.6 * base.predict(s) + 0.5 * other.predict(s)  # noqa: E731
    ft = finetune(base, train[200:230], new(train[200:230]), others=[other])
    assert "mix" in ft.adaptation_.cv_mape_pct
    assert _mape(ft, test, new(test)) < 0.003
    with pytest.raises(ValueError, match="others must be"):
        finetune(base, train[:5], base.predict(train[:5]), others=["x"])


def test_candidates_share_the_result_by_their_cross_validated_scores(base, pool, between):
    """Two candidates the samples cannot tell apart share the result; the weights follow the
    scores, sum to 1, and the result's expected error comes from its own out-of-fold
    residuals. The older one-standard-error rule keeps one candidate."""
    train, test = pool
    other, new = between
    y = new(train[200:240]) * np.random.default_rng(0).lognormal(0, 0.01, 40)
    ft = finetune(base, train[200:240], y, others=[other], other_names=["dev_b"],
                  choice="average")
    rep = ft.adaptation_
    assert "scale:dev_b" in rep.cv_mape_pct and "scratch" in rep.cv_mape_pct
    assert rep.method == "average" and ft.kind == "table"
    assert abs(sum(rep.weights.values()) - 1) < 1e-3 and len(rep.weights) >= 2
    ranked = sorted(rep.weights, key=rep.weights.get, reverse=True)
    assert [rep.cv_mape_pct[m] for m in ranked] == sorted(rep.cv_mape_pct[m] for m in ranked)
    assert rep.cv_mape_pct["average"] <= min(rep.cv_mape_pct[m] for m in ranked) * 1.2
    lo, hi = rep.expected_error["interval_90_pct"]
    assert lo < 0 < hi
    assert _mape(ft, test, new(test)) < 0.01
    # the table is the weighted sum of the members refitted on all samples
    members = [finetune(base, train[200:240], y, others=[other], other_names=["dev_b"],
                        methods=[m]) for m in rep.weights]
    mixed = sum(w * m.predict(test) for w, m in zip(rep.weights.values(), members))
    np.testing.assert_allclose(ft.predict(test), mixed, rtol=1e-3)
    one = finetune(base, train[200:240], y, others=[other], choice="one_se")
    assert one.adaptation_.method != "average" and not one.adaptation_.weights
    with pytest.raises(ValueError, match="choice"):
        finetune(base, train[:5], base.predict(train[:5]), choice="best")
    with pytest.raises(ValueError, match="name each"):
        finetune(base, train[:5], base.predict(train[:5]), others=[other], other_names=[])


def test_stacking_weights_recover_a_mixture_of_candidates():
    """The stacked weights are the convex combination of the candidates' out-of-fold
    predictions with the lowest MAPE: a device that is 0.3 A + 0.7 B gets those weights,
    where weights on the candidates' own scores cannot (each alone is 10-20 % off)."""
    from ofa_latency.adapt import _choice_weights, _stack_weights

    rng = np.random.default_rng(3)
    a, b = rng.uniform(5, 15, 40), rng.uniform(5, 15, 40)
    y = 0.3 * a + 0.7 * b
    oof = {"A": np.stack([a, a]), "B": np.stack([b, b]), "C": np.stack([1.1 * a, 1.1 * a])}
    w = _stack_weights(oof, y)
    assert set(w) == {"A", "B"} and abs(w["A"] - 0.3) < 0.01 and abs(w["B"] - 0.7) < 0.01
    half = _stack_weights(oof, y, rows=np.arange(20))  # the rows it is fitted on
    assert abs(half["B"] - 0.7) < 0.01
    avg = _choice_weights("average", oof, y)
    assert abs(sum(avg.values()) - 1) < 1e-3 and avg.get("B", 0) > 0.9  # the best single
    blend = _choice_weights("blend", oof, y)
    for m in ("A", "B"):
        assert abs(blend.get(m, 0) - (avg.get(m, 0) + w.get(m, 0)) / 2) < 1e-3
    combined = sum(v * oof[m][0] for m, v in w.items())
    assert np.mean(np.abs(combined / y - 1)) < 0.005


@pytest.mark.parametrize("choice", ["stack", "blend"])
def test_finetune_with_stacked_weights(base, pool, between, choice):
    """``choice="stack"`` / ``"blend"`` (the default): the result is the weighted sum of the
    members, the blend's weights are half the averaged and half the stacked ones (same
    folds), and the interval comes from out-of-fold predictions weighted without each fold."""
    train, test = pool
    other, new = between
    y = new(train[200:230]) * np.random.default_rng(1).lognormal(0, 0.01, 30)
    kw = dict(others=[other], other_names=["dev_b"], random_state=2)
    ft = finetune(base, train[200:230], y, choice=choice, **kw)
    rep = ft.adaptation_
    assert abs(sum(rep.weights.values()) - 1) < 1e-3 if rep.weights else rep.method != "average"
    assert "out-of-fold MAPE" in rep.reason
    assert _mape(ft, test, new(test)) < 0.01
    lo, hi = rep.expected_error["interval_90_pct"]
    assert lo < 0 < hi
    weights = rep.weights or {rep.method: 1.0}
    members = [finetune(base, train[200:230], y, methods=[m], **kw) for m in weights]
    mixed = sum(w * m.predict(test) for w, m in zip(weights.values(), members))
    np.testing.assert_allclose(ft.predict(test), mixed, rtol=1e-3)
    if choice == "blend":  # the default
        assert finetune(base, train[200:230], y, **kw).adaptation_.weights == rep.weights
        avg, stack = (finetune(base, train[200:230], y, choice=c, **kw).adaptation_
                      for c in ("average", "stack"))
        avg, stack = (r.weights or {r.method: 1.0} for r in (avg, stack))  # one member: {}
        for m in set(avg) | set(stack):
            assert abs(rep.weights.get(m, 0) - (avg.get(m, 0) + stack.get(m, 0)) / 2) < 2e-3


def test_designed_samples_are_fitted_on_but_left_out_of_the_interval(base, pool):
    """Samples chosen by design (a conditioned model's references) err more than random ones:
    with enough random samples for a conformal interval, the interval is calibrated on those
    alone (narrower here); with too few, on every sample. The fit uses all of them."""
    train, test = pool
    rng = np.random.default_rng(4)
    rand, designed = train[:20], train[20:26]
    y = np.concatenate([1.2 * base.predict(rand) * rng.lognormal(0, 0.01, 20),
                        1.2 * base.predict(designed) * np.array([1.3, 0.7] * 3)])
    kw = dict(methods=["scale"], random_state=0)
    every = finetune(base, rand + designed, y, **kw)
    apart = finetune(base, rand + designed, y, designed=designed, **kw)
    assert every.interval_.n == 26 and apart.interval_.n == 20
    assert apart.adaptation_.expected_error["interval_samples"] == 20
    lo_e, hi_e = every.interval_.factors(0.9)
    lo_a, hi_a = apart.interval_.factors(0.9)
    assert hi_a - lo_a < 0.5 * (hi_e - lo_e) and lo_a < 1 < hi_a
    np.testing.assert_allclose(apart.predict(test), every.predict(test))  # the same fit
    few = finetune(base, rand[:12] + designed, np.concatenate([y[:12], y[20:]]),
                   designed=[s.to_dict() for s in designed], **kw)
    assert few.interval_.n == 18  # 12 random samples are too few for a conformal interval


def test_scratch_and_costs_wait_for_ten_samples(base, pool):
    train, _ = pool
    few = finetune(base, train[:8], 1.1 * base.predict(train[:8]))
    assert "scratch" not in few.adaptation_.cv_mape_pct and few.adaptation_.repeats == 1
    assert "costs" not in few.adaptation_.cv_mape_pct
    asked = finetune(base, train[:8], 1.1 * base.predict(train[:8]), methods=["scale", "scratch"])
    assert "scratch" in asked.adaptation_.cv_mape_pct


def test_cost_basis_adds_up_to_the_analytic_costs(mbv3, pool):
    """The costs method's terms are the subnet's MACs split into pointwise and depthwise (one
    term per kernel size), its activations, its active blocks and a constant."""
    from ofa_latency.adapt import cost_basis

    train, _ = pool
    enc = mbv3.encode(train[:50])
    terms = np.stack([t.predict_encoded(enc) for t in cost_basis(mbv3)], axis=1)
    f = mbv3.features(train[:50])
    np.testing.assert_allclose(terms[:, 0] + terms[:, 1:4].sum(1), f["macs_m"], rtol=1e-9)
    np.testing.assert_allclose(terms[:, 4], f["activation_mb"], rtol=1e-9)
    np.testing.assert_array_equal(terms[:, 5], f["n_blocks"])
    np.testing.assert_array_equal(terms[:, 6], 1.0)
    # each kernel size's depthwise MACs come from the blocks of that kernel size only
    ks7 = np.array([[k == 7 for k in s.ks] for s in train[:50]])
    assert np.all((terms[:, 3] > 0) == ks7.any(axis=1))
    assert np.all(terms[:, 1:4] < 0.2 * f["macs_m"].to_numpy()[:, None])


def test_a_runtime_with_slow_large_kernels_is_recovered_by_its_costs(base, pool, mbv3):
    """A device that runs the same operations in other proportions than the base's (here the
    7x7 depthwise convolutions 8x slower per MAC than the 3x3 ones, as XNNPACK's are,
    BENCHMARKS.md section 16.13): no map of the base's table fits it, its own per-operation
    costs do, and the automatic choice finds them from 20 samples."""
    from ofa_latency.adapt import cost_basis

    train, test = pool
    basis = cost_basis(mbv3)
    w = np.array([0.004, 0.02, 0.03, 0.16, 0.05, 0.03, 0.8])  # ms per unit of each term
    new = lambda s: np.stack([t.predict_encoded(mbv3.encode(s)) for t in basis], 1) @ w  # noqa: E731
    y = new(train[:20]) * np.random.default_rng(1).lognormal(0, 0.005, 20)
    ft = finetune(base, train[:20], y)
    only = {m: finetune(base, train[:20], y, methods=[m]) for m in ("costs", "affine", "residual")}
    assert _mape(only["costs"], test, new(test)) < 0.01
    assert _mape(only["affine"], test, new(test)) > 3 * _mape(only["costs"], test, new(test))
    assert ft.adaptation_.weights.get("costs", 0) > 0.5 or ft.adaptation_.method == "costs"
    assert _mape(ft, test, new(test)) < 0.02


def test_base_costs_keeps_the_base_and_changes_the_operations_proportions(base, pool, mbv3):
    """A device that runs the base's subnets a constant factor slower and, on top, its 7x7
    depthwise convolutions much slower (an int8 runtime's uneven speed-ups): ``base_costs``
    (the scaled base plus the device's own costs) fits it more than twice as closely as the
    base's maps or the costs alone; it waits for 20 samples."""
    from ofa_latency.adapt import BASE_COSTS_MIN_SAMPLES, cost_basis

    train, test = pool
    ks7 = cost_basis(mbv3)[3]  # the 7x7 depthwise MACs (M)
    new = lambda s: 1.3 * base.predict(s) + 0.4 * ks7.predict_encoded(mbv3.encode(s))  # noqa: E731
    y = new(train[:30]) * np.random.default_rng(2).lognormal(0, 0.005, 30)
    only = {m: finetune(base, train[:30], y, methods=[m])
            for m in ("base_costs", "costs", "affine", "scale")}
    err = {m: _mape(p, test, new(test)) for m, p in only.items()}
    assert err["base_costs"] < 0.01
    assert min(err["costs"], err["affine"], err["scale"]) > 2 * err["base_costs"]
    auto = finetune(base, train[:30], y)
    assert "base_costs" in auto.adaptation_.cv_mape_pct
    assert _mape(auto, test, new(test)) < 0.02
    few = finetune(base, train[:BASE_COSTS_MIN_SAMPLES - 1], y[:BASE_COSTS_MIN_SAMPLES - 1])
    assert "base_costs" not in few.adaptation_.cv_mape_pct
