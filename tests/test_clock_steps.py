"""Wall-clock steps (issue 5, item 3; SEMANTICS.md Part B 2), with injected clocks.

A step of +1 h or -1 h of the wall clock (VirtualClock.step_wall: NTP, a manual change)
neither fails healthy agents nor hides dead ones -- deadlines are monotonic -- while the
history keeps wall-clock Unix seconds, so time_range queries follow the wall clock, while
interval statistics and phi are monotonic (tests/test_mono_intervals.py).
"""
from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from hb_model import C, D, F, H, Recorder

T0, W0 = 1000.0, 1_700_000_000.0      # the vclock fixture: monotonic and wall at start
STEP_AT = 5.0                          # seconds after T0
BEAT = 0.25
ALIVE = [f"ok{i}" for i in range(5)]
STEPS = pytest.mark.parametrize("step", [3600.0, -3600.0], ids=["plus1h", "minus1h"])


def _run(m, vclock, step, *, until=12.0, dead_after=4.0):
    """ALIVE beat every 0.25 s; "dead" beats until `dead_after`; the wall clock steps by
    `step` at STEP_AT. Returns the (monotonic offset, wall) of every beat of ok0."""
    beats = []
    for a in [*ALIVE, "dead"]:
        m.start_monitoring(a)
    t = 0.0
    while t <= until + 1e-9:
        if abs(t - STEP_AT) < 1e-9:
            vclock.step_wall(step)
        m.advance(to=T0 + t)
        for a in ALIVE:
            assert m.record_heartbeat(a)
        beats.append((t, vclock.time()))
        if t <= dead_after + 1e-9:
            assert m.record_heartbeat("dead")
        t += BEAT
    return beats


@STEPS
def test_step_neither_fails_healthy_nor_hides_dead(make_monitor, vclock, step):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=1000)
    rec = Recorder().install(m, recovery=True)
    _run(m, vclock, step)
    alerts = [(e[1], e[2], e[3]) for e in rec.events if e[0] == "alert"]
    assert [(a, s) for a, s, _ in alerts] == [("dead", D), ("dead", C), ("dead", F)]
    assert [e for e in rec.events if e[0] == "recovery"] == []
    for k, (_, _, det) in enumerate(alerts, start=1):
        # on the monotonic clock: deadline = last beat (T0 + 4) + k s, reported on time
        assert det["deadline_monotonic"] == pytest.approx(T0 + 4.0 + k)
        assert det["detected_monotonic"] == pytest.approx(T0 + 4.0 + k)
        assert det["elapsed_seconds"] == pytest.approx(float(k))   # not k +- 3600
        # last heartbeat in wall time: before the step
        assert det["last_heartbeat"] == datetime.fromtimestamp(W0 + 4.0).isoformat()
    for a in ALIVE:
        assert m.check_agent_health(a) is H
        assert m.monitoring_agents[a]["last_state"] is H
        assert m.monitoring_agents[a]["last_heartbeat"] == pytest.approx(vclock.time())
    assert m.check_agent_health("dead") is F
    assert m.get_unhealthy_agents(D) == ["dead"]
    st = m.get_monitoring_stats()
    assert st["health_distribution"] == {"healthy": 5, "degraded": 0, "critical": 0,
                                         "failed": 1}
    snap = m.snapshot()
    ok = np.array([i in ALIVE for i in snap.ids])
    assert (snap.elapsed_ms[ok] < 1000).all() and (snap.elapsed_ms[ok] >= 0).all()
    assert snap.elapsed_ms[~ok][0] == pytest.approx(8000.0)


@STEPS
def test_dead_just_before_step_is_detected_on_time(make_monitor, vclock, step):
    """The agent dies, then the wall clock steps: its deadlines are not moved an hour."""
    m = make_monitor(interval_ms=1000, failure_threshold=2)
    rec = Recorder().install(m)
    m.start_monitoring("x")
    m.record_heartbeat("x")
    vclock.step_wall(step)
    m.advance(to=T0 + 0.99)
    assert rec.events == []
    m.advance(to=T0 + 1.0)
    m.advance(to=T0 + 2.0)
    assert rec.simple() == [("alert", "x", D), ("alert", "x", F)]


@STEPS
def test_history_follows_wall_clock_and_time_range(make_monitor, vclock, step):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=1000)
    beats = _run(m, vclock, step)
    hist = m.get_heartbeat_history("ok0")
    assert [r["timestamp"] for r in hist] == pytest.approx([w for _, w in beats])
    for (t, _), r in zip(beats, hist):
        assert r["timestamp"] == pytest.approx(W0 + t + (step if t >= STEP_AT else 0.0))
    n_before = round(STEP_AT / BEAT)     # beats at 0 .. 4.75
    n_after = len(beats) - n_before

    def window(lo, hi):
        return m.get_heartbeat_history(
            "ok0", time_range=(datetime.fromtimestamp(lo), datetime.fromtimestamp(hi)))

    pre = window(W0 - 1, W0 + STEP_AT - BEAT / 2)
    post = window(W0 + step + STEP_AT - BEAT / 2, W0 + step + 100)
    assert len(pre) == n_before and len(post) == n_after
    assert pre + post == hist          # insertion order, whichever way the wall clock went
    # the array API agrees, oldest first (insertion order, even when the wall went back)
    arr = m.history_array("ok0", copy=True)
    assert arr.tolist() == pytest.approx([r["timestamp"] for r in hist])
    # interval statistics are monotonic (issue 11): the step is in no interval
    stats = m.interval_stats(["ok0"])[0]
    assert stats["count"] == len(hist) - 1
    for f in ("mean", "std", "min", "max", "p50", "p95", "p99", "last"):
        assert math.isfinite(stats[f]), f
    assert stats["p50"] == pytest.approx(BEAT)
    assert stats["min"] == pytest.approx(BEAT) and stats["max"] == pytest.approx(BEAT)
    # the post-step window alone: regular 0.25 s intervals
    post_stats = m.interval_stats(["ok0"], time_range=(W0 + step + STEP_AT - 0.1,
                                                       W0 + step + 100))[0]
    assert post_stats["count"] == n_after - 1
    assert post_stats["mean"] == pytest.approx(BEAT)
    assert post_stats["std"] == pytest.approx(0.0, abs=1e-9)
    phi = m.phi(["ok0"])
    assert np.isfinite(phi).all()


@STEPS
def test_batch_timestamps_after_step(make_monitor, vclock, step):
    """Explicit timestamps are read in the current wall clock: t maps to
    now_mono - (now_wall - t)."""
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("x")
    m.record_heartbeat("x")                       # T0
    vclock.advance(0.5)
    vclock.step_wall(step)
    # stamped 0.2 s ago in the stepped wall clock: accepted, at monotonic T0 + 0.3
    assert m.record_heartbeats(["x"], [vclock.time() - 0.2]).tolist() == [True]
    assert m.get_heartbeat_history("x")[-1]["timestamp"] == pytest.approx(vclock.time() - 0.2)
    vclock.advance(1.25)                          # T0 + 1.75: 1.45 s after that beat
    assert m.check_agent_health("x") is D
    assert m.snapshot().elapsed_ms[0] == pytest.approx(1450.0)
    # a stamp in the pre-step wall clock: +1 h -> an hour old (older than the last beat,
    # rejected); -1 h -> in the future (counts as now)
    old_wall = vclock.time() - step
    got = m.record_heartbeats(["x"], [old_wall]).tolist()
    if step > 0:
        assert got == [False]
        assert m.check_agent_health("x") is D
    else:
        assert got == [True]
        assert m.check_agent_health("x") is H
        assert m.get_heartbeat_history("x")[-1]["timestamp"] == pytest.approx(vclock.time())


@STEPS
def test_part_a_last_heartbeat_write_after_step(make_monitor, vclock, step):
    """The old-test pattern `monitoring_agents[id]["last_heartbeat"] = time() - 1.5`
    is read against the current wall clock, after a step too."""
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("x")
    m.record_heartbeat("x")
    vclock.step_wall(step)
    m.monitoring_agents["x"]["last_heartbeat"] = vclock.time() - 1.5
    assert m.check_agent_health("x") is D
    assert m.monitoring_agents["x"]["last_heartbeat"] == pytest.approx(vclock.time() - 1.5)


def test_repeated_steps_and_slew(make_monitor, vclock):
    """Many steps both ways (a misbehaving NTP) over a minute: no false alert, and the
    silent agent is still convicted exactly on its monotonic deadlines."""
    m = make_monitor(interval_ms=500, failure_threshold=4)
    rec = Recorder().install(m)
    for a in ("a", "b", "silent"):
        m.start_monitoring(a)
        m.record_heartbeat(a)
    rng = np.random.default_rng(5)
    t = 0.0
    for _ in range(240):
        t += 0.25
        vclock.step_wall(float(rng.choice([-3600.0, 3600.0, -0.7, 0.7, 86400.0, -86400.0])))
        m.advance(to=T0 + t)
        m.record_heartbeat("a")
        m.record_heartbeat("b")
    assert rec.simple() == [("alert", "silent", D), ("alert", "silent", C),
                            ("alert", "silent", F)]
    dl = [e[3]["deadline_monotonic"] for e in rec.events]
    assert dl == pytest.approx([T0 + 0.5, T0 + 1.0, T0 + 2.0])
