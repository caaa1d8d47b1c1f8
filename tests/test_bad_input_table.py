"""Bad input, every public method (issue 5, item 6; SEMANTICS.md Part B 7): one table.

Each row calls one public method (or constructor, view, clock) with a wrong type, an
out-of-range value, NaN, inf, a huge number, an empty or huge id, an unknown or foreign
handle, or after shutdown. Expected: a TypeError/ValueError whose message names the
argument -- and then the monitor is exactly as before (every recorded heartbeat, every
setting) -- or the documented (Part A) return value, with every heartbeat recorded before
still there. Run with -s to see the number of cases."""
from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pytest
from hb_model import snapshot

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

NAN, INF = float("nan"), float("inf")
HUGE_ID = "x" * (1 << 20)          # a 1 MB string is a valid id
DT = datetime.fromtimestamp(1_700_000_000.0)
T0 = 1000.0
IDS = ["a", "b", "s", "zz"]         # a, b monitored; s stopped (history kept); zz unknown


class Ctx:
    def __init__(self, m, clock, other_handle, stale_handle, make_monitor):
        self.m = m
        self.clock = clock
        self.other = other_handle          # a live handle of another monitor
        self.stale = stale_handle          # the handle "s" had before it was stopped
        self.h = m.handles(["a", "b"])
        self._make = make_monitor

    def new(self, **kw):
        """A monitor made by the make_monitor fixture (shut down at teardown)."""
        return self._make(**kw)


class Raises:
    """The exception class(es) and the name the message must contain (as a word; a tuple:
    any of them)."""

    def __init__(self, exc, name):
        self.exc, self.name = exc, name

    def names(self, text):
        names = self.name if isinstance(self.name, tuple) else (self.name,)
        return any(n == "" or re.search(r"(?<![A-Za-z_])" + re.escape(n) + r"(?![A-Za-z_])",
                                        text) for n in names)

    def __repr__(self):
        return f"{self.exc.__name__}({self.name!r})"


class Returns:
    """The documented return value (or a predicate on it). `changes`: the call may add
    records or agents (a valid call); recorded heartbeats must still be there."""

    def __init__(self, check, changes=False):
        self.check, self.changes = check, changes

    def ok(self, value):
        if callable(self.check):
            return bool(self.check(value))
        if isinstance(value, np.ndarray):
            return value.tolist() == self.check
        return value == self.check and type(value) is type(self.check)

    def __repr__(self):
        return "Returns(...)"


def TE(name):
    return Raises(TypeError, name)


def VE(name):
    return Raises(ValueError, name)


def _ctor(**kw):
    def call(c):
        kw.setdefault("clock", c.clock)
        kw.setdefault("engine", c.m.engine_name)
        mon = HeartbeatMonitor(**kw)
        mon.shutdown()
        return mon
    return call


def _after_shutdown(fn):
    def call(c):
        c.m.shutdown()
        return fn(c)
    return call


def _empty_array(v):
    return isinstance(v, np.ndarray) and v.size == 0


def _huge_id_flow(c):
    m = c.m
    assert m.start_monitoring(HUGE_ID) is True
    assert m.record_heartbeat(HUGE_ID, {"big": True}) is True
    assert m.check_agent_health(HUGE_ID) is HealthState.HEALTHY
    assert len(m.get_heartbeat_history(HUGE_ID)) == 1
    assert m.record_heartbeats([HUGE_ID]).tolist() == [True]
    assert m.handles([HUGE_ID])[0] >= 0
    assert m.stop_monitoring(HUGE_ID) is True
    assert len(m.get_heartbeat_history(HUGE_ID)) == 2
    return m.clear_history(HUGE_ID)


def _empty_id_flow(c):
    m = c.m
    assert m.start_monitoring("") is True
    assert m.start_monitoring("") is False
    assert m.record_heartbeat("") is True
    assert m.check_agent_health("") is HealthState.HEALTHY
    return m.stop_monitoring("")


def _sys_after_shutdown(fn):
    """A system-clock monitor with its threads, shut down, then fn(monitor)."""
    def call(c):
        mon = c.new(clock=None, interval_ms=5000, engine=c.m.engine_name)
        mon.start_monitoring("a")
        mon.record_heartbeat("a")
        mon.shutdown()
        assert not mon.get_monitoring_stats()["monitoring_thread_alive"]
        return fn(mon)
    return call


def _cases():
    def m_(name, *a, **k):
        return (lambda c: getattr(c.m, name)(*a, **k))
    cases = []

    def add(label, fn, expect):
        cases.append((label, fn, expect))

    # -- constructor ------------------------------------------------------------------------
    msgs = {"interval_ms": "interval_ms must be >= 100",
            "failure_threshold": "failure_threshold must be >= 1",
            "history_size": "history_size must be >= 1",
            "check_interval_ms": "check_interval_ms must be >= 100"}
    for arg, low in (("interval_ms", 99), ("failure_threshold", 0), ("history_size", 0),
                     ("check_interval_ms", 99)):
        add(f"ctor-{arg}-low", _ctor(**{arg: low}), Raises(ValueError, msgs[arg]))
        add(f"ctor-{arg}-negative", _ctor(**{arg: -1}), Raises(ValueError, msgs[arg]))
        add(f"ctor-{arg}-str", _ctor(**{arg: "100"}), TE(arg))
        add(f"ctor-{arg}-bool", _ctor(**{arg: True}), TE(arg))
        add(f"ctor-{arg}-none", _ctor(**{arg: None}), TE(arg))
        add(f"ctor-{arg}-list", _ctor(**{arg: [100]}), TE(arg))
        add(f"ctor-{arg}-nan", _ctor(**{arg: NAN}), VE(arg))
        add(f"ctor-{arg}-inf", _ctor(**{arg: INF}), VE(arg))
        add(f"ctor-{arg}-neginf", _ctor(**{arg: -INF}), VE(arg))
    add("ctor-order-interval-first", _ctor(interval_ms=50, failure_threshold=0,
                                           history_size=0),
        Raises(ValueError, "interval_ms must be >= 100"))
    add("ctor-failure_threshold-fraction", _ctor(failure_threshold=2.5),
        VE("failure_threshold"))
    add("ctor-history_size-fraction", _ctor(history_size=10.5), VE("history_size"))
    add("ctor-interval-huge", _ctor(interval_ms=10 ** 30), VE("interval_ms"))
    add("ctor-interval-1e300", _ctor(interval_ms=1e300), VE("interval_ms"))
    add("ctor-threshold-huge", _ctor(failure_threshold=10 ** 30), VE("failure_threshold"))
    add("ctor-history_size-huge", _ctor(history_size=10 ** 30), VE("history_size"))
    # Rings are preallocated per agent in the compiled engine: the documented bound is 10**6.
    add("ctor-history_size-2**31", _ctor(history_size=2 ** 31 - 1), VE("history_size"))
    add("ctor-history_size-10**6-usable",
        lambda c: _ctor(history_size=10 ** 6)(c).start_monitoring("x"), Returns(True))
    for v, exc in ((0, ValueError), (1.5, ValueError), (NAN, ValueError), (INF, ValueError),
                   (60_001, ValueError), (10 ** 30, ValueError), ("10", TypeError),
                   (True, TypeError), (None, TypeError)):
        add(f"ctor-tick_ms-{v!r}"[:40], _ctor(tick_ms=v), Raises(exc, "tick_ms"))
    for v in ("clock", 5, object()):
        add(f"ctor-clock-{type(v).__name__}", _ctor(clock=v), TE("clock"))
    for v in ("yes", 1):
        add(f"ctor-background-{v!r}", _ctor(background=v), TE("background"))
        add(f"ctor-start_clock_on_register-{v!r}", _ctor(start_clock_on_register=v),
            TE("start_clock_on_register"))
    add("ctor-engine-unknown", _ctor(engine="turbo"), VE("engine"))
    add("ctor-engine-int", _ctor(engine=5), Raises((TypeError, ValueError), "engine"))
    for arg in ("stall_guard_ms", "stall_grace_ms"):
        for v, exc in ((-1, ValueError), (NAN, ValueError), (INF, ValueError),
                       (1e300, ValueError), (10 ** 30, ValueError), ("x", TypeError),
                       (True, TypeError)):
            add(f"ctor-{arg}-{v!r}"[:40], _ctor(**{arg: v}), Raises(exc, arg))
    for v, exc in ((-1, ValueError), (1.5, ValueError), (NAN, ValueError), (INF, ValueError),
                   (10 ** 30, ValueError), ("x", TypeError), (True, TypeError)):
        add(f"ctor-max_stopped_histories-{v!r}"[:40], _ctor(max_stopped_histories=v),
            Raises(exc, "max_stopped_histories"))

    # -- start_monitoring ----------------------------------------------------------------------
    for v in ([], {}, {1}, bytearray(b"x")):
        add(f"start-id-{type(v).__name__}", m_("start_monitoring", v), TE("agent_id"))
    for aid in ("new", "a"):     # a fresh id, and one already monitored
        for v, exc in ((99, ValueError), (0, ValueError), (-100, ValueError),
                       (NAN, ValueError), (INF, ValueError), (-INF, ValueError),
                       (10 ** 30, ValueError), (1e300, ValueError), ("100", TypeError),
                       (True, TypeError), ([100], TypeError), (complex(100, 0), TypeError)):
            add(f"start-{aid}-interval-{v!r}"[:40], m_("start_monitoring", aid, v),
                Raises(exc, "interval_ms"))
        for v, exc in ((0, ValueError), (-1, ValueError), (1.5, ValueError),
                       (NAN, ValueError), (INF, ValueError), (2 ** 40, ValueError),
                       ("3", TypeError), (True, TypeError)):
            add(f"start-{aid}-threshold-{v!r}"[:40],
                m_("start_monitoring", aid, 1000, v), Raises(exc, "failure_threshold"))
        add(f"start-{aid}-start_clock-str",
            m_("start_monitoring", aid, start_clock="yes"), TE("start_clock"))
        add(f"start-{aid}-start_clock-int",
            m_("start_monitoring", aid, start_clock=1), TE("start_clock"))
    add("start-already-monitored", m_("start_monitoring", "a"), Returns(False))
    add("start-empty-id-flow", _empty_id_flow, Returns(True, changes=True))
    add("start-huge-id-flow", _huge_id_flow, Returns(1, changes=True))
    add("start-none-id", m_("start_monitoring", None), Returns(True, changes=True))

    # -- stop / record / check / unhealthy / history -------------------------------------------
    add("stop-unhashable", m_("stop_monitoring", []), TE("agent_id"))
    add("stop-unknown", m_("stop_monitoring", "zz"), Returns(False))
    add("stop-stopped", m_("stop_monitoring", "s"), Returns(False))
    add("stop-empty-id", m_("stop_monitoring", ""), Returns(False))
    add("stop-huge-id", m_("stop_monitoring", HUGE_ID), Returns(False))
    add("record-unhashable", m_("record_heartbeat", {"x": 1}), TE("agent_id"))
    for v in (5, "meta", [1, 2], (1,), 1.5):
        add(f"record-metadata-{type(v).__name__}", m_("record_heartbeat", "a", v),
            TE("metadata"))
    add("record-unknown", m_("record_heartbeat", "zz"), Returns(False))
    add("record-stopped", m_("record_heartbeat", "s"), Returns(False))
    add("record-unknown-bad-metadata", m_("record_heartbeat", "zz", 5),
        Raises((TypeError,), "metadata"))
    add("check-unhashable", m_("check_agent_health", []), TE("agent_id"))
    add("check-unknown", m_("check_agent_health", "zz"),
        Raises(ValueError, "Agent zz not being monitored"))
    add("check-stopped", m_("check_agent_health", "s"),
        Raises(ValueError, "Agent s not being monitored"))
    add("check-huge-unknown", m_("check_agent_health", HUGE_ID),
        Raises(ValueError, "not being monitored"))
    for v in ("failed", 3, None, HealthState):
        add(f"unhealthy-{type(v).__name__}", m_("get_unhealthy_agents", v), TE("min_state"))
    add("history-unhashable", m_("get_heartbeat_history", []), TE("agent_id"))
    add("history-unknown", m_("get_heartbeat_history", "zz"), Returns([]))
    for label, tr in (("str", "x"), ("ints", (1, 2)), ("one", (DT,)), ("three", (DT, DT, DT)),
                      ("nan", (NAN, NAN)), ("dt-and-int", (DT, 5))):
        add(f"history-time_range-{label}", m_("get_heartbeat_history", "a", tr),
            TE("time_range"))
    add("history-time_range-empty-window",
        m_("get_heartbeat_history", "a", (DT.replace(year=2000), DT.replace(year=2000))),
        Returns([]))
    add("history-time_range-reversed", m_("get_heartbeat_history", "a",
                                          (datetime(2100, 1, 1), datetime(2000, 1, 1))),
        Returns([]))

    # -- configure_alerts: nothing applied when any argument is bad ----------------------------
    for flag in ("on_degraded", "on_critical", "on_failed", "on_recovery"):
        add(f"alerts-{flag}-str", m_("configure_alerts", **{flag: "yes"}), TE(flag))
        add(f"alerts-{flag}-int", m_("configure_alerts", **{flag: 1}), TE(flag))
    for cb in ("degraded_callback", "critical_callback", "failed_callback",
               "recovery_callback", "batch_callback"):
        add(f"alerts-{cb}-int", m_("configure_alerts", **{cb: 5}), TE(cb))
        add(f"alerts-{cb}-str", m_("configure_alerts", **{cb: "print"}), TE(cb))
    for v, exc in ((-1, ValueError), (1.5, ValueError), (NAN, ValueError), (INF, ValueError),
                   (10 ** 30, ValueError), ("x", TypeError), (True, TypeError)):
        add(f"alerts-coalesce_above-{v!r}"[:40], m_("configure_alerts", coalesce_above=v),
            Raises(exc, "coalesce_above"))
    add("alerts-callback_loop-str", m_("configure_alerts", callback_loop="loop"),
        TE("callback_loop"))
    # a valid flag with a bad argument: nothing may be applied
    add("alerts-partial-flag-and-bad-coalesce",
        m_("configure_alerts", on_degraded=False, failed_callback=print, coalesce_above=-1),
        VE("coalesce_above"))
    add("alerts-partial-flag-and-bad-loop",
        m_("configure_alerts", on_critical=False, callback_loop="loop"), TE("callback_loop"))
    add("alerts-partial-flag-and-bad-callback",
        m_("configure_alerts", on_failed=False, degraded_callback=5), TE("degraded_callback"))

    # -- clear_history / advance -----------------------------------------------------------------
    add("clear-unhashable", m_("clear_history", []), TE("agent_id"))
    add("clear-unknown", m_("clear_history", "zz"), Returns(0))
    for v, exc in (("x", TypeError), (True, TypeError), ([1], TypeError), (NAN, ValueError),
                   (INF, ValueError), (-INF, ValueError), (T0 - 1, ValueError),
                   (-1.0, ValueError), (1e300, ValueError), (10 ** 30, ValueError)):
        add(f"advance-to-{v!r}"[:40], m_("advance", to=v), Raises(exc, "to"))
    add("advance-to-system-clock",
        lambda c: c.new(clock=None, engine=c.m.engine_name).advance(to=5.0), TE("to"))
    add("advance-to-now", lambda c: c.m.advance(to=c.clock.now), Returns(0))

    # -- handles / agent_ids -------------------------------------------------------------------
    for label, v in (("str", "ab"), ("int", 5), ("none", None), ("bytes", b"ab")):
        add(f"handles-{label}", m_("handles", v), TE("agent_ids"))
    add("handles-unhashable-item", m_("handles", ["a", ["x"]]), TE("agent_ids[1]"))
    add("handles-empty", m_("handles", []), Returns(_empty_array))
    add("handles-unknown", m_("handles", ["zz", "s", "", HUGE_ID]),
        Returns([-1, -1, -1, -1]))
    add("agent_ids-2d", m_("agent_ids", np.array([[1, 2]])), VE("handles"))
    add("agent_ids-int", m_("agent_ids", 5), TE("ids_or_handles"))
    add("agent_ids-unknown",
        lambda c: c.m.agent_ids(np.array([-1, 0, 1, 2 ** 62, -2 ** 63, c.stale, c.other],
                                         dtype=np.int64)),
        Returns([None] * 7))
    add("agent_ids-uint64-max",
        m_("agent_ids", np.array([2 ** 64 - 1], dtype=np.uint64)), Returns([None]))
    add("agent_ids-empty", m_("agent_ids", np.array([], dtype=np.int64)), Returns([]))

    # -- start_monitoring_many -----------------------------------------------------------------
    for label, v in (("str", "ab"), ("int", 5), ("iterator", iter(["x"]))):
        add(f"many-ids-{label}", m_("start_monitoring_many", v), TE("agent_ids"))
    add("many-ids-unhashable", m_("start_monitoring_many", ["n1", []]), TE("agent_ids[1]"))
    for v, exc in (([100, NAN], ValueError), ([100, INF], ValueError), ([100, 50], ValueError),
                   ([100], ValueError), ([100, 100, 100], ValueError),
                   (["100", 100], TypeError), ([100, True], TypeError),
                   (NAN, ValueError), (10 ** 30, ValueError)):
        add(f"many-interval-{v!r}"[:40], m_("start_monitoring_many", ["n1", "n2"], v),
            Raises(exc, "interval_ms"))
    for v, exc in (([3, 0], ValueError), ([3, 1.5], ValueError), ([3], ValueError),
                   ([3, "3"], TypeError), (NAN, ValueError), (2 ** 40, ValueError)):
        add(f"many-threshold-{v!r}"[:40],
            m_("start_monitoring_many", ["n1", "n2"], 1000, v), Raises(exc, "failure_threshold"))
    add("many-start_clock", m_("start_monitoring_many", ["n1"], start_clock="yes"),
        TE("start_clock"))
    add("many-empty", m_("start_monitoring_many", []), Returns(_empty_array))
    add("many-repeats", m_("start_monitoring_many", ["n1", "n1", "a"]),
        Returns([True, False, False], changes=True))

    # -- record_heartbeats -----------------------------------------------------------------------
    for label, v in (("int", 5), ("str", "ab"), ("none", None)):
        add(f"beats-ids-{label}", m_("record_heartbeats", v), TE("ids_or_handles"))
    add("beats-handles-2d", m_("record_heartbeats", np.array([[0, 1]])), VE("handles"))
    add("beats-unhashable-id", m_("record_heartbeats", ["a", {}]),
        TE(("ids_or_handles[1]", "agent_ids[1]")))
    for label, ts, exc in (("nan", [1.7e9, NAN], ValueError), ("inf", [1.7e9, INF], ValueError),
                           ("neginf", [-INF, 1.7e9], ValueError),
                           ("short", [1.7e9], ValueError),
                           ("long", [1.7e9] * 3, ValueError),
                           ("2d", [[1.7e9], [1.7e9]], ValueError),
                           ("str", ["x", "y"], TypeError),
                           ("dict", {"a": 1.0}, TypeError)):
        add(f"beats-timestamps-{label}", m_("record_heartbeats", ["a", "b"], ts),
            Raises(exc, "timestamps"))
    add("beats-unknown-handles",
        lambda c: c.m.record_heartbeats(np.array([-1, 0, 2 ** 62, -2 ** 63, c.stale, c.other],
                                                 dtype=np.int64)),
        Returns([False] * 6))
    add("beats-unknown-ids", m_("record_heartbeats", ["zz", "s", "", HUGE_ID]),
        Returns([False] * 4))
    add("beats-uint64-max", m_("record_heartbeats", np.array([2 ** 64 - 1], dtype=np.uint64)),
        Returns([False]))
    add("beats-empty", m_("record_heartbeats", []), Returns(_empty_array))
    add("beats-older-than-last", m_("record_heartbeats", ["a", "b"], [1e9, 0.0]),
        Returns([False, False]))
    add("beats-future-counts-as-now",
        lambda c: c.m.record_heartbeats(c.h, [4e9, 2e9]),
        Returns([True, True], changes=True))
    for label, ts in (("negative", [-1e10, 1.7e9]), ("huge", [1.7e9, 1e300]),
                      ("huge-2", [1e18, 1.7e9])):
        add(f"beats-timestamps-{label}", m_("record_heartbeats", ["a", "b"], ts),
            VE("timestamps"))
    add("beats-float-handles", m_("record_heartbeats", np.array([1.5, 2.0])),
        TE("ids_or_handles"))

    # -- arrays and analytics ----------------------------------------------------------------------
    add("history_array-unhashable", m_("history_array", ["a"]), TE("agent_id"))
    add("history_array-unknown", m_("history_array", "zz"), Returns(_empty_array))
    add("histories-layout", m_("histories", layout="grid"), VE("layout"))
    add("histories-ids-str", m_("histories", "ab"), TE("agent_ids"))
    add("histories-ids-int", m_("histories", 5), TE("agent_ids"))
    add("histories-unknown",
        lambda c: c.m.histories(["zz", "s"]),
        Returns(lambda v: v.shape == (2, 10) and np.isnan(v).all()))
    add("histories-unknown-handles",
        lambda c: c.m.histories(np.array([c.stale, c.other, -1], dtype=np.int64),
                                layout="flat")[1],
        Returns([0, 0, 0, 0]))
    for label, tr, exc in (("str", "x", TypeError), ("one", (1.0,), TypeError),
                           ("nan", (NAN, 2e9), ValueError), ("bool", (True, 2e9), TypeError),
                           ("list-of-str", ["a", "b"], TypeError)):
        add(f"interval_stats-time_range-{label}", m_("interval_stats", time_range=tr),
            Raises(exc, "time_range"))
    add("interval_stats-ids-int", m_("interval_stats", 5), TE("agent_ids"))
    add("interval_stats-unknown",
        lambda c: c.m.interval_stats(np.array([c.stale, c.other], dtype=np.int64)),
        Returns(lambda v: v["count"].tolist() == [0, 0] and np.isnan(v["mean"]).all()))
    for arg in ("min_std_deviation_ms", "acceptable_heartbeat_pause_ms",
                "first_heartbeat_estimate_ms"):
        for v, exc in ((NAN, ValueError), (INF, ValueError), (-1.0, ValueError),
                       ("x", TypeError)):
            add(f"snapshot-{arg}-{v!r}"[:50], m_("snapshot", **{arg: v}), Raises(exc, arg))
            add(f"phi-{arg}-{v!r}"[:50], m_("phi", **{arg: v}), Raises(exc, arg))
    for v, exc in (("x", TypeError), (NAN, ValueError), (INF, ValueError), (True, TypeError)):
        add(f"phi-now-{v!r}", m_("phi", now=v), Raises(exc, "now"))
    add("phi-ids-int", m_("phi", 5), TE("agent_ids"))
    add("phi-unknown", m_("phi", ["zz", "s"]), Returns(lambda v: np.isnan(v).all()))
    add("agent_health-unknown", m_("get_agent_health", "zz"),
        VE("Agent zz not being monitored"))
    add("agent_health-unhashable", m_("get_agent_health", ["x"]), TE("agent_id"))
    add("all_health", m_("get_all_agents_health"),
        Returns(lambda v: list(v) == ["a", "b"] and set(v.values()) <= {"degraded"}))
    add("state_durations-unknown", m_("get_state_durations", "zz"),
        VE("Agent zz not being monitored"))
    add("uptime_percentage-unknown", m_("get_uptime_percentage", "zz", None, None),
        Returns(None))
    add("uptime_percentage-unhashable", m_("get_uptime_percentage", ["x"], None, None),
        TE("agent_id"))
    add("uptime-ids-int", m_("uptime", 5), TE("agent_ids"))
    add("uptime-unknown", m_("uptime", ["zz", "s"]), Returns(lambda v: np.isnan(v).all()))
    for fn, label in (("get_state_durations", "state_durations"),
                      ("get_uptime_percentage", "uptime_percentage"), ("uptime", "uptime")):
        first = (None,) if fn == "uptime" else ("a",)
        add(f"{label}-start-str", m_(fn, *first, "x", None), TE("start"))
        add(f"{label}-end-bool", m_(fn, *first, None, True), TE("end"))
        add(f"{label}-start-nan", m_(fn, *first, NAN, None), VE("start"))
        add(f"{label}-reversed", m_(fn, *first, 20.0, 10.0), VE("end"))
    try:
        import pandas  # noqa: F401
        add("to_pandas", m_("to_pandas"), Returns(lambda v: len(v) == 2))
    except ImportError:
        add("to_pandas-missing-extra", m_("to_pandas"), Raises(ImportError, "pandas"))

    for v, exc in ((0, ValueError), (-1, ValueError), (1.5, ValueError), (NAN, ValueError),
                   (INF, ValueError), (10 ** 30, ValueError), ("x", TypeError),
                   (True, TypeError)):
        add(f"events-maxsize-{v!r}"[:40], m_("events", v), Raises(exc, "maxsize"))

    # -- the Part A views ------------------------------------------------------------------------
    add("agents-view-unknown", lambda c: c.m.monitoring_agents["zz"], Raises(KeyError, "zz"))
    add("agents-view-stopped", lambda c: c.m.monitoring_agents["s"], Raises(KeyError, "s"))
    for key, v, exc, name in (("interval_ms", 50, ValueError, "interval_ms"),
                              ("interval_ms", NAN, ValueError, "interval_ms"),
                              ("interval_ms", "x", TypeError, "interval_ms"),
                              ("failure_threshold", 0, ValueError, "failure_threshold"),
                              ("failure_threshold", 1.5, ValueError, "failure_threshold"),
                              ("last_state", "failed", TypeError, "last_state"),
                              ("last_heartbeat", NAN, ValueError, "last_heartbeat"),
                              ("last_heartbeat", INF, ValueError, "last_heartbeat"),
                              ("last_heartbeat", "x", TypeError, "last_heartbeat"),
                              ("started_at", None, TypeError, "started_at"),
                              ("bogus", 1, KeyError, "bogus")):
        add(f"agents-view-set-{key}-{v!r}"[:50],
            lambda c, key=key, v=v: c.m.monitoring_agents["a"].__setitem__(key, v),
            Raises(exc, name))
    add("agents-view-del-field",
        lambda c: c.m.monitoring_agents["a"].__delitem__("interval_ms"),
        Raises(TypeError, "deleted"))
    add("history-view-unknown", lambda c: c.m.heartbeat_history["zz"], Raises(KeyError, "zz"))
    add("history-view-del-unknown",
        lambda c: c.m.heartbeat_history.__delitem__("zz"), Raises(KeyError, "zz"))
    add("history-view-set", lambda c: c.m.heartbeat_history.__setitem__("a", []),
        Raises(TypeError, "heartbeat history"))
    add("history-view-index", lambda c: c.m.heartbeat_history["a"][99],
        Raises(IndexError, ""))

    # -- the VirtualClock --------------------------------------------------------------------------
    for v, exc in (("x", TypeError), (NAN, ValueError), (INF, ValueError),
                   (1e300, ValueError), (True, TypeError)):
        add(f"clock-step_wall-{v!r}"[:40], lambda c, v=v: c.clock.step_wall(v),
            Raises(exc, "seconds"))
        add(f"clock-advance-{v!r}"[:40], lambda c, v=v: c.clock.advance(v),
            Raises(exc, "seconds"))
    add("clock-advance-huge-int", lambda c: c.clock.advance(10 ** 30), VE("seconds"))
    add("clock-advance-negative", lambda c: c.clock.advance(-1), VE("seconds"))
    add("clock-set-backwards", lambda c: c.clock.set(T0 - 1), VE("seconds"))
    for arg, v, exc in (("start", NAN, ValueError), ("start", -1.0, ValueError),
                        ("start", "x", TypeError), ("start", 1e300, ValueError),
                        ("wall_start", "x", TypeError), ("wall_start", NAN, ValueError),
                        ("wall_start", INF, ValueError)):
        add(f"clock-ctor-{arg}-{v!r}", lambda c, arg=arg, v=v: VirtualClock(**{arg: v}),
            Raises(exc, arg))

    # -- after shutdown: Part A keeps working, bad input still rejected -------------------------
    add("shutdown-twice", _after_shutdown(lambda c: c.m.shutdown()), Returns(0))  # nothing left
    add("after-shutdown-record", _after_shutdown(lambda c: c.m.record_heartbeat("a")),
        Returns(True, changes=True))
    add("after-shutdown-start", _after_shutdown(lambda c: c.m.start_monitoring("n")),
        Returns(True, changes=True))
    add("after-shutdown-stop", _after_shutdown(lambda c: c.m.stop_monitoring("b")),
        Returns(True, changes=True))
    add("after-shutdown-check", _after_shutdown(lambda c: c.m.check_agent_health("b")),
        Returns(lambda v: isinstance(v, HealthState)))
    add("after-shutdown-unknown-record",
        _after_shutdown(lambda c: c.m.record_heartbeat("zz")), Returns(False))
    add("after-shutdown-bad-interval",
        _after_shutdown(lambda c: c.m.start_monitoring("n", NAN)), VE("interval_ms"))
    add("after-shutdown-bad-metadata",
        _after_shutdown(lambda c: c.m.record_heartbeat("a", 5)), TE("metadata"))
    add("after-shutdown-batch",
        _after_shutdown(lambda c: c.m.record_heartbeats(c.h)),
        Returns([True, True], changes=True))
    add("after-shutdown-stats",
        _after_shutdown(lambda c: c.m.get_monitoring_stats()["monitoring_thread_alive"]),
        Returns(False))
    add("after-shutdown-system-record",
        _sys_after_shutdown(lambda mon: mon.record_heartbeat("a")), Returns(True, changes=True))
    add("after-shutdown-system-start",
        _sys_after_shutdown(lambda mon: mon.start_monitoring("b")), Returns(True, changes=True))
    add("after-shutdown-system-history",
        _sys_after_shutdown(lambda mon: len(mon.get_heartbeat_history("a"))), Returns(1))
    add("after-shutdown-system-unhealthy",
        _sys_after_shutdown(lambda mon: mon.get_unhealthy_agents()), Returns([]))
    add("after-shutdown-system-bad-threshold",
        _sys_after_shutdown(lambda mon: mon.start_monitoring("b", 1000, 0)),
        VE("failure_threshold"))
    add("after-shutdown-system-advance-to",
        _sys_after_shutdown(lambda mon: mon.advance(to=1.0)), TE("to"))
    return cases


CASES = _cases()


@pytest.fixture
def ctx(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=10)
    for a in ("a", "b", "s"):
        m.start_monitoring(a)
    for k in range(3):
        m.record_heartbeat("a", {"k": k})
        m.record_heartbeat("b")
        m.record_heartbeat("s")
        m.advance(to=vclock.now + 0.4)
    m.advance(to=vclock.now + 1.5)          # a and b DEGRADED
    stale = int(m.handles(["s"])[0])
    m.stop_monitoring("s")
    other = make_monitor(interval_ms=1000)
    other.start_monitoring("a")
    return Ctx(m, vclock, int(other.handles(["a"])[0]), stale, make_monitor)


def _state(m):
    snap = snapshot(m, IDS)
    snap["arrays"] = {k: m.history_array(k, copy=True).tolist() for k in IDS}
    snap["alert_enabled"] = dict(m.alert_enabled)
    snap["alert_callbacks"] = dict(m.alert_callbacks)
    snap["config"] = (m.stall_guard_ms, m.stall_grace_ms, m.history_size, m.tick_ms)
    snap["dispatch"] = (m._dispatcher.coalesce_above, m._dispatcher.batch_callback,
                        m._dispatcher.recovery_callback, m._dispatcher.recovery_enabled)
    return snap


@pytest.mark.parametrize("label,call,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ctx, label, call, expect):
    m = ctx.m
    before = _state(m)
    if isinstance(expect, Raises):
        with pytest.raises(Exception) as info:
            call(ctx)
        err = info.value
        assert isinstance(err, expect.exc), \
            f"{type(err).__name__}: {err} (expected {expect!r})"
        text = str(err) if not isinstance(err, KeyError) else repr(err.args)
        assert expect.names(text), f"the message does not name {expect.name!r}: {err}"
        after = _state(m)
        assert after == before, "a rejected call changed the monitor"
    else:
        result = call(ctx)
        assert expect.ok(result), f"returned {result!r}"
        after = _state(m)
        if not expect.changes:
            assert after == before, "a call documented to change nothing changed the monitor"
        for k in ("a", "b", "s"):          # every heartbeat recorded before is still there
            old, new = before["histories"][repr(k)], after["histories"][repr(k)]
            assert new[:len(old)] == old, (k, old, new)
            assert after["arrays"][k][:len(old)] == before["arrays"][k]


def test_case_count():
    n = len(CASES)
    print(f"\n[bad-input] {n} cases per engine, {2 * n} with both engines")
    assert n >= 250
    assert len({c[0] for c in CASES}) == n, "case labels must be unique"


def test_every_public_method_is_covered():
    public = {name for name in dir(HeartbeatMonitor) if not name.startswith("_")
              and callable(getattr(HeartbeatMonitor, name))}
    text = " ".join(c[0] for c in CASES)
    prefixes = {"start_monitoring": "start-", "stop_monitoring": "stop-",
                "record_heartbeat": "record-", "check_agent_health": "check-",
                "get_unhealthy_agents": "unhealthy-", "get_heartbeat_history": "history-",
                "configure_alerts": "alerts-", "clear_history": "clear-", "advance": "advance-",
                "handles": "handles-", "agent_ids": "agent_ids-",
                "start_monitoring_many": "many-", "record_heartbeats": "beats-",
                "history_array": "history_array-", "histories": "histories-",
                "interval_stats": "interval_stats-", "snapshot": "snapshot-", "phi": "phi-",
                "to_pandas": "to_pandas", "shutdown": "shutdown-",
                "get_monitoring_stats": "after-shutdown-stats", "events": "events-",
                "get_agent_health": "agent_health-", "get_all_agents_health": "all_health",
                "get_state_durations": "state_durations-",
                "get_uptime_percentage": "uptime_percentage-", "uptime": "uptime-"}
    missing = [p for p in public if prefixes.get(p, "\0") not in text]
    assert missing == [], f"public methods with no bad-input row: {missing}"
