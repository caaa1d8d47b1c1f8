"""Phi as Akka's PhiAccrualFailureDetector (issue 11, item 2), through the monitor on both
engines in virtual time, and the window kernels (compiled and pure) directly.

The reference, `AkkaDetector` below, is a scalar transcription of Akka's detector
(akka.remote.PhiAccrualFailureDetector with its HeartbeatHistory): seeds mean -/+ mean/4
from first_heartbeat_estimate, an interval added only if the agent was available when it
ended (phi < threshold, judged against the window as it was), max_sample_size intervals
kept, min_std_deviation and acceptable_heartbeat_pause as Akka applies them, and Akka's
own phi formula. Two liberties, both on Akka's side of the line: it is fed the intervals
(ms, floats) instead of reading a clock, and its sums are kept exact with fractions, as
Akka's integer-millisecond sums are (variance = exact sum of squares / n - mean^2).

Tolerance: phi rtol 1e-9 with atol 1e-12 where Akka's phi is below 300; above, Akka's exp
goes subnormal then underflows (phi = +inf), and only "finite and >= 299" is asserted.
Integers (window counts, seeds, intervals left out) must be equal. The Akka spec's
scenarios (AccrualFailureDetectorSpec) are ported with this project's numbers.

`python tests/test_phi_akka.py` prints the largest difference to the reference per scenario.
"""
from __future__ import annotations

import itertools
import math
import sys
from collections import deque
from fractions import Fraction
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HeartbeatMonitor, VirtualClock
from moai_flow_fast.analytics import _window_py
from moai_flow_fast.analytics._phi import phi as phi_formula

RTOL, ATOL, BIG = 1e-9, 1e-12, 300.0
WALL = 1_700_000_000.0
A, B = 1.5976, 0.070566


# ----------------------------------------------------------------------------------------
# The reference
# ----------------------------------------------------------------------------------------

def akka_phi_formula(time_diff, mean, std):
    """Akka's private phi(timeDiff, mean, stdDeviation), with the JVM's exp and log10."""
    y = (time_diff - mean) / std
    x = -y * (A + B * y * y)
    e = math.exp(x) if x < 709.78 else math.inf
    if time_diff > mean:
        r = e / (1.0 + e)
        return math.inf if r == 0.0 else -math.log10(r)
    r = 1.0 - 1.0 / (1.0 + e)
    return math.inf if r == 0.0 else -math.log10(r)


class AkkaDetector:
    """Akka's PhiAccrualFailureDetector for one agent (see the module docstring)."""

    def __init__(self, *, threshold=8.0, max_sample_size=1000, min_std_deviation_ms=100.0,
                 acceptable_heartbeat_pause_ms=0.0, first_heartbeat_estimate_ms=1000.0):
        self.threshold = threshold
        self.max_sample_size = max_sample_size
        self.min_std = min_std_deviation_ms
        self.pause = acceptable_heartbeat_pause_ms
        self.first = first_heartbeat_estimate_ms
        self.intervals: deque[Fraction] = deque()
        self.total = Fraction(0)
        self.squares = Fraction(0)
        self.started = False
        self.seeds_left = 0            # seeds still in the window
        self.left_out = 0              # intervals that ended an outage

    def _append(self, interval):       # HeartbeatHistory :+ (drops the oldest when full)
        v = Fraction(interval)
        if len(self.intervals) >= self.max_sample_size:
            old = self.intervals.popleft()
            self.total -= old
            self.squares -= old * old
            self.seeds_left = max(self.seeds_left - 1, 0)
        self.intervals.append(v)
        self.total += v
        self.squares += v * v

    def heartbeat(self, interval_ms=None):
        """The first heartbeat (interval None), or one `interval_ms` after the previous."""
        if not self.started:
            self.started = True
            std = self.first / 4.0
            self._append(self.first - std)
            self._append(self.first + std)
            self.seeds_left = min(2, self.max_sample_size)
        elif self.phi(interval_ms) < self.threshold:         # isAvailable
            self._append(interval_ms)
        else:
            self.left_out += 1

    def mean_std(self):
        n = len(self.intervals)
        mean = self.total / n
        return float(mean), math.sqrt(float(self.squares / n - mean * mean))

    def phi(self, elapsed_ms):
        if not self.started:
            return 0.0
        mean, std = self.mean_std()
        return akka_phi_formula(elapsed_ms, mean + self.pause, max(std, self.min_std))


def replay(intervals_ms, **params):
    """An AkkaDetector after a first heartbeat and then these intervals."""
    d = AkkaDetector(**params)
    d.heartbeat()
    for iv in intervals_ms:
        d.heartbeat(float(iv))
    return d


def phi_difference(got, want):
    """(relative difference where Akka's phi < BIG, True if the rest agree as documented)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    small = want < BIG
    rel = np.abs(got[small] - want[small]) / np.maximum(np.abs(want[small]), ATOL / RTOL)
    tail = bool(np.isfinite(got[~small]).all() and (got[~small] >= BIG - 1).all())
    return (float(rel.max()) if rel.size else 0.0), tail


# report(): the largest difference seen by assert_phi, per scenario (None: not recording)
DIFFS: dict[str, float] | None = None
CURRENT = ""


def assert_phi(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if DIFFS is not None:
        DIFFS[CURRENT] = max(DIFFS.get(CURRENT, 0.0), phi_difference(got, want)[0])
    small = want < BIG
    np.testing.assert_allclose(got[small], want[small], rtol=RTOL, atol=ATOL)
    assert np.isfinite(got[~small]).all() and (got[~small] >= BIG - 1).all()


# ----------------------------------------------------------------------------------------
# A monitor driven in virtual time
# ----------------------------------------------------------------------------------------

class Driven:
    """One agent "a" of a virtual-time monitor, heartbeating after the given intervals."""

    def __init__(self, engine, intervals_ms=(), *, history_size=1000, interval_ms=1000,
                 started=True, wall_start=WALL):
        self.history_size = history_size
        self.clock = VirtualClock(start=10.0, wall_start=wall_start)
        self.m = HeartbeatMonitor(interval_ms=interval_ms, history_size=history_size,
                                  clock=self.clock, engine=engine)
        self.m.start_monitoring("a")
        if started:
            self.m.record_heartbeat("a")
        self.last_ns = self.clock.monotonic_ns()
        self.beat(intervals_ms)

    def beat(self, intervals_ms):
        """Heartbeats, each `iv` ms after the previous one."""
        for iv in intervals_ms:
            self.clock.set((self.last_ns + round(iv * 1e6)) / 1e9)
            self.m.record_heartbeat("a")
            self.last_ns = self.clock.monotonic_ns()

    def ring_intervals(self):
        """The intervals the ring holds (ms), as the kernels compute them."""
        ts = np.array([r["timestamp"] for r in self.m.get_heartbeat_history("a")])
        return np.diff(ts) * 1000.0

    def reference(self, **params):
        """The reference fed the heartbeats the ring holds (all of them while it has not
        wrapped: then it is Akka's detector after the same heartbeats)."""
        return replay(self.ring_intervals(), **akka_params(self.history_size, **params))

    def phi_after(self, silence_ms, **params):
        """Phi `silence_ms` after the last heartbeat (the clock moves there)."""
        self.clock.set((self.last_ns + round(silence_ms * 1e6)) / 1e9)
        elapsed = (self.clock.monotonic_ns() - self.last_ns) / 1e6
        return float(self.m.phi(["a"], **params)[0]), elapsed


def akka_params(history_size, **params):
    params = dict(params)
    params.setdefault("first_heartbeat_estimate_ms", 1000.0)
    return {"max_sample_size": max(history_size - 1, 1), **params}


# ----------------------------------------------------------------------------------------
# The formula: Akka's spec values (the cumulative distribution, realistic values, outliers)
# ----------------------------------------------------------------------------------------

def test_formula_is_a_good_enough_normal_cdf():
    # 1 - 10^-phi approximates the normal CDF at (elapsed - mean) / std
    for elapsed, cdf in [(0, 0.5), (6, 0.7257), (15, 0.9332), (20, 0.97725),
                         (25, 0.99379), (35, 0.99977), (40, 0.99997)]:
        p = float(phi_formula(float(elapsed), 0.0, 10.0, 5, min_std_deviation_ms=1e-9))
        assert 1 - 10 ** -p == pytest.approx(cdf, abs=1e-3 if elapsed < 40 else 1e-4)


def test_formula_realistic_values_and_outliers():
    # a 1000 ms mean with a 100 ms deviation
    for elapsed, expected in [(0, 0.0), (500, 0.1), (1000, 0.3), (1200, 1.6), (1400, 4.7),
                              (1600, 10.8), (1700, 15.3)]:
        assert float(phi_formula(float(elapsed), 1000.0, 100.0, 5)) == \
            pytest.approx(expected, abs=0.1)
    # ten deviations out: large but finite; far below the mean: 0
    assert float(phi_formula(10.0, 0.0, 1.0, 5, min_std_deviation_ms=1.0)) == \
        pytest.approx(38.0, abs=1.0)
    assert float(phi_formula(-25.0, 0.0, 1.0, 5, min_std_deviation_ms=1.0)) == 0.0


# ----------------------------------------------------------------------------------------
# The spec's scenarios, through the monitor
# ----------------------------------------------------------------------------------------

def test_fresh_detector_is_zero(engine):
    d = Driven(engine, started=False)
    for silence in (0.0, 1000.0, 60_000.0):
        d.clock.advance(silence / 1000.0)
        assert float(d.m.phi(["a"])[0]) == 0.0


def test_one_heartbeat_is_judged_by_the_estimate(engine):
    # seeds 750 and 1250: mean 1000, std 250
    d = Driven(engine)
    params = {"min_std_deviation_ms": 10.0}
    one, _ = d.phi_after(1000.0, **params)
    two, _ = d.phi_after(2000.0, **params)
    three, _ = d.phi_after(3000.0, **params)
    assert one == pytest.approx(math.log10(2.0), rel=1e-9)      # y = 0
    assert two == pytest.approx(4.74, abs=0.01)                 # y = 4
    assert three > 15.0                                         # y = 8
    ref = d.reference(**params)
    assert_phi([one, two, three], [ref.phi(1000.0), ref.phi(2000.0), ref.phi(3000.0)])
    # the estimate is a keyword (default: the monitor's default interval)
    assert d.phi_after(3000.0, first_heartbeat_estimate_ms=3000.0)[0] == \
        pytest.approx(math.log10(2.0), rel=1e-9)


def test_phi_increases_with_silence(engine):
    d = Driven(engine, [100.0, 100.0, 100.0])
    got = [d.phi_after(s)[0] for s in range(0, 1500, 25)]
    assert got[0] > 0.0 and all(b > a for a, b in itertools.pairwise(got))


def test_available_after_successful_heartbeats_dead_after_missed_ones(engine):
    d = Driven(engine, [1000.0, 100.0, 100.0])
    ref = d.reference(threshold=3.0)
    p, elapsed = d.phi_after(100.0, threshold=3.0)
    assert p < 3.0 and ref.phi(elapsed) < 3.0 and p == pytest.approx(ref.phi(elapsed), rel=RTOL)
    p, elapsed = d.phi_after(7000.0, threshold=3.0)
    assert p >= 3.0
    assert_phi([p], [ref.phi(elapsed)])


def test_outage_interval_is_left_out(engine):
    """1 s heartbeats, a 5-minute outage, recovery, then 7 s of silence: dead (the 300 s
    interval is not in the window; with it the silence would look normal, phi 0.30)."""
    regular = [1000.0] * 60
    after = [100.0, 900.0, 100.0]
    params = {"acceptable_heartbeat_pause_ms": 3000.0}
    d = Driven(engine, regular, history_size=100)
    dead, _ = d.phi_after(300_000.0, **params)
    assert dead > 1000.0                                        # during the outage
    d.beat([300_000.0])
    for iv in after:
        assert d.phi_after(iv, **params)[0] < 8.0             # available again
        d.beat([iv])
    silent, elapsed = d.phi_after(7000.0, **params)
    ref = d.reference(**params)
    assert ref.left_out == 1 and len(d.ring_intervals()) == len(regular) + 4
    assert silent >= 8.0 and silent > 100.0                     # dead again
    assert_phi([silent], [ref.phi(elapsed)])
    # the window is the regular intervals: the outage one would have made it look normal
    everything = [*regular, 300_000.0, *after]
    with_outage = phi_formula(elapsed, np.mean(everything), np.std(everything),
                              len(everything), acceptable_heartbeat_pause_ms=3000.0)
    assert float(with_outage) < 1.0


def test_acceptable_pause(engine):
    beats = [1000.0, 1000.0, 1000.0]
    d = Driven(engine, beats)
    params = {"acceptable_heartbeat_pause_ms": 3000.0}
    assert d.phi_after(4000.0, **params)[0] < 8.0               # a 4 s gap is accepted
    d.beat([4000.0, 1000.0, 1000.0])
    ref = d.reference(**params)
    assert ref.left_out == 0
    for silence in (1000.0, 4000.0):
        p, elapsed = d.phi_after(silence, **params)
        assert p < 8.0
        assert_phi([p], [ref.phi(elapsed)])
    # ... but not a longer one
    d2 = Driven(engine, [1000.0] * 5 + [500.0, 500.0])
    p, elapsed = d2.phi_after(6000.0, **params)
    ref2 = d2.reference(**params)
    assert p >= 8.0
    assert_phi([p], [ref2.phi(elapsed)])


def test_window_holds_history_size_minus_one(engine):
    # history_size 4: a window of 3 intervals; once the 1 s ones are pushed out by 1.1 s
    # ones, phi at 1.1 s equals phi at 1 s before (both y = 0).
    d = Driven(engine, [1000.0] * 4, history_size=4, wall_start=0.0)
    before, _ = d.phi_after(1000.0)
    d.beat([1100.0] * 3)
    after, _ = d.phi_after(1100.0)
    assert before == pytest.approx(math.log10(2.0), rel=1e-9)
    assert after == pytest.approx(before, rel=1e-9)
    # a longer memory still holds the 1 s intervals (and the seeds)
    d2 = Driven(engine, [1000.0] * 4 + [1100.0] * 3, history_size=100)
    assert d2.phi_after(1100.0)[0] > 0.4


def test_seeds_stay_until_pushed_out(engine):
    # the numbers: beats at 0, 1, 2.2 s: phi 36.7 at 5.2 s (223 without seeds)
    d = Driven(engine, [1000.0, 1200.0])
    p, elapsed = d.phi_after(3000.0)
    assert p == pytest.approx(36.7, abs=0.05)
    assert_phi([p], [d.reference().phi(elapsed)])
    # 50 beats at 1 s, min std 1 ms: 0.81 1.05 s after the last (3865 without seeds)
    d = Driven(engine, [1000.0] * 49)
    p, elapsed = d.phi_after(1050.0, min_std_deviation_ms=1.0)
    assert p == pytest.approx(0.81, abs=0.005)
    assert_phi([p], [d.reference(min_std_deviation_ms=1.0).phi(elapsed)])
    # with a 19-interval window the seeds are gone after 19 intervals: std 0 -> 1 ms
    d = Driven(engine, [1000.0] * 49, history_size=20)
    p, elapsed = d.phi_after(1050.0, min_std_deviation_ms=1.0)
    assert p > 1000.0
    ref = d.reference(min_std_deviation_ms=1.0)   # the ring: the last 19 intervals
    assert ref.seeds_left == 0 and ref.max_sample_size == 19
    assert_phi([p], [ref.phi(elapsed)])


def test_mean_and_variance_of_the_window(engine):
    """Akka's HeartbeatHistory figures (100, 200, 125, 340, 130: mean 179, variance 7584),
    as the window the monitor's phi uses (history_size 6: the seeds are pushed out)."""
    d = Driven(engine, [100.0, 200.0, 125.0, 340.0, 130.0], history_size=6, wall_start=0.0)
    windows = d.m._engine.interval_stats(d.m.handles(["a"]), -math.inf, math.inf,
                                         partial(d.m._fleet._windows,
                                                 first_heartbeat_estimate_ms=150.0))
    count, mean, std, seeds, left_out = windows[0, :5]
    assert (count, seeds, left_out) == (5, 0, 0)
    assert mean == pytest.approx(179.0, abs=1e-6)
    assert std * std == pytest.approx(7584.0, abs=1e-4)


def test_threshold_decides_what_is_left_out(engine):
    # a 1.4 s gap in 1 s heartbeats (phi about 4.5 when it ends): an outage for
    # threshold 3, not for 16
    beats = [1000.0] * 10 + [1400.0] + [1000.0] * 3
    for threshold in (3.0, 16.0):
        d = Driven(engine, beats)
        ref = d.reference(threshold=threshold)
        assert ref.left_out == (1 if threshold == 3.0 else 0)
        p, elapsed = d.phi_after(1500.0, threshold=threshold)
        assert_phi([p], [ref.phi(elapsed)])
    d = Driven(engine, beats)
    assert d.phi_after(1500.0, threshold=3.0)[0] > d.phi_after(1500.0, threshold=16.0)[0]


@pytest.mark.parametrize("name, value, exc", [
    ("threshold", 0.0, ValueError), ("threshold", -1.0, ValueError),
    ("threshold", math.inf, ValueError), ("threshold", "8", TypeError),
    ("threshold", None, TypeError), ("threshold", True, TypeError)])
def test_bad_threshold(engine, name, value, exc):
    d = Driven(engine, [1000.0])
    with pytest.raises(exc, match=name):
        d.m.phi(**{name: value})
    with pytest.raises(exc, match=name):
        d.m.snapshot(**{name: value})


# ----------------------------------------------------------------------------------------
# Random heartbeat sequences through the monitor (hypothesis, seeded)
# ----------------------------------------------------------------------------------------

def _interval(draw_kind, base, jitter):
    return {"regular": base * (1.0 + jitter), "burst": base * 0.05 * (1.0 + jitter),
            "late": base * 2.5 * (1.0 + jitter), "outage": base * 40.0 * (1.0 + jitter)
            }[draw_kind]


sequences = st.lists(
    st.tuples(st.sampled_from(["regular"] * 6 + ["burst", "late", "outage"]),
              st.floats(-0.3, 0.3)), min_size=0, max_size=45)
detector_params = st.fixed_dictionaries({
    "threshold": st.sampled_from([0.2, 1.0, 3.0, 8.0, 16.0]),
    "min_std_deviation_ms": st.sampled_from([1.0, 10.0, 100.0]),
    "acceptable_heartbeat_pause_ms": st.sampled_from([0.0, 500.0, 3000.0]),
    "first_heartbeat_estimate_ms": st.sampled_from([200.0, 1000.0, 4000.0]),
})


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(seq=sequences, params=detector_params,
       history_size=st.sampled_from([2, 3, 6, 20, 100]),
       base=st.sampled_from([100.0, 1000.0]),
       silences=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=4))
def test_random_sequences_match_akka(engine, seq, params, history_size, base, silences):
    check_random_sequence(engine, seq, params, history_size, base, silences)


def check_random_sequence(engine, seq, params, history_size, base, silences):
    """Phi of one random heartbeat sequence against the reference, at a few silences;
    returns the largest relative difference."""
    d = Driven(engine, [_interval(k, base, j) for k, j in seq], history_size=history_size)
    ring = d.ring_intervals()
    # While the ring holds every heartbeat this is Akka's detector after the same
    # heartbeats; once it has wrapped, the documented replay of the ring.
    assert len(ring) == min(len(seq), history_size - 1)
    ref = d.reference(**params)
    got, want = [], []
    for s in sorted(silences):            # (the clock only moves forward)
        p, elapsed = d.phi_after(s * base, **params)
        got.append(p)
        want.append(ref.phi(elapsed))
    assert_phi(got, want)
    return phi_difference(got, want)[0]


# ----------------------------------------------------------------------------------------
# The window kernels directly: many rings, wrapped at random heads, both kernels
# ----------------------------------------------------------------------------------------

def window_kernels():
    kernels = [("pure", _window_py.phi_windows)]
    try:
        from moai_flow_fast.analytics import _stats_c
    except ImportError:
        return kernels
    return [*kernels, ("compiled", _stats_c.phi_windows)]


def random_rings(rng, n, H):
    """n rings of capacity H: random counts, heads and heartbeat sequences (Unix s)."""
    counts = rng.integers(0, H + 1, n).astype(np.int32)
    counts[: n // 10] = H                                     # full rings
    heads = rng.integers(0, H, n).astype(np.int32)
    base = rng.choice([0.1, 1.0, 5.0], n)
    kind = rng.choice([0, 0, 0, 0, 0, 1, 2, 3], (n, H))
    factor = np.choose(kind, [1.0, 0.05, 2.5, 40.0]) * (1.0 + rng.uniform(-0.3, 0.3, (n, H)))
    times = WALL + np.cumsum(base[:, None] * factor, axis=1)
    ring = np.zeros((n, H))
    for i in range(n):
        pos = (heads[i] - counts[i] + np.arange(counts[i])) % H
        ring[i, pos] = times[i, : counts[i]]
    return ring, heads, counts


KERNEL_CASES = {
    "default": {},
    "tight": {"min_std_deviation_ms": 1.0, "threshold": 3.0,
              "first_heartbeat_estimate_ms": 300.0},
    "pause": {"acceptable_heartbeat_pause_ms": 2000.0, "threshold": 1.0},
    "low threshold": {"threshold": 0.2, "min_std_deviation_ms": 10.0},
}


def check_kernel_case(kernel, params, H, n=300, seed=0):
    """Both the window (count, seeds, intervals left out exactly; mean and std) and phi at
    a few silences, for n random rings; returns the largest relative phi difference."""
    rng = np.random.default_rng(seed)
    ring, heads, counts = random_rings(rng, n, H)
    out = np.empty((n, 9))
    kernel(ring, heads, counts, np.arange(n, dtype=np.int64), -math.inf, math.inf, out, 0,
           **params)
    full = {"threshold": 8.0, "min_std_deviation_ms": 100.0,
            "acceptable_heartbeat_pause_ms": 0.0, "first_heartbeat_estimate_ms": 1000.0,
            **params}
    worst = 0.0
    for i in range(n):
        c = int(counts[i])
        pos = (heads[i] - c + np.arange(c)) % H
        if c == 0:
            assert out[i, 0] == 0 and np.isnan(out[i, 1:]).all()
            continue
        ref = replay(np.diff(ring[i, pos]) * 1000.0, max_sample_size=max(H - 1, 1), **full)
        mean, std = ref.mean_std()
        assert (out[i, 0], out[i, 3], out[i, 4]) == \
            (len(ref.intervals), ref.seeds_left, ref.left_out), i
        np.testing.assert_allclose(out[i, 1:3], [mean, std], rtol=1e-11, atol=1e-9)
        assert np.isnan(out[i, 5:]).all()
        elapsed = mean * rng.uniform(0.0, 6.0, 4)
        got = phi_formula(elapsed, out[i, 1], out[i, 2], out[i, 0],
                          min_std_deviation_ms=full["min_std_deviation_ms"],
                          acceptable_heartbeat_pause_ms=full["acceptable_heartbeat_pause_ms"],
                          first_heartbeat_estimate_ms=full["first_heartbeat_estimate_ms"],
                          min_samples=1)
        want = [ref.phi(e) for e in elapsed]
        assert_phi(got, want)
        worst = max(worst, phi_difference(got, want)[0])
    return worst


@pytest.mark.parametrize("H", [1, 2, 3, 12, 100])
@pytest.mark.parametrize("case", list(KERNEL_CASES))
@pytest.mark.parametrize("name, kernel", window_kernels(),
                         ids=[name for name, _ in window_kernels()])
def test_window_kernels_match_akka_on_random_rings(name, kernel, case, H):
    check_kernel_case(kernel, KERNEL_CASES[case], H, n=120 if H == 100 else 200,
                      seed=H * 31 + len(case))


@pytest.mark.parametrize("name, kernel", window_kernels(),
                         ids=[name for name, _ in window_kernels()])
def test_window_kernels_agree_and_ignore_the_time_range(name, kernel):
    rng = np.random.default_rng(8)
    ring, heads, counts = random_rings(rng, 3000, 40)
    rows = np.arange(3000, dtype=np.int64)
    a, b, ref = np.empty((3000, 9)), np.empty((3000, 9)), np.empty((3000, 9))
    kernel(ring, heads, counts, rows, -math.inf, math.inf, a, 0, threshold=3.0)
    kernel(ring, heads, counts, rows, WALL + 5.0, WALL + 9.0, b, 0, threshold=3.0)
    np.testing.assert_array_equal(a, b)
    _window_py.phi_windows(ring, heads, counts, rows, 0.0, 0.0, ref, 0, threshold=3.0)
    np.testing.assert_array_equal(a[:, [0, 3, 4]], ref[:, [0, 3, 4]])
    np.testing.assert_allclose(a[:, 1:3], ref[:, 1:3], rtol=1e-12, atol=1e-9,
                               equal_nan=True)
    assert (a[:, 4] > 0).any() and (a[:, 3] == 0).any() and (a[:, 3] == 2).any()


@pytest.mark.parametrize("name, kernel", window_kernels(),
                         ids=[name for name, _ in window_kernels()])
def test_window_kernels_non_finite_records(name, kernel):
    # NaN and infinite records give intervals that are never added (counted as left out)
    ring = np.array([[WALL, WALL + 1.0, np.nan, WALL + 3.0, WALL + 4.0, np.inf]])
    out = np.empty((1, 9))
    kernel(ring, np.array([0], np.int32), np.array([6], np.int32), np.array([0]),
           -math.inf, math.inf, out, 0)
    ref = AkkaDetector(max_sample_size=5)
    ref.heartbeat()
    ref.heartbeat(1000.0)
    ref.heartbeat(1000.0)               # (W+4) - (W+3): the NaN and inf ones are left out
    assert out[0, 0] == 4 and out[0, 3] == 2 and out[0, 4] == 3
    np.testing.assert_allclose(out[0, 1:3], ref.mean_std(), rtol=1e-12)


@pytest.mark.parametrize("name, kernel", window_kernels(),
                         ids=[name for name, _ in window_kernels()])
def test_window_kernels_bad_arguments(name, kernel):
    ring = np.zeros((1, 4))
    args = (ring, np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int64),
            -math.inf, math.inf, np.empty((1, 9)), 0)
    for kw, exc in [({"threshold": 0.0}, ValueError), ({"threshold": "x"}, TypeError),
                    ({"min_std_deviation_ms": 0.0}, ValueError),
                    ({"acceptable_heartbeat_pause_ms": -1.0}, ValueError),
                    ({"first_heartbeat_estimate_ms": math.nan}, ValueError)]:
        with pytest.raises(exc, match=next(iter(kw))):
            kernel(*args, **kw)
    with pytest.raises(ValueError, match="counts"):
        kernel(ring, np.zeros(1, np.int32), np.array([9], np.int32), np.zeros(1, np.int64),
               -math.inf, math.inf, np.empty((1, 9)), 0)
    with pytest.raises(TypeError, match="ring"):
        kernel(ring.astype(np.float32), *args[1:])


SCENARIOS = [test_one_heartbeat_is_judged_by_the_estimate,
             test_available_after_successful_heartbeats_dead_after_missed_ones,
             test_outage_interval_is_left_out, test_acceptable_pause,
             test_seeds_stay_until_pushed_out, test_threshold_decides_what_is_left_out]


def report():
    """The largest relative difference to the reference, per scenario."""
    global DIFFS, CURRENT
    DIFFS = {}
    for engine in ("compiled", "pure"):
        for scenario in SCENARIOS:
            CURRENT = f"{scenario.__name__[5:]} [{engine}]"
            scenario(engine)
    for name, worst in DIFFS.items():
        print(f"spec scenario {name:72}: max rel diff {worst:.3g}")
    DIFFS = None
    rng = np.random.default_rng(1)
    for name, kernel in window_kernels():
        for case, params in KERNEL_CASES.items():
            worst = max(check_kernel_case(kernel, params, H, n=400, seed=H)
                        for H in (2, 3, 12, 100))
            print(f"kernel {name:8} {case:14} 1600 rings: max rel diff {worst:.3g}")
    for engine in ("compiled", "pure"):
        worst = 0.0
        for _ in range(200):
            seq = [(rng.choice(["regular"] * 6 + ["burst", "late", "outage"]),
                    rng.uniform(-0.3, 0.3)) for _ in range(rng.integers(0, 46))]
            params = {"threshold": float(rng.choice([0.2, 1.0, 3.0, 8.0, 16.0])),
                      "min_std_deviation_ms": float(rng.choice([1.0, 10.0, 100.0])),
                      "acceptable_heartbeat_pause_ms": float(rng.choice([0.0, 500.0, 3000.0])),
                      "first_heartbeat_estimate_ms": float(rng.choice([200.0, 1000.0, 4000.0]))}
            worst = max(worst, check_random_sequence(
                engine, seq, params, int(rng.choice([2, 3, 6, 20, 100])),
                float(rng.choice([100.0, 1000.0])), list(rng.uniform(0, 20, 3))))
        print(f"monitor {engine:8} 200 random sequences: max rel diff {worst:.3g}")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)      # the monitors' transition log lines
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    report()
