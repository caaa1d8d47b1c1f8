"""Issue 10, items 7 and 2: time arithmetic saturates (both engines alike, never an int64
overflow), and the queue between the engine and the dispatcher is bounded: past
`alert_queue_size` per-agent deliveries collapse into storm summaries (the batch callback
still gets every transition), past 64 x that the engine drops the oldest blocks, and
everything is counted."""
from __future__ import annotations

import gc
import logging
import threading
import tracemalloc

import numpy as np
import pytest
from hb_model import C, D, F, Recorder

from moai_flow_fast import HeartbeatMonitor, VirtualClock

T0 = 1000.0


# ---------------------------------------------------------------- saturating time arithmetic

def _far(engine, start, wall_start):
    clock = VirtualClock(start=start, wall_start=wall_start)
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, engine=engine, clock=clock)
    rec = Recorder().install(m, recovery=True)
    return m, clock, rec


@pytest.mark.parametrize("start, wall_start, value", [
    (2e9, 0.0, 2.0 ** 33),              # the case: now - (wall - value) overflows
    (2e9, -2.3e9, 2.0 ** 33),           # past int64 even as a double difference
    (0.0, 2.3e9, 1.0),                  # a heartbeat 73 years before the monotonic origin
    (2.3e9, 2.3e9, 1.0),
    (0.0, -2.3e9, 2.0 ** 33),
])
def test_far_last_heartbeat_writes_saturate(engine, start, wall_start, value):
    m, clock, rec = _far(engine, start, wall_start)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.monitoring_agents["a"]["last_heartbeat"] = value
    assert m.monitoring_agents["a"]["last_heartbeat"] == value
    state = m.check_agent_health("a")
    future = value > clock.time()
    if future:                                     # a heartbeat in the future: HEALTHY
        assert state.value == "healthy"
        assert rec.events == []
        assert m.get_unhealthy_agents() == []
    else:                                          # long ago: FAILED, each crossing once
        assert state is F
        m.advance(to=clock.now + 0.01)            # the wheel's next tick
        assert [e[2] for e in rec.events] == [D, C, F]
        for e in rec.events:
            assert 0 <= e[3]["elapsed_seconds"] < 1e12
    m.advance(to=min(clock.now + 1e6, clock.max_seconds))
    assert len(rec.events) == (0 if future else 3)
    snap = m.snapshot()
    assert snap.states.tolist() == [m.check_agent_health("a").severity]
    m.shutdown()


@pytest.mark.compiled
@pytest.mark.parametrize("start, wall_start", [(2e9, -2.3e9), (2.3e9, 2.3e9), (0.0, 2.3e9)])
def test_far_times_agree_between_engines(start, wall_start):
    got = {}
    for engine in ("compiled", "pure"):
        m, clock, rec = _far(engine, start, wall_start)
        m.start_monitoring_many(["a", "b", "c"])
        m.monitoring_agents["a"]["last_heartbeat"] = 2.0 ** 33
        m.monitoring_agents["b"]["last_heartbeat"] = 1.0
        m.record_heartbeats(["c"], [0.5])
        m.advance(to=clock.now + 0.01)
        snap = m.snapshot()
        got[engine] = repr((snap.states.tolist(), snap.elapsed_ms.tolist(),
                            [m.monitoring_agents[x]["last_heartbeat"] for x in "abc"],
                            [(e[1], e[2], e[3]["elapsed_seconds"]) for e in rec.events]))
        m.shutdown()
    assert got["compiled"] == got["pure"]


# ---------------------------------------------------------------- the bounded queue

def test_backlog_collapses_oldest_into_storm_summaries(engine, caplog):
    """Synchronous dispatch (no threads). While the D storm of 1000 agents is delivered,
    a callback advances the clock: the C storm arrives behind a backlog larger than the
    bound. The oldest collapse; the newest `alert_queue_size` are delivered per agent;
    the batch callback gets all 2000; the stats count what collapsed; one log line."""
    clock = VirtualClock(start=T0)
    bound = 100
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, engine=engine, clock=clock,
                         alert_queue_size=bound)
    got = []
    batches = []
    fired = []

    def cb(aid, state, details):
        got.append((aid, state))
        if not fired:
            fired.append(1)
            m.advance(to=T0 + 2.0)          # re-entrant: queues the C storm behind this one

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb,
                       batch_callback=lambda b: batches.append(len(b)))
    ids = list(range(1000))
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    with caplog.at_level(logging.WARNING, logger="moai_flow_fast"):
        assert m.advance(to=T0 + 1.0) == 1000
    st = m.get_monitoring_stats()
    assert sum(batches) == 2000 and st["transitions"] == 2000
    assert st["alerts_collapsed"] > 0
    assert len(got) + st["alerts_collapsed"] == 2000
    assert len(got) <= bound + 16 + 1       # the dispatcher looks at the queue every 16
    # the newest are the ones delivered: the last `bound` C alerts, in report order
    assert got[-bound:] == [(a, C) for a in ids[-bound:]]
    lines = [r for r in caplog.records if "collapsed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert st["alert_backlog"] == 0
    m.shutdown()


def test_no_collapse_without_a_backlog(engine):
    """One storm bigger than the bound, nothing behind it: every per-agent callback."""
    clock = VirtualClock(start=T0)
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, engine=engine, clock=clock,
                         alert_queue_size=10)
    n = [0]
    m.configure_alerts(failed_callback=lambda a, s, d: n.__setitem__(0, n[0] + 1),
                       on_degraded=False, on_critical=False)
    m.start_monitoring_many(range(500))
    m.record_heartbeats(list(range(500)))
    m.advance(to=T0 + 5)
    assert n[0] == 500 and m.get_monitoring_stats()["alerts_collapsed"] == 0
    m.shutdown()


def test_engine_queue_bounded_while_dispatcher_is_stuck(engine, caplog):
    """A callback blocks the dispatcher while other threads keep producing transitions:
    the engine keeps at most 64 x alert_queue_size of them (plus the newest block), drops
    the oldest and counts them; memory stays bounded; nothing is counted twice."""
    clock = VirtualClock(start=T0)
    bound = 20
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=1, engine=engine, clock=clock,
                         alert_queue_size=bound, history_size=1)
    release = threading.Event()
    entered = threading.Event()
    calls = [0]
    batch = [0]

    def cb(aid, state, details):
        calls[0] += 1
        if aid == "block":
            entered.set()
            release.wait(30)

    m.configure_alerts(degraded_callback=cb, failed_callback=cb, recovery_callback=cb,
                       batch_callback=lambda b: batch.__setitem__(0, batch[0] + len(b)))
    m.start_monitoring("block")
    m.record_heartbeat("block")
    clock.advance(1.0)                       # "block" DEGRADED: its callback blocks
    stuck = threading.Thread(target=m.advance, daemon=True)     # its drain blocks in cb
    stuck.start()
    assert entered.wait(10)
    ids = list(range(200))
    m.start_monitoring_many(ids)
    h = m.handles(ids)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(400):                 # 400 x 200 recoveries and crossings
            m.record_heartbeats(h)
            clock.advance(1.0)
            m.advance()
        peak = tracemalloc.get_traced_memory()[1] - base
        queued = m._engine.queued
    finally:
        tracemalloc.stop()
    assert queued <= 64 * bound + 200
    assert peak < 8 * 2 ** 20, f"{peak / 2**20:.1f} MiB while the dispatcher was stuck"
    release.set()
    stuck.join(10)
    assert not stuck.is_alive()
    m.advance()
    st = m.get_monitoring_stats()
    total = st["transitions"] + st["recoveries"]
    assert st["alerts_dropped"] > 0
    assert batch[0] + st["alerts_dropped"] == total
    assert calls[0] + st["alerts_collapsed"] + st["alerts_dropped"] <= total
    assert any("dropped" in r.getMessage() for r in caplog.records)
    m.shutdown()


def test_alert_queue_size_is_validated():
    with pytest.raises(ValueError, match="alert_queue_size"):
        HeartbeatMonitor(alert_queue_size=0, clock=VirtualClock())
    with pytest.raises(TypeError, match="alert_queue_size"):
        HeartbeatMonitor(alert_queue_size="big", clock=VirtualClock())
    m = HeartbeatMonitor(clock=VirtualClock())
    assert m.alert_queue_size == 10_000
    assert np.isscalar(m.get_monitoring_stats()["alerts_collapsed"])
    m.shutdown()
