"""Timing statistics, kept apart from the backends that run the model.

The protocol is built for a noisy shared machine:

1. warm-up runs of the target and of a fixed reference subnet;
2. ``rounds`` interleaved rounds, each timing ``runs_per_round`` runs of the reference and then
   of the target; a round keeps the minimum of its runs (interference only ever adds time);
3. the raw estimate is the median over rounds of the target's round minima;
4. drift correction: the ratio target/reference is taken per round, its median times a fixed
   ``ref_baseline_ms`` (the reference's latency calibrated once per dataset) is the
   reported latency, so a machine-wide slowdown during the window cancels out;
5. when the round ratios disagree by more than ``max_spread_pct`` (max - min over median),
   more rounds are added, up to ``max_rounds``.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Optional

import numpy as np

__all__ = ["TimingProtocol", "TimingResult", "measure", "calibrate"]


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
    """Parameters of the timing protocol (see the module docstring)."""

    warmup_runs: int = 5
    rounds: int = 6
    runs_per_round: int = 3
    max_rounds: int = 10
    max_spread_pct: float = 6.0

    def __post_init__(self):
        for name in ("warmup_runs", "rounds", "runs_per_round", "max_rounds"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "warmup_runs" else 1):
                raise ValueError(f"{name} = {v!r}; must be an int >= "
                                 f"{0 if name == 'warmup_runs' else 1}")
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds = {self.max_rounds} < rounds = {self.rounds}")
        if not self.max_spread_pct > 0:
            raise ValueError(f"max_spread_pct = {self.max_spread_pct}; must be > 0")


@dataclasses.dataclass
class TimingResult:
    """Outcome of :func:`measure`; all times in milliseconds."""

    latency_ms: float          # drift-corrected estimate (or raw when there is no reference)
    latency_raw_ms: float      # median over rounds of the per-round minimum
    ref_latency_ms: float      # reference's median round minimum in this window (nan if none)
    spread_pct: float          # (max - min) / median of the per-round estimates, percent
    n_runs: int                # timed runs of the target
    n_rounds: int


def _round_min(runner, n):
    return float(np.min(runner.run(n))) * 1e3


def _spread_pct(values):
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med > 0 else float("inf")


def measure(runner, reference=None, ref_baseline_ms: Optional[float] = None,
            protocol: TimingProtocol = TimingProtocol()) -> TimingResult:
    """Time ``runner`` (an object with ``run(n) -> seconds per run``) under ``protocol``.

    Parameters
    ----------
    runner : Runner
        The prepared target.
    reference : Runner, optional
        The prepared reference subnet, timed in the same window for drift correction.
    ref_baseline_ms : float, optional
        The reference's calibrated latency (ms); required with ``reference``.
    """
    if reference is not None and not (ref_baseline_ms and ref_baseline_ms > 0):
        raise ValueError("ref_baseline_ms must be a positive latency when a reference is given")
    if protocol.warmup_runs:
        runner.run(protocol.warmup_runs)
        if reference is not None:
            reference.run(max(1, protocol.warmup_runs // 2))
    tgt, ref = [], []
    while True:
        if reference is not None:
            ref.append(_round_min(reference, protocol.runs_per_round))
        tgt.append(_round_min(runner, protocol.runs_per_round))
        if len(tgt) < protocol.rounds:
            continue
        est = [t / r for t, r in zip(tgt, ref)] if reference is not None else tgt
        if _spread_pct(est) <= protocol.max_spread_pct or len(tgt) >= protocol.max_rounds:
            break
    raw = statistics.median(tgt)
    if reference is not None:
        ratio = statistics.median([t / r for t, r in zip(tgt, ref)])
        latency, ref_ms = ratio * ref_baseline_ms, statistics.median(ref)
    else:
        latency, ref_ms = raw, float("nan")
    return TimingResult(latency_ms=latency, latency_raw_ms=raw, ref_latency_ms=ref_ms,
                        spread_pct=_spread_pct(est), n_runs=len(tgt) * protocol.runs_per_round,
                        n_rounds=len(tgt))


def calibrate(reference, protocol: TimingProtocol = TimingProtocol(), rounds: int = 60,
              quantile: float = 0.2) -> float:
    """Calibrate the reference's latency (ms): the ``quantile`` of ``rounds`` round minima.

    A low quantile rather than the median: on a shared machine the speed switches between
    levels for seconds at a time, and the fast level is the one the machine returns to.
    """
    reference.run(protocol.warmup_runs + 2)
    mins = [_round_min(reference, protocol.runs_per_round) for _ in range(rounds)]
    return float(np.quantile(mins, quantile))
