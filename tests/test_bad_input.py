"""Part B 7: bad input raises TypeError/ValueError naming the argument and leaves
the monitor exactly as it was."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hb_model import snapshot

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

NAN, INF = float("nan"), float("inf")
UNHASHABLE = [[1], {"a": 1}, {1, 2}, bytearray(b"x"), ["agent-a"]]
METHODS = ["start_monitoring", "stop_monitoring", "record_heartbeat", "check_agent_health",
           "get_heartbeat_history"]


@pytest.fixture
def populated(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=5)
    m.start_monitoring("agent-a")
    m.start_monitoring("agent-b", interval_ms=300, failure_threshold=5)
    m.start_monitoring("gone")
    m.record_heartbeat("agent-a", {"n": 1})
    m.record_heartbeat("gone")
    m.stop_monitoring("gone")
    vclock.advance(0.5)
    m.record_heartbeat("agent-b")
    vclock.advance(1.2)
    m.advance()                          # agent-a DEGRADED (reported)
    assert m.monitoring_agents["agent-a"]["last_state"] is HealthState.DEGRADED
    return m


def _ids():
    return ["agent-a", "agent-b", "gone", "new"]


@pytest.mark.parametrize("bad_id", UNHASHABLE, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("method", METHODS)
def test_unhashable_ids(populated, method, bad_id):
    before = snapshot(populated, _ids())
    with pytest.raises(TypeError):
        getattr(populated, method)(bad_id)
    assert snapshot(populated, _ids()) == before


BAD_AGENT_ARGS = [
    ("interval_ms", 99, ValueError),
    ("interval_ms", 0, ValueError),
    ("interval_ms", -1000, ValueError),
    ("interval_ms", 99.9, ValueError),
    ("interval_ms", True, TypeError),
    ("interval_ms", False, TypeError),
    ("interval_ms", np.bool_(True), TypeError),
    ("interval_ms", NAN, ValueError),
    ("interval_ms", INF, ValueError),
    ("interval_ms", -INF, ValueError),
    ("interval_ms", np.float64("nan"), ValueError),
    ("interval_ms", "1000", TypeError),
    ("interval_ms", b"1000", TypeError),
    ("interval_ms", [1000], TypeError),
    ("interval_ms", complex(1000, 0), TypeError),
    ("interval_ms", object(), TypeError),
    ("failure_threshold", 0, ValueError),
    ("failure_threshold", -3, ValueError),
    ("failure_threshold", True, TypeError),
    ("failure_threshold", False, TypeError),
    ("failure_threshold", NAN, ValueError),
    ("failure_threshold", INF, ValueError),
    ("failure_threshold", "3", TypeError),
    ("failure_threshold", [3], TypeError),
]


@pytest.mark.parametrize("arg, value, exc", BAD_AGENT_ARGS,
                         ids=[f"{a}={v!r}" for a, v, _ in BAD_AGENT_ARGS])
def test_bad_per_agent_arguments(populated, arg, value, exc):
    before = snapshot(populated, _ids())
    with pytest.raises(exc) as ei:
        populated.start_monitoring("new", **{arg: value})
    assert arg in str(ei.value)
    assert snapshot(populated, _ids()) == before
    assert "new" not in populated.monitoring_agents
    # the id is still free
    assert populated.start_monitoring("new") is True


@pytest.mark.parametrize("arg, value, exc", BAD_AGENT_ARGS[:6],
                         ids=[f"{a}={v!r}" for a, v, _ in BAD_AGENT_ARGS[:6]])
def test_bad_arguments_for_restarted_id(populated, arg, value, exc):
    """A rejected re-registration of a stopped id keeps its old history."""
    before = snapshot(populated, _ids())
    with pytest.raises(exc):
        populated.start_monitoring("gone", **{arg: value})
    assert snapshot(populated, _ids()) == before
    assert len(populated.get_heartbeat_history("gone")) == 1


@pytest.mark.parametrize("value", [100, 100.0, 150, 1234, np.int64(500), np.int32(250)],
                         ids=repr)
def test_good_numeric_interval_accepted(make_monitor, vclock, value):
    m = make_monitor()
    assert m.start_monitoring("x", interval_ms=value, failure_threshold=np.int64(2)) is True
    assert m.monitoring_agents["x"]["interval_ms"] == value
    m.record_heartbeat("x")
    vclock.advance(float(value) / 1000)
    assert m.check_agent_health("x") is HealthState.DEGRADED


BAD_CTOR = [
    ("interval_ms", True, TypeError),
    ("interval_ms", NAN, ValueError),
    ("interval_ms", INF, ValueError),
    ("interval_ms", "5000", TypeError),
    ("failure_threshold", True, TypeError),
    ("failure_threshold", NAN, ValueError),
    ("failure_threshold", "3", TypeError),
    ("history_size", True, TypeError),
    ("history_size", NAN, ValueError),
    ("history_size", INF, ValueError),
    ("history_size", "100", TypeError),
    ("check_interval_ms", False, TypeError),
    ("check_interval_ms", NAN, ValueError),
    ("check_interval_ms", "1000", TypeError),
    ("tick_ms", 0, ValueError),
    ("tick_ms", -10, ValueError),
    ("tick_ms", True, TypeError),
    ("tick_ms", "10", TypeError),
    ("tick_ms", NAN, (ValueError, TypeError)),
    ("engine", "bogus", (ValueError, TypeError)),
    ("engine", 42, (ValueError, TypeError)),
]


@pytest.mark.parametrize("arg, value, exc", BAD_CTOR,
                         ids=[f"{a}={v!r}" for a, v, _ in BAD_CTOR])
def test_bad_constructor_arguments(make_monitor, arg, value, exc):
    with pytest.raises(exc) as ei:
        make_monitor(**{arg: value})
    assert arg in str(ei.value)


def _daemons():
    return {t for t in threading.enumerate() if t.name == "HeartbeatMonitor-Daemon"}


@pytest.mark.parametrize("kwargs", [dict(interval_ms=NAN), dict(tick_ms=0),
                                    dict(history_size=True), dict(check_interval_ms=50)])
def test_rejected_constructor_leaks_no_thread(engine, kwargs):
    before = _daemons()
    with pytest.raises((TypeError, ValueError)):
        HeartbeatMonitor(engine=engine, **kwargs)
    assert _daemons() <= before


def test_rejected_calls_in_a_row_change_nothing(populated, vclock):
    before = snapshot(populated, _ids())
    for bad in ([1], {}, set()):
        for meth in METHODS:
            with pytest.raises(TypeError):
                getattr(populated, meth)(bad)
    for arg, value, exc in BAD_AGENT_ARGS:
        with pytest.raises(exc):
            populated.start_monitoring("agent-z", **{arg: value})
    assert snapshot(populated, _ids()) == before
    # and the monitor still works normally afterwards
    vclock.advance(5)
    assert populated.advance() >= 1
    assert populated.check_agent_health("agent-a") is HealthState.FAILED
    assert not math.isnan(populated.get_monitoring_stats()["total_heartbeats"])


def test_clock_rejects_going_backwards_without_change(make_monitor, vclock):
    m = make_monitor()
    m.start_monitoring("a")
    m.record_heartbeat("a")
    vclock.set(1001.0)
    before = snapshot(m, ["a"])
    with pytest.raises(ValueError):
        m.advance(to=1000.5)
    assert vclock.monotonic_ns() == 1001 * 10**9
    assert snapshot(m, ["a"]) == before


def test_virtual_clock_constructor():
    clk = VirtualClock(start=5.0, wall_start=10.0)
    assert clk.monotonic_ns() == 5 * 10**9
    assert clk.time() == 10.0
