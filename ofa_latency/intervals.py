"""Prediction intervals for latency predictors, calibrated on residuals the predictor has not
been fitted on, in relative (log) terms: ``log(measured / predicted)``.

Where the residuals come from: a trained predictor's held-out rows (``train``), a fine-tuned
one's out-of-fold predictions of the chosen method (``finetune``'s cross-validation: the CV+
idea), or any measured subnets the predictor has not seen (:meth:`LatencyPredictor.calibrate_interval`).

How a coverage becomes an interval: with enough residuals for the coverage asked
(``n + 1 >= 2 / (1 - coverage)``, e.g. 19 for 90 %), split-conformal quantiles of the residuals
(finite-sample valid when new subnets are exchangeable with them); with fewer, a Student-t
prediction interval on the log residuals (mean +- t * sd * sqrt(1 + 1/n)). Because the
interval is relative, it multiplies the prediction: ``upper_ms = predicted_ms * upper_factor``,
the same factor for every subnet of one predictor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import UsageError

__all__ = ["IntervalCalibration", "DEFAULT_COVERAGE"]

DEFAULT_COVERAGE = 0.9


@dataclasses.dataclass
class IntervalCalibration:
    """Log residuals ``log(measured / predicted)`` of subnets the predictor was not fitted on,
    and where they come from (``"held-out"``, ``"cross-validation"``, ``"given"``)."""

    log_residuals: list
    source: str

    def __post_init__(self):
        r = np.asarray(self.log_residuals, dtype=np.float64)
        if r.ndim != 1 or len(r) < 2 or not np.isfinite(r).all():
            raise UsageError(f"an interval needs at least 2 finite residuals, got {len(r)}")
        self.log_residuals = [float(v) for v in np.sort(r)]

    @classmethod
    def from_predictions(cls, measured_ms, predicted_ms, source: str) -> "IntervalCalibration":
        y, p = (np.asarray(v, dtype=np.float64) for v in (measured_ms, predicted_ms))
        if y.shape != p.shape or (y <= 0).any() or (p <= 0).any():
            raise UsageError("measured and predicted latencies must be positive and paired")
        return cls(np.log(y / p).tolist(), source)

    @property
    def n(self) -> int:
        return len(self.log_residuals)

    def method(self, coverage: float = DEFAULT_COVERAGE) -> str:
        """``"conformal"`` when there are enough residuals for ``coverage``, else ``"t"``."""
        return "conformal" if (self.n + 1) * (1 - coverage) / 2 >= 1 else "t"

    def factors(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float]:
        """``(lower, upper)`` multipliers of a prediction for a two-sided ``coverage``."""
        if not 0 < coverage < 1:
            raise UsageError(f"coverage = {coverage!r}; must be in (0, 1), e.g. 0.9")
        r = np.asarray(self.log_residuals)
        alpha = 1 - coverage
        if self.method(coverage) == "conformal":
            k_lo = max(int(math.floor((self.n + 1) * alpha / 2)), 1)
            k_hi = min(int(math.ceil((self.n + 1) * (1 - alpha / 2))), self.n)
            lo, hi = r[k_lo - 1], r[k_hi - 1]
        else:
            from scipy.stats import t

            half = float(t.ppf(1 - alpha / 2, self.n - 1)) * float(r.std(ddof=1)) * \
                math.sqrt(1 + 1 / self.n)
            lo, hi = float(r.mean()) - half, float(r.mean()) + half
        return math.exp(lo), math.exp(hi)

    def to_dict(self) -> dict:
        return {"source": self.source, "n": self.n, "log_residuals": list(self.log_residuals)}

    @classmethod
    def from_dict(cls, d: dict) -> "IntervalCalibration":
        return cls(d["log_residuals"], d.get("source", "unknown"))
