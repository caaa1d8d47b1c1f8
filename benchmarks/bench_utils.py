"""Shared helpers of the benchmarks."""

from __future__ import annotations

from typing import Any

from moai_flow_fast import HeartbeatMonitor, VirtualClock


def ids_for(n: int) -> list[str]:
    return [f"agent-{i:07d}" for i in range(n)]


def virtual_monitor(engine: str, n: int, **kwargs: Any
                    ) -> tuple[HeartbeatMonitor, VirtualClock, list[str]]:
    clock = VirtualClock(start=1000.0)
    monitor = HeartbeatMonitor(clock=clock, engine=engine, **kwargs)
    ids = ids_for(n)
    for agent_id in ids:
        monitor.start_monitoring(agent_id)
    return monitor, clock, ids


def per_call_ns(benchmark: Any, calls: int) -> float:
    """Median round time of the last pedantic run, per call, in ns."""
    return float(benchmark.stats.stats.median) / calls * 1e9
