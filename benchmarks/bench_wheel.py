"""The wheel thread's CPU share with a swarm heartbeating on schedule, in virtual time.

Each agent heartbeats every 0.8 x its interval at a random phase. The timed work is the
wheel's: one `advance()` per 10 ms tick, exactly what the background thread runs, timed
in thread CPU time (other processes on a shared machine do not inflate it). CPU share =
mean advance time x ticks per second.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from bench_utils import virtual_monitor

TICK_S = 0.01
CASES = [("compiled", 100_000), ("compiled", 1_000_000), ("pure", 100_000)]


@pytest.mark.benchmark(timer=time.thread_time)
@pytest.mark.parametrize("engine,n", CASES, ids=[f"{e}-{n}" for e, n in CASES])
@pytest.mark.parametrize("interval_ms", [5000, 30000])
def test_wheel_cpu_share(benchmark: Any, report: Any, engine: str, n: int,
                         interval_ms: int) -> None:
    monitor, clock, ids = virtual_monitor(engine, n, interval_ms=interval_ms)
    period_ticks = round(0.8 * interval_ms / 1000 / TICK_S)
    phase = np.random.default_rng(7).integers(0, period_ticks, n)
    groups: list[list[str]] = [[] for _ in range(period_ticks)]
    for agent_id, p in zip(ids, phase.tolist()):
        groups[p].append(agent_id)
    record = monitor.record_heartbeat
    tick = [0]

    def next_tick() -> None:
        clock.advance(TICK_S)
        for agent_id in groups[tick[0] % period_ticks]:
            record(agent_id)
        tick[0] += 1

    # Warm up past the first interval so every agent has an armed, steady deadline.
    for _ in range(round(1.5 * interval_ms / 1000 / TICK_S)):
        next_tick()
        monitor.advance()
    rounds = round(min(10.0, 2 * interval_ms / 1000) / TICK_S)
    benchmark.pedantic(monitor.advance, setup=next_tick, rounds=rounds, iterations=1)
    stats = monitor.get_monitoring_stats()
    assert stats["transitions"] == 0, "an agent on schedule was reported"
    share = float(benchmark.stats.stats.mean) / TICK_S * 100
    benchmark.extra_info.update(agents=n, interval_ms=interval_ms, cpu_share_percent=share)
    report(f"wheel CPU, {n:,} agents on schedule, I={interval_ms} ms (% core)", engine, share,
           "%", 1.0 if engine == "compiled" and n == 1_000_000 and interval_ms == 5000 else None)
