"""Exploratory: zero-shot prediction for an unseen GPU from spec-sheet numbers alone.

    python scripts/bench_zero_shot.py

Not yet a product feature (the hardware-conditioned predictor of issue 9 is still to be built);
this measures the simplest descriptor-conditioned model, to set a baseline for it. Leave one
HELP GPU out; at the target's batch size, take the shipped xgb predictor of the remaining GPU
nearest in descriptor space and scale it by ``exp(beta . (phi_target - phi_base))`` with
``phi = log(fp32 TFLOP/s, memory bandwidth GB/s)`` from ``data/hardware.csv``. ``beta`` is fitted
by least squares on the log median latency ratios of the remaining GPUs' pairs at all three
batch sizes (their train splits; nothing of the target is used). Compared with the unscaled
base and with scaling by one spec number alone (beta fixed to -1 on it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HELP = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", ROOT.parent / "shared" / "data")) / "help_ofa_mbv3_w1.2"
GPUS = ("2080ti", "titan_xp", "v100")
BATCHES = (1, 32, 64)


def main():
    from scipy.stats import kendalltau

    from ofa_latency import LatencyEstimator
    from ofa_latency.datasets import read_help
    from ofa_latency.hardware import load_gpu_specs

    if not (HELP / "ofa_archs.pt").exists():
        raise SystemExit(f"HELP data not found at {HELP}")
    specs = load_gpu_specs().set_index("key")
    phi = {g: np.log([specs.loc[g, "fp32_tflops"], specs.loc[g, "memory_bandwidth_gbs"]])
           for g in GPUS}
    data = {(g, b): read_help(HELP, f"{g}_{b}") for g in GPUS for b in BATCHES}

    def log_ratio(a, b, batch):  # log median latency ratio b / a on common train subnets
        x, y = data[(a, batch)], data[(b, batch)]
        m = x[x.split == "train"].merge(y[y.split == "train"], on=["arch", "image_size"])
        return float(np.log(np.median(m.latency_ms_y / m.latency_ms_x)))

    print("| target | base | no scale: MAPE % / tau | TFLOP/s only | bandwidth only | fitted beta: MAPE % | beta |")
    print("|---|---|---|---|---|---|---|")
    for g in GPUS:
        others = [o for o in GPUS if o != g]
        A = np.array([phi[others[1]] - phi[others[0]] for _ in BATCHES])
        r = np.array([log_ratio(others[0], others[1], b) for b in BATCHES])
        beta, *_ = np.linalg.lstsq(A, r, rcond=None)
        for b in BATCHES:
            base = min(others, key=lambda o: float(np.linalg.norm(phi[o] - phi[g])))
            est = LatencyEstimator.from_pretrained(f"help_{base}_{b}_xgb", check_machine=False)
            test = data[(g, b)][data[(g, b)].split == "test"]
            y, p0 = test.latency_ms.to_numpy(), est.predictor.predict(test)
            d = phi[g] - phi[base]
            cells = []
            for scale in (0.0, -d[0], -d[1], float(beta @ d)):
                p = p0 * np.exp(scale)
                cells.append(100 * float(np.mean(np.abs(p - y) / y)))
            tau = float(kendalltau(y, p0).statistic)
            print(f"| {g}_{b} | {base} | {cells[0]:.1f} / {tau:.3f} | {cells[1]:.1f} | "
                  f"{cells[2]:.1f} | {cells[3]:.1f} | {np.round(beta, 2).tolist()} |", flush=True)


if __name__ == "__main__":
    main()
