import numpy as np
import pytest

from ofa_latency.profiling import Runner, TimingProtocol, measure
from ofa_latency.profiling.timing import calibrate


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


def test_reference_needs_baseline():
    m = Machine()
    with pytest.raises(ValueError, match="ref_baseline_ms"):
        measure(Net(m, 0.01), Net(m, 0.01), None)


def test_calibrate_takes_the_fast_level():
    m = Machine(3)
    assert calibrate(Net(m, 0.010)) == pytest.approx(10.0, rel=0.03)


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
