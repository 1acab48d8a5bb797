"""Timing statistics, kept apart from the backends that run the model.

The protocol is built for a noisy shared machine:

1. warm-up runs of the target and of a fixed reference subnet;
2. ``rounds`` interleaved rounds, each timing ``runs_per_round`` runs of the reference and then
   of the target; a round keeps the minimum of its runs (interference only ever adds time);
3. the raw estimate is the median over rounds of the target's round minima;
4. drift correction: the ratio target/reference is taken per round and its median is the
   measurement (``ratio``); the reference's median round minimum in the same window
   (``ref_latency_ms``) is recorded too. A table turns ratios into milliseconds with one
   reference level estimated from all its windows (:mod:`.scale`), so a machine-wide slowdown
   during a window cancels out and no single moment sets the scale;
5. every measurement carries its own uncertainty, ``ci_pct``: the half-width (percent of the
   median) of a distribution-free 90 % interval of the median round ratio, from its order
   statistics (:func:`median_interval`); with ``target_ci_pct`` set (the default) rounds are
   added until that half-width reaches the target, up to ``max_rounds`` or ``max_seconds`` of
   timing per window, so a noisy machine costs more device time and a quiet one less. Without
   a target the older rule applies: rounds are added while the round ratios disagree by more
   than ``max_spread_pct`` (max - min over median), up to ``max_rounds``;
6. each window also records how busy other processes kept this process's CPUs while it
   timed (``others_busy_pct``, from the kernel's counters), so a table read later says which
   rows were measured beside other work.

Windows: a subnet can be timed in ``windows`` independent windows, each with a freshly
prepared copy of the subnet (a new module, new buffers). Some preparations run a subnet
persistently 15-35 % slower than others with a small spread inside their window (allocation
and alignment effects a reference cannot cancel); when two windows disagree by more than
``agree_pct``, more are timed, up to ``max_windows``, and the median of the closest pair is
kept (:func:`combine_windows`). With ``auto_windows`` a table learns whether one window is
enough on this host (:class:`WindowChooser`): its first subnets and then every few are timed
in two windows, and once one window's half-width pooled over them (the spread of a fresh
preparation, which a window's own rounds cannot see) is wider than ``target_ci_pct``, every
subnet gets two.

Machine states: on some hosts the whole machine jumps between a fast state and one 30-50 %
slower for seconds to minutes, and the slow state does not slow every subnet in proportion
(a subnet's ratio to the reference moved by a median 6 % for torch, up to 11 %, and 1.8 % for
ONNX Runtime on such a host; BENCHMARKS.md section 14.5). A window that never saw the fast
state (its fastest reference round more than ``off_state_pct`` percent, by default
:data:`OFF_STATE_PCT`, above the table's level; a table records another threshold in
its rows' ``versions``, which :func:`~ofa_latency.datasets.drop_duplicate_rows` reads) is timed
again later in the same run, up to ``off_state_retries`` times
(:func:`~.profiler.profile_subnets`), and a table keeps each subnet's row from the fast state.
Before each such retry the reference alone is timed until the machine is back in its fast
state, for up to ``off_state_wait_s`` seconds of runs (:func:`~.scale.wait_for_fast_state`):
a slow spell longer than that ends the try instead of filling it with windows that cannot
meet the fast state.

Other work: a subnet all of whose windows shared their CPUs with other processes keeping them
at least ``busy_retry_pct`` percent busy is timed again the same way, each try once the others
have been quieter than that for a probe (:func:`~ofa_latency.hardware.wait_until_quiet`, up to
``off_state_wait_s``), and a table keeps each subnet's quietest-timed row (BENCHMARKS.md
section 14.9: such rows retested 5x worse with ONNX Runtime).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Optional, Sequence

import numpy as np

from ..hardware import OTHERS_BUSY_WARN_PCT, cpu_snapshot, others_busy_pct

__all__ = ["TimingProtocol", "TimingResult", "measure", "measure_windows", "combine_windows",
           "windows_agree", "median_interval", "INTERVAL_COVERAGE", "busy_mean",
           "window_sd_pct", "pooled_window_ci_pct", "WindowChooser", "AUTO_FIRST_SUBNETS",
           "AUTO_CHECK_EVERY"]

# the coverage of a measurement's own interval (``ci_pct``)
INTERVAL_COVERAGE = 0.9
# auto_windows: the first subnets of a table timed in two windows whatever they show, and
# after them every this many (so a table timed in one window keeps its estimate current)
AUTO_FIRST_SUBNETS = 6
AUTO_CHECK_EVERY = 5
# a window's fastest reference round this far (%) above its table's level: the window never
# saw the fast state (the default of ``TimingProtocol.off_state_pct``). On host6 the windows'
# fastest reference rounds fell either within 23 % of the level or 32 % and more above it
# (BENCHMARKS.md section 14.5)
OFF_STATE_PCT = 25.0


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
    """Parameters of the timing protocol (see the module docstring)."""

    warmup_runs: int = 5
    rounds: int = 6
    runs_per_round: int = 3
    max_rounds: int = 40
    max_spread_pct: float = 6.0
    windows: int = 1
    max_windows: int = 3
    agree_pct: float = 4.0
    target_ci_pct: Optional[float] = 1.0
    max_seconds: float = 3.0
    off_state_retries: int = 2
    off_state_wait_s: float = 10.0
    off_state_pct: float = OFF_STATE_PCT
    busy_retry_pct: Optional[float] = OTHERS_BUSY_WARN_PCT
    auto_windows: bool = False

    def __post_init__(self):
        for name in ("warmup_runs", "rounds", "runs_per_round", "max_rounds", "windows",
                     "max_windows", "off_state_retries"):
            v = getattr(self, name)
            low = 0 if name in ("warmup_runs", "off_state_retries") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} = {v!r}; must be an int >= {low}")
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds = {self.max_rounds} < rounds = {self.rounds}")
        if self.max_windows < self.windows:
            raise ValueError(f"max_windows = {self.max_windows} < windows = {self.windows}")
        for name in ("max_spread_pct", "agree_pct", "max_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)}; must be > 0")
        if not (self.off_state_wait_s >= 0 and math.isfinite(self.off_state_wait_s)):
            raise ValueError(f"off_state_wait_s = {self.off_state_wait_s}; must be a finite "
                             f"number >= 0")
        if not (0 < self.off_state_pct and math.isfinite(self.off_state_pct)):
            raise ValueError(f"off_state_pct = {self.off_state_pct}; must be a finite number "
                             f"> 0 (percent above the table's level)")
        if self.busy_retry_pct is not None and not 0 < self.busy_retry_pct <= 100:
            raise ValueError(f"busy_retry_pct = {self.busy_retry_pct}; must be in (0, 100] "
                             f"(percent) or None: never")
        if self.target_ci_pct is not None and not self.target_ci_pct > 0:
            raise ValueError(f"target_ci_pct = {self.target_ci_pct}; must be > 0 (or None: "
                             f"stop on max_spread_pct)")
        if self.auto_windows and (self.target_ci_pct is None or self.max_windows < 2):
            raise ValueError("auto_windows needs a target_ci_pct (the half-width one window "
                             "must reach) and max_windows >= 2")


@dataclasses.dataclass
class TimingResult:
    """Outcome of :func:`measure` (or :func:`combine_windows`); times in milliseconds."""

    latency_ms: float          # ratio * ref_baseline_ms (raw when there is no reference)
    latency_raw_ms: float      # median over rounds of the per-round minimum
    ref_latency_ms: float      # reference's median round minimum in this window (nan if none)
    spread_pct: float          # (max - min) / median of the per-round estimates, percent
    n_runs: int                # timed runs of the target
    n_rounds: int
    ratio: float = float("nan")  # median over rounds of target / reference (nan if none)
    n_windows: int = 1
    min_ms: float = float("nan")      # fastest round minimum of the target
    ref_min_ms: float = float("nan")  # fastest round minimum of the reference (nan if none)
    ci_pct: float = float("nan")      # half-width of the 90 % interval of the estimate, percent
    seconds: float = float("nan")     # wall time of the timed rounds
    # how busy other processes kept this process's CPUs during the timed rounds, percent of
    # their time (:func:`~ofa_latency.hardware.others_busy_pct`; nan where unknown)
    others_busy_pct: float = float("nan")
    # standard deviation of the windows' estimates, percent (:func:`window_sd_pct`; nan for one)
    window_sd_pct: float = float("nan")

    def columns(self, level_ms: float) -> dict:
        """The measurement columns of a table row: ``latency_ms`` is ``ratio * level_ms``
        (the raw estimate without a reference); empty where there is no reference."""
        def r(v, digits):
            return None if v is None or math.isnan(v) else round(v, digits)

        has_ratio = not math.isnan(self.ratio)
        return {"latency_ms": r(self.ratio * level_ms if has_ratio else self.latency_raw_ms, 5),
                "latency_raw_ms": r(self.latency_raw_ms, 5), "ratio": r(self.ratio, 7),
                "spread_pct": r(self.spread_pct, 3), "ci_pct": r(self.ci_pct, 3),
                "window_sd_pct": r(self.window_sd_pct, 3),
                "n_runs": self.n_runs, "n_rounds": self.n_rounds,
                "timed_s": r(self.seconds, 3), "ref_latency_ms": r(self.ref_latency_ms, 5),
                "ref_min_ms": r(self.ref_min_ms, 5), "ref_baseline_ms": r(level_ms, 5),
                "others_busy_pct": r(self.others_busy_pct, 1)}

    @classmethod
    def from_dict(cls, d: dict) -> "TimingResult":
        """A result from its :func:`dataclasses.asdict` (e.g. sent by a fleet worker); fields
        this version does not know are left out, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _round_min(runner, n):
    return float(np.min(runner.run(n))) * 1e3


def _spread_pct(values):
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med > 0 else float("inf")


def median_interval(values, coverage: float = INTERVAL_COVERAGE) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values``: the order statistics
    ``x(j+1) <= median <= x(n-j)`` with the largest ``j`` whose binomial coverage
    ``1 - 2 P(Bin(n, 1/2) <= j)`` is at least ``coverage`` (the whole range when even that
    of ``j = 0`` falls short, as with fewer than 5 values at 90 %).

    Returns
    -------
    (low, high)
        Equal to the single value for one value.
    """
    x = sorted(float(v) for v in values)
    n = len(x)
    if n == 0:
        raise ValueError("median_interval of no values")
    j, tail = 0, 0.0
    for k in range((n - 1) // 2 + 1):
        tail += math.comb(n, k) / 2.0 ** n  # P(Bin(n, 1/2) <= k)
        if 2 * tail > 1 - coverage:
            break
        j = k
    return x[j], x[n - 1 - j]


def _ci_pct(values) -> float:
    lo, hi = median_interval(values)
    med = statistics.median(values)
    return 100.0 * (hi - lo) / 2 / med if med > 0 else float("inf")


def measure(runner, reference=None, ref_baseline_ms: Optional[float] = None,
            protocol: TimingProtocol = TimingProtocol()) -> TimingResult:
    """Time ``runner`` (an object with ``run(n) -> seconds per run``) in one window.

    Parameters
    ----------
    runner : Runner
        The prepared target.
    reference : Runner, optional
        The prepared reference subnet, timed in the same window for drift correction.
    ref_baseline_ms : float, optional
        A reference level (ms) to express the ratio in; by default this window's own reference
        latency (the table then rescales it with all its windows).
    """
    if ref_baseline_ms is not None and not ref_baseline_ms > 0:
        raise ValueError(f"ref_baseline_ms = {ref_baseline_ms!r}; must be a positive latency")
    if protocol.warmup_runs:
        runner.run(protocol.warmup_runs)
        if reference is not None:
            reference.run(max(1, protocol.warmup_runs // 2))
    tgt, ref = [], []
    before = cpu_snapshot()
    t0 = time.perf_counter()
    while True:
        if reference is not None:
            ref.append(_round_min(reference, protocol.runs_per_round))
        tgt.append(_round_min(runner, protocol.runs_per_round))
        if len(tgt) < protocol.rounds:
            continue
        est = [t / r for t, r in zip(tgt, ref)] if reference is not None else tgt
        if len(tgt) >= protocol.max_rounds or time.perf_counter() - t0 >= protocol.max_seconds:
            break
        if protocol.target_ci_pct is not None:
            if _ci_pct(est) <= protocol.target_ci_pct:
                break
        elif _spread_pct(est) <= protocol.max_spread_pct:
            break
    seconds = time.perf_counter() - t0
    busy = others_busy_pct(before, cpu_snapshot())
    raw = statistics.median(tgt)
    if reference is not None:
        ratio = statistics.median(est)
        ref_ms, ref_min = statistics.median(ref), min(ref)
        latency = ratio * (ref_baseline_ms if ref_baseline_ms is not None else ref_ms)
    else:
        ratio, ref_ms, ref_min, latency = float("nan"), float("nan"), float("nan"), raw
    return TimingResult(latency_ms=latency, latency_raw_ms=raw, ref_latency_ms=ref_ms,
                        spread_pct=_spread_pct(est), n_runs=len(tgt) * protocol.runs_per_round,
                        n_rounds=len(tgt), ratio=ratio, min_ms=min(tgt), ref_min_ms=ref_min,
                        ci_pct=_ci_pct(est), seconds=seconds,
                        others_busy_pct=float("nan") if busy is None else busy)


def _key(r: TimingResult) -> float:
    return r.ratio if np.isfinite(r.ratio) else r.latency_raw_ms


def windows_agree(results: Sequence[TimingResult], agree_pct: float) -> bool:
    """Whether the two closest windows of ``results`` agree within ``agree_pct`` percent."""
    keys = sorted(_key(r) for r in results)
    return len(keys) >= 2 and min(b / a - 1 for a, b in zip(keys, keys[1:])) * 100 <= agree_pct


def combine_windows(results: Sequence[TimingResult]) -> TimingResult:
    """One result from several windows of the same subnet: the closest pair's mean (the only
    window when there is one); runs and rounds are summed, the spread is the pair's own, and
    the interval covers both windows' intervals and half the gap between them (a preparation
    effect the rounds of one window cannot see)."""
    if len(results) == 1:
        return results[0]
    by_key = sorted(results, key=_key)
    gaps = [_key(b) / _key(a) for a, b in zip(by_key, by_key[1:])]
    i = int(np.argmin(gaps))
    a, b = by_key[i], by_key[i + 1]
    mean = lambda x, y: (x + y) / 2  # noqa: E731
    return TimingResult(
        latency_ms=mean(a.latency_ms, b.latency_ms),
        latency_raw_ms=mean(a.latency_raw_ms, b.latency_raw_ms),
        ref_latency_ms=mean(a.ref_latency_ms, b.ref_latency_ms),
        spread_pct=max(a.spread_pct, b.spread_pct, 100 * (gaps[i] - 1)),
        n_runs=sum(r.n_runs for r in results), n_rounds=sum(r.n_rounds for r in results),
        ratio=mean(a.ratio, b.ratio), n_windows=len(results),
        min_ms=min(r.min_ms for r in results), ref_min_ms=min(r.ref_min_ms for r in results),
        ci_pct=max(a.ci_pct, b.ci_pct, 50 * (gaps[i] - 1)),
        seconds=sum(r.seconds for r in results), others_busy_pct=busy_mean(results),
        window_sd_pct=window_sd_pct(results))


def window_sd_pct(results: Sequence[TimingResult]) -> float:
    """The sample standard deviation of the first two windows' estimates (ratios, or raw
    latencies without a reference) in log terms, percent: how much a subnet's measurement
    moves from one fresh preparation to the next (nan for one window). Only the first two:
    they are always both measured, whatever they show, while a third is added only when they
    disagree (:func:`measure_windows`), so counting it would bias the spread low."""
    keys = np.log([_key(r) for r in results[:2]])
    if len(keys) < 2 or not np.all(np.isfinite(keys)):
        return float("nan")
    return float(100 * np.std(keys, ddof=1))


def pooled_window_ci_pct(sd_pct, n_windows: int = 2,
                         coverage: float = INTERVAL_COVERAGE) -> float:
    """The half-width (percent) of a ``coverage`` interval of a mean of ``n_windows``
    windows, from many subnets' window standard deviations ``sd_pct`` pooled (one degree of
    freedom each: the smallest a row with two or more windows has).

    One subnet's two windows estimate their own spread with one degree of freedom, so half
    their gap is a poor interval: windows that agree by chance claim a certainty the host does
    not have. On a host with a steady window-to-window noise, the pooled spread of all the
    subnets a run measured is the better estimate (Student's t with as many degrees of
    freedom as subnets). nan when no value is finite.
    """
    from scipy.stats import t as student_t

    sd = np.asarray(sd_pct, dtype=float).ravel()
    sd = sd[np.isfinite(sd)]
    if sd.size == 0:
        return float("nan")
    pooled = float(np.sqrt(np.mean(sd ** 2)))
    q = float(student_t.ppf(0.5 + coverage / 2, sd.size))
    return q * pooled / math.sqrt(n_windows)


def busy_mean(results: Sequence[TimingResult]) -> float:
    """The windows' ``others_busy_pct`` averaged over their timed seconds, percent (nan where
    no window knows it)."""
    known = [(r.others_busy_pct, r.seconds if r.seconds > 0 else 1.0) for r in results
             if np.isfinite(r.others_busy_pct)]
    if not known:
        return float("nan")
    return round(sum(p * w for p, w in known) / sum(w for _, w in known), 1)


def measure_windows(prepare, reference=None, protocol: TimingProtocol = TimingProtocol(),
                    windows: Optional[int] = None) -> list[TimingResult]:
    """Time a subnet in ``windows`` windows (default ``protocol.windows``; e.g. a
    :class:`WindowChooser`'s), each with a fresh copy from ``prepare()`` (a callable returning
    a runner), adding windows up to ``protocol.max_windows`` while no two agree; combine them
    with :func:`combine_windows`."""
    want = protocol.windows if windows is None else windows
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise ValueError(f"windows = {want!r}; must be an int >= 1")
    out = []
    while True:
        runner = prepare()
        out.append(measure(runner, reference, None, protocol))
        del runner
        n = len(out)
        if n >= max(protocol.max_windows, want) or (n >= want and (
                n == 1 or windows_agree(out, protocol.agree_pct))):
            return out


class WindowChooser:
    """How many windows each subnet of a table gets.

    Without ``protocol.auto_windows``: ``protocol.windows``. With it, the table learns from
    itself whether one window is enough on this host. A subnet's measurement moves from one
    fresh preparation to the next by more than its own rounds show (BENCHMARKS.md sections
    14.14-14.15: one window's rows held 64-92 % of the retest differences within their 90 %
    intervals on a noisy host, two windows' 90-98 %). So the first
    :data:`AUTO_FIRST_SUBNETS` subnets, and after them every :data:`AUTO_CHECK_EVERY`-th, are
    timed in two windows; their first two windows' spreads (:func:`window_sd_pct`), pooled,
    give the half-width of a one-window measurement (:func:`pooled_window_ci_pct` with one
    window, :attr:`one_window_ci_pct`). While it is wider than ``protocol.target_ci_pct`` (the
    half-width a row should reach), every subnet gets two windows; otherwise
    ``protocol.windows``.

    Parameters
    ----------
    protocol : TimingProtocol
    window_sds : iterable of float
        ``window_sd_pct`` of the table's rows already measured in this setting (a resumed
        table keeps what it learnt; nan for one-window rows).
    """

    def __init__(self, protocol: TimingProtocol, window_sds=()):
        if protocol.auto_windows:
            # the pooled half-width needs scipy.stats: imported now, before anything is timed,
            # not in the middle of a run, where a Ctrl-C during the import made the process
            # end by SIGINT after it had returned its exit code 130 (3 times in 8)
            import scipy.stats  # noqa: F401
        self.protocol = protocol
        self.sds = [float(v) for v in window_sds if np.isfinite(v)]
        self.timed = 0       # subnets this chooser has seen timed
        self.two_windows = 0  # of them, timed in two windows or more

    @property
    def one_window_ci_pct(self) -> float:
        """The pooled half-width (percent) of a one-window measurement; nan before any
        subnet was timed twice."""
        return pooled_window_ci_pct(self.sds, n_windows=1) if self.sds else float("nan")

    def next_windows(self) -> int:
        """Windows for the next subnet."""
        p = self.protocol
        if not p.auto_windows:
            return p.windows
        two = max(2, p.windows)
        if len(self.sds) < AUTO_FIRST_SUBNETS or self.timed % AUTO_CHECK_EVERY == 0:
            return two
        return two if self.one_window_ci_pct > p.target_ci_pct else p.windows

    def add(self, windows: Sequence[TimingResult]) -> None:
        """Note a subnet's windows (as :func:`measure_windows` returned them)."""
        self.timed += 1
        self.two_windows += len(windows) >= 2
        sd = window_sd_pct(windows)
        if np.isfinite(sd):
            self.sds.append(sd)

    def summary(self) -> str:
        """One line: what the chooser saw and chose (empty without ``auto_windows``)."""
        if not self.protocol.auto_windows:
            return ""
        w = self.one_window_ci_pct
        return (f"windows auto: {self.two_windows} of {self.timed} subnets timed in two "
                f"windows; one window moves a row by +-" + ("?" if not np.isfinite(w) else
                                                            f"{w:.2f}") +
                f" % (90 %, pooled over {len(self.sds)} subnets timed twice) against the target "
                f"+-{self.protocol.target_ci_pct:g} %")
