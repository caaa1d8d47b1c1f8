"""The simulator's truth bookkeeping (moai_flow_fast.tools._sim), and whole swarms in
virtual time."""
from __future__ import annotations

import pytest

from moai_flow_fast import VirtualClock
from moai_flow_fast.tools._report import Alert, Crossing
from moai_flow_fast.tools._sim import (
    CRASH,
    FLAP,
    GAP_FLAP,
    GAP_NORMAL,
    GAP_SLOW,
    GAP_STALL,
    SLOW,
    STALL,
    Swarm,
    SwarmConfig,
    agent_truth,
    crossing_mults,
    scalar_sender,
)

S = 1_000_000_000   # ns per second
I = 1 * S           # the interval of the scripted agents  # noqa: E741


def beats(*times, code=GAP_NORMAL):
    """Exact heartbeats (virtual time): t0 == t1."""
    return [(t, t, code) for t in times]


def test_crossing_mults():
    assert crossing_mults(3) == [(1, 1), (2, 2), (3, 3)]
    assert crossing_mults(5) == [(1, 1), (2, 2), (5, 3)]
    assert crossing_mults(2) == [(1, 1), (2, 3)]     # no CRITICAL when threshold <= 2
    assert crossing_mults(1) == [(1, 1), (2, 3)]


def test_scripted_heartbeats_give_exact_crossings():
    # Heartbeats at 0, 0.8, 2.0 (gap 1.2: DEGRADED at 1.8), 4.5 (gap 2.5: DEGRADED at 3.0,
    # CRITICAL at 4.0), 5.0; then silence until the horizon 9.0: 6.0, 7.0, 8.0.
    hb = [(0, 0, GAP_NORMAL), (800_000_000,) * 2 + (GAP_NORMAL,),
          (2 * S, 2 * S, GAP_FLAP), (4_500_000_000,) * 2 + (GAP_STALL,),
          (5 * S, 5 * S, GAP_NORMAL)]
    t = agent_truth("a", I, 3, hb, final_cause="crash", horizon=9 * S)
    assert t.crossings == [
        Crossing("a", 1, 1_800_000_000, 1_800_000_000, "flap", True),
        Crossing("a", 1, 3 * S, 3 * S, "stall", True),
        Crossing("a", 2, 4 * S, 4 * S, "stall", True),
        Crossing("a", 1, 6 * S, 6 * S, "crash", True),
        Crossing("a", 2, 7 * S, 7 * S, "crash", True),
        Crossing("a", 3, 8 * S, 8 * S, "crash", True),
    ]
    assert t.recoveries == 2 and t.ambiguous_recoveries == 0


def test_boundaries_are_exact():
    # A heartbeat exactly at last + I: the monitor reports the crossing (deadline <= now),
    # then the recovery. One nanosecond earlier: nothing.
    at = agent_truth("a", I, 3, beats(0, I, I + I - 1), horizon=2 * I - 1)
    assert at.crossings == [Crossing("a", 1, I, I, "lag", True)]
    assert at.recoveries == 1
    # The final silence: a crossing exactly at the horizon happened, one ns later not yet.
    end = agent_truth("a", I, 3, beats(0), horizon=2 * I)
    assert [(c.state, c.lo) for c in end.crossings] == [(1, I), (2, 2 * I)]
    assert agent_truth("a", I, 3, beats(0), horizon=2 * I - 1).crossings[-1].state == 1


def test_threshold_two_goes_straight_to_failed():
    t = agent_truth("a", I, 2, beats(0), final_cause="crash", horizon=100 * S)
    assert [(c.state, c.lo) for c in t.crossings] == [(1, I), (3, 2 * I)]
    t5 = agent_truth("a", I, 5, beats(0), final_cause="crash", horizon=100 * S)
    assert [(c.state, c.lo) for c in t5.crossings] == [(1, I), (2, 2 * I), (3, 5 * I)]


def test_part_a_nothing_before_the_first_heartbeat():
    # No start clock: a late first heartbeat is no crossing, and no heartbeat at all is none.
    assert agent_truth("a", I, 3, beats(10 * S), horizon=10 * S).crossings == []
    assert agent_truth("a", I, 3, [], horizon=100 * S).crossings == []


def test_start_clock_at_registration():
    # Registered at 0 with the clock started; first heartbeat 2.5 intervals later.
    t = agent_truth("a", I, 3, [(2_500_000_000, 2_500_000_000, GAP_SLOW)],
                    registered=(0, 0), horizon=3 * S)
    assert t.crossings == [Crossing("a", 1, I, I, "slow", True),
                           Crossing("a", 2, 2 * I, 2 * I, "slow", True)]
    assert t.recoveries == 1
    # Never heartbeats: every crossing from registration, up to the horizon.
    dead = agent_truth("a", I, 3, [], registered=(5, 7), final_cause="crash", horizon=10 * S)
    assert [(c.state, c.lo, c.hi) for c in dead.crossings] == [
        (1, I + 5, I + 7), (2, 2 * I + 5, 2 * I + 7), (3, 3 * I + 5, 3 * I + 7)]
    assert dead.recoveries == 0


def test_brackets_make_deadline_intervals_and_ambiguity():
    # Heartbeat calls took [0, 10] and [I + 5, I + 20]: the gap is in [I - 5, I + 20].
    t = agent_truth("a", I, 3, [(0, 10, GAP_NORMAL), (I + 5, I + 20, GAP_NORMAL)],
                    horizon=I + 20)
    assert t.crossings == [Crossing("a", 1, I, I + 10, "lag", False)]
    assert t.recoveries == 0 and t.ambiguous_recoveries == 1
    # Gap certainly >= I: [I + 10 - 10, ...] -> certain.
    sure = agent_truth("a", I, 3, [(0, 10, GAP_NORMAL), (I + 10, I + 30, GAP_STALL)],
                       horizon=I + 30)
    assert sure.crossings == [Crossing("a", 1, I, I + 10, "stall", True)]
    assert sure.recoveries == 1
    # Gap certainly < I: nothing.
    none = agent_truth("a", I, 3, [(0, 10, GAP_NORMAL), (I - 30, I - 11, GAP_NORMAL)],
                       horizon=I)
    assert none.crossings == []
    # The final silence straddling the horizon: ambiguous.
    edge = agent_truth("a", I, 3, [(0, 10, GAP_NORMAL)], horizon=I + 5)
    assert edge.crossings == [Crossing("a", 1, I, I + 10, "end", False)]


def test_scalar_sender_brackets_the_call():
    calls = []
    ticks = iter(range(100, 200))

    class FakeMonitor:
        def record_heartbeat(self, agent_id):
            calls.append((agent_id, next(ticks)))

    send = scalar_sender(FakeMonitor(), ["x", "y"], lambda: next(ticks))
    assert send([1]) == [(100, 102)]
    assert calls == [("y", 101)]
    assert send([0, 1]) == [(103, 105), (106, 108)]
    assert calls[1:] == [("x", 104), ("y", 107)]


# -- whole swarms in virtual time ------------------------------------------------------------------

def _run(engine, **kw):
    kw.setdefault("agents", 1500)
    kw.setdefault("duration", 20.0)
    swarm = Swarm(SwarmConfig(engine=engine, **kw), clock=VirtualClock(start=1000.0))
    return swarm, swarm.run()


def test_virtual_swarm_passes_its_truth_check(engine):
    swarm, result = _run(engine)
    r = result.report
    assert result.passed, "\n".join(result.format())
    assert result.engine == engine
    lines = result.format()
    assert all(len(line) <= 80 for line in lines), lines      # an 80-column terminal
    assert lines[0].startswith("Swarm: 1,500 agents, intervals 1,2,3,4,5 s, threshold 3,")
    assert lines[-1] == "Result: PASS (every failure detected, no false alarm)"
    # Every kind of injected failure happened and was detected in every state it reaches.
    assert r.expected.keys() == {1, 2, 3}
    assert r.detected == r.expected
    for cause in ("crash", "stall", "slow", "flap"):
        assert cause in r.by_cause
        assert all(v[0] == v[1] > 0 for v in r.by_cause[cause].values())
    assert r.by_cause["crash"].keys() == {1, 2, 3}
    assert "lag" not in r.by_cause       # virtual time: the simulator is never late
    assert r.ambiguous == 0 and r.false_alarms == [] and r.missed == []
    assert r.recoveries_expected == r.recoveries_reported > 0
    # In virtual time every crossing is reported at the first tick boundary at or after it.
    assert max(r.latencies) <= 10_000_000
    assert min(r.latencies) >= 0
    assert result.monitor_stats["transitions"] == len(swarm.alerts)
    assert result.monitor_stats["callback_errors"] == 0


def test_virtual_swarm_is_deterministic_and_counts_injections():
    _, a = _run("pure", agents=400, duration=8.0, seed=7, intervals=(0.5, 1.0))
    _, b = _run("pure", agents=400, duration=8.0, seed=7, intervals=(0.5, 1.0))
    assert a.passed and b.passed
    assert a.heartbeats == b.heartbeats
    assert a.report.to_dict() == b.report.to_dict()
    assert a.injected == {"crashes": 8, "stalls": 8, "slow starters": 4, "flapping": 4}


def test_plan_respects_the_window():
    swarm = Swarm(SwarmConfig(agents=2000, duration=20.0, seed=3))
    kinds = swarm.kind
    d = 20 * S
    for idx, kind in enumerate(kinds):
        iv = swarm.interval_ns[idx]
        if kind == CRASH:   # crashes happen early enough for FAILED to fall in the window
            assert 2 * S <= swarm.crash_at[idx] and swarm.crash_at[idx] + 3.5 * iv <= d
        elif kind == STALL:
            gap = swarm.stall_gap[idx]
            assert any(m + 0.25 <= gap / iv <= m + 0.75 for m in (1, 2, 3))
            assert swarm.stall_at[idx] + gap <= d    # the stall ends inside the window
        elif kind == SLOW:
            assert any(m + 0.25 <= swarm.first_gap[idx] / iv <= m + 0.75 for m in (1, 2))
        elif kind == FLAP:
            assert swarm.flap_every[idx] in (2, 3)
    assert sum(k != 0 for k in kinds) == 40 + 40 + 20 + 20


def test_the_judge_catches_a_missed_and_a_false_alert():
    swarm = Swarm(SwarmConfig(agents=300, duration=6.0, intervals=(0.5,)),
                  clock=VirtualClock(start=1000.0))
    swarm.run()
    horizon = swarm.vclock.monotonic_ns()
    assert swarm.judge(horizon).passed
    # Drop one alert: one miss. Add an invented one: one false alarm.
    dropped = swarm.alerts.pop(0)
    bad = swarm.judge(horizon)
    assert len(bad.missed) == 1 and bad.missed[0].agent == dropped[0]
    swarm.alerts.append(dropped)
    swarm.alerts.append((swarm.ids[0], 3, 1000.123, 1000.13, 1_000_130_000_000))
    worse = swarm.judge(horizon)
    assert worse.missed == [] and len(worse.false_alarms) == 1
    assert not worse.passed


def test_alert_record_shape():
    # What the callbacks store is turned into Alerts in ns.
    swarm = Swarm(SwarmConfig(agents=50, duration=3.0, intervals=(0.2,)),
                  clock=VirtualClock(start=1000.0))
    result = swarm.run()
    assert result.passed
    assert swarm.alerts, "a 50-agent swarm with injected failures raises alerts"
    aid, sev, deadline, detected, delivered = swarm.alerts[0]
    assert aid in swarm.index and sev in (1, 2, 3)
    assert isinstance(delivered, int) and deadline <= detected
    assert Alert(aid, sev, round(deadline * S), round(detected * S), delivered).deadline > 0


@pytest.mark.parametrize("bad", [dict(agents=0), dict(duration=0), dict(intervals=()),
                                 dict(intervals=(0.05,)), dict(threshold=0), dict(grace=-1)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        SwarmConfig(**bad)
