"""Churn (issue 5, item 4): 10^6 start/stop cycles over a pool of reused ids (compiled;
the pure engine at 10^5). Memory stays bounded, no stale deadline fires for a reused
slot, and the histories kept for stopped agents are bounded by `max_stopped_histories`
and dropped by `clear_history`."""
from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc

import pytest
from hb_model import NS, Model

from moai_flow_fast import HealthState

CYCLES = {"compiled": 1_000_000, "pure": 100_000}
POOL = 1000
INTERVALS = (100, 150, 250)
# Stated bounds, after warm-up: the traced peak may exceed the traced size at the start
# of the window by at most this much (transient event blocks, argument tuples ...) --
# independent of the number of cycles.
TRACED_GROWTH_BOUND = 1 << 20          # 1 MiB
RSS_GROWTH_BOUND = 32 << 20            # the untraced rest of the run: resident set


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Incarnations:
    """Per id: the live incarnation's handle and whether its clock runs. Checks, in the
    batch callback, that every transition belongs to a live incarnation whose clock
    runs -- a stale deadline of a stopped incarnation on a reused slot fails here."""

    def __init__(self, m):
        self.m = m
        self.live = {}          # id -> [handle, clock_started]
        self.stale = []
        self.events = 0

    def __call__(self, batch):
        self.events += len(batch)
        for aid, h, kind in zip(batch.ids, batch.handles.tolist(), batch.kind.tolist()):
            cur = self.live.get(aid)
            if cur is None or cur[0] != h or (kind == 0 and not cur[1]):
                self.stale.append((aid, h, kind, cur))


def _churn(m, vclock, cycles, pool, inc, rng):
    """cycle i: stop pool[i % P], start it again (interval and clock random), sometimes
    heartbeat; the clock moves 10 ms every 100 cycles, so an incarnation lives ~100 ms."""
    P = len(pool)
    start, stop, beat = m.start_monitoring, m.stop_monitoring, m.record_heartbeat
    live = inc.live
    rand = rng.random
    changed = []
    for i in range(cycles):
        a = pool[i % P]
        stop(a)
        sc = rand() < 0.5
        start(a, INTERVALS[i % 3], 3, start_clock=sc)
        if rand() < 0.3:
            beat(a)
            sc = True
        live[a] = [-1, sc]
        changed.append(a)
        if i % 100 == 99:
            # the new incarnations' handles, before any of their deadlines can fire
            for k, h in zip(changed, m.handles(changed).tolist()):
                live[k][0] = h
            changed.clear()
            m.advance(to=vclock.now + 0.010)


@pytest.mark.slow
def test_million_cycles_memory_bounded_no_stale_deadline(engine, make_monitor, vclock):
    cycles = CYCLES[engine]
    m = make_monitor(interval_ms=100, failure_threshold=3, history_size=8,
                     max_stopped_histories=POOL // 2)
    inc = Incarnations(m)
    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False,
                       batch_callback=inc)
    pool = [f"agent-{i}" for i in range(POOL)]
    rng = random.Random(1)
    warm = cycles // 10
    window = cycles // 10 if engine == "compiled" else cycles // 5   # traced cycles
    t0 = time.perf_counter()
    _churn(m, vclock, warm, pool, inc, rng)
    gc.collect()
    tracemalloc.start()
    try:
        # a traced warm-up: every pool id restarted, so the live state is traced
        _churn(m, vclock, 5 * POOL, pool, inc, rng)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        _churn(m, vclock, window, pool, inc, rng)
        gc.collect()
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    window += 5 * POOL
    gc.collect()
    rss0 = _rss()
    _churn(m, vclock, cycles - warm - window, pool, inc, rng)
    gc.collect()
    rss1 = _rss()
    dt = time.perf_counter() - t0
    print(f"\n[churn] {engine}: {cycles:,} start/stop cycles in {dt:.1f} s; traced window of "
          f"{window:,} cycles: peak - base = {(peak - base) / 1024:.0f} KiB, "
          f"end - base = {(cur - base) / 1024:.0f} KiB; RSS growth over the last "
          f"{cycles - warm - window:,} cycles = {(rss1 - rss0) / 2**20:.1f} MiB; "
          f"{inc.events:,} transitions checked")
    assert inc.stale == [], inc.stale[:5]
    assert inc.events > 1000, "the churn never let a deadline fire"
    assert peak - base < TRACED_GROWTH_BOUND
    assert cur - base < TRACED_GROWTH_BOUND // 4
    assert rss1 - rss0 < RSS_GROWTH_BOUND
    st = m.get_monitoring_stats()
    assert st["total_agents"] == POOL
    assert st["pending_deadlines"] <= POOL
    assert st["stopped_histories"] == 0    # every stopped id was restarted at once
    assert sorted(m.monitoring_agents) == sorted(pool)


@pytest.mark.slow
def test_unique_ids_with_stopped_bound_memory(engine, make_monitor, vclock):
    """Ids never reused (5*10^4 compiled, 2*10^4 pure), each with a few heartbeats, then
    stopped: with max_stopped_histories the kept histories and the memory stay bounded."""
    n = 50_000 if engine == "compiled" else 20_000
    limit = 100
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=16,
                     max_stopped_histories=limit)
    live = []

    def cycles(lo, hi):
        for i in range(lo, hi):
            a = f"u{i}"
            m.start_monitoring(a)
            m.record_heartbeat(a, {"i": i} if i % 5 == 0 else None)
            m.record_heartbeat(a)
            live.append(a)
            if len(live) > 50:
                m.stop_monitoring(live.pop(0))
            if i % 500 == 0:
                m.advance(to=vclock.now + 0.1)

    cycles(0, n // 10)
    gc.collect()
    tracemalloc.start()
    try:
        cycles(n // 10, n // 10 + 1000)       # traced warm-up: live and kept state traced
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        cycles(n // 10 + 1000, n)
        gc.collect()
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n[churn] {engine}: {n:,} unique ids, {limit} stopped histories kept: "
          f"peak - base = {(peak - base) / 1024:.0f} KiB, end - base = "
          f"{(cur - base) / 1024:.0f} KiB")
    st = m.get_monitoring_stats()
    assert st["stopped_histories"] == limit
    assert st["total_agents"] == 50
    assert st["total_heartbeats"] == 2 * (limit + 50)
    assert peak - base < TRACED_GROWTH_BOUND
    assert cur - base < TRACED_GROWTH_BOUND // 4
    kept = [k for k in m.heartbeat_history if k not in m.monitoring_agents]
    # the most recently stopped ones, oldest stopped first dropped
    assert kept == [f"u{i}" for i in range(n - 50 - limit, n - 50)]


def test_stale_deadlines_against_model(engine, make_monitor, vclock):
    """10^4 cycles over 50 reused ids, checked event by event against the model: a
    stopped incarnation's deadline never fires for the next one on its slot."""
    m = make_monitor(interval_ms=100, failure_threshold=3, tick_ms=10)
    got = []
    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False,
                       batch_callback=lambda b: got.extend(
                           zip(b.ids, b.current.tolist(), b.kind.tolist(),
                               (round(x * NS) for x in b.deadline_monotonic))))
    model = Model(tick_ms=10)
    rng = random.Random(7)
    pool = [f"p{i}" for i in range(50)]
    def now():
        return vclock.monotonic_ns()
    for i in range(10_000):
        a = rng.choice(pool)
        r = rng.random()
        if r < 0.35:
            iv = rng.choice(INTERVALS)
            sc = rng.random() < 0.6
            assert m.start_monitoring(a, iv, 3, start_clock=sc) == \
                model.start(a, iv, 3, now(), sc)
        elif r < 0.6:
            assert m.stop_monitoring(a) == model.stop(a)
        elif r < 0.85:
            ok, ev = model.heartbeat(a, now())
            expect = [(e[1], e[2], e[4]) if e[0] == "alert" else (e[1], "rec") for e in ev]
            got.clear()
            assert m.record_heartbeat(a) == ok
            assert [(g[0], g[1], g[3]) if g[2] == 0 else (g[0], "rec") for g in got] == [
                (x[0], x[1].severity, x[2]) if len(x) == 3 else x for x in expect]
        else:
            vclock.advance(rng.choice([0.005, 0.03, 0.1, 0.3]))
            ev = model.advance(now())
            got.clear()
            m.advance()
            assert [(g[0], g[1], g[3]) for g in got] == [
                (e[1], e[2].severity, e[4]) for e in ev], i
    st = m.get_monitoring_stats()
    assert st["total_agents"] == len(model.agents)
    assert st["pending_deadlines"] == len(model.pending())


# -- the stopped-history bound and clear_history ---------------------------------------------

def _beat_and_stop(m, ids, beats=2):
    for a in ids:
        m.start_monitoring(a)
        for _ in range(beats):
            m.record_heartbeat(a)
    for a in ids:
        m.stop_monitoring(a)


def test_max_stopped_histories_drops_oldest_first(make_monitor):
    m = make_monitor(max_stopped_histories=3)
    m.start_monitoring("live")
    m.record_heartbeat("live")
    _beat_and_stop(m, ["a", "b", "c", "d", "e"])
    st = m.get_monitoring_stats()
    assert st["stopped_histories"] == 3
    assert st["total_heartbeats"] == 1 + 3 * 2
    assert list(m.heartbeat_history) == ["live", "c", "d", "e"]
    assert m.get_heartbeat_history("a") == [] and "a" not in m.heartbeat_history
    assert len(m.get_heartbeat_history("e")) == 2
    # the eviction order is the stop order, not the registration order
    m.start_monitoring("x")
    m.start_monitoring("y")
    m.record_heartbeat("x")
    m.record_heartbeat("y")
    m.stop_monitoring("y")
    m.stop_monitoring("x")
    assert list(m.heartbeat_history) == ["live", "e", "y", "x"]
    # restarting a stopped id replaces (drops) its kept history: one fewer kept
    assert m.start_monitoring("e")
    assert m.get_monitoring_stats()["stopped_histories"] == 2
    assert m.get_heartbeat_history("e") == []
    assert m.get_heartbeat_history("live") != []


@pytest.mark.parametrize("limit", [0, 1, None])
def test_max_stopped_histories_limits(make_monitor, limit):
    m = make_monitor(max_stopped_histories=limit)
    ids = [f"s{i}" for i in range(20)]
    _beat_and_stop(m, ids)
    kept = 20 if limit is None else limit
    st = m.get_monitoring_stats()
    assert st["stopped_histories"] == kept
    assert st["total_heartbeats"] == 2 * kept
    assert list(m.heartbeat_history) == ids[20 - kept:]


def test_clear_history(make_monitor):
    m = make_monitor()
    _beat_and_stop(m, ["a", "b", "c"], beats=3)
    for a in ("l1", "l2"):
        m.start_monitoring(a)
        m.record_heartbeat(a, {"k": a})
    assert m.clear_history("b") == 1          # one stopped agent
    assert m.clear_history("b") == 0
    assert m.get_heartbeat_history("b") == []
    assert m.get_monitoring_stats()["stopped_histories"] == 2
    assert m.clear_history() == 2             # every stopped agent
    assert m.clear_history() == 0
    st = m.get_monitoring_stats()
    assert st["stopped_histories"] == 0 and st["total_heartbeats"] == 2
    # live agents' histories are untouched by clear_history()
    assert m.get_heartbeat_history("l1") == [
        {"timestamp": m.get_heartbeat_history("l1")[0]["timestamp"], "metadata": {"k": "l1"}}]
    # one live agent: its history is dropped, it stays monitored and records again
    assert m.clear_history("l1") == 1
    assert m.get_heartbeat_history("l1") == []
    assert "l1" in m.monitoring_agents
    assert m.record_heartbeat("l1")
    assert len(m.get_heartbeat_history("l1")) == 1
    assert m.clear_history("never-seen") == 0
    assert m.get_monitoring_stats()["total_heartbeats"] == 2
    assert m.check_agent_health("l2") is HealthState.HEALTHY


def test_clear_history_then_restart_and_part_a_del(make_monitor):
    m = make_monitor(max_stopped_histories=10)
    _beat_and_stop(m, ["a", "b"])
    del m.heartbeat_history["a"]
    assert m.get_monitoring_stats()["stopped_histories"] == 1
    with pytest.raises(KeyError):
        del m.heartbeat_history["a"]
    assert m.start_monitoring("a")
    assert m.record_heartbeat("a")
    assert len(m.get_heartbeat_history("a")) == 1
    assert m.stop_monitoring("a")
    assert m.get_monitoring_stats()["stopped_histories"] == 2
