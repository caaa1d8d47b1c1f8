"""Issue 3, analytics side: interval_stats, phi, snapshot, to_pandas and their bad input.
Every test runs on both engines (`engine` fixture).

References are written here from the issue's definitions, never from the package code:
- interval statistics: numpy np.diff / mean / std (ddof 0) / min / max / percentile
  (linear) / last of the timestamps returned by get_heartbeat_history. Tolerance:
  rtol 1e-9, plus atol 1e-12 s only so that an exact 0 (std of one interval) may compare
  with rounding noise.
- phi: Akka's detector (the scalar transcription `AkkaDetector` of test_phi_akka.py)
  replayed over each agent's history, with elapsed time taken from the virtual clock.
  Tolerance: rtol 1e-9, plus atol 1e-14 for the cancellation in Akka's own
  -log10(1 - 1/(1 + e)) where phi is tiny (< 1e-5). Where Akka's exp underflows (phi
  > ~300, Akka: +inf) only "phi is finite and >= 299" is asserted.
"""
from __future__ import annotations

import math
import random
import sys
from datetime import datetime

import numpy as np
import pytest
from hb_model import Recorder
from hb_model import snapshot as monitor_snapshot
from test_phi_akka import replay

from moai_flow_fast import HealthState

START = 1000.0
WALL_START = 1_700_000_000.0
START_NS = 1_000_000_000_000
GRID = 15_625_000                       # 1/64 s in ns: exact instants and timestamps
SEV = {s: i for i, s in enumerate(HealthState)}
FIELDS = ("count", "mean", "std", "min", "max", "p50", "p95", "p99", "last")

try:
    import pandas  # noqa: F401
    HAVE_PANDAS = True
except ImportError:
    HAVE_PANDAS = False


def wall_of(mono_ns):
    return WALL_START + (mono_ns - START_NS) / 1e9


# ----------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------

def ref_stats(ts, lo=-math.inf, hi=math.inf):
    ts = np.array([t for t in ts if lo <= t <= hi], dtype=np.float64)
    iv = np.diff(ts)
    if len(iv) == 0:
        return (0,) + (math.nan,) * 8
    p50, p95, p99 = np.percentile(iv, [50, 95, 99])
    return (len(iv), iv.mean(), iv.std(), iv.min(), iv.max(), p50, p95, p99, iv[-1])


def akka_phi(elapsed_ms, intervals_ms, *, min_std=100.0, pause=0.0, estimate=1000.0,
             window=99, threshold=8.0):
    """Akka's PhiAccrualFailureDetector after a first heartbeat and these intervals (the
    agent's history; none: its clock started at registration), `elapsed_ms` later."""
    if elapsed_ms is None:
        return 0.0                       # never heartbeated
    detector = replay(intervals_ms, threshold=threshold, max_sample_size=window,
                      min_std_deviation_ms=min_std, acceptable_heartbeat_pause_ms=pause,
                      first_heartbeat_estimate_ms=estimate)
    return detector.phi(elapsed_ms)


def assert_stats_equal(got, ref_rows):
    ref = np.array(ref_rows, dtype=np.float64).reshape(len(ref_rows), 9)
    assert got["count"].tolist() == ref[:, 0].astype(int).tolist()
    for j, name in enumerate(FIELDS[1:], start=1):
        np.testing.assert_allclose(got[name], ref[:, j], rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=name)


# ----------------------------------------------------------------------------------------
# Fixtures: monitors with random histories
# ----------------------------------------------------------------------------------------

@pytest.fixture
def jittery(make_monitor, vclock):
    """300 agents with random (non-grid) heartbeat times, history_size 20 so that many
    rings wrap; a few agents with 0, 1 or 2 heartbeats; one stopped agent."""
    rng = np.random.default_rng(5)
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=20)
    ids = [f"a{i:03d}" for i in range(300)] + [17, ("t", 1)]
    m.start_monitoring_many(ids)
    vclock.advance(200)
    now = vclock.time()
    cursor = {k: now - 150 + rng.uniform(0, 5) for k in ids}
    limits = {k: int(rng.choice([0, 1, 2, 3, 10, 25, 40, 40, 40])) for k in ids}
    done = dict.fromkeys(ids, 0)
    for _ in range(45):
        batch = [k for k in ids if done[k] < limits[k] and rng.random() < 0.9]
        stamps = []
        for k in batch:
            cursor[k] += rng.choice([rng.uniform(0.2, 1.8), rng.exponential(1.0)])
            stamps.append(cursor[k])
            done[k] += 1
        mask = m.record_heartbeats(batch, np.array(stamps))
        assert mask.all()
    m.stop_monitoring("a005")
    return m


@pytest.fixture
def gridded(make_monitor, vclock):
    """120 agents with heartbeats on a 1/64 s grid (exact elapsed times), per-agent
    intervals, plus two agents whose clock starts at registration. Returns (monitor,
    base, registration ns): base[k] is the ns instant agent k's silence is measured from
    (its last heartbeat; its registration for the start_clock agents), None before that."""
    rng = random.Random(9)
    m = make_monitor(interval_ms=1000, failure_threshold=4, history_size=16)
    ids = [f"g{i:03d}" for i in range(120)]
    intervals = [rng.choice([250, 500, 1000, 2000]) for _ in ids]
    m.start_monitoring_many(ids, interval_ms=intervals)
    m.start_monitoring_many(["clocked-1", "clocked-2"], start_clock=True)
    reg = {k: START_NS for k in m.monitoring_agents}
    end = START_NS + 64 * 120 * GRID                       # 120 s later
    last = dict.fromkeys(m.monitoring_agents)
    cursor = {k: START_NS + rng.randint(0, 64) * GRID for k in ids}
    quiet = {k: rng.choice([0, 1, 2, 20, 20, 20, 20]) for k in ids}
    for k, iv in zip(ids, intervals):
        stamps = []
        base = iv * 1_000_000 // GRID                      # interval in grid steps
        while len(stamps) < quiet[k]:
            cursor[k] += GRID * max(1, base + rng.randint(-base // 3, base // 3))
            stamps.append(cursor[k])
        # the last silence: from 0 to ~6 intervals before the end
        shift = (end - cursor[k]) - GRID * rng.randint(0, 6 * base)
        stamps = [s + shift for s in stamps]
        stamps = [s for s in stamps if s >= START_NS]
        quiet[k] = stamps
    vclock.set(end / 1e9)
    assert vclock.monotonic_ns() == end
    for k in ids:
        if quiet[k]:
            mask = m.record_heartbeats([k] * len(quiet[k]), [wall_of(s) for s in quiet[k]])
            assert mask.all()
            last[k] = quiet[k][-1]
    last["clocked-1"] = last["clocked-2"] = START_NS
    m.advance()
    return m, last, reg


# ----------------------------------------------------------------------------------------
# interval_stats
# ----------------------------------------------------------------------------------------

def test_interval_stats_matches_numpy(jittery):
    m = jittery
    ids = list(m.monitoring_agents)
    got = m.interval_stats()
    assert got.dtype.names == ("handle", *FIELDS)
    assert got["handle"].tolist() == m.handles(ids).tolist()
    ref = [ref_stats([r["timestamp"] for r in m.get_heartbeat_history(k)]) for k in ids]
    assert_stats_equal(got, ref)
    counts = got["count"]
    assert {0, 1, 2, 19}.issubset(set(counts.tolist())), "edge cases and wrapped rings"


def test_interval_stats_selected_ids_and_time_range(jittery):
    m = jittery
    hist = {k: [r["timestamp"] for r in m.get_heartbeat_history(k)] for k in m.monitoring_agents}
    pick = ["a010", "unknown", "a005", 17, ("t", 1), "a010", "a200"]    # a005 stopped
    got = m.interval_stats(pick)
    assert got["handle"].tolist() == m.handles(pick).tolist()
    assert_stats_equal(got, [ref_stats(hist.get(k, [])) for k in pick])
    assert got["count"][1] == 0 and got["count"][2] == 0

    every = sorted(t for ts in hist.values() for t in ts)
    lo, hi = every[len(every) // 3], every[2 * len(every) // 3]          # exact timestamps
    got = m.interval_stats(time_range=(lo, hi))
    assert_stats_equal(got, [ref_stats(ts, lo, hi) for ts in hist.values()])
    # inclusive bounds: a range of exactly one agent's two timestamps gives one interval
    ts = hist["a200"]
    one = m.interval_stats(["a200"], time_range=(ts[-3], ts[-2]))
    assert one["count"].tolist() == [1]
    assert one["last"][0] == pytest.approx(ts[-2] - ts[-3], rel=1e-9)
    # datetimes: the same range as the Unix seconds they convert to
    dlo, dhi = datetime.fromtimestamp(lo), datetime.fromtimestamp(hi)
    got = m.interval_stats(time_range=(dlo, dhi))
    assert_stats_equal(got, [ref_stats(ts, dlo.timestamp(), dhi.timestamp())
                             for ts in hist.values()])
    # handles as the selection
    got = m.interval_stats(m.handles(["a001", "a002"]), time_range=[lo, hi])
    assert_stats_equal(got, [ref_stats(hist[k], lo, hi) for k in ("a001", "a002")])
    # an empty range
    got = m.interval_stats(time_range=(hi, lo))
    assert (got["count"] == 0).all() and np.isnan(got["mean"]).all()


def test_interval_stats_empty_and_no_agents(make_monitor):
    m = make_monitor(interval_ms=1000)
    assert len(m.interval_stats()) == 0
    m.start_monitoring("a")
    got = m.interval_stats()
    assert got["count"].tolist() == [0]
    assert all(np.isnan(got[f][0]) for f in FIELDS[1:])
    assert len(m.interval_stats([])) == 0


# ----------------------------------------------------------------------------------------
# phi
# ----------------------------------------------------------------------------------------

PHI_PARAMS = [
    {},
    {"min_std_deviation_ms": 50.0, "acceptable_heartbeat_pause_ms": 200.0,
     "first_heartbeat_estimate_ms": 700.0},
    {"min_std_deviation_ms": 500.0, "acceptable_heartbeat_pause_ms": 0.0},
    {"min_std_deviation_ms": 1.0, "acceptable_heartbeat_pause_ms": 1000.0,
     "first_heartbeat_estimate_ms": 3000.0},
    {"threshold": 1.5, "min_std_deviation_ms": 20.0},
]


def _phi_reference(m, last, now_ns, ids, params):
    estimate = params.get("first_heartbeat_estimate_ms", float(m.default_interval_ms))
    out = []
    for k in ids:
        ts = np.array([r["timestamp"] for r in m.get_heartbeat_history(k)])
        # None: the agent's clock has not started (never heartbeated): phi 0
        elapsed = None if last.get(k) is None else (now_ns - last[k]) / 1e6
        out.append(akka_phi(elapsed, np.diff(ts) * 1e3,
                            min_std=params.get("min_std_deviation_ms", 100.0),
                            pause=params.get("acceptable_heartbeat_pause_ms", 0.0),
                            estimate=estimate, window=m.history_size - 1,
                            threshold=params.get("threshold", 8.0)))
    return np.array(out)


def _assert_phi(got, ref):
    assert got.dtype == np.float64 and got.shape == ref.shape
    finite = np.isfinite(ref) & (ref < 300)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-9, atol=1e-14)
    assert np.isfinite(got[~finite]).all() and (got[~finite] >= 299).all()


@pytest.mark.parametrize("params", PHI_PARAMS,
                         ids=["default", "pause", "wide", "tight", "threshold"])
def test_phi_matches_akka_formula(gridded, vclock, params):
    m, last, _ = gridded
    ids = list(m.monitoring_agents)
    ref = _phi_reference(m, last, vclock.monotonic_ns(), ids, params)
    got = m.phi(**params)
    _assert_phi(got, ref)
    assert np.array_equal(m.snapshot(**params).phi, got)
    # spread: some certainly alive, some suspected, some never heartbeated (phi 0)
    assert (ref < 0.1).any() and (ref > 3).any()
    never = [i for i, k in enumerate(ids) if last[k] is None]
    assert never and (got[never] == 0.0).all()
    # a start_clock agent with no heartbeat is judged from its registration
    assert got[ids.index("clocked-1")] > 0.0


def test_phi_at_a_later_instant_and_by_ids(gridded, vclock):
    m, last, _ = gridded
    ids = list(m.monitoring_agents)
    later_ns = vclock.monotonic_ns() + 37 * GRID
    got = m.phi(now=later_ns / 1e9)
    _assert_phi(got, _phi_reference(m, last, later_ns, ids, {}))
    pick = [ids[5], "unknown", ids[0], ids[5]]
    got = m.phi(pick)
    ref = _phi_reference(m, last, vclock.monotonic_ns(), [ids[5], ids[0]], {})
    assert np.isnan(got[1])
    _assert_phi(got[[0, 2, 3]], ref[[0, 1, 0]])
    assert np.array_equal(m.phi(m.handles(pick)), got, equal_nan=True)


def test_phi_first_heartbeat_estimate(make_monitor, vclock):
    """The window starts with the seeds estimate -/+ estimate / 4 (one heartbeat: mean =
    estimate, std = estimate / 4), and keeps them beside the first intervals."""
    m = make_monitor(interval_ms=800)
    m.start_monitoring_many(["zero", "one", "two", "three", "never"])
    m.record_heartbeats(["one", "two", "three"])
    vclock.advance(0.5)
    m.record_heartbeats(["two", "three"])
    vclock.advance(0.25)
    m.record_heartbeats(["three"])
    m.record_heartbeats(["zero"])            # zero: a single heartbeat, now
    vclock.advance(0.6)
    got = m.phi(["zero", "one", "two", "three", "never"])
    e = {"zero": 600.0, "one": 1350.0, "two": 850.0, "three": 600.0}
    ref = [akka_phi(e["zero"], [], estimate=800.0), akka_phi(e["one"], [], estimate=800.0),
           akka_phi(e["two"], [500.0], estimate=800.0),
           akka_phi(e["three"], [500.0, 250.0], estimate=800.0), 0.0]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-14)
    got = m.phi(["one"], first_heartbeat_estimate_ms=2000.0)
    np.testing.assert_allclose(got, [akka_phi(1350.0, [], estimate=2000.0)], rtol=1e-9)


# ----------------------------------------------------------------------------------------
# snapshot
# ----------------------------------------------------------------------------------------

def test_snapshot_is_one_consistent_instant(gridded, vclock):
    m, last, reg = gridded
    for step in (0, 13, 64, 200):
        vclock.advance(step / 64)
        m.advance()
        now_ns = vclock.monotonic_ns()
        snap = m.snapshot()
        ids = list(m.monitoring_agents)
        assert snap.ids == ids and len(snap) == len(ids)
        assert snap.handles.dtype == np.int64 and snap.handles.tolist() == m.handles(ids).tolist()
        assert snap.states.dtype == np.int8
        assert snap.states.tolist() == [SEV[m.check_agent_health(k)] for k in ids]
        assert snap.monotonic == vclock.now and snap.wall == vclock.time()
        stats = m.get_monitoring_stats()
        assert sum(snap.counts.values()) == stats["total_agents"] == len(ids)
        assert snap.counts == stats["health_distribution"]
        for i, k in enumerate(ids):
            if k.startswith("clocked"):
                assert snap.elapsed_ms[i] == (now_ns - reg[k]) / 1e6, k
            elif last.get(k) is not None:
                assert snap.elapsed_ms[i] == (now_ns - last[k]) / 1e6, k
            else:
                assert math.isnan(snap.elapsed_ms[i]), k
        assert np.array_equal(snap.phi, m.phi())
        assert len(set(snap.states.tolist())) >= 3, "a spread of states"
    m.stop_monitoring(ids[0])
    assert ids[0] not in m.snapshot().ids


def test_snapshot_empty(make_monitor):
    m = make_monitor()
    snap = m.snapshot()
    assert len(snap) == 0 and snap.phi.shape == (0,)
    assert snap.counts == {"healthy": 0, "degraded": 0, "critical": 0, "failed": 0}


def test_passes_split_into_parts_give_the_same_rows(jittery, monkeypatch):
    """Large passes run in parts side by side (one engine call per part, each kernel on one
    thread); the rows are those of a single call, in the same order."""
    from moai_flow_fast.analytics import _fleet

    m = jittery
    pick = [*list(m.monitoring_agents)[::-1], "unknown"]
    whole = m.interval_stats(pick), m.phi(pick), m.phi(), m.snapshot().phi
    monkeypatch.setattr(_fleet, "_SPLIT_AGENTS", 16)
    monkeypatch.setattr(_fleet.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert _fleet._parts(len(pick)) == 3
    parts = m.interval_stats(pick), m.phi(pick), m.phi(), m.snapshot().phi
    assert parts[0].tobytes() == whole[0].tobytes()
    for a, b in zip(parts[1:], whole[1:], strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    # an error in one part's thread reaches the caller
    with pytest.raises(TypeError, match="threshold"):
        m._fleet._in_parts(m.handles(pick[:-1]), -math.inf, math.inf,
                           lambda *args, **kw: m._fleet._windows(*args, threshold="x", **kw),
                           lambda a, b, rows: None)


# ----------------------------------------------------------------------------------------
# to_pandas: whichever branch applies here runs
# ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas is not installed: "
                    "test_to_pandas_without_pandas_names_the_extra covers this setup")
def test_to_pandas_matches_snapshot(gridded):
    m, _, _ = gridded
    df = m.to_pandas()
    snap = m.snapshot()
    assert df.index.name == "agent_id" and list(df.index) == snap.ids
    assert list(df.columns) == ["handle", "state", "elapsed_ms", "phi"]
    assert df["handle"].tolist() == snap.handles.tolist()
    assert df["state"].tolist() == [list(HealthState)[c].value for c in snap.states.tolist()]
    assert np.array_equal(df["elapsed_ms"].to_numpy(), snap.elapsed_ms, equal_nan=True)
    assert np.array_equal(df["phi"].to_numpy(), snap.phi)


@pytest.mark.skipif(HAVE_PANDAS, reason="pandas is installed: "
                    "test_to_pandas_matches_snapshot covers this setup")
def test_to_pandas_without_pandas_names_the_extra(make_monitor, monkeypatch):
    m = make_monitor()
    m.start_monitoring("a")
    monkeypatch.setitem(sys.modules, "pandas", None)      # import pandas -> ImportError
    with pytest.raises(ImportError, match=r"moai-flow-fast\[pandas\]"):
        m.to_pandas()


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------

BAD = [
    ("interval_stats", (), {"time_range": (1.0,)}, TypeError, "time_range"),
    ("interval_stats", (), {"time_range": "ab"}, TypeError, "time_range"),
    ("interval_stats", (), {"time_range": (float("nan"), 2e9)}, ValueError, "time_range"),
    ("interval_stats", (), {"time_range": (True, 2e9)}, TypeError, "time_range"),
    ("interval_stats", (), {"time_range": (1.0, None)}, TypeError, "time_range"),
    ("interval_stats", (), {"time_range": (1.0, "2")}, TypeError, "time_range"),
    ("interval_stats", ("ab",), {}, TypeError, "agent_ids"),
    ("interval_stats", ([["a"]],), {}, TypeError, "agent_ids"),
    ("phi", (), {"min_std_deviation_ms": 0}, ValueError, "min_std_deviation_ms"),
    ("phi", (), {"min_std_deviation_ms": float("nan")}, ValueError, "min_std_deviation_ms"),
    ("phi", (), {"min_std_deviation_ms": "1"}, TypeError, "min_std_deviation_ms"),
    ("phi", (), {"acceptable_heartbeat_pause_ms": -1}, ValueError,
     "acceptable_heartbeat_pause_ms"),
    ("phi", (), {"first_heartbeat_estimate_ms": 0}, ValueError, "first_heartbeat_estimate_ms"),
    ("phi", (), {"first_heartbeat_estimate_ms": float("inf")}, ValueError,
     "first_heartbeat_estimate_ms"),
    ("phi", (), {"now": float("nan")}, (TypeError, ValueError), "now"),
    ("phi", (), {"now": "soon"}, TypeError, "now"),
    ("phi", (), {"now": True}, TypeError, "now"),
    ("phi", ("ab",), {}, TypeError, "agent_ids"),
    ("snapshot", (), {"min_std_deviation_ms": -5}, ValueError, "min_std_deviation_ms"),
    ("snapshot", (), {"acceptable_heartbeat_pause_ms": None}, TypeError,
     "acceptable_heartbeat_pause_ms"),
]


@pytest.fixture
def small(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=5)
    ids = [f"a{i:03d}" for i in range(8)]
    m.start_monitoring_many(ids)
    Recorder().install(m)                 # callbacks: no WARNING lines in failure reports
    for k in range(7):
        vclock.advance(0.3 + 0.1 * k)
        m.record_heartbeats(ids[k:])
    m.stop_monitoring("a005")
    vclock.advance(1.5)
    m.advance()
    return m


@pytest.mark.parametrize("method,args,kwargs,exc,name", BAD,
                         ids=[f"{c[0]}-{i}-{c[4]}" for i, c in enumerate(BAD)])
def test_bad_input_raises_and_changes_nothing(small, method, args, kwargs, exc, name):
    m = small
    before = monitor_snapshot(m, ["a005"])
    with pytest.raises(exc, match=name):
        getattr(m, method)(*args, **kwargs)
    assert monitor_snapshot(m, ["a005"]) == before
