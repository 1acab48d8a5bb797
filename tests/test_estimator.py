import numpy as np
import pytest

from ofa_latency import create_backend
from ofa_latency.estimator import LatencyEstimator
from ofa_latency.predictors import NotFittedError, create_predictor


@pytest.fixture(scope="module")
def estimator(mbv3):
    be = create_backend("fake", seed=0)
    subs = mbv3.sample(150, seed=4)
    y = [be.true_latency_ms(mbv3, s) for s in subs]
    return LatencyEstimator(create_predictor("xgb", n_estimators=40, max_depth=4).fit(subs, y))


def test_queries_agree_across_forms(estimator, mbv3):
    s = mbv3.sample(3, seed=99)
    batch = estimator.predict([x.to_dict() for x in s])
    assert [estimator.get_efficiency(x.to_dict()) for x in s] == pytest.approx(batch)
    assert [estimator.predict_efficiency(x.to_tutorial_dict()) for x in s] == pytest.approx(batch)
    # the single query is the predictor's table, not a separate model
    assert estimator.get_efficiency(s[0].to_dict()) == pytest.approx(
        estimator.predictor.table.predict_encoded(estimator.space.encode(s[:1]))[0])
    # numpy ints and tuples take the validating path and give the same answer
    a = s[1].to_dict()
    a_np = {"ks": tuple(np.array(a["ks"])), "e": np.array(a["e"]), "d": a["d"],
            "image_size": np.int64(a["image_size"])}
    assert estimator.get_efficiency(a_np) == pytest.approx(batch[1])


def test_bad_queries_raise(estimator, mbv3):
    with pytest.raises(ValueError, match="missing key"):
        estimator.get_efficiency({"ks": [3] * 20})
    with pytest.raises(ValueError, match="resolutions"):
        estimator.get_efficiency(dict(mbv3.sample(1)[0].to_dict(), image_size=500))
    with pytest.raises(NotFittedError):
        LatencyEstimator(create_predictor("xgb"))


def test_save_load(estimator, tmp_path, mbv3):
    estimator.predictor.save(tmp_path / "p")
    s = [x.to_dict() for x in mbv3.sample(5, seed=1)]
    np.testing.assert_array_equal(LatencyEstimator.load(tmp_path / "p").predict(s),
                                  estimator.predict(s))


def test_ofa_nas_evolution_finder(estimator, mbv3):
    import torch
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder
    from ofa.nas.search_algorithm import EvolutionFinder

    torch.manual_seed(0)
    np.random.seed(0)
    enc = MobileNetArchEncoder(image_size_list=list(mbv3.image_sizes))
    acc = AccuracyPredictor(enc, device="cpu")
    finder = EvolutionFinder(estimator, acc, population_size=10, max_time_budget=3)
    limit = float(np.median(estimator.predict([s.to_dict() for s in mbv3.sample(50, seed=2)])))
    _, (acc_best, arch, lat) = finder.run_evolution_search(limit)
    assert lat <= limit and estimator.get_efficiency(arch) == pytest.approx(lat)
    mbv3.validate(arch)


def test_ofa_tutorial_evolution_finder(estimator, mbv3):
    import random

    from ofa.tutorial import AccuracyPredictor, EvolutionFinder

    random.seed(0)
    np.random.seed(0)
    acc = AccuracyPredictor(pretrained=False, device="cpu")
    limit = float(np.percentile(estimator.predict([s.to_dict() for s in mbv3.sample(50, seed=3)]),
                                70))
    limit = max(limit, 15.0)  # the tutorial finder only accepts 15..60 ms for 'note10'
    finder = EvolutionFinder("note10", limit, estimator, acc, population_size=10,
                             max_time_budget=3)
    _, (acc_best, spec, lat) = finder.run_evolution_search()
    assert lat <= limit
    assert estimator.predict_efficiency(spec) == pytest.approx(lat)


def test_an_int8_predictor_of_this_cpu_is_not_another_cpu(estimator, caplog):
    """The recorded precision (a setting field) is not the machine's identity."""
    import os

    from ofa_latency.hardware import cpu_model_name

    p = estimator.predictor
    old = getattr(p, "config_", None)
    p.config_ = {"metadata": {"setting": {"device_type": "cpu", "precision": "int8"},
                              "hardware": {"cpu_model": cpu_model_name(),
                                           "logical_cores": os.cpu_count(),
                                           "backend": "openvino", "threads_in_use": 1,
                                           "precision": "int8"}}}
    try:
        with caplog.at_level("WARNING", logger="ofa_latency"):
            est = LatencyEstimator(p)
        assert est.machine_differences() == [] and "another CPU" not in caplog.text
    finally:
        p.config_ = old


def test_warns_when_a_cpu_predictor_comes_from_another_cpu(estimator, caplog):
    p = estimator.predictor
    p.config_ = {"metadata": {"setting": {"device_type": "cpu"},
                              "hardware": {"cpu_model": "Some Other CPU 9000",
                                           "logical_cores": 2}}}
    try:
        with caplog.at_level("WARNING", logger="ofa_latency"):
            est = LatencyEstimator(p)
        assert "another CPU" in caplog.text and "Some Other CPU 9000" in caplog.text
        assert est.machine_differences({"cpu_model": "Some Other CPU 9000",
                                        "logical_cores": 2}) == []
        caplog.clear()
        from ofa_latency.hardware import cpu_model_name

        p.config_["metadata"]["hardware"]["cpu_model"] = cpu_model_name()
        import os

        p.config_["metadata"]["hardware"]["logical_cores"] = os.cpu_count()
        with caplog.at_level("WARNING", logger="ofa_latency"):
            LatencyEstimator(p)
        assert "another CPU" not in caplog.text
    finally:
        del p.config_
