"""Time in state and uptime (issue 11 item 3): MoAI-Flow's HealthReporter usage against a
real monitor in virtual time, and an exact model of "up" on random heartbeat schedules."""
from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from conftest import START, WALL_START
from hypothesis import given, settings
from hypothesis import strategies as st

IV = 1.0   # interval, s
T = 3


def wall(t: float) -> float:
    """Unix seconds of virtual time t (seconds after the clock's start)."""
    return WALL_START + t


def drive(m, vclock, schedule, until, step=0.05):
    """Advance virtual time from now to `until` (seconds after START), recording the
    heartbeats of `schedule` {agent: sorted times} as their times come."""
    pending = {a: list(ts) for a, ts in schedule.items()}
    t = vclock.now - START
    while t < until - 1e-9:
        t = min(until, t + step)
        for agent, ts in pending.items():
            while ts and ts[0] <= t + 1e-9:
                m.advance(to=max(vclock.now, START + ts.pop(0)))
                m.record_heartbeat(agent)
        m.advance(to=max(vclock.now, START + t))


def model_down(beats, start, end, registered=0.0, start_clock=False):
    """Exact seconds down (CRITICAL or FAILED) in [start, end] for heartbeats `beats`."""
    lo, hi = max(start, registered), end
    marks = ([registered] if start_clock else []) + list(beats)
    down = 0.0
    for i, b in enumerate(marks):
        nxt = marks[i + 1] if i + 1 < len(marks) else hi
        a = b + 2 * IV    # CRITICAL (or FAILED when T <= 2) from two intervals on
        down += max(0.0, min(nxt, hi) - max(a, lo))
    return down


def test_health_reporter_usage(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    for agent in ("healthy", "flaky", "dead", "late"):
        assert m.start_monitoring(agent)
    every = [round(0.5 * k, 3) for k in range(1, 201)]          # 0.5 .. 100 s
    schedule = {
        "healthy": every,
        "flaky": [t for t in every if not 40 < t < 70],        # silent for 30 s
        "dead": [t for t in every if t <= 20],                 # dead after 20 s
        "late": [round(1.5 * k, 3) for k in range(1, 67)],     # always 0.5 s late
    }
    drive(m, vclock, schedule, 100.0)
    start, end = datetime.fromtimestamp(wall(0)), datetime.fromtimestamp(wall(100))

    health = m.get_all_agents_health()
    assert health == {"healthy": "healthy", "flaky": "healthy", "dead": "failed",
                      "late": m.check_agent_health("late").value}
    assert m.get_agent_health("dead") == "failed"
    assert m.get_uptime_percentage("healthy", start, end) == pytest.approx(100.0)
    # Flaky: last beat at 40, CRITICAL from 42, back at 70: down 28 s of 100.
    assert m.get_uptime_percentage("flaky", start, end) == pytest.approx(72.0, abs=1e-6)
    # Dead: last beat at 20, CRITICAL from 22 on: up 22 s of 100.
    assert m.get_uptime_percentage("dead", start, end) == pytest.approx(22.0, abs=1e-6)
    # Late: DEGRADED for 0.5 s of every 1.5 s, never CRITICAL: up (DEGRADED counts as up).
    assert m.get_uptime_percentage("late", start, end) == pytest.approx(100.0)
    durations = m.get_state_durations("late", start, end)
    # Beats at 1.5, 3, ..., 99: 65 gaps of 1.5 s, each DEGRADED for its last 0.5 s.
    assert durations["degraded"] == pytest.approx(32.5, abs=1e-6)
    assert durations["critical"] == durations["failed"] == 0.0
    assert sum(durations.values()) == pytest.approx(100.0)
    fleet = m.uptime(["healthy", "flaky", "dead", "late"], start, end)
    assert fleet == pytest.approx([100.0, 72.0, 22.0, 100.0], abs=1e-6)


def test_durations_cover_only_the_monitored_part(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    vclock.advance(10.0)
    m.start_monitoring("a")                  # registered at t = 10
    m.record_heartbeat("a")
    m.advance(to=START + 20.0)               # silent since 10: CRITICAL at 12
    d = m.get_state_durations("a", wall(0), wall(20))
    assert d == pytest.approx({"healthy": 1.0, "degraded": 1.0, "critical": 1.0,
                               "failed": 7.0})
    assert sum(d.values()) == pytest.approx(10.0)
    assert m.get_uptime_percentage("a", wall(0), wall(20)) == pytest.approx(20.0)
    assert m.get_uptime_percentage("a", wall(0), wall(5)) is None       # before it existed
    assert m.get_uptime_percentage("nobody", wall(0), wall(20)) is None
    with pytest.raises(ValueError, match="not being monitored"):
        m.get_state_durations("nobody")
    # Defaults: since registration, until now.
    assert m.get_state_durations("a") == pytest.approx(d)


def test_clock_started_at_registration_counts_from_registration(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    m.start_monitoring("silent", start_clock=True)
    m.advance(to=START + 10.0)
    assert m.get_uptime_percentage("silent", wall(0), wall(10)) == pytest.approx(20.0)


def test_folded_changes_keep_totals_since_registration(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    m.start_monitoring("flap")
    beats = []
    t = 0.0
    for k in range(200):                     # 400 changes: more than the 256 kept
        t += 2.5 if k % 2 else 0.5           # every other gap: CRITICAL for 0.5 s
        beats.append(round(t, 3))
    drive(m, vclock, {"flap": beats}, beats[-1])
    end = beats[-1]
    want = 100.0 * (1 - model_down(beats, 0.0, end) / end)
    assert m.get_uptime_percentage("flap", wall(0), wall(end)) == pytest.approx(want)
    assert m.get_uptime_percentage("flap", wall(1.0), wall(end)) is None   # folded part
    late = end - 40.0                        # only kept changes: answered exactly
    want = 100.0 * (1 - model_down(beats, late, end) / 40.0)
    assert m.get_uptime_percentage("flap", wall(late), wall(end)) == pytest.approx(want)


def test_restart_starts_a_fresh_record(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=START + 10.0)
    m.stop_monitoring("a")
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=START + 11.0)
    assert m.get_uptime_percentage("a", wall(0), wall(11)) == pytest.approx(100.0)


def test_bad_window_arguments(make_monitor):
    m = make_monitor()
    m.start_monitoring("a")
    with pytest.raises(TypeError, match="start"):
        m.get_uptime_percentage("a", "yesterday", None)
    with pytest.raises(ValueError, match="end"):
        m.get_uptime_percentage("a", 10.0, 5.0)
    with pytest.raises(ValueError, match="start"):
        m.get_state_durations("a", math.nan)
    with pytest.raises(TypeError, match="agent_id"):
        m.get_uptime_percentage(["unhashable"], None, None)


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.2, 4.0), min_size=1, max_size=25),
       tail=st.floats(0.0, 6.0), start=st.floats(0.0, 1.0), width=st.floats(0.5, 1.0),
       start_clock=st.booleans())
def test_uptime_matches_an_exact_model(engine, gaps, tail, start, width, start_clock):
    from moai_flow_fast import HeartbeatMonitor, VirtualClock

    clock = VirtualClock(start=START, wall_start=WALL_START)
    m = HeartbeatMonitor(1000, T, engine=engine, clock=clock)
    try:
        m.start_monitoring("a", start_clock=start_clock)
        beats = list(np.round(np.cumsum(gaps), 3))
        end = beats[-1] + tail
        drive(m, clock, {"a": beats}, end, step=0.5)
        lo = start * end * (1 - width)
        hi = lo + width * (end - lo)
        if hi - lo < 1e-3:
            return
        want = 100.0 * (1 - model_down(beats, lo, hi, start_clock=start_clock) / (hi - lo))
        got = m.get_uptime_percentage("a", wall(lo), wall(hi))
        # Tolerance: Unix seconds near 1.7e9 carry about 2.4e-7 s of float64 resolution.
        assert got == pytest.approx(want, abs=1e-4)
        assert m.uptime(["a"], wall(lo), wall(hi))[0] == pytest.approx(want, abs=1e-4)
        durations = m.get_state_durations("a", wall(lo), wall(hi))
        assert sum(durations.values()) == pytest.approx(hi - lo, abs=1e-5)
    finally:
        m.shutdown()
