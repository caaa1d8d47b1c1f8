"""Part A of SEMANTICS.md: every method, attribute, message and quirk of the
replaced monitor, run against both engines (mostly in virtual time)."""
from __future__ import annotations

import enum
import threading
import time
from datetime import datetime, timedelta

import pytest
from hb_model import AGENT_KEYS, MS, NS, Recorder, state_of

import moai_flow_fast
from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)
START = 1000.0
START_NS = 1000 * NS
WALL = 1_700_000_000.0
PART_A_STATS = {"total_agents", "health_distribution", "total_heartbeats",
                "monitoring_thread_alive"}
EXTRA_STATS = {"engine", "transitions", "recoveries", "callback_errors", "tick_ms",
               "pending_deadlines"}


def set_ns(clock, ns):
    clock.set(ns / 1e9)
    got = clock.monotonic_ns()
    assert abs(got - ns) <= 2, (got, ns)
    return got


def wall_at(mono_s):
    return WALL + (mono_s - START)


# ---------------------------------------------------------------- imports / enum

def test_module_aliases():
    from moai_flow_fast import monitoring
    assert monitoring.HeartbeatMonitor is moai_flow_fast.HeartbeatMonitor
    assert monitoring.HealthState is moai_flow_fast.HealthState
    assert isinstance(moai_flow_fast.COMPILED, bool)


def test_health_state_enum():
    assert issubclass(HealthState, enum.Enum)
    assert [s.name for s in HealthState] == ["HEALTHY", "DEGRADED", "CRITICAL", "FAILED"]
    assert [s.value for s in HealthState] == ["healthy", "degraded", "critical", "failed"]
    assert HealthState("failed") is F


# ---------------------------------------------------------------- constructor

def test_defaults_and_background_thread(engine):
    m = HeartbeatMonitor(engine=engine)
    try:
        assert m.default_interval_ms == 5000
        assert m.default_failure_threshold == 3
        assert m.history_size == 100
        assert m.check_interval_ms == 1000
        assert m.engine_name == engine
        t = m.monitoring_thread
        assert isinstance(t, threading.Thread)
        assert t.name == "HeartbeatMonitor-Daemon"
        assert t.daemon is True
        assert t.is_alive()
        assert m.get_monitoring_stats()["monitoring_thread_alive"] is True
        assert isinstance(m.shutdown_event, threading.Event)
    finally:
        m.shutdown()
    assert not t.is_alive()
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False
    m.shutdown()  # harmless the second time
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False


def test_positional_arguments(make_monitor):
    m = make_monitor(2000, 4, 7, 500)
    assert (m.default_interval_ms, m.default_failure_threshold, m.history_size,
            m.check_interval_ms) == (2000, 4, 7, 500)


@pytest.mark.parametrize("kwargs, message", [
    (dict(interval_ms=99), "interval_ms must be >= 100"),
    (dict(interval_ms=0), "interval_ms must be >= 100"),
    (dict(interval_ms=-5000), "interval_ms must be >= 100"),
    (dict(failure_threshold=0), "failure_threshold must be >= 1"),
    (dict(failure_threshold=-1), "failure_threshold must be >= 1"),
    (dict(history_size=0), "history_size must be >= 1"),
    (dict(check_interval_ms=99), "check_interval_ms must be >= 100"),
    # validation order: interval, threshold, history, check interval
    (dict(interval_ms=1, failure_threshold=0, history_size=0, check_interval_ms=1),
     "interval_ms must be >= 100"),
    (dict(failure_threshold=0, history_size=0, check_interval_ms=1),
     "failure_threshold must be >= 1"),
    (dict(history_size=0, check_interval_ms=1), "history_size must be >= 1"),
])
def test_constructor_validation_messages(make_monitor, kwargs, message):
    with pytest.raises(ValueError) as ei:
        make_monitor(**kwargs)
    assert str(ei.value) == message


def test_constructor_validation_system_clock(engine):
    # Same messages with the default (system) clock; no thread may leak.
    before = {t for t in threading.enumerate() if t.name == "HeartbeatMonitor-Daemon"}
    with pytest.raises(ValueError) as ei:
        HeartbeatMonitor(interval_ms=50, engine=engine)
    assert str(ei.value) == "interval_ms must be >= 100"
    after = {t for t in threading.enumerate() if t.name == "HeartbeatMonitor-Daemon"}
    assert after <= before


def test_constructor_minimum_values_accepted(make_monitor):
    m = make_monitor(interval_ms=100, failure_threshold=1, history_size=1, check_interval_ms=100)
    assert m.default_interval_ms == 100 and m.default_failure_threshold == 1


def test_public_attributes_virtual(make_monitor, engine):
    m = make_monitor()
    for name in ("default_interval_ms", "default_failure_threshold", "history_size",
                 "check_interval_ms", "monitoring_agents", "heartbeat_history",
                 "alert_callbacks", "alert_enabled", "monitoring_thread", "shutdown_event"):
        assert hasattr(m, name), name
    assert m.monitoring_thread is None            # injected clock -> no thread
    assert m.engine_name == engine
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False
    assert len(m.monitoring_agents) == 0
    assert len(m.heartbeat_history) == 0


def test_alert_dicts_initial(make_monitor):
    m = make_monitor()
    assert set(m.alert_enabled) == {D, C, F}
    assert set(m.alert_callbacks) == {D, C, F}
    assert all(v is True for v in m.alert_enabled.values())
    assert all(v is None for v in m.alert_callbacks.values())


# ---------------------------------------------------------------- thread control

def test_shutdown_twice_virtual(make_monitor):
    m = make_monitor()
    m.shutdown()
    m.shutdown()
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False


def _daemons():
    return [t for t in threading.enumerate()
            if t.name == "HeartbeatMonitor-Daemon" and t.is_alive()]


def test_start_background_monitoring_restarts(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=3, tick_ms=5)
    m.shutdown()
    assert not m.get_monitoring_stats()["monitoring_thread_alive"]
    m._start_background_monitoring()
    t = m.monitoring_thread
    assert t.is_alive() and t.name == "HeartbeatMonitor-Daemon" and t.daemon
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is True
    # and the restarted thread really detects crossings
    m.start_monitoring("a")
    m.record_heartbeat("a")
    deadline = time.monotonic() + 2.0
    while m.monitoring_agents["a"]["last_state"] is H and time.monotonic() < deadline:
        time.sleep(0.01)
    assert m.monitoring_agents["a"]["last_state"] is not H
    m.shutdown()
    assert not t.is_alive()


def test_start_background_monitoring_when_alive_is_noop(make_monitor):
    m = make_monitor(clock=None)
    t = m.monitoring_thread
    n = len(_daemons())
    m._start_background_monitoring()
    assert m.monitoring_thread.is_alive()
    assert len(_daemons()) == n
    assert t.is_alive()


# ---------------------------------------------------------------- start / stop

def test_start_stop_return_values(make_monitor):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    assert m.start_monitoring("a") is True
    assert m.start_monitoring("a", interval_ms=9000, failure_threshold=9) is False
    assert m.monitoring_agents["a"]["interval_ms"] == 1000       # unchanged
    assert m.monitoring_agents["a"]["failure_threshold"] == 3
    assert m.stop_monitoring("a") is True
    assert m.stop_monitoring("a") is False
    assert m.stop_monitoring("never") is False
    assert "a" not in m.monitoring_agents


def test_start_uses_defaults_and_overrides(make_monitor, vclock):
    m = make_monitor(interval_ms=2000, failure_threshold=4)
    vclock.set(1005.5)
    m.start_monitoring("d")
    m.start_monitoring("o", interval_ms=300, failure_threshold=2)
    m.start_monitoring("p", interval_ms=700)
    m.start_monitoring("q", failure_threshold=5)
    got = {k: (v["interval_ms"], v["failure_threshold"]) for k, v in m.monitoring_agents.items()}
    assert got == {"d": (2000, 4), "o": (300, 2), "p": (700, 4), "q": (2000, 5)}
    e = m.monitoring_agents["d"]
    assert e["last_heartbeat"] == 0
    assert e["last_state"] is H
    assert e["started_at"] == pytest.approx(wall_at(1005.5), abs=1e-6)
    assert m.check_agent_health("d") is H
    assert m.get_heartbeat_history("d") == []


def test_no_heartbeat_is_healthy_forever(make_monitor, vclock):
    m = make_monitor(interval_ms=100, failure_threshold=1)
    m.start_monitoring("a")
    vclock.advance(10_000)
    assert m.advance() == 0
    assert m.check_agent_health("a") is H
    assert m.get_unhealthy_agents() == []


def test_various_hashable_ids(make_monitor):
    m = make_monitor()
    ids = ["s", 7, ("t", 1), 2.5, None, frozenset({1})]
    for i in ids:
        assert m.start_monitoring(i) is True
        assert m.record_heartbeat(i, {"id": repr(i)}) is True
    assert list(m.monitoring_agents) == ids
    for i in ids:
        assert m.check_agent_health(i) is H
        assert m.get_heartbeat_history(i)[0]["metadata"] == {"id": repr(i)}


def test_restart_resets_history_and_state(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    for k in range(3):
        m.record_heartbeat("a", {"k": k})
    vclock.advance(10)
    m.advance()
    assert m.monitoring_agents["a"]["last_state"] is F
    assert m.stop_monitoring("a")
    assert len(m.get_heartbeat_history("a")) == 3        # stop keeps history
    vclock.advance(1)
    assert m.start_monitoring("a")
    assert m.get_heartbeat_history("a") == []            # restart: EMPTY history
    assert len(m.heartbeat_history["a"]) == 0
    e = m.monitoring_agents["a"]
    assert e["last_heartbeat"] == 0 and e["last_state"] is H
    assert e["started_at"] == pytest.approx(vclock.time(), abs=1e-6)
    assert m.check_agent_health("a") is H
    assert m.get_monitoring_stats()["total_heartbeats"] == 0


def test_stop_keeps_history(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    m.record_heartbeat("a", {"n": 1})
    vclock.advance(0.5)
    m.record_heartbeat("a")
    m.stop_monitoring("a")
    hist = m.get_heartbeat_history("a")
    assert [r["metadata"] for r in hist] == [{"n": 1}, {}]
    assert [r["timestamp"] for r in hist] == pytest.approx([WALL, WALL + 0.5], abs=1e-6)
    assert "a" in m.heartbeat_history
    assert len(m.heartbeat_history["a"]) == 2
    assert m.get_monitoring_stats()["total_heartbeats"] == 2
    assert m.get_monitoring_stats()["total_agents"] == 0
    assert m.record_heartbeat("a") is False               # not monitored: nothing recorded
    assert len(m.get_heartbeat_history("a")) == 2
    with pytest.raises(ValueError) as ei:
        m.check_agent_health("a")
    assert str(ei.value) == "Agent a not being monitored"


@pytest.mark.parametrize("aid, text", [("ghost", "Agent ghost not being monitored"),
                                       (7, "Agent 7 not being monitored")])
def test_check_unknown_agent_message(make_monitor, aid, text):
    m = make_monitor()
    with pytest.raises(ValueError) as ei:
        m.check_agent_health(aid)
    assert str(ei.value) == text


# ---------------------------------------------------------------- record_heartbeat / history

def test_record_heartbeat_unknown(make_monitor):
    m = make_monitor()
    assert m.record_heartbeat("nobody", {"x": 1}) is False
    assert m.get_heartbeat_history("nobody") == []
    assert "nobody" not in m.heartbeat_history
    assert "nobody" not in m.monitoring_agents
    assert m.get_monitoring_stats()["total_heartbeats"] == 0


def test_record_heartbeat_records(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    vclock.set(1002.25)
    assert m.record_heartbeat("a") is True
    vclock.set(1003.5)
    assert m.record_heartbeat("a", metadata={"cpu": 45.2}) is True
    assert m.record_heartbeat("a", metadata={}) is True
    assert m.record_heartbeat("a", None) is True
    hist = m.get_heartbeat_history("a")
    assert [r["metadata"] for r in hist] == [{}, {"cpu": 45.2}, {}, {}]
    assert [r["timestamp"] for r in hist] == pytest.approx(
        [wall_at(1002.25), wall_at(1003.5), wall_at(1003.5), wall_at(1003.5)], abs=1e-6)
    assert all(set(r) == {"timestamp", "metadata"} for r in hist)
    assert all(isinstance(r["timestamp"], float) for r in hist)
    assert m.monitoring_agents["a"]["last_heartbeat"] == pytest.approx(wall_at(1003.5), abs=1e-6)


def test_history_returns_new_dicts(make_monitor):
    m = make_monitor()
    m.start_monitoring("a")
    m.record_heartbeat("a", {"k": 1})
    h1 = m.get_heartbeat_history("a")
    h1[0]["timestamp"] = -1.0
    h1[0]["injected"] = True
    h1.clear()
    h2 = m.get_heartbeat_history("a")
    assert len(h2) == 1 and h2[0]["timestamp"] == pytest.approx(WALL, abs=1e-6)
    assert set(h2[0]) == {"timestamp", "metadata"}


@pytest.mark.parametrize("size", [1, 3, 100])
def test_history_size_drops_oldest(make_monitor, vclock, size):
    m = make_monitor(history_size=size)
    m.start_monitoring("a")
    n = size + 5
    for i in range(n):
        vclock.advance(0.01)
        m.record_heartbeat("a", {"i": i})
    hist = m.get_heartbeat_history("a")
    assert [r["metadata"]["i"] for r in hist] == list(range(5, n))
    assert len(m.heartbeat_history["a"]) == size
    assert m.heartbeat_history["a"][-1]["metadata"] == {"i": n - 1}
    assert m.heartbeat_history["a"][0]["metadata"] == {"i": 5}
    assert m.get_monitoring_stats()["total_heartbeats"] == size


def test_heartbeat_history_view(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    m.start_monitoring("b")
    for i in range(4):
        vclock.advance(1)
        m.record_heartbeat("a", {"i": i})
    view = m.heartbeat_history
    assert "a" in view and "b" in view and "zz" not in view
    seq = view["a"]
    assert len(seq) == 4
    assert seq[0]["metadata"] == {"i": 0}
    assert seq[-1]["metadata"] == {"i": 3}
    assert seq[-2]["metadata"] == {"i": 2}
    assert [r["metadata"]["i"] for r in seq] == [0, 1, 2, 3]
    assert seq[1]["timestamp"] == pytest.approx(WALL + 2, abs=1e-6)
    assert set(view.keys()) == {"a", "b"}
    assert len(view["b"]) == 0
    # the view is live
    m.record_heartbeat("a", {"i": 4})
    assert len(m.heartbeat_history["a"]) == 5


def test_del_heartbeat_history_stopped_agent(make_monitor):
    m = make_monitor()
    m.start_monitoring("a")
    m.start_monitoring("b")
    m.record_heartbeat("a")
    m.record_heartbeat("a")
    m.record_heartbeat("b")
    m.stop_monitoring("a")
    assert m.get_monitoring_stats()["total_heartbeats"] == 3
    # guide: "periodically clear history for inactive agents"
    for agent_id in list(m.heartbeat_history.keys()):
        if agent_id not in m.monitoring_agents:
            del m.heartbeat_history[agent_id]
    assert "a" not in m.heartbeat_history
    assert list(m.heartbeat_history.keys()) == ["b"]
    assert m.get_heartbeat_history("a") == []
    assert m.get_monitoring_stats()["total_heartbeats"] == 1
    with pytest.raises(KeyError):
        del m.heartbeat_history["a"]


def test_del_heartbeat_history_monitored_agent(make_monitor):
    m = make_monitor()
    m.start_monitoring("a")
    m.record_heartbeat("a", {"n": 1})
    del m.heartbeat_history["a"]
    assert m.get_heartbeat_history("a") == []
    assert "a" in m.monitoring_agents                    # still monitored
    assert m.check_agent_health("a") is H
    assert m.record_heartbeat("a", {"n": 2}) is True
    assert [r["metadata"] for r in m.get_heartbeat_history("a")] == [{"n": 2}]
    assert m.get_monitoring_stats()["total_heartbeats"] == 1


def test_time_range_inclusive_edges(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    for i in range(5):                                   # walls WALL+0 .. WALL+4
        vclock.set(START + i)
        m.record_heartbeat("a", {"i": i})
    ts = [r["timestamp"] for r in m.get_heartbeat_history("a")]
    dt = datetime.fromtimestamp
    got = m.get_heartbeat_history("a", (dt(ts[1]), dt(ts[3])))
    assert [r["metadata"]["i"] for r in got] == [1, 2, 3]
    us = timedelta(microseconds=1)
    got = m.get_heartbeat_history("a", (dt(ts[1]) + us, dt(ts[3]) - us))
    assert [r["metadata"]["i"] for r in got] == [2]
    got = m.get_heartbeat_history("a", (dt(ts[4]), dt(ts[4])))
    assert [r["metadata"]["i"] for r in got] == [4]
    got = m.get_heartbeat_history("a", (dt(ts[4]) + us, dt(ts[4]) + timedelta(days=1)))
    assert got == []
    got = m.get_heartbeat_history("a", (dt(ts[0]) - timedelta(days=1), dt(ts[0])))
    assert [r["metadata"]["i"] for r in got] == [0]
    assert m.get_heartbeat_history("a", (dt(ts[3]), dt(ts[1]))) == []
    # also for an agent no longer monitored, and [] for an unknown id
    m.stop_monitoring("a")
    got = m.get_heartbeat_history("a", (dt(ts[2]), dt(ts[4])))
    assert [r["metadata"]["i"] for r in got] == [2, 3, 4]
    assert m.get_heartbeat_history("zz", (dt(ts[0]), dt(ts[4]))) == []


def test_time_range_fractional_timestamps(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    for i in range(4):
        vclock.set(START + 0.25 + i * 0.5)
        m.record_heartbeat("a", {"i": i})
    ts = [r["timestamp"] for r in m.get_heartbeat_history("a")]
    start, end = datetime.fromtimestamp(ts[1]), datetime.fromtimestamp(ts[2])
    assert start.timestamp() == ts[1] and end.timestamp() == ts[2]
    got = m.get_heartbeat_history("a", (start, end))
    assert [r["metadata"]["i"] for r in got] == [1, 2]


# ---------------------------------------------------------------- unhealthy agents / stats

def _four_states(m, vclock):
    """Registers zeta (FAILED), alpha (DEGRADED), mid (CRITICAL), beta (HEALTHY),
    gamma (no heartbeat -> HEALTHY); I=1000 ms, T=3; now = 1003.0."""
    for a in ("zeta", "alpha", "mid", "beta", "gamma"):
        m.start_monitoring(a, interval_ms=1000, failure_threshold=3)
    vclock.set(1000.0)
    m.record_heartbeat("zeta")
    vclock.set(1000.5)
    m.record_heartbeat("mid")
    vclock.set(1001.5)
    m.record_heartbeat("alpha")
    vclock.set(1002.5)
    m.record_heartbeat("beta")
    vclock.set(1003.0)


def test_get_unhealthy_agents(make_monitor, vclock):
    m = make_monitor()
    _four_states(m, vclock)
    assert m.get_unhealthy_agents() == ["zeta", "alpha", "mid"]
    assert m.get_unhealthy_agents(HealthState.DEGRADED) == ["zeta", "alpha", "mid"]
    assert m.get_unhealthy_agents(HealthState.CRITICAL) == ["zeta", "mid"]
    assert m.get_unhealthy_agents(HealthState.FAILED) == ["zeta"]
    assert m.get_unhealthy_agents(HealthState.HEALTHY) == ["zeta", "alpha", "mid", "beta", "gamma"]
    # current state, not the (unadvanced) reported state
    assert m.monitoring_agents["zeta"]["last_state"] is H


def test_get_unhealthy_agents_registration_order_after_restart(make_monitor):
    m = make_monitor()
    for a in ("c", "a", "b"):
        m.start_monitoring(a)
    m.stop_monitoring("c")
    m.start_monitoring("c")
    assert m.get_unhealthy_agents(HealthState.HEALTHY) == ["a", "b", "c"]
    assert list(m.monitoring_agents) == ["a", "b", "c"]


def test_stats(make_monitor, vclock, engine):
    m = make_monitor(tick_ms=7)
    _four_states(m, vclock)
    m.start_monitoring("gone")
    m.record_heartbeat("gone")
    m.record_heartbeat("gone")
    m.stop_monitoring("gone")
    s = m.get_monitoring_stats()
    assert PART_A_STATS <= set(s)
    assert EXTRA_STATS <= set(s)
    assert s["total_agents"] == 5
    assert s["health_distribution"] == {"healthy": 2, "degraded": 1, "critical": 1, "failed": 1}
    assert s["total_heartbeats"] == 4 + 2          # stopped agents included
    assert s["monitoring_thread_alive"] is False
    assert s["engine"] == engine == m.engine_name
    assert s["tick_ms"] == 7
    assert s["transitions"] == 0 and s["recoveries"] == 0 and s["callback_errors"] == 0
    assert isinstance(s["pending_deadlines"], int)


def test_stats_counters(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.configure_alerts(failed_callback=lambda *a: 1 / 0)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.advance(5)
    assert m.advance() == 3
    s = m.get_monitoring_stats()
    assert s["transitions"] == 3
    assert s["callback_errors"] == 1
    m.record_heartbeat("a")
    assert m.get_monitoring_stats()["recoveries"] == 1


def test_empty_stats(make_monitor):
    s = make_monitor().get_monitoring_stats()
    assert s["total_agents"] == 0 and s["total_heartbeats"] == 0
    assert s["health_distribution"] == {"healthy": 0, "degraded": 0, "critical": 0, "failed": 0}


# ---------------------------------------------------------------- configure_alerts

def test_configure_alerts_none_leaves_unchanged(make_monitor):
    m = make_monitor()

    def f1(*a):
        pass

    def f2(*a):
        pass

    m.configure_alerts(degraded_callback=f1, on_critical=False)
    assert (m.alert_callbacks[D] is f1 and m.alert_callbacks[C] is None
            and m.alert_callbacks[F] is None)
    assert m.alert_enabled == {D: True, C: False, F: True}
    m.configure_alerts()
    assert m.alert_callbacks[D] is f1
    assert m.alert_enabled == {D: True, C: False, F: True}
    m.configure_alerts(on_degraded=False, failed_callback=f2)
    assert m.alert_callbacks == {D: f1, C: None, F: f2}
    assert m.alert_enabled == {D: False, C: False, F: True}
    m.configure_alerts(on_degraded=True, on_critical=True, on_failed=False, critical_callback=f2)
    assert m.alert_callbacks == {D: f1, C: f2, F: f2}
    assert m.alert_enabled == {D: True, C: True, F: False}


def test_configure_alerts_positional(make_monitor):
    m = make_monitor()

    def cb(*a):
        pass

    m.configure_alerts(False, True, False, cb, None, cb)
    assert m.alert_enabled == {D: False, C: True, F: False}
    assert m.alert_callbacks == {D: cb, C: None, F: cb}


# ---------------------------------------------------------------- threshold edges

@pytest.mark.parametrize("offset_ns", [0, 123_456_789], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("interval_ms", [100, 1000, 1234])
@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_threshold_edges(make_monitor, vclock, T, interval_ms, offset_ns):
    m = make_monitor(interval_ms=interval_ms, failure_threshold=T)
    set_ns(vclock, START_NS + offset_ns)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    hb = vclock.monotonic_ns()
    i = interval_ms * MS
    expected_at = {i: D, 2 * i: (C if T > 2 else F), T * i: F}
    before_at = {i: H, 2 * i: D, T * i: (C if T > 2 else D)}
    if T == 1:
        expected_at = {i: D, 2 * i: F}
        before_at = {i: H, 2 * i: D}
    points = set()
    for k in expected_at:
        points.update({k - MS, k - 1, k, k + 1})
    points.update({0, 1, 100 * T * i})
    for p in sorted(points):
        got_ns = set_ns(vclock, hb + p) - hb
        st = m.check_agent_health("a")
        assert st is state_of(got_ns, i, T), (p, got_ns)
        if got_ns == p and p in expected_at:
            assert st is expected_at[p], p
        if got_ns <= p and p + 1 in expected_at:
            assert st is before_at[p + 1], p
        if got_ns <= p and p + MS in expected_at:
            assert st is before_at[p + MS], p
        unhealthy = m.get_unhealthy_agents()
        assert unhealthy == ([] if st is H else ["a"])
        assert m.get_monitoring_stats()["health_distribution"][st.value] == 1


@pytest.mark.parametrize("T, expected", [
    (1, [H, D, F, F, F, F]),
    (2, [H, D, F, F, F, F]),
    (3, [H, D, C, F, F, F]),
    (5, [H, D, C, C, C, F]),
])
def test_state_per_whole_interval(make_monitor, vclock, T, expected):
    m = make_monitor(interval_ms=1000, failure_threshold=T)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    got = []
    for k in range(6):
        vclock.set(START + k)
        got.append(m.check_agent_health("a"))
    assert got == expected


# ---------------------------------------------------------------- monitoring_agents view

def test_monitoring_agents_view(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    vclock.set(1001.0)
    m.start_monitoring("b", interval_ms=2000, failure_threshold=5)
    view = m.monitoring_agents
    assert "a" in view and "b" in view and "c" not in view
    assert len(view) == 2
    assert list(view) == ["a", "b"]
    assert list(view.keys()) == ["a", "b"]
    items = list(view.items())
    assert [k for k, _ in items] == ["a", "b"]
    vals = list(view.values())
    assert len(vals) == 2
    for entry in vals:
        for key in AGENT_KEYS:
            assert key in entry
    eb = view["b"]
    assert eb["interval_ms"] == 2000 and eb["failure_threshold"] == 5
    assert eb["last_heartbeat"] == 0
    assert eb["last_state"] is H
    assert eb["started_at"] == pytest.approx(WALL + 1, abs=1e-6)
    assert view["a"]["started_at"] == pytest.approx(WALL, abs=1e-6)
    with pytest.raises(KeyError):
        view["c"]
    # live: reflects later changes
    vclock.set(1002.0)
    m.record_heartbeat("a")
    assert m.monitoring_agents["a"]["last_heartbeat"] == pytest.approx(WALL + 2, abs=1e-6)
    assert isinstance(m.monitoring_agents["a"]["last_heartbeat"], float)
    m.stop_monitoring("b")
    assert "b" not in view and len(m.monitoring_agents) == 1


def test_last_state_is_reported_state(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1001.5)
    assert m.check_agent_health("a") is D
    assert m.monitoring_agents["a"]["last_state"] is H      # not reported yet
    m.advance()
    assert m.monitoring_agents["a"]["last_state"] is D
    assert isinstance(m.monitoring_agents["a"]["last_state"], HealthState)
    vclock.set(1010.0)
    m.advance()
    assert m.monitoring_agents["a"]["last_state"] is F
    m.record_heartbeat("a")
    assert m.monitoring_agents["a"]["last_state"] is H


@pytest.mark.parametrize("back, expected", [(2, H), (7, D), (12, C), (20, F)])
def test_last_heartbeat_write_through(make_monitor, back, expected):
    """Old-test pattern: monitoring_agents[id]["last_heartbeat"] = time.time() - 20."""
    m = make_monitor(clock=None, interval_ms=5000, failure_threshold=3, tick_ms=10)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    assert m.check_agent_health("a") is H
    t = time.time() - back
    m.monitoring_agents["a"]["last_heartbeat"] = t
    assert m.monitoring_agents["a"]["last_heartbeat"] == pytest.approx(t, abs=1e-3)
    assert m.check_agent_health("a") is expected
    assert m.get_unhealthy_agents(HealthState.HEALTHY) == ["a"]
    assert m.get_unhealthy_agents() == ([] if expected is H else ["a"])


def test_last_heartbeat_write_through_is_detected(make_monitor):
    m = make_monitor(clock=None, interval_ms=5000, failure_threshold=3, tick_ms=10)
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.monitoring_agents["a"]["last_heartbeat"] = time.time() - 20
    assert rec.wait_for(lambda ev: len(ev) >= 3, 2.0), rec.simple()
    time.sleep(0.05)
    assert rec.simple() == [("alert", "a", D), ("alert", "a", C), ("alert", "a", F)]
    det = rec.events[-1][3]
    assert det["previous_state"] == "critical" and det["current_state"] == "failed"
    assert det["elapsed_seconds"] == pytest.approx(20, abs=0.5)
    assert m.monitoring_agents["a"]["last_state"] is F


# ---------------------------------------------------------------- virtual clock

def test_virtual_clock_basics():
    clk = VirtualClock(start=START, wall_start=WALL)
    assert clk.monotonic_ns() == START_NS
    assert clk.now == START
    assert clk.time() == WALL
    clk.advance(1.5)
    assert clk.monotonic_ns() == START_NS + 1_500_000_000
    assert clk.now == pytest.approx(1001.5)
    assert clk.time() == pytest.approx(WALL + 1.5, abs=1e-6)
    clk.set(1010.0)
    assert clk.monotonic_ns() == 1010 * NS
    with pytest.raises(ValueError):
        clk.set(1009.0)
    with pytest.raises(ValueError):
        clk.advance(-0.001)
    assert clk.monotonic_ns() == 1010 * NS
    clk.step_wall(3600)
    assert clk.monotonic_ns() == 1010 * NS
    assert clk.time() == pytest.approx(WALL + 10 + 3600, abs=1e-6)


def test_virtual_clock_is_exact_in_ns():
    clk = VirtualClock(start=START, wall_start=WALL)
    ns = START_NS
    for step in (1, 999_999, 123_456_789, 1, 7_000_000, 1_234_000_000, 1):
        ns += step
        clk.set(ns / 1e9)
        assert clk.monotonic_ns() == ns
    for ms in (100, 150, 1234, 7, 10, 1):
        ns += ms * MS
        clk.set(ns / 1e9)
        assert clk.monotonic_ns() == ns


def test_monitor_advance_to(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    assert m.advance() == 0
    assert m.advance(to=1002.0) == 0
    assert vclock.monotonic_ns() == 1002 * NS
    with pytest.raises(ValueError):
        m.advance(to=1001.0)
    assert vclock.monotonic_ns() == 1002 * NS


# ---------------------------------------------------------------- histories and slot reuse

def test_stopped_history_survives_slot_reuse(make_monitor, vclock):
    m = make_monitor(history_size=4)
    m.start_monitoring("a")
    for i in range(3):
        m.record_heartbeat("a", {"a": i})
    m.stop_monitoring("a")
    m.start_monitoring("b")                 # may reuse a's slot
    assert m.get_heartbeat_history("b") == []
    m.record_heartbeat("b", {"b": 0})
    assert [r["metadata"] for r in m.get_heartbeat_history("a")] == [{"a": 0}, {"a": 1}, {"a": 2}]
    assert [r["metadata"] for r in m.get_heartbeat_history("b")] == [{"b": 0}]
    m.start_monitoring("a")                 # restart: a's history replaced by an empty one
    assert m.get_heartbeat_history("a") == []
    assert [r["metadata"] for r in m.get_heartbeat_history("b")] == [{"b": 0}]
    assert m.get_monitoring_stats()["total_heartbeats"] == 1


def test_many_agents_histories(make_monitor, vclock):
    """Enough agents to make the history storage grow; churn reuses slots."""
    m = make_monitor(history_size=5)
    n = 3000
    for i in range(n):
        m.start_monitoring(i)
    for rnd in range(7):
        vclock.advance(0.001)
        for i in range(n):
            if rnd < i % 8:
                m.record_heartbeat(i, {"r": rnd} if i % 3 == 0 else None)
    for i in range(0, n, 2):
        m.stop_monitoring(i)
    for j in range(n, n + 1500):
        m.start_monitoring(j)
        m.record_heartbeat(j, {"new": j})
    total = 0
    for i in range(n):
        k = min(i % 8, 7)
        hist = m.get_heartbeat_history(i)
        assert len(hist) == min(k, 5), i
        if hist:
            assert hist[-1]["metadata"] == ({"r": k - 1} if i % 3 == 0 else {})
            assert hist[-1]["timestamp"] == pytest.approx(WALL + 0.001 * k, abs=1e-6)
        total += len(hist)
    for j in range(n, n + 1500):
        assert [r["metadata"] for r in m.get_heartbeat_history(j)] == [{"new": j}]
    assert m.get_monitoring_stats()["total_heartbeats"] == total + 1500
    assert m.get_monitoring_stats()["total_agents"] == n // 2 + 1500


def test_heartbeat_history_unknown_key(make_monitor):
    m = make_monitor()
    with pytest.raises(KeyError):
        m.heartbeat_history["nobody"]


def test_history_timestamps_system_clock(make_monitor):
    m = make_monitor(clock=None)
    m.start_monitoring("a")
    t0 = time.time()
    m.record_heartbeat("a")
    t1 = time.time()
    (rec,) = m.get_heartbeat_history("a")
    assert t0 - 0.01 <= rec["timestamp"] <= t1 + 0.01
    assert t0 - 0.01 <= m.monitoring_agents["a"]["last_heartbeat"] <= t1 + 0.01
    assert t0 - 1 <= m.monitoring_agents["a"]["started_at"] <= t1 + 0.01


def test_system_clock_without_background_thread(make_monitor):
    m = make_monitor(clock=None, background=False, interval_ms=100, failure_threshold=1)
    assert m.monitoring_thread is None
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False
    rec = Recorder().install(m)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    time.sleep(0.12)
    assert rec.events == []                 # nobody advances the wheel
    assert m.check_agent_health("a") is D   # but the state function is exact
    assert m.advance() == 1                 # dispatched synchronously
    assert rec.simple() == [("alert", "a", D)]
