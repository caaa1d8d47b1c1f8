"""Issue 10, items 1 and 4: backdated heartbeats (a replayed log, `timestamps=` in the
past) and `monitoring_agents[id]["last_heartbeat"]` writes report only what is true now,
each crossing at most once; the observer-stall guard convicts nobody for what a heartbeat
or a write did. Virtual time, both engines."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hb_model import SEVERITY, C, D, F, H, Recorder

from moai_flow_fast import HealthState

T0 = 1000.0
WALL0 = 1_700_000_000.0


def wall_at(mono: float) -> float:
    return WALL0 + (mono - T0)


def _mon(make_monitor, **kw):
    kw.setdefault("interval_ms", 5000)
    kw.setdefault("failure_threshold", 3)
    m = make_monitor(**kw)
    rec = Recorder().install(m, recovery=True)
    return m, rec


def _replay(m, vclock, ids, rounds=100, gap=5.0, end_ago=400.0, advance_between=True):
    handles = m.handles(ids)
    now = vclock.now
    first = now - end_ago - gap * (rounds - 1)
    for k in range(rounds):
        t = first + gap * k
        mask = m.record_heartbeats(handles, np.full(len(ids), wall_at(t)))
        assert mask.all()
        if advance_between:
            vclock.advance(0.01)
            m.advance()
    return first


@pytest.mark.parametrize("advance_between", [True, False])
def test_replayed_log_raises_each_crossing_at_most_once(make_monitor, vclock, advance_between):
    """The issue's replay at small scale: 100 rounds 5 s apart ending 400 s ago, for
    agents that never heartbeated live. Each agent: D, C and F once, no recovery."""
    m, rec = _mon(make_monitor)
    ids = [f"r{i}" for i in range(200)]
    m.start_monitoring_many(ids)
    vclock.advance(1000)
    first = _replay(m, vclock, ids, advance_between=advance_between)
    m.advance()
    per_agent = Counter((e[1], e[2]) for e in rec.events if e[0] == "alert")
    assert set(per_agent.values()) == {1}
    assert set(per_agent) == {(a, s) for a in ids for s in (D, C, F)}
    assert [e for e in rec.events if e[0] == "recovery"] == []
    for a in ids:
        assert m.check_agent_health(a) is F
        assert m.monitoring_agents[a]["last_state"] is F
    st = m.get_monitoring_stats()
    assert st["transitions"] == 3 * len(ids) and st["recoveries"] == 0
    assert st["total_heartbeats"] == len(ids) * 100
    # true deadlines: whole intervals after a replayed heartbeat (the first round's when
    # the wheel ran between rounds; else measured from the heartbeat that was the last one
    # when the crossing became due), never detected before them
    for _, _, _, det in rec.events:
        steps = (det["deadline_monotonic"] - first) / 5
        assert steps == pytest.approx(round(steps), abs=1e-6) and 1 <= round(steps) <= 102
        assert det["detected_monotonic"] >= det["deadline_monotonic"] - 1e-9
    if advance_between:
        ds = sorted({round(e[3]["deadline_monotonic"] - first, 6) for e in rec.events})
        assert ds == [5.0, 10.0, 15.0]


def test_replay_after_a_long_failure_raises_nothing(make_monitor, vclock):
    """Agents that failed long ago (reported FAILED) get a replay of older-than-now
    heartbeats that leave them FAILED: not one alert, not one recovery."""
    m, rec = _mon(make_monitor)
    ids = [f"f{i}" for i in range(50)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)                     # at T0
    m.advance(to=T0 + 20)                        # D, C, F for everyone
    assert len(rec.events) == 3 * len(ids)
    rec.take()
    vclock.advance(2000)
    _replay(m, vclock, ids)
    m.advance()
    assert rec.events == []
    assert m.get_monitoring_stats()["recoveries"] == 0
    assert all(m.check_agent_health(a) is F for a in ids)


def test_recovery_only_when_the_present_state_is_less_severe(make_monitor, vclock):
    """A backdated heartbeat that leaves the agent less severe than reported: a recovery,
    then the crossings already due, each once, in order, with their true deadlines. During
    the recovery callback the agent never reads as severe as the state it recovered from."""
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=5)
    seen = []
    m.configure_alerts(recovery_callback=lambda a, s, d: (
        rec.recovery(a, s, d), seen.append((d["previous_state"], m.check_agent_health(a)))))
    m.start_monitoring("a")
    m.record_heartbeat("a")                      # T0
    m.advance(to=T0 + 10)                        # D, C, F
    assert [e[2] for e in rec.take()] == [D, C, F]
    # present state from the backdated heartbeat: 2.5 s ago -> CRITICAL (< FAILED): the
    # recovery at once, the crossings already due at the wheel's next tick
    assert m.record_heartbeats(["a"], [wall_at(T0 + 7.5)]).all()
    assert [e[0] for e in rec.events] == ["recovery"]
    m.advance(to=T0 + 10.01)                     # the wheel's next tick
    ev = rec.take()
    assert [(e[0], e[2] if e[0] == "alert" else e[3]["previous_state"]) for e in ev] == \
        [("recovery", "failed"), ("alert", D), ("alert", C)]
    assert [e[3]["deadline_monotonic"] for e in ev[1:]] == [T0 + 8.5, T0 + 9.5]
    assert all(e[3]["detected_monotonic"] == T0 + 10.01 for e in ev[1:])
    assert [e[3]["elapsed_seconds"] for e in ev[1:]] == [2.51, 2.51]
    assert seen and all(SEVERITY[now] < SEVERITY[HealthState(prev)] for prev, now in seen)
    assert m.check_agent_health("a") is C and m.monitoring_agents["a"]["last_state"] is C
    # the next crossing is the true one: FAILED at T0 + 7.5 + 5
    m.advance(to=T0 + 12.49)
    assert rec.events == []
    m.advance(to=T0 + 12.5)
    assert [(e[2], e[3]["deadline_monotonic"]) for e in rec.take()] == [(F, T0 + 12.5)]


def test_no_recovery_when_still_as_severe(make_monitor, vclock):
    """The issue's inconsistency: a backdated heartbeat of a FAILED agent that leaves it
    FAILED must not deliver a recovery while check_agent_health says FAILED."""
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=T0 + 10)
    rec.take()
    assert m.record_heartbeats(["a"], [wall_at(T0 + 5)]).all()    # 5 s ago: still FAILED
    assert rec.events == [] and m.check_agent_health("a") is F
    assert m.get_heartbeat_history("a")[-1]["timestamp"] == wall_at(T0 + 5)
    assert m.monitoring_agents["a"]["last_heartbeat"] == wall_at(T0 + 5)


def test_backdated_heartbeat_before_the_wheel_looked(make_monitor, vclock):
    """The wheel has not run since the last live heartbeat; a backdated heartbeat reports
    the crossings due before it (they happened), then only what brings the reported state
    to the present one: here nothing more, the agent is CRITICAL now as reported."""
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")                      # T0
    vclock.advance(5)                            # no advance(): the wheel has not looked
    m.record_heartbeats(["a"], [wall_at(T0 + 2.5)])
    assert rec.simple() == [("alert", "a", D), ("alert", "a", C)]
    assert [e[3]["deadline_monotonic"] for e in rec.events] == [T0 + 1, T0 + 2]
    assert m.check_agent_health("a") is C
    rec.take()
    m.advance(to=T0 + 5.49)
    assert rec.events == []
    m.advance(to=T0 + 5.5)                       # FAILED: 3 s after the heartbeat at 2.5
    assert rec.simple() == [("alert", "a", F)]


def test_live_heartbeat_semantics_unchanged(make_monitor, vclock):
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.advance(2.5)                          # D and C due, the wheel has not looked
    m.record_heartbeat("a")
    assert rec.simple() == [("alert", "a", D), ("alert", "a", C), ("recovery", "a", "critical")]
    assert m.check_agent_health("a") is H


@pytest.mark.parametrize("back, alerts, state", [
    (0.5, [], H), (1.5, [D], D), (2.5, [D, C], C), (20.0, [D, C, F], F)])
def test_last_heartbeat_write_from_healthy(make_monitor, vclock, back, alerts, state):
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.advance(0.2)
    m.monitoring_agents["a"]["last_heartbeat"] = vclock.time() - back
    assert m.check_agent_health("a") is state
    m.advance(to=vclock.now + 0.01)                      # the wheel's next tick: each once
    assert [e[2] for e in rec.events] == alerts
    assert all(e[3]["detected_monotonic"] == vclock.now for e in rec.events)
    assert m.monitoring_agents["a"]["last_state"] is state
    m.advance(to=vclock.now + 0.001)
    assert [e[2] for e in rec.events] == alerts          # nothing more


def test_last_heartbeat_write_from_failed(make_monitor, vclock):
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=T0 + 10)
    rec.take()
    m.monitoring_agents["a"]["last_heartbeat"] = vclock.time() - 8     # still FAILED
    assert rec.events == []
    m.monitoring_agents["a"]["last_heartbeat"] = vclock.time() - 1.5   # DEGRADED now
    m.advance(to=T0 + 10.01)
    assert [(e[0], e[2] if e[0] == "alert" else e[3]["previous_state"]) for e in rec.take()] \
        == [("recovery", "failed"), ("alert", D)]
    assert m.check_agent_health("a") is D
    # the next crossings come from the written heartbeat, once
    m.advance(to=T0 + 11.5)
    assert [e[2] for e in rec.take()] == [C, F]
    m.advance(to=T0 + 30)
    assert rec.events == []


def test_repeated_writes_raise_each_crossing_once(make_monitor, vclock):
    m, rec = _mon(make_monitor, interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    for k in range(50):
        vclock.advance(0.1)
        m.monitoring_agents["a"]["last_heartbeat"] = vclock.time() - 30 - k
        m.advance()
    assert [e[2] for e in rec.events] == [D, C, F]


# ---------------------------------------------------------------- item 4: the stall guard

def _guarded(make_monitor):
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10, stall_guard_ms=2000,
                     stall_grace_ms=2000)
    rec = Recorder().install(m, recovery=True)
    return m, rec


@pytest.mark.parametrize("how", ["backdated", "write", "interval"])
def test_stall_guard_convicts_nobody_for_what_a_heartbeat_did(make_monitor, vclock, how):
    """The wheel is idle (nothing due for 100 s); then a backdated heartbeat, a
    last_heartbeat write or an interval write puts a deadline in the past. The next advance
    is not a stall, and another agent's real failure is reported within a tick."""
    m, rec = _guarded(make_monitor)
    m.start_monitoring("x", interval_ms=1000 if how != "interval" else 600_000)
    m.start_monitoring("y")
    if how == "interval":
        m.record_heartbeat("x")                  # a deadline 10 min away: an idle wheel
    m.advance(to=T0)
    vclock.set(T0 + 100)                         # nothing ran: nothing was due
    m.record_heartbeat("y")                      # y's D is due at T0 + 101
    if how == "backdated":
        m.record_heartbeats(["x"], [wall_at(T0 + 70)])
    elif how == "write":
        m.monitoring_agents["x"]["last_heartbeat"] = wall_at(T0 + 70)
    else:
        m.monitoring_agents["x"]["interval_ms"] = 1000
    m.advance(to=T0 + 100.01)
    assert m.get_monitoring_stats()["observer_stalls"] == 0
    m.advance(to=T0 + 101.0)
    ys = [e for e in rec.events if e[1] == "y"]
    assert [(e[2], e[3]["detected_monotonic"]) for e in ys] == [(D, T0 + 101.0)]
    assert m.get_monitoring_stats()["observer_stalls"] == 0


def test_a_late_wheel_run_is_still_a_stall(make_monitor, vclock):
    m, rec = _guarded(make_monitor)
    m.start_monitoring("y")
    m.record_heartbeat("y")
    m.advance(to=T0 + 0.5)
    m.advance(to=T0 + 30)                        # 29 s late for y's T0 + 1 deadline
    assert m.get_monitoring_stats()["observer_stalls"] == 1
    assert rec.events == []


def test_late_wheel_then_backdated_heartbeat_counts_one_stall(make_monitor, vclock):
    m, _rec = _guarded(make_monitor)
    m.start_monitoring_many(["y", "z"])
    m.record_heartbeats(["y", "z"])
    m.advance(to=T0 + 0.5)
    vclock.set(T0 + 30)
    m.record_heartbeats(["z"], [wall_at(T0 + 29.5)])    # the wheel is late: that is a stall
    m.advance()
    assert m.get_monitoring_stats()["observer_stalls"] == 1
