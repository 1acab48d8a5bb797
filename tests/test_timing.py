import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ofa_latency.profiling import Runner, TimingProtocol, measure
from ofa_latency.profiling.timing import (TimingResult, combine_windows, median_interval,
                                         pooled_window_ci_pct, window_sd_pct, windows_agree)


class Machine:
    """A shared clock whose speed changes between levels, as on a noisy host."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.slow = 1.0
        self.calls = 0

    def tick(self):
        self.calls += 1
        if self.calls % 7 == 0:  # level switch every few rounds
            self.slow = self.rng.choice([1.0, 1.15, 1.3])
        return self.slow * (1 + self.rng.exponential(0.005))


class Net(Runner):
    def __init__(self, machine, seconds):
        self.m, self.s = machine, seconds

    def run(self, n):
        return [self.s * self.m.tick() for _ in range(n)]


def test_protocol_validation():
    with pytest.raises(ValueError, match="rounds"):
        TimingProtocol(rounds=0)
    with pytest.raises(ValueError, match="max_rounds"):
        TimingProtocol(rounds=5, max_rounds=4)
    with pytest.raises(ValueError, match="max_spread_pct"):
        TimingProtocol(max_spread_pct=0)
    with pytest.raises(ValueError, match="max_windows"):
        TimingProtocol(windows=3, max_windows=2)
    with pytest.raises(ValueError, match="windows = 0"):
        TimingProtocol(windows=0)


def test_drift_correction_cancels_machine_speed_levels():
    m = Machine(1)
    ref, tgt = Net(m, 0.010), Net(m, 0.025)
    res = measure(tgt, ref, ref_baseline_ms=10.0)
    assert res.latency_ms == pytest.approx(25.0, rel=0.02)
    assert res.n_runs == res.n_rounds * TimingProtocol().runs_per_round
    assert res.n_rounds >= TimingProtocol().rounds
    # the uncorrected estimate carries the machine's slow levels: it is off where the
    # corrected one is not
    assert abs(res.latency_raw_ms / 25.0 - 1) > 0.05
    m2 = Machine(1)
    raw = measure(Net(m2, 0.025), None)
    assert raw.latency_ms == raw.latency_raw_ms and np.isnan(raw.ref_latency_ms)


def test_ratio_is_the_measurement():
    m = Machine(2)
    res = measure(Net(m, 0.030), Net(m, 0.010))
    assert res.ratio == pytest.approx(3.0, rel=0.02)
    # without a level given, milliseconds are the ratio times this window's reference
    assert res.latency_ms == pytest.approx(res.ratio * res.ref_latency_ms)
    with pytest.raises(ValueError, match="ref_baseline_ms"):
        measure(Net(m, 0.01), Net(m, 0.01), -1.0)


def _result(ratio):
    return TimingResult(latency_ms=10 * ratio, latency_raw_ms=10 * ratio, ref_latency_ms=10.0,
                        spread_pct=1.0, n_runs=18, n_rounds=6, ratio=ratio)


def test_windows_keep_the_closest_pair():
    assert windows_agree([_result(1.0), _result(1.03)], agree_pct=4)
    assert not windows_agree([_result(1.0), _result(1.25)], agree_pct=4)
    # a third window that agrees with the first: the slow preparation is dropped
    res = combine_windows([_result(1.0), _result(1.25), _result(1.01)])
    assert res.ratio == pytest.approx(1.005) and res.n_windows == 3
    assert res.n_runs == 54 and res.n_rounds == 18
    assert combine_windows([_result(1.2)]).ratio == 1.2


def test_noisy_rounds_trigger_more_rounds():
    class Jumpy(Runner):
        def __init__(self):
            self.i = 0

        def run(self, n):
            self.i += 1
            return [0.01 * (2.0 if self.i % 2 else 1.0)] * n

    p = TimingProtocol(rounds=4, max_rounds=9)
    res = measure(Jumpy(), None, protocol=p)
    assert res.n_rounds == 9 and res.spread_pct > p.max_spread_pct


def test_median_interval_covers_the_median_at_its_coverage():
    from scipy.stats import binom

    rng = np.random.default_rng(0)
    for n in (5, 10, 20, 40):
        hits, width = 0, None
        for _ in range(2000):
            x = rng.lognormal(0.0, 0.1, n)
            lo, hi = median_interval(x)
            hits += lo <= 1.0 <= hi  # the true median of lognormal(0, s) is 1
            width = np.searchsorted(np.sort(x), lo)  # order statistics dropped per side
        exact = 1 - 2 * binom.cdf(width, n, 0.5)  # the coverage of [x(j+1), x(n-j)]
        assert exact >= 0.9 and 1 - 2 * binom.cdf(width + 1, n, 0.5) < 0.9  # the narrowest
        assert abs(hits / 2000 - exact) < 0.02, (n, hits, exact)
    assert median_interval([3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError):
        median_interval([])


class _Noisy(Runner):
    """Runs whose time is 10 ms times (1 + a uniform draw of +-``noise``)."""

    def __init__(self, noise, seed=0):
        self.noise, self.rng = noise, np.random.default_rng(seed)

    def run(self, n):
        return list(0.01 * (1 + self.noise * self.rng.uniform(-1, 1, n)))


def test_rounds_adapt_to_the_noise_until_the_interval_is_tight():
    p = TimingProtocol(rounds=6, max_rounds=40, target_ci_pct=1.0, max_seconds=60)
    quiet = measure(_Noisy(0.005), _Noisy(0.005, 1), protocol=p)
    noisy = measure(_Noisy(0.15), _Noisy(0.15, 1), protocol=p)
    assert quiet.n_rounds == 6 and quiet.ci_pct <= 1.0
    assert noisy.n_rounds > quiet.n_rounds
    assert noisy.ci_pct <= 1.0 or noisy.n_rounds == 40
    capped = measure(_Noisy(0.15), _Noisy(0.15, 1),
                     protocol=TimingProtocol(rounds=6, max_rounds=40, max_seconds=1e-9))
    assert capped.n_rounds == 6  # the device-time cap stops it after the first rounds
    assert np.isfinite(noisy.seconds) and noisy.seconds > 0
    with pytest.raises(ValueError, match="target_ci_pct"):
        TimingProtocol(target_ci_pct=0)
    with pytest.raises(ValueError, match="max_seconds"):
        TimingProtocol(max_seconds=0)


def test_combined_windows_carry_their_gap_in_the_interval():
    a = TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.00, ci_pct=0.5)
    b = TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.04, ci_pct=0.7)
    c = combine_windows([a, b])
    assert c.ratio == pytest.approx(1.02) and c.ci_pct == pytest.approx(2.0)
    assert c.columns(10.0)["ci_pct"] == 2.0
    assert c.window_sd_pct == pytest.approx(100 * np.std(np.log([1.0, 1.04]), ddof=1))
    assert c.columns(10.0)["window_sd_pct"] == pytest.approx(c.window_sd_pct, abs=1e-3)
    # a third window is added only when the first two disagree: the spread is theirs alone
    three = combine_windows([a, b, TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.2)])
    assert three.window_sd_pct == pytest.approx(c.window_sd_pct)
    assert np.isnan(combine_windows([a]).window_sd_pct) and np.isnan(window_sd_pct([a]))
    assert combine_windows([a]).columns(10.0)["window_sd_pct"] is None


def test_pooled_window_interval_covers_a_host_window_noise():
    """Windows whose ratios move by 3 % (log-normal) from one preparation to the next: a mean
    of two is within the pooled half-width of the truth about 90 % of the time, while half
    the pair's own gap covers it far less often (one degree of freedom each)."""
    rng = np.random.default_rng(0)
    pairs = rng.normal(0, 0.03, size=(4000, 2))
    sd = 100 * np.std(pairs, axis=1, ddof=1)
    err = 100 * np.abs(pairs.mean(axis=1))
    own = 100 * np.abs(pairs[:, 0] - pairs[:, 1]) / 2
    covered = []
    for block in range(200):  # runs of 20 subnets, each pooling its own
        sel = slice(20 * block, 20 * block + 20)
        covered.append(err[sel] <= pooled_window_ci_pct(sd[sel], n_windows=2))
    cover = float(np.mean(covered))
    assert 0.87 <= cover <= 0.93
    assert float(np.mean(err <= own)) < 0.6
    assert pooled_window_ci_pct([np.nan, 3.0], n_windows=2) == pytest.approx(
        6.314 * 3 / np.sqrt(2), rel=1e-3)  # t(0.95, 1 degree of freedom)
    assert np.isnan(pooled_window_ci_pct([np.nan])) and np.isnan(pooled_window_ci_pct([]))


class Sleeper(Runner):
    """A runner that waits instead of computing: its CPU's busy time is someone else's."""

    def run(self, n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            time.sleep(0.01)
            out.append(time.perf_counter() - t)
        return out


def test_a_window_says_how_busy_other_processes_kept_its_cpu():
    from ofa_latency.hardware import cpu_snapshot

    if cpu_snapshot() is None or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux /proc/stat and CPU affinity")
    proto = TimingProtocol(rounds=5, max_rounds=5, warmup_runs=0)
    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(loop.pid, {cpu})
        os.sched_setaffinity(0, {cpu})  # the window's CPUs are this process's
        time.sleep(0.2)
        busy = measure(Sleeper(), Sleeper(), protocol=proto)
    finally:
        loop.kill()
        loop.wait()
        os.sched_setaffinity(0, old)
    assert busy.others_busy_pct > 60, busy.others_busy_pct
    assert busy.columns(10.0)["others_busy_pct"] == round(busy.others_busy_pct, 1)


def test_combined_windows_average_how_busy_others_were_over_their_seconds():
    a = TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.00, seconds=3.0, others_busy_pct=0.0)
    b = TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.01, seconds=1.0, others_busy_pct=80.0)
    assert combine_windows([a, b]).others_busy_pct == 20.0
    unknown = TimingResult(1.0, 1.0, 1.0, 2.0, 9, 3, ratio=1.01, seconds=1.0)
    assert combine_windows([a, unknown]).others_busy_pct == 0.0  # only the windows that know
    assert combine_windows([unknown, unknown]).columns(10.0)["others_busy_pct"] is None
    # a worker of another version sends fields this one does not know, or lacks new ones
    sent = {**dataclasses.asdict(b), "joules": 3.0}
    assert TimingResult.from_dict(sent) == b
    sent.pop("others_busy_pct")
    assert np.isnan(TimingResult.from_dict(sent).others_busy_pct)


def _pair(gap_pct):
    """Two windows of one subnet whose ratios are ``gap_pct`` percent apart."""
    return [_result(1.0), _result(1.0 + gap_pct / 100)]


def test_auto_windows_time_two_while_one_window_moves_by_more_than_the_target():
    from ofa_latency.profiling.timing import (AUTO_CHECK_EVERY, AUTO_FIRST_SUBNETS,
                                             WindowChooser)

    with pytest.raises(ValueError, match="auto_windows"):
        TimingProtocol(auto_windows=True, target_ci_pct=None)
    with pytest.raises(ValueError, match="auto_windows"):
        TimingProtocol(auto_windows=True, max_windows=1)
    assert WindowChooser(TimingProtocol(windows=2)).next_windows() == 2  # not auto: as set
    assert WindowChooser(TimingProtocol()).summary() == ""
    p = TimingProtocol(auto_windows=True, target_ci_pct=1.0)
    for gap, later in ((0.2, 1), (3.0, 2)):  # preparations 0.2 % apart, or 3 %
        ch = WindowChooser(p)
        assert np.isnan(ch.one_window_ci_pct)
        chosen = []
        for _ in range(40):
            n = ch.next_windows()
            chosen.append(n)
            ch.add(_pair(gap) if n == 2 else [_result(1.0)])
        assert chosen[:AUTO_FIRST_SUBNETS] == [2] * AUTO_FIRST_SUBNETS
        rest = chosen[AUTO_FIRST_SUBNETS:]
        if later == 1:  # one window is enough: two only for every AUTO_CHECK_EVERY-th
            assert ch.one_window_ci_pct < 1.0
            assert rest.count(2) == len([k for k in range(AUTO_FIRST_SUBNETS, 40)
                                         if k % AUTO_CHECK_EVERY == 0])
        else:
            assert ch.one_window_ci_pct > 1.0 and set(rest) == {2}
        assert ch.timed == 40 and ch.two_windows == chosen.count(2)
        assert f"{ch.two_windows} of 40 subnets" in ch.summary()
    # a resumed table keeps what its rows showed: wide spreads, two windows from the start on
    ch = WindowChooser(p, [2.0] * 10 + [float("nan")] * 5)
    assert len(ch.sds) == 10 and ch.next_windows() == 2
    ch.timed = 1
    assert ch.next_windows() == 2
    assert WindowChooser(p, [0.1] * 10).one_window_ci_pct < 0.3
