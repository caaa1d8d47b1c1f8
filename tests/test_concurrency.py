"""Concurrency: 8 threads x 10,000 heartbeats on shared agents while deadlines
fire. Nothing lost, every crossing reported exactly once, no deadlock."""
from __future__ import annotations

import threading
import time
from collections import Counter

from hb_model import Recorder

from moai_flow_fast import HealthState

H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)
THREADS = 8
JOIN_TIMEOUT = 60.0


def _run_threads(targets):
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads, errors


def _join_all(threads):
    end = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"deadlock: {len(alive)} thread(s) still running"


def _per_agent_invariants(rec, agents):
    """Per agent: every DEGRADED crossing starts an episode that ends with a recovery,
    except the last one; CRITICAL/FAILED at most once per episode."""
    cnt = Counter()
    for kind, aid, st, _ in rec.events:
        cnt[(aid, "recovery" if kind == "recovery" else st)] += 1
    for a in agents:
        n_d, n_c, n_f, n_r = (cnt[(a, D)], cnt[(a, C)], cnt[(a, F)], cnt[(a, "recovery")])
        assert n_d == n_r + 1, (a, n_d, n_r)          # all end FAILED
        assert n_c <= n_d and 1 <= n_f <= n_d, (a, n_d, n_c, n_f)
    return cnt


def test_eight_threads_virtual_clock(make_monitor, vclock):
    n_agents, per_thread = 16, 10_000
    # The beaters' recoveries can pile up faster than the advancer delivers them (the pure
    # engine under load): a queue that holds them all keeps every per-agent callback, so
    # each one can be reconciled below (the bounded default is tested in test_saturation.py).
    m = make_monitor(interval_ms=100, failure_threshold=3, history_size=100_000, tick_ms=10,
                     alert_queue_size=1_000_000)
    rec = Recorder().install(m, recovery=True)
    agents = [f"agent-{i:02d}" for i in range(n_agents)]
    for a in agents:
        m.start_monitoring(a)
    stop = threading.Event()
    advances = []

    go = threading.Event()

    def beater(tid):
        def run():
            go.wait(10)
            for i in range(per_thread):
                assert m.record_heartbeat(agents[(tid * 7 + i) % n_agents], {"t": tid})
                if i % 250 == 249:
                    time.sleep(0.0002)     # let the advancer in (GIL)
        return run

    def advancer():
        while not stop.is_set():
            advances.append(m.advance(to=vclock.now + 0.15))
            go.set()
            time.sleep(0)

    adv, adv_errors = _run_threads([advancer])
    threads, errors = _run_threads([beater(t) for t in range(THREADS)])
    _join_all(threads)
    stop.set()
    _join_all(adv)
    assert errors == [] and adv_errors == []
    assert len(advances) > 10

    by_agent = {a: Counter() for a in agents}
    for tid in range(THREADS):
        for i in range(per_thread):
            by_agent[agents[(tid * 7 + i) % n_agents]][tid] += 1
    for a in agents:
        hist = m.get_heartbeat_history(a)
        assert len(hist) == sum(by_agent[a].values())
        assert len(m.heartbeat_history[a]) == len(hist)
        assert Counter(r["metadata"]["t"] for r in hist) == by_agent[a]
    stats = m.get_monitoring_stats()
    assert stats["total_heartbeats"] == THREADS * per_thread
    assert stats["total_agents"] == n_agents

    # drive everyone to FAILED, then reconcile every crossing
    m.advance(to=vclock.now + 10)
    assert all(m.monitoring_agents[a]["last_state"] is F for a in agents)
    assert m.get_unhealthy_agents(F) == agents
    cnt = _per_agent_invariants(rec, agents)
    stats = m.get_monitoring_stats()
    n_alerts = sum(v for (a, k), v in cnt.items() if k != "recovery")
    n_rec = sum(v for (a, k), v in cnt.items() if k == "recovery")
    assert stats["transitions"] == n_alerts
    assert stats["recoveries"] == n_rec
    assert stats["alerts_collapsed"] == 0
    assert n_rec > 0, "the clock never overtook the heartbeats: test is not exercising deadlines"


def test_heartbeats_start_stop_and_queries_virtual(make_monitor, vclock):
    """Mixed traffic: start/stop churn, queries and advances; histories of the
    never-stopped agents reconcile exactly."""
    m = make_monitor(interval_ms=100, failure_threshold=2, history_size=50_000, tick_ms=7)
    Recorder().install(m, recovery=True)
    stable = [f"s{i}" for i in range(4)]
    for a in stable:
        m.start_monitoring(a)
    stop = threading.Event()

    def beater(tid):
        def run():
            for i in range(3000):
                m.record_heartbeat(stable[i % 4])
        return run

    def churner():
        i = 0
        while not stop.is_set():
            a = f"churn{i % 5}"
            m.start_monitoring(a, interval_ms=100 + 50 * (i % 3))
            m.record_heartbeat(a)
            m.stop_monitoring(a)
            i += 1

    def querier():
        while not stop.is_set():
            m.get_unhealthy_agents(HealthState.HEALTHY)
            m.get_monitoring_stats()
            for a in stable:
                m.check_agent_health(a)
            m.get_heartbeat_history(stable[0])[-3:]

    def advancer():
        while not stop.is_set():
            m.advance(to=vclock.now + 0.013)
            time.sleep(0)

    beaters, e1 = _run_threads([beater(t) for t in range(4)])
    others, e2 = _run_threads([churner, querier, advancer])
    _join_all(beaters)
    stop.set()
    _join_all(others)
    assert e1 == [] and e2 == []
    for a in stable:
        assert len(m.get_heartbeat_history(a)) == 3000
    assert list(m.monitoring_agents) == stable


def test_eight_threads_real_clock(make_monitor):
    """Short real-clock variant: background thread with a 1 ms tick; silent agents
    must be detected while the heartbeat storm runs."""
    per_thread = 2500
    m = make_monitor(clock=None, interval_ms=100, failure_threshold=2,
                     history_size=100_000, tick_ms=1)
    rec = Recorder().install(m, recovery=True)
    shared = [f"shared-{i}" for i in range(8)]
    silent = [f"silent-{i}" for i in range(4)]
    for a in shared + silent:
        m.start_monitoring(a)
    for a in silent:
        m.record_heartbeat(a)

    def beater(tid):
        def run():
            for i in range(per_thread):
                m.record_heartbeat(shared[(tid + i) % 8])
        return run

    t0 = time.monotonic()
    threads, errors = _run_threads([beater(t) for t in range(THREADS)])
    _join_all(threads)
    assert errors == []
    # the silent agents are detected (FAILED 200 ms after their only heartbeat)
    while time.monotonic() - t0 < 3.0:
        if all(m.monitoring_agents[a]["last_state"] is F for a in silent):
            break
        time.sleep(0.005)
    assert all(m.monitoring_agents[a]["last_state"] is F for a in silent)
    assert rec.wait_for(
        lambda ev: all((("alert", a, F) in {(e[0], e[1], e[2]) for e in ev}) for a in silent), 2.0)
    for a in silent:
        assert [e[2] for e in rec.events if e[1] == a and e[0] == "alert"] == [D, F]
    for a in shared:
        assert len(m.get_heartbeat_history(a)) == THREADS * per_thread // 8
    assert m.get_monitoring_stats()["total_heartbeats"] == THREADS * per_thread + len(silent)
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is True
