"""Alerts: callbacks, details, logging, ordering, recovery (Part B 5), raising /
slow / re-entrant callbacks, silent starters (Part B 4), monotonic deadlines
(Part B 2). Virtual time except the few tests marked as real-clock."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import pytest
from hb_model import MS, NS, Model, Recorder

from moai_flow_fast import HealthState

H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)
START = 1000.0
START_NS = 1000 * NS
WALL = 1_700_000_000.0


def iso(wall):
    return datetime.fromtimestamp(wall).isoformat()


def wall_at(mono_s):
    return WALL + (mono_s - START)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="moai_flow_fast")
    return caplog


def records(caplog, level, text=None):
    out = []
    for r in caplog.records:
        if r.levelno == level and (text is None or text in r.getMessage()):
            out.append(r)
    return out


# ---------------------------------------------------------------- details

def test_details_step_by_step(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert m.advance(to=1000.999) == 0
    assert m.advance(to=1001.0) == 1
    ((kind, aid, st, det),) = rec.take()
    assert (kind, aid, st) == ("alert", "a", D)
    assert isinstance(st, HealthState)
    assert det["previous_state"] == "healthy"
    assert det["current_state"] == "degraded"
    assert det["last_heartbeat"] == iso(WALL)
    assert det["elapsed_seconds"] == 1.0
    assert m.advance(to=1002.5) == 1
    ((_, _, st, det),) = rec.take()
    assert st is C and det["previous_state"] == "degraded" and det["current_state"] == "critical"
    assert det["elapsed_seconds"] == 2.5
    assert det["last_heartbeat"] == iso(WALL)
    assert m.advance(to=1003.0) == 1
    ((_, _, st, det),) = rec.take()
    assert st is F and det["previous_state"] == "critical" and det["current_state"] == "failed"
    assert det["elapsed_seconds"] == 3.0
    assert m.advance(to=2000.0) == 0                 # FAILED has no further crossing
    assert rec.take() == []


def test_details_rounding_and_unaligned_heartbeat(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    vclock.set(1000.25)
    m.record_heartbeat("a")
    m.advance(to=1001.3337)
    ((_, _, st, det),) = rec.take()
    assert st is D
    assert det["last_heartbeat"] == iso(wall_at(1000.25))
    assert det["elapsed_seconds"] == round(1.0837, 2)


def test_one_advance_jumps_past_all(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert m.advance(to=1010.0) == 3
    ev = rec.take()
    assert [(e[1], e[2]) for e in ev] == [("a", D), ("a", C), ("a", F)]
    assert [(e[3]["previous_state"], e[3]["current_state"]) for e in ev] == [
        ("healthy", "degraded"), ("degraded", "critical"), ("critical", "failed")]
    assert [e[3]["elapsed_seconds"] for e in ev] == [10.0, 10.0, 10.0]   # detection time
    assert m.monitoring_agents["a"]["last_state"] is F
    assert m.advance(to=1020.0) == 0
    assert rec.take() == []


@pytest.mark.parametrize("T", [1, 2])
def test_low_threshold_goes_degraded_then_failed(make_monitor, vclock, T):
    m = make_monitor(interval_ms=500, failure_threshold=T)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1000.5)
    m.advance(to=1001.0)
    ev = rec.take()
    assert [e[2] for e in ev] == [D, F]
    assert ev[1][3]["previous_state"] == "degraded"
    assert ev[1][3]["elapsed_seconds"] == 1.0


def test_T5_critical_lasts_until_5I(make_monitor, vclock):
    m = make_monitor(interval_ms=200, failure_threshold=5)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1000.4)
    assert [e[2] for e in rec.take()] == [D, C]
    m.advance(to=1000.999)
    assert rec.take() == []
    m.advance(to=1001.0)
    assert [e[2] for e in rec.take()] == [F]


# ---------------------------------------------------------------- tick rule

@pytest.mark.parametrize("tick_ms", [1, 7, 10])
@pytest.mark.parametrize("hb_offset_ns", [0, 5 * MS, 3, 9_999_999])
def test_tick_rule(make_monitor, vclock, tick_ms, hb_offset_ns):
    """A crossing with deadline d is reported by the first advance whose now is at or
    after the first tick boundary >= d; check_agent_health is exact meanwhile."""
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=tick_ms)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    vclock.set((START_NS + hb_offset_ns) / 1e9)
    m.record_heartbeat("a")
    hb = vclock.monotonic_ns()
    tick = tick_ms * MS
    d = hb + 1000 * MS
    boundary = -(-d // tick) * tick
    if d - 1 > hb:
        m.advance(to=(d - 1) / 1e9)
        assert rec.take() == []
    m.advance(to=d / 1e9)
    now = vclock.monotonic_ns()
    assert m.check_agent_health("a") is (D if now >= d else H)
    if boundary - 1 >= now:
        m.advance(to=(boundary - 1) / 1e9)
        if vclock.monotonic_ns() < boundary:
            assert rec.take() == []
            assert m.monitoring_agents["a"]["last_state"] is H
    m.advance(to=boundary / 1e9)
    assert [e[2] for e in rec.take()] == [D]
    assert m.monitoring_agents["a"]["last_state"] is D


def test_heartbeat_before_deadline_rearms(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.9)
    m.record_heartbeat("a")
    assert m.advance(to=1001.0) == 0
    assert m.advance(to=1001.89) == 0
    assert rec.take() == []
    assert m.advance(to=1001.9) == 1
    assert [e[2] for e in rec.take()] == [D]


def test_order_across_agents(make_monitor, vclock):
    """All crossings found in one advance are reported sorted by (deadline,
    registration sequence)."""
    m = make_monitor(failure_threshold=3, tick_ms=10)
    rec = Recorder().install(m)
    model = Model(tick_ms=10)
    for aid, iv in (("x", 300), ("y", 100), ("z", 200), ("w", 100)):
        m.start_monitoring(aid, interval_ms=iv)
        model.start(aid, iv, 3, vclock.monotonic_ns())
    for aid in ("w", "z", "y", "x"):
        m.record_heartbeat(aid)
        model.heartbeat(aid, vclock.monotonic_ns())
    n = m.advance(to=1005.0)
    expected = model.advance(vclock.monotonic_ns())
    assert n == len(expected) == 12
    assert [(e[1], e[2]) for e in rec.take()] == [(e[1], e[2]) for e in expected]
    # spelled out: deadlines 100(y,w) 200(y C, z D, w C) 300(y F, x D, w F) ...
    assert [(e[1], e[2]) for e in expected][:8] == [
        ("y", D), ("w", D), ("y", C), ("z", D), ("w", C), ("x", D), ("y", F), ("w", F)]


def test_restart_gets_later_sequence(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    for aid in ("a", "b"):
        m.start_monitoring(aid)
    m.stop_monitoring("a")
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.record_heartbeat("b")
    m.advance(to=1001.0)
    assert [e[1] for e in rec.take()] == ["b", "a"]


# ---------------------------------------------------------------- enabling / logging

def test_disabled_alerts_not_called_but_state_tracked(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.configure_alerts(on_degraded=False, on_failed=False)
    m.start_monitoring("agent-dis")
    m.record_heartbeat("agent-dis")
    assert m.advance(to=1005.0) == 3
    assert [e[2] for e in rec.take()] == [C]
    assert m.monitoring_agents["agent-dis"]["last_state"] is F
    assert records(logs, logging.WARNING, "agent-dis") == []


def test_all_disabled_no_callbacks_no_warnings(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False)
    m.start_monitoring("agent-off")
    m.record_heartbeat("agent-off")
    assert m.advance(to=1005.0) == 3
    assert records(logs, logging.WARNING, "agent-off") == []


def test_warning_logged_without_callback(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("agent-warn")
    m.record_heartbeat("agent-warn")
    m.advance(to=1001.0)
    assert len(records(logs, logging.WARNING, "agent-warn")) == 1
    m.advance(to=1005.0)
    assert len(records(logs, logging.WARNING, "agent-warn")) == 3


def test_alert_dicts_are_live(make_monitor, vclock):
    """Old tests assign into alert_callbacks / alert_enabled directly."""
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder()
    m.alert_callbacks[HealthState.FAILED] = rec.alert
    m.alert_callbacks[HealthState.DEGRADED] = rec.alert
    m.alert_enabled[HealthState.DEGRADED] = False
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1005.0)
    assert [e[2] for e in rec.take()] == [F]


# ------------------------------------------------------------ record_heartbeat crossings / recovery

def test_crossings_found_by_record_heartbeat(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("agent-r")
    m.record_heartbeat("agent-r")
    vclock.set(1002.5)                      # no advance: the heartbeat finds the crossings
    assert m.record_heartbeat("agent-r", {"back": True}) is True
    ev = rec.take()
    assert [(e[0], e[2]) for e in ev] == [("alert", D), ("alert", C), ("recovery", H)]
    assert [e[3]["elapsed_seconds"] for e in ev[:2]] == [2.5, 2.5]
    assert all(e[3]["last_heartbeat"] == iso(WALL) for e in ev[:2])
    r = ev[2][3]
    assert r["previous_state"] == "critical"
    assert r["current_state"] == "healthy"
    assert r["last_heartbeat"] == iso(wall_at(1002.5))
    assert r["elapsed_seconds"] == 2.5
    assert r["downtime_seconds"] == 1.5
    assert m.monitoring_agents["agent-r"]["last_state"] is H
    assert len(records(logs, logging.INFO, "agent-r")) >= 1
    # nothing stale left behind
    assert m.advance(to=1003.4) == 0
    assert m.advance(to=1003.5) == 1
    assert [e[2] for e in rec.take()] == [D]


def test_heartbeat_exactly_on_deadline_reports_crossing(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.999)
    m.record_heartbeat("a")
    assert rec.take() == []
    vclock.set(1001.999)
    m.record_heartbeat("a")                 # exactly at last + I: DEGRADED, then recovery
    assert [(e[0], e[2]) for e in rec.take()] == [("alert", D), ("recovery", H)]


def test_recovery_details_after_failed(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("agent-f")
    m.record_heartbeat("agent-f")
    m.advance(to=1004.0)
    rec.take()
    vclock.set(1007.25)
    m.record_heartbeat("agent-f")
    ((kind, aid, st, det),) = rec.take()
    assert (kind, aid, st) == ("recovery", "agent-f", H)
    assert det["previous_state"] == "failed"
    assert det["current_state"] == "healthy"
    assert det["last_heartbeat"] == iso(wall_at(1007.25))
    assert det["elapsed_seconds"] == 7.25
    assert det["downtime_seconds"] == 6.25
    assert records(logs, logging.INFO, "agent-f")
    assert m.get_monitoring_stats()["recoveries"] == 1


def test_recovery_logged_at_info_without_callback(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)             # no recovery callback
    m.start_monitoring("agent-i")
    m.record_heartbeat("agent-i")
    m.advance(to=1001.0)
    logs.clear()
    m.record_heartbeat("agent-i")
    assert [e[0] for e in rec.take()] == ["alert"]
    assert records(logs, logging.INFO, "agent-i")
    assert m.monitoring_agents["agent-i"]["last_state"] is H


def test_no_recovery_when_reported_healthy(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.5)
    m.record_heartbeat("a")
    vclock.set(1001.4)
    m.record_heartbeat("a")
    assert rec.take() == []
    assert m.get_monitoring_stats()["recoveries"] == 0


def test_recovery_opt_in_flag(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder()
    m.configure_alerts(on_recovery=False, recovery_callback=rec.recovery)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1001.0)
    m.record_heartbeat("a")
    assert rec.take() == []                 # disabled
    m.configure_alerts(on_recovery=True)    # callback kept (None leaves unchanged)
    m.advance(to=1002.0)
    m.record_heartbeat("a")
    assert [e[0] for e in rec.take()] == ["recovery"]
    m.configure_alerts(on_failed=False)     # unrelated change keeps recovery settings
    m.advance(to=1003.0)
    m.record_heartbeat("a")
    assert [e[0] for e in rec.take()] == ["recovery"]


# ---------------------------------------------------------------- raising callbacks

def test_raising_callbacks(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder()

    def bad(aid, st, det):
        rec.alert(aid, st, det)
        if aid == "bad":
            raise RuntimeError("boom in callback")

    m.configure_alerts(degraded_callback=bad, critical_callback=bad, failed_callback=bad,
                       on_recovery=True, recovery_callback=lambda *a: 1 / 0)
    m.start_monitoring("bad")
    m.start_monitoring("good")
    m.record_heartbeat("bad")
    m.record_heartbeat("good")
    assert m.advance(to=1005.0) == 6              # raises nothing
    assert rec.simple() == [("alert", "bad", D), ("alert", "good", D),
                            ("alert", "bad", C), ("alert", "good", C),
                            ("alert", "bad", F), ("alert", "good", F)]
    assert len(records(logs, logging.ERROR)) >= 3
    assert m.get_monitoring_stats()["callback_errors"] == 3
    assert m.record_heartbeat("bad") is True      # raising recovery callback swallowed
    assert m.get_monitoring_stats()["callback_errors"] == 4
    assert m.monitoring_agents["bad"]["last_state"] is H
    assert len(m.get_heartbeat_history("bad")) == 2


def test_raising_callback_real_clock(make_monitor, logs):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=1, tick_ms=5)
    got = threading.Event()

    def raising(aid, st, det):
        raise ValueError("nope")

    def ok(aid, st, det):
        got.set()

    m.configure_alerts(degraded_callback=raising, failed_callback=ok)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert got.wait(2.0)
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is True
    assert m.get_monitoring_stats()["callback_errors"] == 1
    assert records(logs, logging.ERROR)


# ---------------------------------------------------------------- real-clock timing

def test_detection_latency_real_clock(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=2, tick_ms=5)
    got = {}
    done = threading.Event()

    def cb(aid, st, det):
        got[st] = time.monotonic()
        if st is F:
            done.set()

    m.configure_alerts(degraded_callback=cb, failed_callback=cb)
    m.start_monitoring("a")
    t_hb = time.monotonic()
    m.record_heartbeat("a")
    assert done.wait(2.0)
    assert 0.099 <= got[D] - t_hb < 0.2
    assert 0.199 <= got[F] - t_hb < 0.3


def test_slow_callback_does_not_delay_other_agent(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=3, tick_ms=5)
    entered = threading.Event()
    release = threading.Event()
    rec = Recorder()

    def cb(aid, st, det):
        rec.alert(aid, st, det)
        if aid == "A" and st is D:
            entered.set()
            release.wait(3.0)

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb)
    m.start_monitoring("A", interval_ms=100)
    m.start_monitoring("B", interval_ms=250)
    try:
        t0 = time.monotonic()
        m.record_heartbeat("A")
        m.record_heartbeat("B")
        assert entered.wait(1.0)
        while m.monitoring_agents["B"]["last_state"] is H and time.monotonic() - t0 < 1.0:
            time.sleep(0.002)
        t_b = time.monotonic() - t0
        assert not release.is_set()
        assert m.monitoring_agents["B"]["last_state"] is D, (
            "B not detected while A's callback blocks")
        assert t_b < 0.25 + 0.15
        while m.monitoring_agents["A"]["last_state"] is not F and time.monotonic() - t0 < 1.0:
            time.sleep(0.002)
        assert m.monitoring_agents["A"]["last_state"] is F
    finally:
        release.set()
    assert rec.wait_for(lambda ev: {("A", F), ("B", D)} <= {(e[1], e[2]) for e in ev}, 2.0)
    a_states = [e[2] for e in rec.events if e[1] == "A"]
    assert a_states == [D, C, F]


# ---------------------------------------------------------------- re-entrant callbacks

def test_recovery_pattern_virtual(make_monitor, vclock):
    """The guide's "Automatic Agent Recovery": stop and restart inside failed_callback."""
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    log = []

    def on_agent_failed(agent_id, state, details):
        log.append(("failed", agent_id, state))
        assert m.stop_monitoring(agent_id) is True
        assert m.start_monitoring(agent_id) is True
        log.append(("restarted", agent_id))

    m.configure_alerts(on_failed=True, failed_callback=on_agent_failed)
    m.start_monitoring("w1")
    m.start_monitoring("w2")
    m.record_heartbeat("w1", {"n": 1})
    vclock.set(1001.5)
    m.record_heartbeat("w2")
    assert m.advance(to=1003.0) == 4                 # w1: D C F, w2: D
    assert log == [("failed", "w1", F), ("restarted", "w1")]
    e = m.monitoring_agents["w1"]
    assert e["last_heartbeat"] == 0 and e["last_state"] is H
    assert m.get_heartbeat_history("w1") == []
    assert m.check_agent_health("w1") is H
    assert list(m.monitoring_agents) == ["w2", "w1"]
    m.record_heartbeat("w1")
    m.advance(to=1006.0)
    assert log[2:] == [("failed", "w2", F), ("restarted", "w2"),
                       ("failed", "w1", F), ("restarted", "w1")]
    assert m.advance(to=1100.0) == 0
    assert len(log) == 6


def test_recovery_pattern_with_start_clock(make_monitor, vclock):
    """Restarted inside the callback with the clock started at registration: the
    new registration is detected again, exactly once per crossing."""
    m = make_monitor(interval_ms=1000, failure_threshold=2, start_clock_on_register=True)
    rec = Recorder()

    def on_failed(aid, st, det):
        rec.alert(aid, st, det)
        m.stop_monitoring(aid)
        m.start_monitoring(aid)

    m.configure_alerts(degraded_callback=rec.alert, failed_callback=on_failed)
    m.start_monitoring("a")
    assert m.advance(to=1002.0) == 2                 # D at 1001, F at 1002 -> restart at 1002
    assert [e[2] for e in rec.take()] == [D, F]
    assert m.advance(to=1002.999) == 0
    assert m.advance(to=1003.0) == 1
    ev = rec.take()
    assert [e[2] for e in ev] == [D]
    assert ev[0][3]["last_heartbeat"] is None
    assert m.advance(to=1004.0) == 1
    assert [e[2] for e in rec.take()] == [F]


def test_record_heartbeat_inside_callback(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder()

    def on_degraded(aid, st, det):
        rec.alert(aid, st, det)
        assert m.record_heartbeat(aid, {"from": "callback"}) is True

    m.configure_alerts(degraded_callback=on_degraded, critical_callback=rec.alert,
                       failed_callback=rec.alert, on_recovery=True,
                       recovery_callback=rec.recovery)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert m.advance(to=1001.0) == 1
    assert rec.simple() == [("alert", "a", D), ("recovery", "a", "degraded")]
    rec.take()
    assert m.monitoring_agents["a"]["last_state"] is H
    assert m.check_agent_health("a") is H
    assert [r["metadata"] for r in m.get_heartbeat_history("a")] == [{}, {"from": "callback"}]
    assert m.advance(to=1001.999) == 0
    assert m.advance(to=1002.0) == 1
    assert rec.simple() == [("alert", "a", D), ("recovery", "a", "degraded")]


def test_queries_inside_callback(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    seen = []

    def cb(aid, st, det):
        seen.append((st, m.check_agent_health(aid), m.get_unhealthy_agents(),
                     m.get_monitoring_stats()["total_agents"],
                     len(m.get_heartbeat_history(aid)), aid in m.monitoring_agents))
        m.configure_alerts()
        m.start_monitoring("other-" + st.value)

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1003.0)
    assert seen == [(D, F, ["a"], 1, 1, True), (C, F, ["a"], 2, 1, True),
                    (F, F, ["a"], 3, 1, True)]
    assert list(m.monitoring_agents) == ["a", "other-degraded", "other-critical", "other-failed"]


def test_shutdown_inside_callback_virtual(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    calls = []

    def cb(aid, st, det):
        calls.append(st)
        m.shutdown()

    m.configure_alerts(degraded_callback=cb, failed_callback=cb)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=1005.0)
    assert calls == [D, F]
    assert m.check_agent_health("a") is F
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False


def test_shutdown_inside_callback_real_clock(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=1, tick_ms=5)
    done = threading.Event()
    errors = []

    def cb(aid, st, det):
        try:
            m.shutdown()
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    m.configure_alerts(degraded_callback=cb)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert done.wait(2.0)
    assert errors == []
    deadline = time.monotonic() + 6.0
    while m.get_monitoring_stats()["monitoring_thread_alive"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False
    assert m.check_agent_health("a") in (D, F)


def test_recovery_pattern_real_clock(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=1, tick_ms=5)
    done = threading.Event()
    errors = []

    def on_failed(aid, st, det):
        try:
            assert m.stop_monitoring(aid) is True
            assert m.start_monitoring(aid) is True
            m.record_heartbeat(aid, {"restarted": True})
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    m.configure_alerts(failed_callback=on_failed)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert done.wait(2.0)
    assert errors == []
    assert "a" in m.monitoring_agents
    assert [r["metadata"] for r in m.get_heartbeat_history("a")] == [{"restarted": True}]


# ---------------------------------------------------------------- silent starters (Part B 4)

def test_start_clock_on_register(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, start_clock_on_register=True)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("silent")
    m.start_monitoring("opt-out", start_clock=False)
    vclock.set(1000.999)
    assert m.check_agent_health("silent") is H
    vclock.set(1001.0)
    assert m.check_agent_health("silent") is D
    assert m.get_unhealthy_agents() == ["silent"]
    assert m.advance() == 1
    ((kind, aid, st, det),) = rec.take()
    assert (aid, st) == ("silent", D)
    assert det["previous_state"] == "healthy" and det["current_state"] == "degraded"
    assert det["last_heartbeat"] is None
    assert det["elapsed_seconds"] in (None, 1.0)
    vclock.set(1003.0)
    assert m.check_agent_health("silent") is F
    assert m.advance() == 2
    assert [e[2] for e in rec.take()] == [C, F]
    assert m.check_agent_health("opt-out") is H
    vclock.set(1004.0)
    m.record_heartbeat("silent")
    ((kind, aid, st, det),) = rec.take()
    assert (kind, aid, det["previous_state"]) == ("recovery", "silent", "failed")
    assert m.check_agent_health("silent") is H


def test_start_clock_per_agent(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)           # default off
    rec = Recorder().install(m)
    m.start_monitoring("plain")
    m.start_monitoring("opt-in", start_clock=True)
    m.start_monitoring("explicit-off", start_clock=False)
    m.advance(to=1010.0)
    assert rec.simple() == [("alert", "opt-in", D), ("alert", "opt-in", C), ("alert", "opt-in", F)]
    assert m.get_unhealthy_agents() == ["opt-in"]


def test_silent_starter_heartbeat_before_deadline(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, start_clock_on_register=True)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a")
    vclock.set(1000.5)
    m.record_heartbeat("a")
    assert m.advance(to=1001.0) == 0
    assert m.advance(to=1001.5) == 1
    assert rec.simple() == [("alert", "a", D)]


# ---------------------------------------------------------------- stale deadlines

def test_stopped_agent_never_fires(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.stop_monitoring("a")
    assert m.advance(to=1010.0) == 0
    assert rec.take() == []


def test_restart_does_not_inherit_old_deadline(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.5)
    m.stop_monitoring("a")
    m.start_monitoring("a")
    assert m.advance(to=1010.0) == 0
    assert rec.take() == []
    assert m.monitoring_agents["a"]["last_state"] is H


def test_reused_slot_does_not_inherit_old_deadline(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.5)
    m.stop_monitoring("a")
    m.start_monitoring("b")
    m.record_heartbeat("b")
    assert m.advance(to=1001.0) == 0
    assert m.advance(to=1001.499) == 0
    assert m.advance(to=1001.5) == 1
    assert rec.simple() == [("alert", "b", D)]


def test_restart_with_start_clock_uses_new_registration(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1000.5)
    m.stop_monitoring("a")
    m.start_monitoring("a", start_clock=True)
    assert m.advance(to=1001.0) == 0
    assert m.advance(to=1001.5) == 1
    assert rec.simple() == [("alert", "a", D)]


# ---------------------------------------------------------------- monotonic deadlines (Part B 2)

def test_wall_clock_step_forward_does_not_fail_agents(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.step_wall(3600)
    assert m.check_agent_health("a") is H
    assert m.advance(to=1000.5) == 0
    assert m.check_agent_health("a") is H
    m.record_heartbeat("a")
    ts = [r["timestamp"] for r in m.get_heartbeat_history("a")]
    assert ts == pytest.approx([WALL, WALL + 0.5 + 3600], abs=1e-6)   # history stays wall clock
    assert m.advance(to=1001.4) == 0
    assert rec.take() == []


def test_wall_clock_step_back_does_not_hide_dead_agents(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.step_wall(-7200)
    assert m.advance(to=1001.0) == 1
    assert m.check_agent_health("a") is D
    assert m.advance(to=1003.0) == 2
    assert [e[2] for e in rec.take()] == [D, C, F]


# ---------------------------------------------------------------- re-arming after recovery

@pytest.mark.parametrize("T", [3, 5])
def test_recovery_from_critical_rearms_sooner_deadline(make_monitor, vclock, T):
    """After a recovery from CRITICAL the pending crossing (FAILED at old last + T*I)
    is later than the new DEGRADED deadline (new last + I): the new one must still be
    reported on time (Part B 1: at most one tick late)."""
    m = make_monitor(interval_ms=1000, failure_threshold=T, tick_ms=10)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert m.advance(to=1002.5) == 2                  # D, C
    m.record_heartbeat("a")                           # recovery; next D at 1003.5
    assert [e[0] for e in rec.take()] == ["alert", "alert", "recovery"]
    assert m.advance(to=1003.49) == 0
    assert m.advance(to=1003.5) == 1
    assert rec.simple() == [("alert", "a", D)]
    assert m.monitoring_agents["a"]["last_state"] is D


def test_recovery_from_critical_silent_starter_long_interval(make_monitor, vclock):
    """Same with a 1-day interval and the clock started at registration (found by the
    seeded differential test)."""
    m = make_monitor(tick_ms=1)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a", interval_ms=86_400_000, failure_threshold=4, start_clock=True)
    m.advance(to=START + 2 * 86_400 + 60)            # D, C from registration
    m.record_heartbeat("a")                           # recovery
    rec.take()
    m.advance(to=START + 3 * 86_400 + 60.002)        # 2 ms after the new D deadline
    assert rec.simple() == [("alert", "a", D)]


def test_sooner_deadline_wakes_background_thread(make_monitor):
    """The background thread sleeps until the next due bucket; a sooner deadline
    armed later must wake it (real clock)."""
    m = make_monitor(clock=None, interval_ms=60_000, failure_threshold=3, tick_ms=5)
    got = threading.Event()
    seen = {}

    def cb(aid, st, det):
        seen.setdefault(aid, time.monotonic())
        got.set()

    m.configure_alerts(degraded_callback=cb)
    m.start_monitoring("slow")
    m.record_heartbeat("slow")              # next deadline: one minute away
    time.sleep(0.05)                        # let the thread go to sleep on it
    m.start_monitoring("fast", interval_ms=100)
    t0 = time.monotonic()
    m.record_heartbeat("fast")
    assert got.wait(1.5)
    assert list(seen) == ["fast"]
    assert seen["fast"] - t0 < 0.3


def test_real_clock_many_agents_exactly_once_never_early(make_monitor):
    """Real clock, 300 agents: every crossing is reported once, in order, never
    before its deadline and soon after it."""
    import random
    rng = random.Random(11)
    m = make_monitor(clock=None, tick_ms=5)
    lock = threading.Lock()
    calls = []

    def cb(aid, st, det):
        t = time.monotonic()
        with lock:
            calls.append((aid, st, t))

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb)
    spec = {}
    for i in range(300):
        iv, T = rng.choice([100, 120, 150]), rng.choice([1, 2, 3])
        m.start_monitoring(i, interval_ms=iv, failure_threshold=T)
        before = time.monotonic()
        m.record_heartbeat(i)
        spec[i] = (iv / 1000, T, before, time.monotonic())
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if all(m.monitoring_agents[i]["last_state"] is F for i in spec):
            break
        time.sleep(0.01)
    time.sleep(0.05)
    by_agent = {}
    with lock:
        for aid, st, t in calls:
            by_agent.setdefault(aid, []).append((st, t))
    late = []
    for i, (iv, T, before, after) in spec.items():
        got = by_agent.get(i, [])
        want = [(D, 1), (C, 2), (F, T)] if T > 2 else [(D, 1), (F, 2)]
        assert [s for s, _ in got] == [s for s, _ in want], i
        for (s, t), (_, k) in zip(got, want):
            assert t >= before + k * iv - 0.001, ("early", i, s)
            late.append(t - (after + k * iv))
    late.sort()
    assert late[len(late) // 2] < 0.05        # median lateness
    assert late[-1] < 0.5
