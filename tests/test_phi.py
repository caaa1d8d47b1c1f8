"""Phi-accrual suspicion (issue 3, item 6) against a scalar transcription of Akka's
PhiAccrualFailureDetector.

Tolerance: rtol 1e-9 with atol 1e-12 (phi units) where the scalar formula is finite; the
atol covers Akka's own cancellation in 1 - 1/(1+e) far below the mean, where phi < 1e-8.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from moai_flow_fast.analytics._phi import phi, window_params, y_threshold

RTOL, ATOL = 1e-9, 1e-12
NAN, INF = float("nan"), float("inf")


def akka_phi(elapsed, mean, std, count, *, min_std=100.0, pause=0.0, first=1000.0,
             min_samples=2):
    """Akka's formula, one agent, plain floats (inf where its exp underflows)."""
    if math.isnan(elapsed):
        return 0.0
    if count < min_samples:
        mean, std = first, first / 4.0
    mean = mean + pause
    std = max(std, min_std)
    y = (elapsed - mean) / std
    try:
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    except OverflowError:
        e = INF
    if elapsed > mean:
        r = e / (1.0 + e)
        return INF if r == 0.0 else -math.log10(r)
    if e == INF:
        return 0.0
    r = 1.0 - 1.0 / (1.0 + e)
    return INF if r == 0.0 else -math.log10(r)


def asymptote(elapsed, mean, std):
    y = (elapsed - mean) / std
    return y * (1.5976 + 0.070566 * y * y) / math.log(10.0)


def test_matches_akka_on_random_agents():
    rng = np.random.default_rng(42)
    n = 5000
    mean = rng.uniform(50, 5000, n)
    std = rng.uniform(0, 800, n)
    count = rng.integers(0, 10, n)
    few = count < 3
    # elapsed within +/-30 effective standard deviations of the effective mean
    mu = np.where(few, 700.0, mean) + 250.0
    sigma = np.maximum(np.where(few, 175.0, std), 80.0)
    elapsed = mu + sigma * rng.uniform(-30, 30, n)
    elapsed[::17] = NAN
    kw = dict(min_std_deviation_ms=80.0, acceptable_heartbeat_pause_ms=250.0,
              first_heartbeat_estimate_ms=700.0, min_samples=3)
    mean[few] = NAN                       # ignored where the first-heartbeat estimate applies
    got = phi(elapsed, mean, std, count, **kw)
    want = np.array([akka_phi(e, m, s, c, min_std=80.0, pause=250.0, first=700.0, min_samples=3)
                     for e, m, s, c in zip(elapsed, mean, std, count, strict=True)])
    # Akka's e = exp(-z) is a normal double only up to phi ~ 307; beyond it goes
    # subnormal (precision lost), then underflows to 0 (phi = +inf, z > ~745).
    normal = want < 300
    assert 0.6 < normal.mean() < 0.95
    np.testing.assert_allclose(got[normal], want[normal], rtol=RTOL, atol=ATOL)
    assert np.isfinite(got).all()
    # beyond, phi follows its asymptote z / ln(10) (exact to double precision there)
    big = ~normal
    assert (got[big] > 300).all()
    y = (elapsed[big] - mu[big]) / sigma[big]
    np.testing.assert_allclose(got[big], y * (1.5976 + 0.070566 * y * y) / math.log(10.0),
                               rtol=1e-12)


def test_saturation_is_finite_then_inf_only_at_infinite_elapsed():
    elapsed = np.array([2000.0, 4000.0, 1e5, 1e9, 1e200, 1e308, INF])
    got = phi(elapsed, 1000.0, 100.0, 10)
    assert np.isfinite(got[:-1]).all() and got[-1] == INF
    assert np.all(np.diff(got[:5]) > 0)
    assert got[4] == got[5]               # y clipped at 1e100 standard deviations
    for e, g in zip(elapsed[2:4], got[2:4], strict=True):
        assert g == pytest.approx(asymptote(e, 1000.0, 100.0), rel=1e-12)
    # far below the mean phi underflows to its limit 0
    low = phi(np.array([-1e300, -INF, -1e5]), 1000.0, 100.0, 10)
    assert (low == 0.0).all()


def test_known_values():
    # y = 0: e = 1, phi = -log10(1/2)
    assert phi(1000.0, 1000.0, 100.0, 5) == pytest.approx(math.log10(2.0), rel=1e-15)
    # acceptable pause shifts the mean
    assert phi(1300.0, 1000.0, 100.0, 5, acceptable_heartbeat_pause_ms=300.0) == \
        pytest.approx(math.log10(2.0), rel=1e-15)
    # std below the minimum is raised to it
    assert phi(1500.0, 1000.0, 1.0, 5) == phi(1500.0, 1000.0, 100.0, 5)
    assert phi(1500.0, 1000.0, 300.0, 5) < phi(1500.0, 1000.0, 100.0, 5)


def test_monotonic_in_elapsed():
    elapsed = np.concatenate([[-INF, -1e6], np.linspace(-500, 10_000, 20_001), [1e7, 1e300]])
    for mean, std, count in [(1000.0, 100.0, 10), (250.0, 5.0, 3), (NAN, NAN, 0)]:
        got = phi(elapsed, mean, std, count)
        assert np.all(np.diff(got) >= 0)
        assert got[0] == 0.0 and np.isfinite(got).all()


def test_first_heartbeat_estimate():
    elapsed = np.linspace(0, 5000, 101)
    # too few intervals: judged as mean = estimate, std = estimate / 4; history ignored
    few = phi(elapsed, 17.0, 3.0, 1, first_heartbeat_estimate_ms=1200.0)
    also_few = phi(elapsed, NAN, NAN, 0, first_heartbeat_estimate_ms=1200.0)
    as_history = phi(elapsed, 1200.0, 300.0, 50)
    np.testing.assert_array_equal(few, as_history)
    np.testing.assert_array_equal(also_few, as_history)
    # enough intervals: the agent's own history
    own = phi(elapsed, 17.0, 3.0, 2, first_heartbeat_estimate_ms=1200.0)
    assert not np.array_equal(own, few)
    # min_samples moves the threshold
    np.testing.assert_array_equal(
        phi(elapsed, 17.0, 3.0, 2, min_samples=3, first_heartbeat_estimate_ms=1200.0), few)
    np.testing.assert_array_equal(phi(elapsed, 17.0, 3.0, 1, min_samples=1),
                                  phi(elapsed, 17.0, 3.0, 7))


def test_never_heartbeated_is_zero():
    got = phi([NAN, NAN, 500.0], [NAN, 1000.0, 1000.0], [NAN, 10.0, 10.0], [0, 5, 5])
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] > 0.0


def test_shapes_and_dtypes():
    got = phi(1500.0, 1000.0, 100.0, 3)
    assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == np.float64
    got = phi(np.full((2, 3), 1500.0), np.array([900.0, 1000.0, 1100.0]), 100.0,
              np.array([[5], [0]], dtype=np.int8))
    assert got.shape == (2, 3)
    assert got[1, 0] == got[1, 1] == got[1, 2]             # first-heartbeat row
    # float counts (the stats kernel's count column) must be whole
    np.testing.assert_array_equal(phi([1500.0], [1000.0], [100.0], np.array([3.0])),
                                  phi([1500.0], [1000.0], [100.0], [3]))
    assert phi(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)).shape == (0,)


def test_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        phi(np.array([NAN, -INF, INF, 0.0, 1e308, -1e308]), 1000.0, 100.0, 5)
        phi(np.array([1e308]), -1e308, 100.0, 5)


KW_BAD = [
    ("min_std_deviation_ms", 0.0, ValueError), ("min_std_deviation_ms", -1.0, ValueError),
    ("min_std_deviation_ms", NAN, ValueError), ("min_std_deviation_ms", "1", TypeError),
    ("min_std_deviation_ms", True, TypeError),
    ("acceptable_heartbeat_pause_ms", -0.5, ValueError),
    ("acceptable_heartbeat_pause_ms", INF, ValueError),
    ("acceptable_heartbeat_pause_ms", None, TypeError),
    ("first_heartbeat_estimate_ms", 0, ValueError),
    ("first_heartbeat_estimate_ms", INF, ValueError),
    ("first_heartbeat_estimate_ms", [1000.0], TypeError),
    ("min_samples", 0, ValueError), ("min_samples", 2.0, TypeError),
    ("min_samples", False, TypeError),
]


@pytest.mark.parametrize("name, value, exc", KW_BAD)
def test_bad_keywords(name, value, exc):
    with pytest.raises(exc, match=name):
        phi(1.0, 1.0, 1.0, 5, **{name: value})


@pytest.mark.parametrize("args, exc, name", [
    (("x", 1.0, 1.0, 5), TypeError, "elapsed_ms"),
    ((1.0, [1j], 1.0, 5), TypeError, "mean_ms"),
    ((1.0, 1.0, np.array([True]), 5), TypeError, "std_ms"),
    ((1.0, 1.0, 1.0, "5"), TypeError, "count"),
    ((1.0, 1.0, 1.0, np.array([True])), TypeError, "count"),
    ((1.0, 1.0, 1.0, -1), ValueError, "count"),
    ((1.0, 1.0, 1.0, 2.5), ValueError, "count"),
    ((1.0, 1.0, 1.0, NAN), ValueError, "count"),
    ((np.zeros(3), np.zeros(2), 1.0, 5), ValueError, "broadcastable"),
    ((1.0, NAN, 1.0, 5), ValueError, "mean_ms"),
    ((1.0, INF, 1.0, 5), ValueError, "mean_ms"),
    ((1.0, 1.0, -1.0, 5), ValueError, "std_ms"),
    ((1.0, 1.0, NAN, 5), ValueError, "std_ms"),
])
def test_bad_arrays(args, exc, name):
    with pytest.raises(exc, match=name):
        phi(*args)


def test_unused_history_may_be_nan():
    # NaN mean/std are fine where they are not used: few samples, or never heartbeated
    assert phi(NAN, NAN, NAN, 5) == 0.0
    assert np.isfinite(phi(10.0, NAN, -1.0, 1))


# --- the threshold as a y, for the window kernels -----------------------------------------

@pytest.mark.parametrize("threshold", [1e-9, 0.1, math.log10(2.0), 0.5, 1.0, 3.0, 8.0,
                                       16.0, 100.0, 400.0, 1e6])
def test_y_threshold_is_where_phi_reaches_it(threshold):
    """phi is increasing in y; a kernel judges phi < threshold as y < y_threshold."""
    y = y_threshold(threshold)
    at = phi(1000.0 + 100.0 * y, 1000.0, 100.0, 5)
    assert float(at) == pytest.approx(threshold, rel=1e-12)
    step = max(abs(y), 1.0) * 1e-9
    assert float(phi(1000.0 + 100.0 * (y - step), 1000.0, 100.0, 5)) < threshold
    assert float(phi(1000.0 + 100.0 * (y + step), 1000.0, 100.0, 5)) > threshold
    assert (y < 0) == (threshold < math.log10(2.0))         # phi(0) = log10(2)


def test_window_params():
    assert window_params(100, 8.0, 100.0, 0.0, 1000.0) == \
        (1000.0, 0.0, 10_000.0, y_threshold(8.0), 99)
    assert window_params(1, 3, 10, 500, 250)[4] == 1        # a window holds >= 1 value
    for name, args in [("threshold", (0.0, 1.0, 0.0, 1.0)), ("threshold", (NAN, 1.0, 0.0, 1.0)),
                       ("min_std_deviation_ms", (8.0, 0.0, 0.0, 1.0)),
                       ("acceptable_heartbeat_pause_ms", (8.0, 1.0, -1.0, 1.0)),
                       ("first_heartbeat_estimate_ms", (8.0, 1.0, 0.0, INF))]:
        with pytest.raises(ValueError, match=name):
            window_params(10, *args)
    with pytest.raises(TypeError, match="threshold"):
        window_params(10, "8", 1.0, 0.0, 1.0)
