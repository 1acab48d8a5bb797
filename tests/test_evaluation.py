import numpy as np
import pytest

from ofa_latency.evaluation import latency_metrics, plot_predicted_vs_measured


def test_metrics_on_hand_computed_values():
    y = np.array([10.0, 20.0, 40.0, 80.0])
    p = np.array([11.0, 18.0, 40.0, 100.0])
    m = latency_metrics(y, p)
    # errors 1, -2, 0, 20 ms; APE 10 %, 10 %, 0 %, 25 %
    assert m["n"] == 4
    assert m["rmse_ms"] == pytest.approx(np.sqrt((1 + 4 + 0 + 400) / 4))
    assert m["rmse_over_mean_pct"] == pytest.approx(100 * np.sqrt(405 / 4) / 37.5)
    assert m["mape_pct"] == pytest.approx(11.25)
    assert m["within_5pct"] == pytest.approx(25.0)
    assert m["within_10pct"] == pytest.approx(75.0)  # 10 % exactly counts as within
    assert m["kendall_tau"] == pytest.approx(1.0)  # same order
    assert m["spearman_rho"] == pytest.approx(1.0)
    # one swapped pair of four: tau = (5 - 1) / 6
    m2 = latency_metrics(y, np.array([20.0, 10.0, 40.0, 80.0]))
    assert m2["kendall_tau"] == pytest.approx(4 / 6)
    assert m2["spearman_rho"] == pytest.approx(1 - 6 * 2 / (4 * 15))


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="equal length"):
        latency_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        latency_metrics([1.0], [1.0])


def test_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.uniform(5, 20, 50)
    plot_predicted_vs_measured(y, y * rng.normal(1, 0.03, 50), tmp_path / "p.png", title="t")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
