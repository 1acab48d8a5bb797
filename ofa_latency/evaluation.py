"""Metrics of predicted against measured latency."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["latency_metrics", "plot_predicted_vs_measured", "compare", "plot_compare"]


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


def compare(measured_ms, predictions: dict, device_seconds: dict | None = None) -> list[dict]:
    """One row per predictor: :func:`latency_metrics` of its ``predictions[name]`` against
    ``measured_ms`` plus ``device_seconds`` (what it cost to obtain, when known)."""
    rows = []
    for name, pred in predictions.items():
        m = latency_metrics(measured_ms, pred)
        rows.append({"name": name, **m,
                     "device_seconds": (device_seconds or {}).get(name)})
    return rows


def plot_compare(measured_ms, predictions: dict, rows: list, path, title: str = "") -> None:
    """Left: predicted against measured latency for every predictor; right: RMSE against the
    device-seconds spent to obtain each (those with a known cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(measured_ms)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    allv = np.concatenate([y] + [np.asarray(p) for p in predictions.values()])
    lo, hi = float(allv.min()) * 0.95, float(allv.max()) * 1.05
    for (name, p), r in zip(predictions.items(), rows):
        a.scatter(y, p, s=6, alpha=0.6, label=f"{name} (RMSE {r['rmse_ms']:.3f} ms)")
    a.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    a.set_xlim(lo, hi); a.set_ylim(lo, hi)
    a.set_xlabel("measured latency (ms)"); a.set_ylabel("predicted latency (ms)")
    a.set_title(title or "predicted vs measured", fontsize=9)
    a.legend(fontsize=7, loc="upper left")
    known = [r for r in rows if r["device_seconds"]]
    for r in known:
        b.scatter(r["device_seconds"], r["rmse_ms"], s=25)
        b.annotate(r["name"], (r["device_seconds"], r["rmse_ms"]), fontsize=7,
                   xytext=(3, 3), textcoords="offset points")
    if known:
        b.set_xscale("log"); b.set_yscale("log")
    b.set_xlabel("device-seconds spent to obtain the predictor")
    b.set_ylabel("RMSE on the held-out subnets (ms)")
    b.set_title("error vs measurement cost", fontsize=9)
    b.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
