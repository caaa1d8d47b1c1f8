"""Log lines: the replaced monitor's texts and levels, with this monitor's detail at the end,
and rate limiting where input can flood the log."""
from __future__ import annotations

import logging

import pytest

from moai_flow_fast.core import _logs

LOGGER = "moai_flow_fast.monitor"


def lines(caplog, level=None):
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == LOGGER and (level is None or r.levelname == level)]


@pytest.fixture
def caplog_info(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


def test_start_twice_and_stop_unknown_warn_as_the_replaced_monitor(make_monitor, caplog_info):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    assert m.start_monitoring("a", 2000, 4)
    assert not m.start_monitoring("a")
    assert m.stop_monitoring("a")
    assert not m.stop_monitoring("a")
    assert lines(caplog_info) == [
        ("INFO", "Started monitoring agent a (interval=2000ms, threshold=4)"),
        ("WARNING", "Agent a already being monitored"),
        ("INFO", "Stopped monitoring agent a"),
        ("WARNING", "Agent a not being monitored"),
    ]


def test_defaults_appear_in_the_start_line(make_monitor, caplog_info):
    m = make_monitor(interval_ms=1500, failure_threshold=5)
    m.start_monitoring("b")
    assert lines(caplog_info) == [
        ("INFO", "Started monitoring agent b (interval=1500ms, threshold=5)")]


def test_heartbeat_from_unmonitored_agent_warns_on_both_engines(make_monitor, caplog_info):
    m = make_monitor()
    assert m.record_heartbeat("ghost") is False
    assert lines(caplog_info) == [("WARNING", "Heartbeat from unmonitored agent ghost")]
    assert m.get_monitoring_stats()["unknown_heartbeats"] == 1


def test_known_heartbeats_log_nothing(make_monitor, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    m = make_monitor()
    m.start_monitoring("a")
    caplog.clear()
    for _ in range(10):
        assert m.record_heartbeat("a")
    m.record_heartbeats(["a", "a"])
    assert lines(caplog) == []


def test_alert_warning_text(make_monitor, vclock, caplog_info):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    caplog_info.clear()
    m.advance(vclock.now + 1.0)
    warnings = lines(caplog_info, "WARNING")
    assert len(warnings) == 1
    text = warnings[0][1]
    # The replaced monitor's words first; this monitor's detection delay at the end.
    assert text.startswith("Agent a health: healthy → degraded (elapsed: 1.0s); detected ")
    assert text.endswith(" ms after the deadline")
    delay_ms = float(text.split("detected ")[1].split(" ms")[0])
    assert 0.0 <= delay_ms <= m.tick_ms


def test_recovery_is_logged_at_info_with_the_downtime(make_monitor, vclock, caplog_info):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(vclock.now + 2.5)
    caplog_info.clear()
    m.record_heartbeat("a")
    m.advance()
    assert lines(caplog_info, "INFO") == [("INFO", "Agent a recovered: critical → healthy "
                                                   "(down 1.500s)")]


def test_unknown_heartbeats_are_rate_limited(make_monitor, caplog_info, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_logs.time, "monotonic", lambda: now[0])
    m = make_monitor()
    for i in range(5 * _logs.BURST):
        m.record_heartbeat(f"x{i}")
    warned = lines(caplog_info, "WARNING")
    assert len(warned) == _logs.BURST
    now[0] += 1.5
    m.record_heartbeat("late")
    after = lines(caplog_info, "WARNING")[_logs.BURST:]
    assert after == [
        ("WARNING", f"{4 * _logs.BURST} more heartbeats from unmonitored agents in the last "
                    "second (not logged one by one)"),
        ("WARNING", "Heartbeat from unmonitored agent late"),
    ]
    assert m.get_monitoring_stats()["unknown_heartbeats"] == 5 * _logs.BURST + 1


def test_batch_with_unknown_ids_logs_one_line(make_monitor, caplog_info):
    m = make_monitor()
    m.start_monitoring_many(["a", "b"])
    caplog_info.clear()
    mask = m.record_heartbeats(["a", "u1", "b", "u2", "u3"])
    assert mask.tolist() == [True, False, True, False, False]
    assert lines(caplog_info) == [
        ("WARNING", "Heartbeat from unmonitored agent u1 (and 2 more in this batch)")]
    assert m.get_monitoring_stats()["unknown_heartbeats"] == 3
