"""Intervals in monotonic time (issue 11, item 1; core/_steps.py), both engines.

The history rings hold Unix wall-clock timestamps (the Part A views return them as they
were read), yet every interval-based figure -- interval_stats, phi, the snapshot's
interval columns -- is computed from monotonic intervals: a wall-clock step of any size
changes none of them. Each agent keeps up to MARKS step markers; the tests below pin the
behaviour at their limits too (more steps than markers in one window, markers leaving the
ring, backdated heartbeats, changes below the tolerance).

All times are dyadic (multiples of 1/8 s on a clock that starts at 1.7e9 s), so the wall
timestamps are exact in float64 and a stepped run must reproduce its unstepped twin to
1e-9 relative (they agree to the bit in practice).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hb_model import NS, STAT_FIELDS, interval_row, mono_intervals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HeartbeatMonitor, VirtualClock
from moai_flow_fast.core import _steps

T0, W0 = 1000.0, 1_700_000_000.0
GAPS = [1.0, 1.25, 0.75, 1.5, 0.5, 1.125]
REL = 1e-9
PHI_KW = [{}, {"min_std_deviation_ms": 10.0, "threshold": 3.0},
          {"acceptable_heartbeat_pause_ms": 500.0, "first_heartbeat_estimate_ms": 800.0}]


def _run(make_monitor, steps, *, n=12, history_size=100, gaps=GAPS):
    """n heartbeats of agent "a", `gaps` apart (cycled); the wall clock steps by steps[i]
    just before heartbeat i. Returns the monitor, its clock and the (mono_ns, wall) of
    every heartbeat."""
    clock = VirtualClock(start=T0, wall_start=W0)
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=history_size,
                     clock=clock)
    m.start_monitoring("a")
    records = []
    for i in range(n):
        if i in steps:
            clock.step_wall(steps[i])
        assert m.record_heartbeat("a")
        records.append((clock.monotonic_ns(), clock.time()))
        clock.advance(gaps[i % len(gaps)])
    return m, clock, records


def _row(m, agent="a", time_range=None):
    r = m.interval_stats([agent], time_range=time_range)[0]
    return {f: r[f] for f in STAT_FIELDS}


def _same(got, want, rel=REL, abs_=1e-12):
    assert got.keys() == want.keys()
    for f in want:
        g, w = float(got[f]), float(want[f])
        if math.isnan(w):
            assert math.isnan(g), (f, g, w)
        else:
            assert g == pytest.approx(w, rel=rel, abs=abs_), (f, g, w)


def _engine_snapshot(m):
    _, _, _, elapsed, count, means, stds, _, _ = m._engine.snapshot()
    return elapsed.tolist(), count.tolist(), means.tolist(), stds.tolist()


def _assert_twins(m, ref, records, ref_records, clock, ref_clock):
    """Everything interval-based equal in the stepped run and its unstepped twin."""
    _same(_row(m), _row(ref))
    _same(_row(m), interval_row(mono_intervals(records)))
    e1, c1, m1, s1 = _engine_snapshot(m)
    e2, c2, m2, s2 = _engine_snapshot(ref)
    assert (e1, c1) == (e2, c2)
    assert m1 == pytest.approx(m2, rel=REL, nan_ok=True)
    assert s1 == pytest.approx(s2, rel=REL, abs=1e-12, nan_ok=True)
    for kw in PHI_KW:
        assert m.phi(["a"], **kw).tolist() == pytest.approx(ref.phi(["a"], **kw).tolist(),
                                                            rel=REL)
        assert m.snapshot(**kw).phi.tolist() == pytest.approx(
            ref.snapshot(**kw).phi.tolist(), rel=REL)
    # the history keeps the raw wall-clock timestamps: the step shows there, only there
    assert [r["timestamp"] for r in m.get_heartbeat_history("a")] == [w for _, w in records]
    assert m.history_array("a", copy=True).tolist() == [w for _, w in records]
    assert [r["timestamp"] for r in m.heartbeat_history["a"]] == [w for _, w in records]
    assert [mono for mono, _ in records] == [mono for mono, _ in ref_records]


STEPS = pytest.mark.parametrize("step", [3600.0, -3600.0, 2.0, -2.0, 0.125, 86400.0 * 365],
                                ids=["plus1h", "minus1h", "plus2s", "minus2s", "plus125ms",
                                     "plus1y"])


@STEPS
def test_step_changes_no_interval_figure(make_monitor, step):
    m, clock, records = _run(make_monitor, {5: step})
    ref, ref_clock, ref_records = _run(make_monitor, {})
    assert [w for _, w in records][5:] == pytest.approx([w + step for _, w in ref_records][5:])
    assert m._engine.steps("a") == [(5, pytest.approx(step, abs=1e-6))]
    _assert_twins(m, ref, records, ref_records, clock, ref_clock)
    # an agent 5 s overdue: phi is the unstepped one's (Part B: the step hides nothing)
    clock.advance(5.0)
    ref_clock.advance(5.0)
    _assert_twins(m, ref, records, ref_records, clock, ref_clock)
    assert m.phi(["a"])[0] > 8


@STEPS
def test_time_range_filters_raw_wall_times(make_monitor, step):
    """A time_range selects records by their raw wall-clock timestamps (as
    get_heartbeat_history does); the intervals between those kept stay monotonic."""
    m, _, records = _run(make_monitor, {5: step})
    walls = [w for _, w in records]
    ranges = [(walls[0], walls[4]), (walls[5], walls[-1]), (min(walls), max(walls)),
              (walls[2], walls[8]), (walls[8], walls[2]), (walls[3] - 0.01, walls[7] + 0.01)]
    for lo, hi in ranges:
        want = interval_row(mono_intervals(records, lo, hi))
        _same(_row(m, time_range=(lo, hi)), want)
        kept = [w for w in walls if lo <= w <= hi]
        got = [r["timestamp"] for r in m.get_heartbeat_history("a")
               if lo <= r["timestamp"] <= hi]
        assert got == kept


def test_several_steps_in_one_window(make_monitor):
    steps = {2: 3600.0, 4: -7200.0, 6: 2.0, 8: -0.5}
    m, clock, records = _run(make_monitor, steps)
    ref, ref_clock, ref_records = _run(make_monitor, {})
    assert sorted(m._engine.steps("a")) == [(i, pytest.approx(s, abs=1e-6))
                                            for i, s in sorted(steps.items())]
    _assert_twins(m, ref, records, ref_records, clock, ref_clock)


def test_two_steps_in_one_interval_fold(make_monitor, vclock):
    """Steps between two heartbeats add up into one marker: the offset change."""
    m = make_monitor(interval_ms=1000, history_size=10)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.advance(1.0)
    vclock.step_wall(3600.0)
    vclock.step_wall(-1.5)
    m.record_heartbeat("a")
    assert m._engine.steps("a") == [(1, pytest.approx(3598.5, abs=1e-6))]
    assert _row(m)["max"] == pytest.approx(1.0, rel=REL)


def test_more_steps_than_markers_drop_the_smallest(make_monitor):
    """MARKS markers per agent: a further step in the same window drops the smallest
    correction, and only the interval that crossed it falls back to wall-clock time."""
    assert _steps.MARKS == 4
    steps = {1: 3600.0, 3: -3600.0, 5: 10.0, 7: 0.5, 9: 7200.0}
    m, _, records = _run(make_monitor, steps)
    got = sorted(m._engine.steps("a"))
    assert [i for i, _ in got] == [1, 3, 5, 9]
    assert [c for _, c in got] == pytest.approx([3600.0, -3600.0, 10.0, 7200.0], abs=1e-6)
    iv = mono_intervals(records)
    iv[6] += 0.5               # the interval ending at heartbeat 7: wall-clock time
    _same(_row(m), interval_row(iv))


def test_marker_leaves_the_ring(make_monitor):
    """A marker lives while the record before it is in the ring; the statistics follow
    the ring (monotonic) at every heartbeat."""
    H = 5
    clock = VirtualClock(start=T0, wall_start=W0)
    m = make_monitor(interval_ms=1000, history_size=H, clock=clock)
    m.start_monitoring("a")
    records = []
    for i in range(14):
        if i == 3:
            clock.step_wall(-3600.0)
        if i == 9:
            clock.step_wall(120.0)
        m.record_heartbeat("a")
        records.append((clock.monotonic_ns(), clock.time()))
        clock.advance(GAPS[i % len(GAPS)])
        ring = records[-H:]
        _same(_row(m), interval_row(mono_intervals(ring)))
        first = len(records) - len(ring)          # heartbeat number of the oldest record
        want = [(k - first, c) for k, c in ((3, -3600.0), (9, 120.0)) if first < k <= i]
        assert m._engine.steps("a") == [(o, pytest.approx(c, abs=1e-6)) for o, c in want], i
        assert [r["timestamp"] for r in m.get_heartbeat_history("a")] == [w for _, w in ring]


@pytest.mark.parametrize("history_size", [1, 2])
def test_tiny_rings(make_monitor, history_size):
    m, _, records = _run(make_monitor, {3: 3600.0, 5: -60.0}, n=6, history_size=history_size)
    assert m._engine.steps("a") == ([] if history_size == 1
                                    else [(1, pytest.approx(-60.0, abs=1e-6))])
    _same(_row(m), interval_row(mono_intervals(records[-history_size:])))


def test_backdated_heartbeats_make_no_marker(make_monitor, vclock):
    """Explicit timestamps are read in the current wall clock: they carry the current
    offset, so they never look like a step -- before a step, after it, in a batch."""
    m = make_monitor(interval_ms=1000, history_size=100)
    m.start_monitoring("a")
    records = []

    def stamped(ages):
        now_mono, now_wall = vclock.monotonic_ns(), vclock.time()
        stamps = [now_wall - age for age in ages]
        assert m.record_heartbeats(["a"] * len(ages), stamps).all()
        records.extend((now_mono - round(age * NS), t) for age, t in zip(ages, stamps))

    stamped([0.75, 0.5, 0.125])
    vclock.advance(2.0)
    stamped([1.5, 1.0, 0.0])
    assert m._engine.steps("a") == []
    _same(_row(m), interval_row(mono_intervals(records)))
    vclock.advance(1.0)
    vclock.step_wall(-3600.0)
    stamped([0.875, 0.25])           # the first of these crosses the step: one marker
    vclock.advance(1.5)
    stamped([1.0, 0.5, 0.0])
    assert m._engine.steps("a") == [(6, pytest.approx(-3600.0, abs=1e-6))]
    _same(_row(m), interval_row(mono_intervals(records)))
    # the Part A write of last_heartbeat moves no record and makes no marker either
    m.monitoring_agents["a"]["last_heartbeat"] = vclock.time() - 0.25
    vclock.advance(0.5)
    m.record_heartbeat("a")
    records.append((vclock.monotonic_ns(), vclock.time()))
    assert len(m._engine.steps("a")) == 1
    _same(_row(m), interval_row(mono_intervals(records)))


def test_change_below_tolerance_stays_in_its_interval(make_monitor):
    """Below STEP_TOLERANCE_S + SLEW_RATE x interval an offset change is read noise or
    slew: no marker, the interval keeps it (at most 1 ms + 0.05 %)."""
    tiny = 2.0 ** -11                     # 0.49 ms, dyadic: exact wall timestamps
    assert tiny < _steps.STEP_TOLERANCE_S
    m, _, records = _run(make_monitor, {4: tiny})
    assert m._engine.steps("a") == []
    walls = [w for _, w in records]
    wall_iv = [b - a for a, b in itertools.pairwise(walls)]
    _same(_row(m), interval_row(wall_iv))
    iv = mono_intervals(records)
    assert wall_iv[3] - iv[3] == pytest.approx(tiny, rel=1e-9)


def test_clear_and_restart_forget_markers(make_monitor, vclock):
    m, clock, _ = _run(make_monitor, {3: 3600.0})
    assert len(m._engine.steps("a")) == 1
    assert m.clear_history("a") == 1
    assert m._engine.steps("a") == []
    m.record_heartbeat("a")
    clock.advance(1.0)
    m.record_heartbeat("a")
    assert m._engine.steps("a") == []
    assert _row(m)["mean"] == pytest.approx(1.0, rel=REL)
    clock.step_wall(60.0)
    clock.advance(1.0)
    m.record_heartbeat("a")
    assert len(m._engine.steps("a")) == 1
    m.stop_monitoring("a")
    assert m._engine.steps("a") == []
    m.start_monitoring("a")
    assert m._engine.steps("a") == []


def test_many_agents_only_stepped_ones_fixed(make_monitor, vclock):
    """A pass over many agents: those with markers are fixed up, the others untouched."""
    m = make_monitor(interval_ms=1000, history_size=16)
    ids = [f"n{i}" for i in range(300)]
    m.start_monitoring_many(ids)
    recs = {a: [] for a in ids}
    for k in range(20):
        if k == 7:
            vclock.step_wall(-600.0)
        for j, a in enumerate(ids):
            if (j + k) % 3 == 0 or j % 7 == 0:
                m.record_heartbeat(a)
                recs[a].append((vclock.monotonic_ns(), vclock.time()))
        vclock.advance(0.25 * (1 + k % 3))
    rows = m.interval_stats(ids)
    lo, hi = W0 - 600 + 3.0, W0 + 3.0
    ranged = m.interval_stats(ids, time_range=(lo, hi))
    for i, a in enumerate(ids):
        ring = recs[a][-16:]
        _same({f: rows[i][f] for f in STAT_FIELDS}, interval_row(mono_intervals(ring)))
        _same({f: ranged[i][f] for f in STAT_FIELDS},
              interval_row(mono_intervals(ring, lo, hi)))


# -- property: random heartbeats and wall-clock steps, both engines, a numpy reference -------

OPS = st.one_of(
    st.tuples(st.just("beat")),
    st.tuples(st.just("adv"), st.integers(1, 16)),                 # k / 8 s
    st.tuples(st.just("big"), st.integers(1, 4)),                  # k * 4 s
    st.tuples(st.just("back"), st.integers(0, 12)),                # stamped k / 8 s ago
    st.tuples(st.just("step"), st.sampled_from(
        [3600.0, -3600.0, 2.0, -2.0, 86400.0, -37.125, 5.5])),
)


def _replay(engine, ops, history_size, steps):
    clock = VirtualClock(start=T0, wall_start=W0)
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, history_size=history_size,
                         engine=engine, clock=clock)
    m.start_monitoring("a")
    records, last = [], None
    for op in ops:
        if op[0] == "beat":
            assert m.record_heartbeat("a")
            last = clock.monotonic_ns()
            records.append((last, clock.time()))
        elif op[0] == "adv":
            clock.advance(op[1] / 8)
        elif op[0] == "big":
            clock.advance(op[1] * 4.0)
        elif op[0] == "back":
            mono, t = clock.monotonic_ns() - op[1] * NS // 8, clock.time() - op[1] / 8
            ok = last is None or mono >= last
            assert m.record_heartbeats(["a"], [t]).tolist() == [ok]
            if ok:
                last = mono
                records.append((mono, t))
        elif steps:
            clock.step_wall(op[1])
    return m, records


@pytest.mark.compiled       # compares the two engines: left out of a pure-only run
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=40),
       history_size=st.sampled_from([1, 2, 3, 5, 8, 100]),
       pick=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_property_engines_agree_and_intervals_are_monotonic(ops, history_size, pick):
    # At most MARKS steps, each far above the tolerance (intervals here stay below 10 min),
    # so the reference is exactly the monotonic intervals.
    n_steps = 0
    kept_ops = []
    for op in ops:
        if op[0] == "step":
            n_steps += 1
            if n_steps > _steps.MARKS:
                continue
        kept_ops.append(op)
    runs = {}
    try:
        for engine in ("compiled", "pure"):
            runs[engine] = (_replay(engine, kept_ops, history_size, True),
                            _replay(engine, kept_ops, history_size, False))
        (mc, rc), (twin_c, _) = runs["compiled"]
        (mp, rp), (twin_p, _) = runs["pure"]
        assert rc == rp
        ring = rc[-history_size:]
        assert mc._engine.steps("a") == mp._engine.steps("a")
        walls = sorted(w for _, w in ring) or [W0]
        lo = walls[int(pick[0] * (len(walls) - 1))]
        hi = walls[int(pick[1] * (len(walls) - 1))]
        for tr in (None, (lo, hi)):
            want = interval_row(mono_intervals(ring, *(tr or (-math.inf, math.inf))))
            got_c, got_p = _row(mc, time_range=tr), _row(mp, time_range=tr)
            _same(got_c, want)
            _same(got_p, want)
            _same(got_c, got_p, rel=1e-12)
        for kw in PHI_KW[:2]:
            pc, pp = mc.phi(["a"], **kw)[0], mp.phi(["a"], **kw)[0]
            assert pc == pytest.approx(pp, rel=1e-12)
            assert pc == pytest.approx(twin_c.phi(["a"], **kw)[0], rel=REL)
            assert pp == pytest.approx(twin_p.phi(["a"], **kw)[0], rel=REL)
        sc, sp = _engine_snapshot(mc), _engine_snapshot(mp)
        assert sc[:2] == sp[:2]
        assert sc[2] == pytest.approx(sp[2], rel=1e-12, nan_ok=True)
        assert np.allclose(sc[3], sp[3], rtol=1e-9, atol=1e-9, equal_nan=True)
    finally:
        for pair in runs.values():
            for m, _ in pair:
                m.shutdown()
