"""Prediction intervals: calibrated on residuals the predictor has not seen, conformal with
enough of them and Student-t with few, saved with the predictor, reported by evaluate and
predict; a search with confidence meets its budgets with the upper bound."""

import json

import numpy as np
import pytest

from ofa_latency import LatencyEstimator, create_backend, create_predictor, finetune
from ofa_latency.cli import main
from ofa_latency.errors import UsageError
from ofa_latency.intervals import IntervalCalibration


def test_conformal_and_t_intervals_cover_what_they_say():
    rng = np.random.default_rng(0)
    covered = {"conformal": [], "t": []}
    for n, kind in ((200, "conformal"), (10, "t")):
        for trial in range(300):
            cal = IntervalCalibration(rng.normal(0.02, 0.05, n).tolist(), "given")
            assert cal.method(0.9) == kind
            lo, hi = cal.factors(0.9)
            new = np.exp(rng.normal(0.02, 0.05, 50))
            covered[kind].append(np.mean((new >= lo) & (new <= hi)))
    # marginal coverage of a 90 % interval: about 90 % either way (the t one is exact here)
    assert 0.87 < np.mean(covered["conformal"]) < 0.93
    assert 0.87 < np.mean(covered["t"]) < 0.93
    with pytest.raises(UsageError, match="at least 2"):
        IntervalCalibration([0.1], "given")
    with pytest.raises(UsageError, match="coverage"):
        cal.factors(1.2)


@pytest.fixture(scope="module")
def device(mbv3):
    """A fake device 1.3x slower than the base's, with 4 % multiplicative noise."""
    be = create_backend("fake", seed=0)
    subs = mbv3.sample(400, seed=21)
    truth = np.array([be.true_latency_ms(mbv3, s) for s in subs])
    noisy = truth * 1.3 * np.exp(np.random.default_rng(1).normal(0, 0.04, len(truth)))
    base = create_predictor("table").fit(subs[:200], truth[:200])
    return base, subs[200:], noisy[200:]


def test_a_fine_tuned_predictor_is_calibrated_by_its_cross_validation(device, tmp_path):
    base, subs, y = device
    ft = finetune(base, subs[:30], y[:30], random_state=0)
    assert ft.interval_.source == "cross-validation" and ft.interval_.n == 30
    lo, hi = ft.predict_interval(subs[30:], coverage=0.9)
    inside = np.mean((y[30:] >= lo) & (y[30:] <= hi))
    assert 0.8 <= inside <= 0.99, inside
    ft.save(tmp_path / "ft")
    back = LatencyEstimator.load(tmp_path / "ft").predictor
    np.testing.assert_allclose(back.predict_interval(subs[30:])[1], hi)
    with pytest.raises(UsageError, match="no interval calibration"):
        base.predict_interval(subs[:3])
    base.calibrate_interval(subs[30:60], y[30:60])
    assert base.interval_.source == "given"


def test_the_interval_residuals_carry_the_choice_itself():
    """Each fold is predicted by the candidates weighted on the *other* folds' scores: a
    candidate perfect elsewhere but wrong on this fold predicts it, so the interval sees the
    error the choice makes on subnets it did not score."""
    from ofa_latency.adapt import _choice_blind_oof

    y = np.full(10, 10.0)
    folds = [np.arange(0, 2), np.arange(2, 4), np.arange(4, 6), np.arange(6, 8), np.arange(8, 10)]
    good_but_one = np.full((1, 10), 10.0)
    good_but_one[0, :2] = 13.0  # 30 % off on fold 0 only
    steady = np.full((1, 10), 10.5)  # 5 % off everywhere
    oof = {"a": good_but_one, "b": steady}
    honest = _choice_blind_oof(oof, y, folds, ["a", "b"])
    # fold 0: the other folds favour "a" (0 % against 5 %): its 30 % error is what fold 0 sees
    assert np.all(honest[:2] > 12.5)
    # folds 1-4: with fold 0 among the others "a" scores 7.5 % against 5 %: "b" dominates
    assert np.all(np.abs(honest[2:] - 10.5) < 0.3)


def test_train_evaluate_and_predict_report_the_interval(tmp_path, capsys):
    data = tmp_path / "t.csv"
    assert main(["profile", "--backend", "fake", "--n", "80", "--seed", "3", "--out", str(data),
                 "--quiet", "--rounds", "2", "--max-rounds", "2"]) == 0
    assert main(["train", "--data", str(data), "--model", "table", "--out", str(tmp_path / "p"),
                 "--quiet"]) == 0
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["interval"]["source"] == "held-out" and cfg["interval"]["n"] >= 2
    capsys.readouterr()
    assert main(["evaluate", "--predictor", str(tmp_path / "p"), "--data", str(data)]) == 0
    assert "90 % interval (held-out residuals" in capsys.readouterr().out
    arch = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 160})
    assert main(["predict", "--predictor", str(tmp_path / "p"), "--arch", arch]) == 0
    assert "90 % interval" in capsys.readouterr().out


def test_search_with_confidence_meets_budgets_with_the_upper_bound(device):
    from ofa_latency.search import Constraint, MacsProxy, search

    base, subs, y = device
    ft = finetune(base, subs[:40], y[:40], random_state=0)
    est = LatencyEstimator(ft, check_machine=False)
    budget = float(np.quantile(est.predict(subs), 0.4))
    plain = search([Constraint(est, budget)], MacsProxy(), seed=0)
    sure = search([Constraint(est, budget, confidence=0.9)], MacsProxy(), seed=0)
    factor = Constraint(est, budget, confidence=0.9).upper_factor
    assert factor > 1
    assert sure.latency_ms[0] * factor <= budget * (1 + 1e-9)
    assert sure.extra["user_budgets_ms"] == [budget] and sure.budgets_ms[0] < budget
    assert plain.latency_ms[0] > sure.latency_ms[0]
    with pytest.raises(UsageError, match="confidence"):
        Constraint(est, budget, confidence=1.5)
