"""Replaying a heartbeat log into a live monitor (issue 10): 100 rounds of backdated
heartbeats, 5 s apart and ending 400 s ago, for agents registered but never heard from
(a standby rebuilding its state after a takeover), with system clocks and background
threads and a per-agent callback on every alert.

Figures: a replayed round's time against a live round's, alerts raised per agent, traced
memory growth, and interval_stats() during and after the replay against a monitor that
never replayed (same agents, rings equally full).
"""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
from functools import partial
from typing import Any

import numpy as np
import pytest

from moai_flow_fast import HeartbeatMonitor

ROUNDS = 100
GAP_S = 5.0
END_AGO_S = 400.0
SIZES = {"compiled": [100_000, 1_000_000], "pure": [10_000]}
if os.environ.get("MOAI_BENCH_QUICK"):
    SIZES["compiled"] = [100_000]


def _monitor(engine: str, n: int) -> tuple[HeartbeatMonitor, Any, list[int]]:
    m = HeartbeatMonitor(interval_ms=5000, failure_threshold=3, history_size=100,
                         engine=engine)
    alerts = [0]

    def count(agent_id: Any, state: Any, details: Any) -> None:
        alerts[0] += 1

    m.configure_alerts(degraded_callback=count, critical_callback=count,
                       failed_callback=count, recovery_callback=count)
    ids = list(range(n))
    m.start_monitoring_many(ids)
    return m, m.handles(ids), alerts


def _stamps(n: int) -> list[np.ndarray]:
    first = time.time() - END_AGO_S - GAP_S * (ROUNDS - 1)
    return [np.full(n, first + GAP_S * k) for k in range(ROUNDS)]


def _median_call(fn: Any, times: int) -> float:
    out = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def _settle(m: HeartbeatMonitor, limit: float = 120) -> None:
    """Until the wheel has reported the replay's crossings and the dispatcher delivered
    them."""
    time.sleep(0.05)
    end = time.monotonic() + limit
    while m.get_monitoring_stats()["alert_backlog"] and time.monotonic() < end:
        time.sleep(0.01)


@pytest.mark.parametrize("size_index", [0, 1])
def test_replay(benchmark: Any, engine: str, report: Any, size_index: int) -> None:
    if size_index >= len(SIZES[engine]):
        pytest.skip(f"the {engine} engine is measured at {SIZES[engine]} agents only")
    n = SIZES[engine][size_index]
    label = f"{n:,} agents"
    gc.collect()

    # Baseline: a monitor that never replays, live rounds (rings filled to the same depth,
    # traced: the pure engine's history records are allocated as they come).
    live, live_h, _ = _monitor(engine, n)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(ROUNDS):
        live.record_heartbeats(live_h)
    live_growth = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    live_round = _median_call(partial(live.record_heartbeats, live_h), 9)
    sample = min(n, 100_000)
    sample_ids = list(range(sample))
    stats_live = _median_call(partial(live.interval_stats, sample_ids), 3)
    live.shutdown()
    del live
    gc.collect()

    # The replay, timed round by round (the dispatcher delivers its alerts meanwhile).
    m, h, alerts = _monitor(engine, n)
    stamps = _stamps(n)
    rounds: list[float] = []

    def replay(record: Any = m.record_heartbeats) -> None:
        for s in stamps:
            t = time.perf_counter()
            assert record(h, s).all()
            rounds.append(time.perf_counter() - t)

    benchmark.pedantic(replay, rounds=1, iterations=1)
    _settle(m)
    left = m.shutdown(timeout=120)
    st = m.get_monitoring_stats()
    delivered = alerts[0] + st["alerts_collapsed"]
    per_agent = (st["transitions"] + st["recoveries"]) / n
    stats_after = _median_call(partial(m.interval_stats, sample_ids), 3)
    replay_round = float(np.median(rounds))
    m_states = st["health_distribution"]
    del m
    gc.collect()

    # The same replay on a fresh monitor, with interval_stats() called meanwhile.
    q_mon, q_h, _ = _monitor(engine, n)
    during: list[float] = []
    stop = threading.Event()

    def query(stats: Any = q_mon.interval_stats) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            stats(sample_ids)
            during.append(time.perf_counter() - t)

    q = threading.Thread(target=query, daemon=True)
    q.start()
    for s in stamps:
        q_mon.record_heartbeats(q_h, s)
    _settle(q_mon)
    stop.set()
    q.join()
    q_mon.shutdown(timeout=120)
    stats_during = float(np.median(during))
    del q_mon
    gc.collect()

    # Memory: the same replay again, traced (allocations, not page touches: the rings
    # are allocated at registration).
    mem, mem_h, _ = _monitor(engine, n)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for s in stamps:
        mem.record_heartbeats(mem_h, s)
    _settle(mem)
    # What the replay costs beyond the history records a live monitor holds too.
    peak = tracemalloc.get_traced_memory()[1] - base - live_growth
    tracemalloc.stop()
    mem.shutdown(timeout=120)
    del mem
    gc.collect()

    benchmark.extra_info.update(agents=n, replay_round_ms=replay_round * 1e3,
                                live_round_ms=live_round * 1e3, alerts_per_agent=per_agent,
                                peak_mib=peak / 2**20, stats_live_s=stats_live,
                                stats_during_s=stats_during, stats_after_s=stats_after)
    assert left == 0 and delivered == st["transitions"] + st["recoveries"]
    assert m_states["failed"] == n
    report(f"replay: live round, {label} (ms)", engine, live_round * 1e3, "ms")
    report(f"replay: replayed round, {label} (ms)", engine, replay_round * 1e3, "ms")
    report(f"replay: replayed / live round, {label}", engine, replay_round / live_round, "x", 4)
    report(f"replay: alerts per agent over {ROUNDS} rounds, {label}", engine, per_agent,
           "", 3)
    report(f"replay: memory growth beyond a live monitor's, {label} (MiB)", engine,
           peak / 2**20, "MiB",
           64 if n <= 100_000 else None)
    report(f"replay: interval_stats({sample:,}) never replayed, {label} (ms)", engine,
           stats_live * 1e3, "ms")
    report(f"replay: interval_stats during / never replayed, {label}", engine,
           stats_during / stats_live, "x", 2)
    report(f"replay: interval_stats after / never replayed, {label}", engine,
           stats_after / stats_live, "x", 2)
