"""Load (issue 5, item 1): 16 threads recording heartbeats, starting and stopping agents
and querying, over 10^5 agents (compiled; the pure engine at 10^4), while deadlines
fire -- driven by a thread advancing a VirtualClock, or by the real background thread
with a 1 ms tick. Bounded time, a watchdog against deadlock, no exception in any
thread, and every heartbeat accounted for. Repeated with the batch API.

Run with `-s` to see the sustained heartbeats/s and the tracemalloc peak."""
from __future__ import annotations

import faulthandler
import random
import threading
import time
import tracemalloc
from collections import defaultdict

import numpy as np
import pytest

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

N_AGENTS = {"compiled": 100_000, "pure": 10_000}
N_DEAD = {"compiled": 1_000, "pure": 200}
CHURN_IDS = 400            # per churn thread
BEATERS, CHURNERS, QUERIERS = 12, 2, 2          # 16 worker threads
assert BEATERS + CHURNERS + QUERIERS == 16
HISTORY = 64               # ring size: a beater makes at most HISTORY - 1 passes
DURATION = 1.2             # seconds of load (keeps the whole issue-5 set < 60 s)
JOIN_TIMEOUT = 30.0        # watchdog: a worker still alive after this is a deadlock
HARD_TIMEOUT = 120.0       # faulthandler: kill the run (with tracebacks) if it hangs hard
STABLE_MS, DEAD_MS, CHURN_MS = 2000, 100, 100
T = 3                      # failure threshold of every agent (H -> D -> C -> F)


class Ledger:
    """Every AlertBatch, checked per handle against the reported-state automaton."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = {}             # handle -> reported state code
        self.seq = defaultdict(list)  # handle -> [(kind, new)] (dead agents only)
        self.watch = set()
        self.errors = []
        self.crossings = 0
        self.recoveries = 0
        self.batches = 0

    def __call__(self, b):
        with self.lock:
            self.batches += 1
            for h, prev, cur, kind in zip(b.handles.tolist(), b.previous.tolist(),
                                          b.current.tolist(), b.kind.tolist()):
                s = self.state.get(h, 0)
                if prev != s:
                    self.errors.append(("prev", h, s, prev, cur, kind))
                if kind == 0:
                    self.crossings += 1
                    if cur != s + 1:
                        self.errors.append(("skip", h, s, prev, cur))
                else:
                    self.recoveries += 1
                    if cur != 0 or s == 0:
                        self.errors.append(("recovery", h, s, prev, cur))
                self.state[h] = cur
                if h in self.watch:
                    self.seq[h].append((kind, cur))


def _run(targets):
    errors = []

    def wrap(name, fn):
        def run():
            try:
                fn()
            except BaseException as e:
                errors.append((name, repr(e)))
                raise
        return run

    threads = [threading.Thread(target=wrap(name, fn), name=name, daemon=True)
               for name, fn in targets]
    for t in threads:
        t.start()
    return threads, errors


def _join(threads, deadline):
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"watchdog: deadlock or livelock, still running: {alive}"


def _load(engine, *, real_clock, batch, trace=False, duration=DURATION):
    """Runs one load scenario. `trace`: measure the peak with tracemalloc (which slows
    every Python allocation, so the heartbeat rates are quoted from untraced runs)."""
    n, n_dead = N_AGENTS[engine], N_DEAD[engine]
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
    if trace:
        tracemalloc.start()
    try:
        return _load_body(engine, n, n_dead, real_clock=real_clock, batch=batch,
                          duration=duration)
    finally:
        if trace:
            tracemalloc.stop()
        faulthandler.cancel_dump_traceback_later()


def _load_body(engine, n, n_dead, *, real_clock, batch, duration):
    clock = None if real_clock else VirtualClock(start=1000.0)
    m = HeartbeatMonitor(interval_ms=STABLE_MS, failure_threshold=T, history_size=HISTORY,
                         engine=engine, clock=clock, tick_ms=1 if real_clock else 10)
    try:
        return _drive(m, clock, n, n_dead, real_clock=real_clock, batch=batch,
                      duration=duration)
    finally:
        m.shutdown()


def _drive(m, clock, n, n_dead, *, real_clock, batch, duration):
    ledger = Ledger()
    # per-agent WARNING lines are off (the ledger sees every transition through the batch)
    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False,
                       batch_callback=ledger)
    stable = list(range(n))
    dead = list(range(n, n + n_dead))
    assert m.start_monitoring_many(stable).all()
    assert m.start_monitoring_many(dead, interval_ms=DEAD_MS, start_clock=True).all()
    dead_handles = m.handles(dead)
    ledger.watch.update(dead_handles.tolist())
    parts = [stable[i::BEATERS] for i in range(BEATERS)]

    stop = threading.Event()        # ends churners, queriers and the advancer
    t_end = time.monotonic() + duration
    sent = [0] * BEATERS            # True returns per beater
    passes = [0] * BEATERS
    active = [0.0] * BEATERS        # seconds each beater spent beating

    def beater(k):
        part = parts[k]
        rh = m.record_heartbeat

        def run():
            t0 = time.monotonic()
            ok = 0
            p = 0
            # one pass at least, however late a loaded machine starts this thread
            while p < HISTORY - 1 and (p == 0 or time.monotonic() < t_end):
                for a in part:
                    ok += rh(a)
                p += 1
            sent[k], passes[k] = ok, p
            active[k] = time.monotonic() - t0

        def run_batch():
            hs = m.handles(part)
            assert (hs >= 0).all()
            chunks = [(hs[i:i + 1024], part[i:i + 1024]) for i in range(0, len(part), 1024)]
            t0 = time.monotonic()
            ok = 0
            p = 0
            # one pass at least, however late a loaded machine starts this thread
            while p < HISTORY - 1 and (p == 0 or time.monotonic() < t_end):
                for j, (h, ids) in enumerate(chunks):
                    # alternate handles and ids so both input forms are under load
                    ok += int(m.record_heartbeats(h if (p + j) % 2 == 0 else ids).sum())
                p += 1
            sent[k], passes[k] = ok, p
            active[k] = time.monotonic() - t0
        return run_batch if batch else run

    churn_expect = [dict() for _ in range(CHURNERS)]   # id -> heartbeats since last start
    churn_live = [set() for _ in range(CHURNERS)]
    churn_ops = [0] * CHURNERS

    def churner(k):
        ids = [f"churn{k}-{i}" for i in range(CHURN_IDS)]
        rng = random.Random(k)
        expect, live = churn_expect[k], churn_live[k]

        def run():
            ops = 0
            while not stop.is_set():
                a = rng.choice(ids)
                r = rng.random()
                if r < 0.3:
                    sc = rng.random() < 0.5
                    if batch and rng.random() < 0.5:
                        new = bool(m.start_monitoring_many([a], interval_ms=CHURN_MS,
                                                           start_clock=sc)[0])
                    else:
                        new = m.start_monitoring(a, interval_ms=CHURN_MS, start_clock=sc)
                    assert new == (a not in live), (a, new)
                    if new:
                        live.add(a)
                        expect[a] = 0
                elif r < 0.5:
                    assert m.stop_monitoring(a) == (a in live), a
                    live.discard(a)
                else:
                    if batch:
                        got = bool(m.record_heartbeats([a])[0])
                    else:
                        got = m.record_heartbeat(a, {"k": ops} if r < 0.6 else None)
                    assert got == (a in live), (a, got)
                    if got:
                        expect[a] += 1
                ops += 1
            churn_ops[k] = ops
        return run

    queries = [0] * QUERIERS

    def querier(k):
        rng = random.Random(100 + k)
        states = set(HealthState)

        def run():
            q = 0
            while not stop.is_set():
                a = rng.randrange(n)
                assert m.check_agent_health(a) in states
                assert len(m.get_heartbeat_history(a)) < HISTORY
                assert m.monitoring_agents[a]["failure_threshold"] == T
                st = m.get_monitoring_stats()
                assert n + n_dead <= st["total_agents"] <= n + n_dead + CHURNERS * CHURN_IDS
                assert sum(st["health_distribution"].values()) == st["total_agents"]
                if q % 8 == 0:
                    unhealthy = m.get_unhealthy_agents(HealthState.FAILED)
                    assert all(not isinstance(x, int) or x >= n for x in unhealthy)
                    sample = rng.sample(stable, 256)
                    stats = m.interval_stats(sample)
                    assert (stats["count"] < HISTORY).all()
                    h = m.history_array(a, copy=True)
                    assert (np.diff(h) >= 0).all()
                if q % 64 == 0:
                    snap = m.snapshot()
                    assert len(snap) == sum(snap.counts.values())
                q += 1
                # a dashboard's pace, not a flood: the O(agents) queries (stats, unhealthy,
                # snapshot) hold the engine lock, and two threads doing nothing else would
                # starve the heartbeat threads of the pure engine
                time.sleep(0.01)
            queries[k] = q
        return run

    def advancer():
        t0 = time.monotonic()
        start = clock.now
        while not stop.is_set():
            m.advance(to=start + (time.monotonic() - t0))   # virtual time ~ real time
            time.sleep(0.002)

    tracing = tracemalloc.is_tracing()
    others = [(f"churn{k}", churner(k)) for k in range(CHURNERS)]
    others += [(f"query{k}", querier(k)) for k in range(QUERIERS)]
    if not real_clock:
        others.append(("advancer", advancer))
    side, side_errors = _run(others)
    workers, errors = _run([(f"beat{k}", beater(k)) for k in range(BEATERS)])
    deadline = time.monotonic() + duration + JOIN_TIMEOUT
    _join(workers, deadline)
    stop.set()
    _join(side, deadline)
    assert errors == [] and side_errors == [], errors + side_errors

    # let every dead agent be convicted (virtual: push the clock; real: wait)
    if real_clock:
        limit = time.monotonic() + 5.0
        while time.monotonic() < limit:
            with ledger.lock:
                done = all(ledger.state.get(h) == 3 for h in dead_handles.tolist())
            if done:
                break
            time.sleep(0.01)
    else:
        m.advance(to=max(clock.now, 1000.0 + 4 * DEAD_MS / 1000))
    m.shutdown()
    # With the threads stopped, advance() dispatches in this thread whatever is still
    # queued (a block the wheel published after the dispatcher exited: see
    # test_callbacks_storm.py::test_shutdown_during_storm_loses_no_callback) and whatever
    # it finds itself, so every transition counted below must have reached the ledger.
    m.advance()
    peak = tracemalloc.get_traced_memory()[1] if tracing else 0

    # -- every heartbeat accounted for -------------------------------------------------
    for k in range(BEATERS):
        assert sent[k] == passes[k] * len(parts[k]), (k, sent[k], passes[k])
        assert passes[k] >= 1
    lengths = m.histories(stable, layout="flat")[1]
    per_agent = np.diff(lengths)
    expected = np.empty(n, dtype=np.int64)
    for k in range(BEATERS):
        expected[k::BEATERS] = passes[k]
    mismatch = np.flatnonzero(per_agent != expected)
    assert mismatch.size == 0, f"lost/extra heartbeats for {mismatch.size} agents, e.g. " \
        f"{stable[mismatch[0]]}: history {per_agent[mismatch[0]]} vs sent {expected[mismatch[0]]}"
    for a in (0, n // 2, n - 1):
        assert len(m.get_heartbeat_history(a)) == expected[a]
    churn_total = 0
    for k in range(CHURNERS):
        for a, c in churn_expect[k].items():
            assert len(m.get_heartbeat_history(a)) == c, (a, c)
            churn_total += c
        assert {a for a in m.monitoring_agents if isinstance(a, str)
                and a.startswith(f"churn{k}-")} == churn_live[k]
    stats = m.get_monitoring_stats()
    total_sent = sum(sent)
    assert stats["total_heartbeats"] == total_sent + churn_total
    lost = total_sent + churn_total - stats["total_heartbeats"]

    # -- deadlines fired, and every transition was delivered once, in order ------------
    assert ledger.errors == [], ledger.errors[:5]
    for h in dead_handles.tolist():
        assert ledger.seq[h] == [(0, 1), (0, 2), (0, 3)], (h, ledger.seq[h])
    assert m.get_unhealthy_agents(HealthState.FAILED)[:n_dead] == dead
    assert ledger.crossings == stats["transitions"]
    assert ledger.recoveries == stats["recoveries"]
    assert stats["callback_errors"] == 0
    assert m._background.wheel_errors == 0
    if real_clock:
        assert stats["monitoring_thread_alive"] is False   # after shutdown
    # the reported state of every live agent that ever had a transition is the one its
    # delivered transitions lead to (a lost or repeated block shows up here)
    live = list(m.monitoring_agents)
    for a, h in zip(live, m.handles(live).tolist()):
        if h in ledger.state or not isinstance(a, int):
            assert m.monitoring_agents[a]["last_state"].severity == ledger.state.get(h, 0), a

    elapsed = max(active)
    rate = total_sent / elapsed
    return dict(rate=rate, sent=total_sent, lost=lost, peak_mb=peak / 2**20,
                passes=min(passes), elapsed=elapsed,
                churn_ops=sum(churn_ops), queries=sum(queries),
                transitions=stats["transitions"], recoveries=stats["recoveries"])


def _report(engine, label, r):
    print(f"\n[load] {engine:8s} {label:22s} {r['rate']:>12,.0f} heartbeats/s sustained "
          f"({r['sent']:,} in {r['elapsed']:.2f} s, >= {r['passes']} passes), lost={r['lost']}, "
          + (f"peak traced memory {r['peak_mb']:.1f} MiB, " if r["peak_mb"] else "")
          + f"churn ops {r['churn_ops']:,}, "
          f"queries {r['queries']:,}, transitions {r['transitions']:,}, "
          f"recoveries {r['recoveries']:,}")


@pytest.mark.slow
def test_load_scalar_virtual_clock(engine):
    r = _load(engine, real_clock=False, batch=False)
    _report(engine, "scalar, virtual clock", r)
    assert r["lost"] == 0


@pytest.mark.slow
def test_load_scalar_background_thread(engine):
    r = _load(engine, real_clock=True, batch=False)
    _report(engine, "scalar, real thread", r)
    assert r["lost"] == 0


@pytest.mark.slow
def test_load_batch_virtual_clock_peak_memory(engine):
    """The batch variant under tracemalloc (which slows Python allocations: quote the
    rates of the untraced tests): the traced peak stays under the stated bound."""
    r = _load(engine, real_clock=False, batch=True, trace=True, duration=0.5)
    _report(engine, "batch, virtual, traced", r)
    assert r["lost"] == 0
    n = N_AGENTS[engine] + N_DEAD[engine] + CHURNERS * CHURN_IDS
    bound = n * (HISTORY * 8 + PER_AGENT_BOUND[engine])
    print(f"[load] {engine:8s} peak traced memory {r['peak_mb']:.1f} MiB "
          f"(bound {bound / 2**20:.1f} MiB)")
    assert r["peak_mb"] * 2**20 < bound


@pytest.mark.slow
def test_load_batch_background_thread(engine):
    r = _load(engine, real_clock=True, batch=True)
    _report(engine, "batch, real thread", r)
    assert r["lost"] == 0



# Stated bound on the traced peak: the rings (agents x history_size x 8 bytes) plus at most
# this many bytes per agent for the table, ids, events and the test's own bookkeeping.
PER_AGENT_BOUND = {"compiled": 1_000, "pure": 6_000}
