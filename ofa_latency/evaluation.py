"""Metrics of predicted against measured latency."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["latency_metrics", "plot_predicted_vs_measured"]


def latency_metrics(measured_ms, predicted_ms) -> dict:
    """RMSE (ms), RMSE over the mean (%), MAPE (%), share within +-5 % and +-10 % (%),
    Kendall tau and Spearman rho of predicted against measured latencies."""
    y = np.asarray(measured_ms, dtype=np.float64)
    p = np.asarray(predicted_ms, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or len(y) < 2:
        raise ValueError(f"need two 1-d arrays of equal length >= 2, got {y.shape} and {p.shape}")
    ape = np.abs(p - y) / y
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    return {
        "n": int(len(y)),
        "rmse_ms": rmse,
        "rmse_over_mean_pct": 100 * rmse / float(np.mean(y)),
        "mape_pct": 100 * float(np.mean(ape)),
        "within_5pct": 100 * float(np.mean(ape <= 0.05)),
        "within_10pct": 100 * float(np.mean(ape <= 0.10)),
        "kendall_tau": float(stats.kendalltau(y, p).statistic),
        "spearman_rho": float(stats.spearmanr(y, p).statistic),
    }


def plot_predicted_vs_measured(measured_ms, predicted_ms, path, title="") -> None:
    """Scatter plot of predicted against measured latency (ms) with the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = np.asarray(measured_ms), np.asarray(predicted_ms)
    m = latency_metrics(y, p)
    lo, hi = float(min(y.min(), p.min())) * 0.95, float(max(y.max(), p.max())) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p, s=6, alpha=0.6)
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="gray", alpha=0.2, label="+-10 %")
    ax.set_xlim(lo, hi); ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)"); ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{title}\nMAPE {m['mape_pct']:.2f} %, tau {m['kendall_tau']:.3f}, "
                 f"RMSE {m['rmse_ms']:.3f} ms", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
