"""Callbacks (issue 5, item 5): raising, slow and re-entrant callbacks, and an alert
storm of 10^5 agents failing at once -- no callback lost or run twice, detection of other
agents not delayed, memory bounded, and storm coalescing (one grouped notification per
advance) on request."""
from __future__ import annotations

import gc
import logging
import sys
import threading
import time
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from hb_model import C, D, F, H, Recorder

from moai_flow_fast import HealthState, HeartbeatMonitor

T0 = 1000.0
STORM = {"compiled": 100_000, "pure": 50_000}
BIT = {D: 1, C: 2, F: 4}
WATCHDOG = 20.0


def _in_thread(fn, timeout=WATCHDOG):
    """Runs fn in a worker thread; fails (instead of hanging) on a deadlock."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "watchdog: deadlock (callback re-entering the monitor?)"
    if "error" in out:
        raise out["error"]
    return out.get("value")


# -- raising callbacks ---------------------------------------------------------------------

def test_raising_callbacks_are_contained(make_monitor, vclock, caplog):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    good = Recorder()
    calls = Counter()

    def cb(aid, state, details):
        calls[(aid, state)] += 1
        if aid.startswith("bad"):
            raise RuntimeError(f"boom {aid}")
        good.alert(aid, state, details)

    def rcb(aid, state, details):
        calls[(aid, "rec")] += 1
        if aid.startswith("bad"):
            raise KeyError(aid)
        good.recovery(aid, state, details)

    def bcb(batch):
        calls["batch"] += 1
        raise ValueError("batch boom")

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb,
                       recovery_callback=rcb, batch_callback=bcb)
    ids = [f"{'bad' if i % 2 else 'good'}{i}" for i in range(40)]
    for a in ids:
        m.start_monitoring(a)
        m.record_heartbeat(a)
    with caplog.at_level(logging.ERROR, logger="moai_flow_fast"):
        assert m.advance(to=T0 + 3.0) == 3 * 40
        for a in ids:
            assert m.record_heartbeat(a)
    for a in ids:
        assert [calls[(a, s)] for s in (D, C, F, "rec")] == [1, 1, 1, 1], a
    goods = [a for a in ids if a.startswith("good")]
    assert good.simple() == [("alert", a, s) for s in (D, C, F) for a in goods] + [
        ("recovery", a, "failed") for a in goods]
    st = m.get_monitoring_stats()
    # 20 bad agents x 4 callbacks, plus the batch callback of the advance and the 40
    # record_heartbeat blocks
    assert calls["batch"] == 41
    assert st["callback_errors"] == 20 * 4 + 41
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == st["callback_errors"]
    assert all(m.check_agent_health(a) is H for a in ids)


# -- slow callbacks (system clock) ---------------------------------------------------------

@pytest.mark.slow
def test_slow_callback_does_not_delay_detection(engine):
    """A 1.2 s callback blocks the dispatcher; agents dying meanwhile are detected on time
    (their reported state changes within a few ticks of the deadline, and the delivered
    details say so) and their callbacks all run, once, afterwards."""
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    try:
        rec = Recorder()
        slow_running = threading.Event()

        def cb(aid, state, details):
            if aid == "slow" and state is D:
                slow_running.set()
                time.sleep(1.2)
            rec.alert(aid, state, details)

        m.configure_alerts(degraded_callback=cb, failed_callback=cb)
        m.start_monitoring("slow")
        m.record_heartbeat("slow")
        assert slow_running.wait(2.0)          # the dispatcher is now stuck for 1.2 s
        others = [f"o{i}" for i in range(50)]
        for a in others:
            m.start_monitoring(a)
            m.record_heartbeat(a)
        t_beat = time.monotonic()
        # the wheel reports them while the dispatcher sleeps
        while time.monotonic() - t_beat < 1.0:
            if all(m.monitoring_agents[a]["last_state"] is F for a in others):
                break
            time.sleep(0.002)
        seen = time.monotonic() - t_beat
        assert all(m.monitoring_agents[a]["last_state"] is F for a in others)
        # 0.2 s deadline; the slow callback would add 1.2 s if it delayed detection
        assert seen < 0.2 + 0.4, f"detection took {seen:.3f} s for a 0.2 s deadline"
        assert rec.events == [] or all(e[1] == "slow" for e in rec.events)
        assert rec.wait_for(lambda ev: len(ev) == 2 + 2 * len(others), 5.0)
        cnt = Counter((e[1], e[2]) for e in rec.events)
        assert all(v == 1 for v in cnt.values()) and len(cnt) == 2 + 2 * len(others)
        for _, a, s, det in rec.events:
            if a != "slow":
                lag = det["detected_monotonic"] - det["deadline_monotonic"]
                assert 0 <= lag < 0.15, (a, s, lag)
    finally:
        m.shutdown()


# -- re-entrant callbacks ------------------------------------------------------------------

def _reentrant_scenario(m, advance):
    """Callbacks that stop, restart, record, query, advance and reconfigure from inside.
    Returns the log of callbacks; a failed assertion inside a callback is counted in
    callback_errors (checked by the callers)."""
    log = []
    lock = threading.Lock()

    def note(*x):
        with lock:
            log.append(x)

    def on_degraded(aid, state, details):
        note("D", aid)
        if aid == "stopper":
            assert m.stop_monitoring("stopper") is True
            assert m.stop_monitoring("stopper") is False
        elif aid == "restarter":
            assert m.stop_monitoring("restarter")
            assert m.start_monitoring("restarter")
            assert m.record_heartbeat("restarter")
        elif aid == "recorder":
            assert m.record_heartbeat("recorder")    # recovers from inside its own alert
            assert m.record_heartbeat("other")
        elif aid == "querier":
            m.get_monitoring_stats()
            m.get_unhealthy_agents(HealthState.DEGRADED)
            m.get_heartbeat_history("querier")
            assert m.check_agent_health("querier") in (D, C, F)
            m.snapshot()
            m.configure_alerts(on_critical=False)
            m.start_monitoring("newcomer")
            advance()                                  # nested advance

    def on_recovery(aid, state, details):
        note("R", aid, details["previous_state"])

    m.configure_alerts(degraded_callback=on_degraded, recovery_callback=on_recovery,
                       on_critical=False, on_failed=False)
    ids = ["stopper", "restarter", "recorder", "querier", "other"]
    for a in ids:
        m.start_monitoring(a)
    for a in ids:
        m.record_heartbeat(a)
    advance()
    return log, ids


def _check_reentrant(m, log, ids):
    first = {}
    for i, x in enumerate(log):
        first.setdefault(x, i)
    for a in ids:
        assert ("D", a) in first, (a, log)
    assert ("R", "recorder", "degraded") in first and ("R", "other", "degraded") in first
    assert first[("R", "recorder", "degraded")] > first[("D", "recorder")]
    assert first[("R", "other", "degraded")] > first[("D", "other")]
    assert "stopper" not in m.monitoring_agents
    assert "restarter" in m.monitoring_agents and "newcomer" in m.monitoring_agents
    assert len(m.get_heartbeat_history("restarter")) == 1   # the new incarnation's
    assert m.get_monitoring_stats()["callback_errors"] == 0


def test_reentrant_callbacks_virtual(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    log, ids = _in_thread(lambda: _reentrant_scenario(
        m, lambda: m.advance(to=max(vclock.now, T0 + 1.0))))
    _check_reentrant(m, log, ids)
    # exactly: the five D of the advance (registration order), then the two recoveries
    # queued from inside the "recorder" callback
    assert log == [("D", a) for a in ids] + [("R", "recorder", "degraded"),
                                             ("R", "other", "degraded")]
    assert m.monitoring_agents["restarter"]["last_state"] is H
    assert m.monitoring_agents["recorder"]["last_state"] is H


@pytest.mark.slow
def test_reentrant_callbacks_system_clock(make_monitor):
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=3, tick_ms=1)
    log, ids = _in_thread(lambda: _reentrant_scenario(m, lambda: m.advance()))
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        if {("D", a) for a in ids} <= set(log) and ("R", "other", "degraded") in log:
            break
        time.sleep(0.005)
    assert m.get_monitoring_stats()["monitoring_thread_alive"]
    _in_thread(m.shutdown)
    _check_reentrant(m, log, ids)


@pytest.mark.parametrize("clock", ["virtual", "system"])
def test_shutdown_from_inside_callback(make_monitor, clock):
    """A callback calls shutdown(): it returns at once (never joins its own thread), the
    threads end, and the monitor still works (Part A calls) afterwards."""
    kw = dict(interval_ms=100, failure_threshold=2, tick_ms=1)
    if clock == "system":
        kw["clock"] = None
    m = make_monitor(**kw)
    took = []
    done = threading.Event()

    def cb(aid, state, details):
        t = time.monotonic()
        m.shutdown()
        took.append(time.monotonic() - t)
        done.set()

    m.configure_alerts(degraded_callback=cb, on_failed=False)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    if clock == "virtual":
        _in_thread(lambda: m.advance(to=T0 + 0.1))
    assert done.wait(3.0)
    assert took[0] < 1.0, f"shutdown from a callback blocked {took[0]:.2f} s"
    if clock == "system":
        end = time.monotonic() + 6.0
        while time.monotonic() < end and any(
                t.name.startswith("HeartbeatMonitor") and t.is_alive()
                for t in (m._background.thread, m._background.dispatch_thread)):
            time.sleep(0.01)
        assert not m.get_monitoring_stats()["monitoring_thread_alive"]
        assert not m._background.dispatch_thread.is_alive()
    assert m.record_heartbeat("a")
    assert m.check_agent_health("a") is H


# -- the storm -----------------------------------------------------------------------------

class BitCounter:
    """Allocation-free per-agent record of callbacks: bit 1/2/4 for D/C/F; a repeat or an
    out-of-order crossing is recorded as an error."""

    def __init__(self, n):
        self.bits = [0] * n
        self.errors = 0
        self.calls = 0

    def __call__(self, aid, state, details):
        self.calls += 1
        b = BIT[state]
        have = self.bits[aid]
        if have != b - 1:           # D needs nothing before it, C needs D, F needs D and C
            self.errors += 1
        self.bits[aid] = have | b


def _storm_monitor(make_monitor, n):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=1)
    counter = BitCounter(n)
    m.configure_alerts(degraded_callback=counter, critical_callback=counter,
                       failed_callback=counter)
    ids = list(range(n))
    assert m.start_monitoring_many(ids).all()
    assert m.record_heartbeats(ids).all()
    m.advance(to=T0 + 0.5)
    return m, counter, ids


@pytest.mark.slow
def test_storm_every_agent_fails_at_once(engine, make_monitor, vclock):
    n = STORM[engine]
    m, counter, ids = _storm_monitor(make_monitor, n)
    t = time.perf_counter()
    found = m.advance(to=T0 + 3.0)                # D, C and F of everyone, in one advance
    dt = time.perf_counter() - t
    print(f"\n[storm] {engine}: {n:,} agents -> {found:,} transitions in one advance, "
          f"detected and 3 x {n:,} callbacks run in {dt:.2f} s")
    assert found == 3 * n
    assert counter.calls == 3 * n and counter.errors == 0
    assert counter.bits == [7] * n               # each agent: D, C and F, once, in order
    st = m.get_monitoring_stats()
    assert st["transitions"] == 3 * n and st["alerts_raised"] == 3 * n
    assert st["transitions_to"] == {"healthy": 0, "degraded": n, "critical": n, "failed": n}
    assert st["health_distribution"]["failed"] == n
    assert st["callback_errors"] == 0
    # the recovery storm: everyone reports at once
    rc = Counter()
    m.configure_alerts(recovery_callback=lambda a, s, d: rc.update([a]))
    assert m.record_heartbeats(np.asarray(m.handles(ids))).all()
    assert len(rc) == n and set(rc.values()) == {1}
    assert m.get_monitoring_stats()["recoveries"] == n


# Stated bound for the storm's transient memory: the event record is 64 bytes and the id a
# reference; 256 bytes per transition leaves room for the batch arrays and one dispatch
# chunk, but not for a Python object per field per transition.
STORM_BYTES_PER_TRANSITION = 256


def test_storm_memory_bounded(engine, make_monitor, vclock):
    n = 10_000
    m, counter, _ids = _storm_monitor(make_monitor, n)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        found = m.advance(to=T0 + 3.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    per = (peak - base) / found
    print(f"\n[storm] {engine}: traced peak {(peak - base) / 2**20:.1f} MiB for {found:,} "
          f"transitions = {per:.0f} B per transition (bound {STORM_BYTES_PER_TRANSITION})")
    assert found == 3 * n and counter.errors == 0 and counter.calls == 3 * n
    assert per < STORM_BYTES_PER_TRANSITION


def test_storm_over_many_advances_no_loss_no_duplicate(engine, make_monitor, vclock):
    """10^4 agents with staggered deadlines, advanced in uneven steps; each crossing is
    delivered exactly once, in order, whatever advance finds it."""
    n = 10_000
    m = make_monitor(interval_ms=100, failure_threshold=5, tick_ms=10)
    counter = Counter()
    order = {}

    def cb(aid, state, details):
        counter[(aid, state)] += 1
        order.setdefault(aid, []).append(state)

    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb)
    ids = list(range(n))
    m.start_monitoring_many(ids, interval_ms=[100 + (i % 37) * 10 for i in ids])
    rng = np.random.default_rng(3)
    for k in range(8):                             # heartbeats at staggered instants
        m.record_heartbeats(ids[k::8])
        vclock.advance(0.013)
    t = vclock.now
    while t < T0 + 5.0:
        t += float(rng.choice([0.001, 0.01, 0.05, 0.2, 0.7]))
        m.advance(to=t)
    assert len(counter) == 3 * n and set(counter.values()) == {1}
    assert all(v == [D, C, F] for v in order.values())


def test_coalescing_one_notification_per_advance(make_monitor, vclock, caplog):
    n = 5_000
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    per_agent = Counter()
    batches = []
    def cb(a, s, d):
        return per_agent.update([(a, s)])
    m.configure_alerts(degraded_callback=cb, critical_callback=cb, failed_callback=cb,
                       batch_callback=batches.append, coalesce_above=1000)
    ids = list(range(n))
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    m.start_monitoring("few")
    with caplog.at_level(logging.WARNING, logger="moai_flow_fast"):
        assert m.advance(to=T0 + 1.0) == n         # storm: D for everyone
        assert m.advance(to=T0 + 3.0) == 2 * n     # storm: C and F for everyone
    coalesced = [r for r in caplog.records if "coalesced" in r.getMessage()]
    assert len(coalesced) == 2, [r.getMessage() for r in caplog.records][:5]
    assert per_agent == Counter()                   # no per-agent calls in a storm
    assert [len(b) for b in batches] == [n, 2 * n]  # the batch callback gets them all
    assert sorted(set(batches[1].current.tolist())) == [2, 3]
    st = m.get_monitoring_stats()
    assert st["alerts_coalesced"] == 3 * n
    assert st["transitions"] == 3 * n
    # a small advance (<= 1000 transitions) still gets per-agent callbacks
    caplog.clear()
    m.record_heartbeat("few")                       # T0 + 3: D at T0 + 4, C at T0 + 5
    with caplog.at_level(logging.WARNING, logger="moai_flow_fast"):
        assert m.advance(to=T0 + 5.0) == 2
    assert per_agent == Counter({("few", D): 1, ("few", C): 1})
    assert not [r for r in caplog.records if "coalesced" in r.getMessage()]
    # the recovery storm is one block too: coalesced
    m.record_heartbeats(ids)
    assert m.get_monitoring_stats()["alerts_coalesced"] == 4 * n
    # 0 turns coalescing off
    m.configure_alerts(coalesce_above=0)
    m.advance(to=T0 + 10.0)
    assert sum(v for (a, s), v in per_agent.items() if a != "few") == 3 * n


# -- nothing lost under concurrency, nor at shutdown ----------------------------------------

@pytest.mark.slow
def test_no_transition_lost_with_concurrent_publishers(engine):
    """System clock, 1 ms tick: the wheel thread and 4 heartbeat threads publish event
    blocks while the dispatcher thread takes them. Every transition counted in the stats
    reaches the batch callback, once, in a per-agent order that makes sense."""
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=3, engine=engine, tick_ms=1,
                         history_size=4)
    state = {}
    errors = []
    delivered = [0]
    lock = threading.Lock()

    def on_batch(b):
        with lock:
            for h, prev, cur, kind in zip(b.handles.tolist(), b.previous.tolist(),
                                          b.current.tolist(), b.kind.tolist()):
                s = state.get(h, 0)
                if prev != s or (kind == 0 and cur != s + 1) or (kind == 1 and s == 0):
                    errors.append((h, s, prev, cur, kind))
                state[h] = cur
                delivered[0] += 1

    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False,
                       batch_callback=on_batch)
    ids = list(range(3000))
    m.start_monitoring_many(ids, start_clock=True)
    stop = threading.Event()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)          # many more thread interleavings

    def beater(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            for a in rng.choice(3000, 200).tolist():
                m.record_heartbeat(a)
            time.sleep(float(rng.uniform(0, 0.03)))

    threads = [threading.Thread(target=beater, args=(s,), daemon=True) for s in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(old)
        m.shutdown()
    m.advance()                          # no thread now: drains anything still queued
    st = m.get_monitoring_stats()
    assert errors == [], errors[:5]
    assert delivered[0] == st["transitions"] + st["recoveries"], \
        f"{st['transitions'] + st['recoveries'] - delivered[0]} transitions never delivered"


@pytest.mark.slow
def test_shutdown_during_storm_loses_no_callback(engine):
    """shutdown() while the wheel thread is processing a storm: every transition the
    monitor detected (counted in its stats, agents' reported state changed) has had its
    callback when shutdown returns."""
    n = 1_000_000 if engine == "compiled" else 20_000
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=1, engine=engine, tick_ms=1,
                         history_size=1)
    got = [0]
    try:
        m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False,
                           batch_callback=lambda b: got.__setitem__(0, got[0] + len(b)))
        ids = list(range(n))
        m.start_monitoring_many(ids)
        m.record_heartbeats(ids)
        time.sleep(0.101)                 # the storm's deadline: 100 ms after the beats
    finally:
        m.shutdown()
    st = m.get_monitoring_stats()
    assert st["transitions"] > 0
    assert got[0] == st["transitions"], \
        f"{st['transitions'] - got[0]} of {st['transitions']} detected transitions had no " \
        f"callback when shutdown() returned"
