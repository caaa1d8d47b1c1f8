"""The report's arithmetic, on hand-computed cases (moai_flow_fast.tools._report)."""
from __future__ import annotations

import re

import pytest

from moai_flow_fast.tools._report import Alert, Crossing, compare, percentile

MS = 1_000_000


# -- percentiles: nearest rank, value at 1-based rank ceil(p/100 * n) ----------------------

def test_percentile_nearest_rank_by_hand():
    assert percentile([4, 1, 3, 2], 50) == 2          # rank ceil(2.0) = 2
    assert percentile([4, 1, 3, 2], 51) == 3          # rank ceil(2.04) = 3
    assert percentile([4, 1, 3, 2], 99) == 4          # rank ceil(3.96) = 4
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([4, 1, 3, 2], 0) == 1           # rank at least 1
    assert percentile([7], 50) == 7
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(list(range(1, 1001)), 99) == 990


def test_percentile_of_nothing_and_bad_p():
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="p must be between 0 and 100"):
        percentile([1], 101)
    with pytest.raises(ValueError):
        percentile([1], -1)


# -- matching ---------------------------------------------------------------------------------

def _x(agent, state, lo, hi=None, cause="crash", certain=True):
    return Crossing(agent, state, lo, lo if hi is None else hi, cause, certain)


def _a(agent, state, deadline, detected, delivered=None):
    return Alert(agent, state, deadline, detected, detected if delivered is None else delivered)


def test_every_crossing_detected_latencies_and_percentiles():
    crossings = [_x("a", 1, 1000 * MS), _x("a", 2, 2000 * MS), _x("a", 3, 3000 * MS),
                 _x("b", 1, 1500 * MS, cause="stall")]
    alerts = [_a("a", 1, 1000 * MS, 1004 * MS, 1005 * MS),
              _a("a", 2, 2000 * MS, 2008 * MS, 2010 * MS),
              _a("a", 3, 3000 * MS, 3001 * MS, 3002 * MS),
              _a("b", 1, 1500 * MS, 1510 * MS, 1520 * MS)]
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert r.passed
    assert r.expected == {1: 2, 2: 1, 3: 1}
    assert r.detected == {1: 2, 2: 1, 3: 1}
    assert r.missed == [] and r.false_alarms == []
    # delivered - deadline: 5, 10, 2, 20 ms -> sorted 2, 5, 10, 20
    assert sorted(r.latencies) == [2 * MS, 5 * MS, 10 * MS, 20 * MS]
    assert sorted(r.wheel_latencies) == [1 * MS, 4 * MS, 8 * MS, 10 * MS]
    assert r.latency_summary() == {"p50": 5.0, "p99": 20.0, "max": 20.0}
    assert r.latency_summary(r.wheel_latencies) == {"p50": 4.0, "p99": 10.0, "max": 10.0}
    assert r.by_cause == {"crash": {1: [1, 1], 2: [1, 1], 3: [1, 1]}, "stall": {1: [1, 1]}}
    assert r.latencies_by_state[1] == [5 * MS, 20 * MS]


def test_missed_crossing():
    crossings = [_x("a", 1, 1000 * MS), _x("a", 2, 2000 * MS)]
    alerts = [_a("a", 1, 1000 * MS, 1005 * MS)]
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert not r.passed
    assert r.expected == {1: 1, 2: 1}
    assert r.detected == {1: 1}
    assert r.missed == [crossings[1]]
    assert r.to_dict()["missed"] == 1
    assert any("missed: agent a critical" in line for line in r.format())


def test_false_alarm_wrong_deadline_wrong_state_wrong_agent():
    crossings = [_x("a", 1, 1000 * MS)]
    alerts = [_a("a", 1, 1000 * MS, 1001 * MS),
              _a("a", 1, 1200 * MS, 1201 * MS),      # no crossing with that deadline
              _a("a", 2, 2000 * MS, 2001 * MS),      # that state never happened
              _a("z", 1, 1000 * MS, 1001 * MS)]      # unknown agent
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert not r.passed
    assert r.detected == {1: 1}
    assert r.missed == []
    assert len(r.false_alarms) == 3
    assert {reason for _, reason in r.false_alarms} == {"no such crossing"}
    assert r.latencies == [1 * MS]                   # false alarms have no latency


def test_duplicate_alert_is_a_false_alarm():
    crossings = [_x("a", 1, 1000 * MS)]
    alerts = [_a("a", 1, 1000 * MS, 1001 * MS), _a("a", 1, 1000 * MS, 1002 * MS)]
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert r.detected == {1: 1}
    assert [reason for _, reason in r.false_alarms] == ["duplicate"]
    assert r.false_alarms[0][0].detected == 1002 * MS   # the later one is the duplicate


def test_bracket_and_tolerance():
    # Deadline known to be in [1000 ms, 1000.5 ms]: any alert deadline inside matches.
    crossings = [_x("a", 1, 1000 * MS, 1000 * MS + 500_000)]
    inside = compare(crossings, [_a("a", 1, 1000 * MS + 250_000, 1010 * MS)], 5000 * MS)
    assert inside.passed and inside.detected == {1: 1}
    # 2 us of tolerance on each side (float seconds in the details), not more.
    edge = compare(crossings, [_a("a", 1, 1000 * MS - 2_000, 1010 * MS)], 5000 * MS)
    assert edge.passed
    out = compare(crossings, [_a("a", 1, 1000 * MS - 2_001, 1010 * MS)], 5000 * MS)
    assert len(out.false_alarms) == 1 and len(out.missed) == 1
    strict = compare(crossings, [_a("a", 1, 1000 * MS - 1, 1010 * MS)], 5000 * MS,
                     tolerance_ns=0)
    assert not strict.passed


def test_two_crossings_of_one_agent_matched_by_deadline():
    crossings = [_x("a", 1, 1000 * MS, cause="flap"), _x("a", 1, 3000 * MS, cause="flap")]
    alerts = [_a("a", 1, 3000 * MS, 3003 * MS), _a("a", 1, 1000 * MS, 1001 * MS)]
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert r.passed and r.detected == {1: 2}
    assert sorted(r.latencies) == [1 * MS, 3 * MS]


def test_window_end_decides_what_is_required():
    crossings = [_x("a", 1, 1000 * MS),
                 _x("b", 1, 4000 * MS, 5000 * MS),   # hi == window_end: required
                 _x("c", 1, 4999 * MS, 5001 * MS),   # hi past the window: not required
                 _x("d", 1, 6000 * MS)]              # after the window: not required
    alerts = [_a("a", 1, 1000 * MS, 1001 * MS), _a("d", 1, 6000 * MS, 6001 * MS)]
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert r.expected == {1: 2}
    assert r.detected == {1: 1}
    assert [c.agent for c in r.missed] == ["b"]
    assert r.outside_window == 1            # d: matched, true, but not counted
    assert r.false_alarms == []
    assert r.latencies == [1 * MS]


def test_ambiguous_crossings_are_neither_required_nor_false_alarms():
    crossings = [_x("a", 1, 1000 * MS, certain=False), _x("b", 1, 1000 * MS, certain=False)]
    alerts = [_a("a", 1, 1000 * MS, 1002 * MS)]     # a: alerted, b: not; both fine
    r = compare(crossings, alerts, window_end=5000 * MS)
    assert r.passed
    assert r.ambiguous == 2
    assert r.expected == {} and r.detected == {}
    assert r.latencies == []
    assert any("Ambiguous crossings" in line for line in r.format())


def test_recoveries_compared_per_agent():
    r = compare([], [], 0, recoveries_expected={"a": 2, "b": 1},
                recoveries_reported={"a": 2, "c": 1})
    assert r.recoveries_expected == 3 and r.recoveries_reported == 3
    assert r.recovery_mismatches == [("b", 1, 0), ("c", 0, 1)]
    assert not r.passed
    ok = compare([], [], 0, recoveries_expected={"a": 1}, recoveries_reported={"a": 1})
    assert ok.passed and ok.recovery_mismatches == []


def test_no_detection_at_all():
    r = compare([], [], 1000)
    assert r.passed
    assert r.latency_summary() == {"p50": None, "p99": None, "max": None}
    assert any("no detections" in line for line in r.format())


def test_to_dict_keys():
    r = compare([_x("a", 1, 10)], [_a("a", 1, 10, 20)], 100)
    d = r.to_dict()
    assert set(d) == {"passed", "expected", "detected", "missed", "false_alarms", "ambiguous",
                      "outside_window", "recoveries", "latency_ms", "wheel_latency_ms",
                      "by_cause"}
    assert d["expected"] == {"degraded": 1} and d["detected"] == {"degraded": 1}
    assert d["by_cause"] == {"crash": {"degraded": {"expected": 1, "detected": 1}}}
    assert d["latency_ms"]["max"] == pytest.approx(10 / 1e6)


def test_the_report_fits_80_columns_at_any_size():
    """A million-agent report with misses, false alarms and long ids still fits 80 columns,
    every figure whole."""
    big = 123_456
    crossings = [_x(f"agent-{i:07d}-of-a-very-large-swarm", s, (1000 + i) * MS, cause=cause)
                 for i in range(6) for s, cause in ((1, "crash"), (2, "stall"), (3, "lag"))]
    alerts = [_a(c.agent, c.state, c.lo, c.lo + 7 * MS) for c in crossings[3:]]
    alerts.append(_a("agent-9999999-of-a-very-large-swarm", 3, 999_999_999_999_999, 10**18))
    r = compare(crossings, alerts, window_end=10**15,
                recoveries_expected={"agent-0000001-of-a-very-large-swarm": 3},
                recoveries_reported={})
    r.by_cause["crash"] = {1: [big, big], 2: [big, big], 3: [big, big]}
    r.outside_window = big
    r.ambiguous = big
    lines = r.format()
    assert all(len(line) <= 80 for line in lines), [ln for ln in lines if len(ln) > 80]
    text = "\n".join(lines)
    assert "degraded 123,456/123,456, critical 123,456/123,456" in " ".join(text.split())
    assert "999999999999999 ns" in text and "agent-9999999-of-a-very-large-swarm" in text
    assert "missed: agent agent-0000000-of-a-very-large-swarm degraded" in text
    # The latency table: one header, two rows of p50 / p99 / max.
    assert re.search(r"^Detection latency, 15 detections: +p50 +p99 +max$", text, re.M)
    assert re.search(r"^  callback - deadline +7\.0 ms +7\.0 ms +7\.0 ms$", text, re.M)
