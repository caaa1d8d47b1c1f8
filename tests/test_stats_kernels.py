"""Interval-statistics kernels (issue 3, item 5): the compiled ``_stats_c`` and its pure
twin ``_stats_py`` against a plain numpy reference (np.diff, mean, std, percentile over
each ring unrolled oldest first), on seeded random data and on hypothesis examples.

Tolerance: RTOL = 1e-9 relative (atol 0) on every column, NaN where the reference is NaN.
The compiled kernel replicates numpy's pairwise sums and percentile interpolation; one test
also checks it bit-identical to the reference on x86-64.
"""
from __future__ import annotations

import importlib
import platform
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RTOL = 1e-9
KERNELS = ["compiled", "pure"]
NAN, INF = float("nan"), float("inf")
T0 = 1_700_000_000.0
BITWISE = platform.machine() in {"x86_64", "AMD64"}


def load(name):
    # The compiled module is imported directly (no importorskip): a missing build fails.
    module = "moai_flow_fast.analytics." + ("_stats_c" if name == "compiled" else "_stats_py")
    return importlib.import_module(module)


@pytest.fixture(params=KERNELS)
def mod(request):
    return load(request.param)


# --- reference ---------------------------------------------------------------------------

def reference(ring, heads, counts, rows, lo, hi):
    """Row i: [count, mean, std, min, max, p50, p95, p99, last] with numpy, one agent at a
    time, from ring row rows[i] unrolled oldest first."""
    H = ring.shape[1]
    res = np.full((len(heads), 9), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # inf - inf in the NaN cases
        for i in range(len(heads)):
            positions = (int(heads[i]) - int(counts[i]) + np.arange(int(counts[i]))) % H
            t = ring[rows[i], positions]
            t = t[(t >= lo) & (t <= hi)]
            d = np.diff(t)
            res[i, 0] = d.size
            if d.size:
                res[i, 1:] = [d.mean(), d.std(), d.min(), d.max(),
                              *np.percentile(d, [50, 95, 99]), d[-1]]
    return res


def run(mod, ring, heads, counts, rows, lo=-INF, hi=INF, start=0, extra=0):
    out = np.full((start + len(heads) + extra, 9), -7.0)
    mod.interval_stats(ring, heads, counts, rows, lo, hi, out, start)
    assert (out[:start] == -7.0).all() and (out[start + len(heads):] == -7.0).all()
    return out[start:start + len(heads)]


def check(mod, ring, heads, counts, rows, lo=-INF, hi=INF, start=0):
    got = run(mod, ring, heads, counts, rows, lo, hi, start=start, extra=2)
    want = reference(ring, heads, counts, rows, lo, hi)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, equal_nan=True)
    return got


def random_rings(rng, n_rows, H, *, dup_fraction=0.1):
    """Rows of increasing Unix timestamps (~1 s apart, jittered), with some duplicates."""
    gaps = rng.exponential(1.0, (n_rows, H)) * rng.uniform(0.2, 5.0, (n_rows, 1))
    gaps[rng.random((n_rows, H)) < dup_fraction] = 0.0       # duplicate timestamps
    return np.ascontiguousarray(T0 + np.cumsum(gaps, axis=1))


def random_selection(rng, n_rows, H, n):
    heads = rng.integers(0, H, n).astype(np.int32)
    counts = rng.integers(0, H + 1, n).astype(np.int32)
    special = rng.random(n)
    counts[special < 0.1] = 0
    counts[(special >= 0.1) & (special < 0.2)] = min(1, H)
    counts[(special >= 0.2) & (special < 0.3)] = min(2, H)
    counts[(special >= 0.3) & (special < 0.5)] = H
    rows = rng.integers(0, n_rows, n).astype(np.int64)       # repeats and any order
    return heads, counts, rows


# --- random data -------------------------------------------------------------------------

@pytest.mark.parametrize("H", [1, 2, 3, 8, 17, 100, 129, 300])
def test_random_rings_against_numpy(mod, H):
    rng = np.random.default_rng(1000 + H)
    ring = random_rings(rng, 40, H)
    heads, counts, rows = random_selection(rng, 40, H, 60)
    check(mod, ring, heads, counts, rows)
    # time ranges cutting inside the histories, and ones that keep nothing
    span = ring.max() - T0
    for lo_f, hi_f in [(0.2, 0.7), (0.0, 0.5), (0.5, 2.0), (0.45, 0.46), (0.7, 0.2)]:
        check(mod, ring, heads, counts, rows, T0 + lo_f * span, T0 + hi_f * span, start=3)


def test_wrapped_rings_every_head(mod):
    rng = np.random.default_rng(7)
    H = 20
    ring = random_rings(rng, 1, H)
    # the same 20 timestamps stored rotated: every head position, full and partial
    rings, heads, counts = [], [], []
    for head in range(H):
        for count in (H, H - 1, 13, 2):
            rings.append(np.roll(ring[0], head))
            heads.append(head)
            counts.append(count)
    ring2 = np.array(rings)
    got = check(mod, ring2, np.array(heads, np.int32), np.array(counts, np.int32),
                np.arange(len(rings), dtype=np.int64))
    assert set(got[:, 0].tolist()) == {H - 1.0, H - 2.0, 12.0, 1.0}


def test_many_agents_one_call(mod):
    rng = np.random.default_rng(11)
    H = 100
    ring = random_rings(rng, 3000, H, dup_fraction=0.02)
    heads = rng.integers(0, H, 3000).astype(np.int32)
    counts = np.full(3000, H, np.int32)
    counts[::7] = rng.integers(0, H + 1, len(counts[::7]))
    rows = rng.permutation(3000).astype(np.int64)
    check(mod, ring, heads, counts, rows)
    check(mod, ring, heads, counts, rows, T0 + 20.0, T0 + 150.0)


@pytest.mark.compiled
@pytest.mark.skipif(not BITWISE, reason="bit-identity is claimed for x86-64 (no FMA contraction)")
def test_compiled_is_numpy_to_the_bit():
    """The compiled kernel replicates numpy's pairwise summation and percentile
    interpolation: on x86-64 its rows equal the reference exactly."""
    c = load("compiled")
    rng = np.random.default_rng(31)
    for H in (2, 9, 100, 129, 300):
        ring = random_rings(rng, 50, H)
        heads, counts, rows = random_selection(rng, 50, H, 80)
        for lo, hi in [(-INF, INF), (T0 + 0.1 * H, T0 + 0.9 * H)]:
            got = run(c, ring, heads, counts, rows, lo, hi)
            assert np.array_equal(got, reference(ring, heads, counts, rows, lo, hi),
                                  equal_nan=True)


@pytest.mark.compiled
def test_compiled_threads_match(monkeypatch):
    """A call big enough to be split over threads gives the same rows."""
    c = load("compiled")
    rng = np.random.default_rng(12)
    H = 50
    ring = random_rings(rng, 400, H)
    heads, counts, rows = random_selection(rng, 400, H, 2001)
    single = run(c, ring, heads, counts, rows, start=5)
    monkeypatch.setattr(c, "_MIN_PARALLEL", 1)
    monkeypatch.setattr(c, "_CHUNK_RECORDS", 1)       # chunks of 16 agents: ~125 claims
    monkeypatch.setattr(c, "_cpus", lambda: 4)        # 4 threads even on a 1-CPU runner
    split = run(c, ring, heads, counts, rows, start=5)
    assert np.array_equal(single, split, equal_nan=True)
    check(c, ring, heads, counts, rows)


# --- edge cases --------------------------------------------------------------------------

def test_counts_zero_one_two(mod):
    ring = np.array([[T0, T0 + 1.5, T0 + 4.0, T0 + 4.0]])
    rows = np.zeros(4, np.int64)
    heads = np.array([0, 1, 2, 3], np.int32)
    counts = np.array([0, 1, 2, 3], np.int32)
    got = check(mod, ring, heads, counts, rows)
    assert got[0, 0] == 0 and np.isnan(got[0, 1:]).all()
    assert got[1, 0] == 0 and np.isnan(got[1, 1:]).all()
    # head 2, count 2: T0, T0+1.5 -> one interval 1.5; std 0
    assert got[2].tolist() == [1.0, 1.5, 0.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]
    # head 3, count 3: T0, T0+1.5, T0+4 -> intervals 1.5, 2.5
    assert got[3, 0] == 2 and got[3, 1] == 2.0 and got[3, 8] == 2.5


def test_capacity_one(mod):
    ring = np.array([[T0], [T0 + 1]])
    got = check(mod, ring, np.zeros(3, np.int32), np.array([0, 1, 1], np.int32),
                np.array([0, 1, 0], np.int64))
    assert (got[:, 0] == 0).all() and np.isnan(got[:, 1:]).all()


def test_duplicate_and_identical_intervals(mod):
    H = 64
    ring = np.empty((4, H))
    ring[0] = T0                                        # all duplicates: 63 zero intervals
    ring[1] = T0 + np.arange(H) * 2.0                   # identical intervals
    ring[2] = T0 + np.repeat(np.arange(H // 4), 4)      # runs of duplicates
    ring[3] = T0 + np.sort(np.random.default_rng(3).integers(0, 5, H))  # few values
    n = 4
    got = check(mod, ring, np.zeros(n, np.int32), np.full(n, H, np.int32),
                np.arange(n, dtype=np.int64))
    assert got[0].tolist() == [63.0] + [0.0] * 8
    assert got[1].tolist() == [63.0, 2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]


def test_adversarial_orders(mod):
    """Sorted, reversed, organ-pipe and sawtooth interval sequences (selection paths)."""
    H = 200
    k = np.arange(H - 1, dtype=np.float64)
    patterns = [k, k[::-1], np.minimum(k, k[::-1]), k % 7, (k * 37) % 101,
                np.where(k % 2 == 0, 1.0, 1e-3)]
    ring = np.array([T0 + np.concatenate([[0.0], np.cumsum(p + 0.5)]) for p in patterns])
    n = len(patterns)
    check(mod, ring, np.zeros(n, np.int32), np.full(n, H, np.int32), np.arange(n, dtype=np.int64))


def test_unsorted_timestamps_negative_intervals(mod):
    """Histories need not be monotonic (a wall-clock step): intervals may be negative."""
    rng = np.random.default_rng(5)
    ring = T0 + rng.normal(0, 100, (30, 40))
    heads, counts, rows = random_selection(rng, 30, 40, 30)
    check(mod, ring, heads, counts, rows)
    check(mod, ring, heads, counts, rows, T0 - 50, T0 + 80)


def test_nan_timestamps_are_dropped(mod):
    ring = np.array([[T0, NAN, T0 + 1, T0 + 3, NAN, T0 + 4]])
    got = check(mod, ring, np.zeros(1, np.int32), np.array([6], np.int32),
                np.zeros(1, np.int64))
    assert got[0, 0] == 3 and got[0, 8] == 1.0


def test_infinite_timestamps_give_nan_like_numpy(mod):
    ring = np.array([[T0, T0 + 1, INF, INF], [T0, T0 + 2, T0 + 3, INF]])
    got = check(mod, ring, np.zeros(2, np.int32), np.full(2, 4, np.int32),
                np.arange(2, dtype=np.int64))
    assert got[0, 0] == 3 and np.isnan(got[0, 1:]).all()       # inf - inf: NaN interval
    assert got[1, 4] == INF and got[1, 8] == INF


def test_empty_selection_writes_nothing(mod):
    ring = np.zeros((0, 5))
    out = np.full((2, 9), -1.0)
    mod.interval_stats(ring, np.zeros(0, np.int32), np.zeros(0, np.int32),
                       np.zeros(0, np.int64), -INF, INF, out, 2)
    assert (out == -1.0).all()


def test_read_only_inputs(mod):
    rng = np.random.default_rng(9)
    ring = random_rings(rng, 5, 10)
    heads, counts, rows = random_selection(rng, 5, 10, 8)
    for a in (ring, heads, counts, rows):
        a.flags.writeable = False
    check(mod, ring, heads, counts, rows)


@pytest.mark.compiled
def test_compiled_and_pure_agree():
    c, p = load("compiled"), load("pure")
    rng = np.random.default_rng(21)
    ring = random_rings(rng, 500, 130)
    heads, counts, rows = random_selection(rng, 500, 130, 700)
    for lo, hi in [(-INF, INF), (T0 + 30, T0 + 200)]:
        np.testing.assert_allclose(run(c, ring, heads, counts, rows, lo, hi),
                                   run(p, ring, heads, counts, rows, lo, hi),
                                   rtol=RTOL, atol=0, equal_nan=True)
    assert c.COLUMNS == p.COLUMNS == ("count", "mean", "std", "min", "max", "p50", "p95",
                                      "p99", "last")


@pytest.mark.compiled
def test_compiled_order_statistics_hook():
    """The multi-rank selection, including its heap-sort fallback (depth 0..2)."""
    c = load("compiled")
    rng = np.random.default_rng(8)
    for trial in range(300):
        n = int(rng.integers(1, 300))
        values = [rng.random(n), np.sort(rng.random(n)), rng.integers(0, 3, n) * 1.0,
                  np.sort(rng.random(n))[::-1]][trial % 4]
        ranks = rng.choice(n, size=min(n, int(rng.integers(1, 7))), replace=False)
        for depth in (-1, 0, 1, 2):
            got = c._order_statistics(values, ranks, depth)
            srt = np.sort(values)
            assert got == {int(k): float(srt[k]) for k in np.unique(ranks)}


# --- the compiled kernel's paths: eight agents at a time (AVX-512), one at a time --------

def full_rings(rng, n, H, *, special=True):
    """n full rings (the lane path's case) at random heads, rows in a shuffled order; with
    `special`, some agents break their group of eight (a shorter history) or carry NaN,
    +inf, duplicate, equal or negative intervals."""
    ring = random_rings(rng, n, H, dup_fraction=0.05)
    heads = rng.integers(0, H, n).astype(np.int32)
    counts = np.full(n, H, np.int32)
    if special:
        counts[rng.random(n) < 0.03] = H - 1
        pick = rng.choice(n, size=max(1, n // 20), replace=False)
        for k, i in enumerate(pick):
            j = int(rng.integers(0, H))
            ring[i, j] = [NAN, INF, ring[i, j - 1], ring[i, 0], T0 - 5.0][k % 5]
        ring[pick[: len(pick) // 3]] = T0 + np.arange(H) * 0.5   # identical intervals
    return ring, heads, counts, rng.permutation(n).astype(np.int64)


@pytest.mark.compiled
@pytest.mark.parametrize("H", [17, 18, 33, 64, 100, 129, 200, 257, 258])
def test_compiled_paths_agree_to_the_bit(H):
    """Full rings go through the lanes (a sorting network on eight agents at once) on a CPU
    with AVX-512, others one agent at a time: both give numpy's rows to the bit (x86-64),
    NaN, infinite and duplicate intervals included, whatever the grouping."""
    c = load("compiled")
    rng = np.random.default_rng(H)
    ring, heads, counts, rows = full_rings(rng, 203, H)
    before = c._set_simd(True)
    try:
        lanes = run(c, ring, heads, counts, rows, start=3)
        c._set_simd(False)
        single = run(c, ring, heads, counts, rows, start=3)
    finally:
        c._set_simd(before)
    assert np.array_equal(lanes, single, equal_nan=True)
    want = reference(ring, heads, counts, rows, -INF, INF)
    if BITWISE:
        assert np.array_equal(lanes, want, equal_nan=True)
    np.testing.assert_allclose(lanes, want, rtol=RTOL, atol=0, equal_nan=True)
    assert np.isnan(lanes[:, 1]).any() and (lanes[:, 0] == H - 1).mean() > 0.9


@pytest.mark.compiled
def test_compiled_lanes_every_size():
    """Every history length the lanes take (16 .. 256 intervals), sorted, reversed and
    random rings, against the per-agent path (the networks are built per length)."""
    c = load("compiled")
    rng = np.random.default_rng(3)
    before = c._set_simd(True)
    try:
        for H in range(17, 258):
            ring, heads, counts, rows = full_rings(rng, 16, H, special=False)
            ring[1] = T0 + np.arange(H) ** 2 * 1e-3               # increasing intervals
            ring[2] = T0 + np.sqrt(np.arange(H))                  # decreasing intervals
            c._set_simd(True)
            lanes = run(c, ring, heads, counts, rows)
            c._set_simd(False)
            assert np.array_equal(lanes, run(c, ring, heads, counts, rows)), H
    finally:
        c._set_simd(before)


@pytest.mark.compiled
def test_compiled_threads_keyword(monkeypatch):
    c = load("compiled")
    rng = np.random.default_rng(4)
    ring, heads, counts, rows = full_rings(rng, 3000, 100)
    monkeypatch.setattr(c, "_MIN_PARALLEL", 1)
    monkeypatch.setattr(c, "_cpus", lambda: 4)
    outs = []
    for threads in (None, 1, 3):
        out = np.empty((3000, 9))
        c.interval_stats(ring, heads, counts, rows, -INF, INF, out, 0, threads=threads)
        outs.append(out)
    assert all(np.array_equal(outs[0], o, equal_nan=True) for o in outs[1:])


@pytest.mark.parametrize("threads, exc", [(0, ValueError), (-2, ValueError),
                                          (1.0, TypeError), (True, TypeError),
                                          ("2", TypeError)])
def test_bad_threads(mod, threads, exc):
    with pytest.raises(exc, match="threads"):
        mod.interval_stats(**_good(), threads=threads)


# --- errors ------------------------------------------------------------------------------

def _good():
    ring = np.full((3, 4), T0)
    return dict(ring=ring, heads=np.zeros(2, np.int32), counts=np.full(2, 4, np.int32),
                rows=np.array([0, 2], np.int64), lo=-INF, hi=INF, out=np.empty((2, 9)), start=0)


BAD = [
    ("ring", [[1.0, 2.0]], TypeError, "ring must be a numpy.ndarray"),
    ("ring", np.zeros((3, 4), np.float32), TypeError, "ring must have dtype float64"),
    ("ring", np.zeros(4), ValueError, "ring must be 2-D"),
    ("ring", np.zeros((4, 3)).T, ValueError, "ring must be C-contiguous"),
    ("heads", np.zeros(2, np.int64), TypeError, "heads must have dtype int32"),
    ("counts", np.zeros(2, np.float64), TypeError, "counts must have dtype int32"),
    ("rows", np.zeros(2, np.int32), TypeError, "rows must have dtype int64"),
    ("rows", np.zeros(3, np.int64), ValueError, "must have the same length"),
    ("out", np.empty((2, 8)), ValueError, "out must have 9 columns"),
    ("out", np.empty((9, 2)).T, ValueError, "out must be C-contiguous"),
    ("out", np.empty((1, 9)), ValueError, "start must satisfy"),
    ("start", -1, ValueError, "start must satisfy"),
    ("start", 1.0, TypeError, "start must be an int"),
    ("start", True, TypeError, "start must be an int"),
    ("lo", "0", TypeError, "lo must be a real number"),
    ("hi", None, TypeError, "hi must be a real number"),
    ("rows", np.array([0, 3], np.int64), ValueError, "rows must be in [0, 3)"),
    ("rows", np.array([-1, 0], np.int64), ValueError, "rows must be in [0, 3)"),
    ("heads", np.array([0, 4], np.int32), ValueError, "heads must be in [0, 4)"),
    ("heads", np.array([-1, 0], np.int32), ValueError, "heads must be in [0, 4)"),
    ("counts", np.array([5, 0], np.int32), ValueError, "counts must be in [0, 4]"),
    ("counts", np.array([0, -1], np.int32), ValueError, "counts must be in [0, 4]"),
]


@pytest.mark.parametrize("arg, value, exc, message", BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments(mod, arg, value, exc, message):
    kwargs = _good()
    kwargs[arg] = value
    out_before = kwargs["out"].copy() if isinstance(kwargs["out"], np.ndarray) else None
    with pytest.raises(exc, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        mod.interval_stats(**kwargs)
    if out_before is not None and arg != "out":
        assert np.array_equal(kwargs["out"], out_before, equal_nan=True)


def test_read_only_out(mod):
    kwargs = _good()
    kwargs["out"].flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        mod.interval_stats(**kwargs)


# --- property ----------------------------------------------------------------------------

@st.composite
def cases(draw):
    H = draw(st.integers(1, 40))
    R = draw(st.integers(1, 4))
    # timestamps on a coarse grid (duplicates likely), mostly increasing per row
    steps = draw(st.lists(st.lists(st.integers(-1, 6), min_size=H, max_size=H),
                          min_size=R, max_size=R))
    ring = T0 + np.cumsum(np.array(steps, dtype=np.float64) * 0.25, axis=1)
    n = draw(st.integers(0, 6))
    heads = draw(st.lists(st.integers(0, H - 1), min_size=n, max_size=n))
    counts = draw(st.lists(st.integers(0, H), min_size=n, max_size=n))
    rows = draw(st.lists(st.integers(0, R - 1), min_size=n, max_size=n))
    lo = draw(st.sampled_from([-INF, T0, T0 + 1.0, T0 + 3.3]))
    hi = draw(st.sampled_from([INF, T0 + 2.0, T0 + 10.0]))
    return (np.ascontiguousarray(ring), np.array(heads, np.int32), np.array(counts, np.int32),
            np.array(rows, np.int64), lo, hi)


@pytest.mark.parametrize("name", KERNELS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_property_matches_numpy(name, case):
    ring, heads, counts, rows, lo, hi = case
    check(load(name), ring, heads, counts, rows, lo, hi, start=1)
