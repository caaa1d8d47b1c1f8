"""Hot operations of the facade, compiled vs pure, on the system clock (no thread)."""

from __future__ import annotations

from typing import Any

import pytest
from bench_utils import ids_for, per_call_ns

from moai_flow_fast import HealthState, HeartbeatMonitor

SIZES = {"compiled": [1_000, 100_000, 1_000_000], "pure": [1_000, 100_000]}
CASES = [(e, n) for e, sizes in SIZES.items() for n in sizes]


@pytest.fixture(scope="module", params=CASES, ids=[f"{e}-{n}" for e, n in CASES])
def swarm(request: pytest.FixtureRequest) -> Any:
    engine, n = request.param
    monitor = HeartbeatMonitor(engine=engine, background=False)
    ids = ids_for(n)
    for agent_id in ids:
        monitor.start_monitoring(agent_id)
    for agent_id in ids:
        monitor.record_heartbeat(agent_id)
    yield engine, n, monitor, ids
    monitor.shutdown()


def _calls(n: int) -> int:
    return min(n, 100_000)


def test_record_heartbeat(benchmark: Any, swarm: Any, report: Any) -> None:
    engine, n, monitor, ids = swarm
    sample = ids[: _calls(n)]
    rh = monitor.record_heartbeat

    def run() -> None:
        for agent_id in sample:
            rh(agent_id)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    report(f"record_heartbeat, {n:,} agents (ns/call)", engine, per_call_ns(benchmark, len(sample)),
           "ns", 250 if engine == "compiled" and n == 100_000 else None)


def test_check_agent_health(benchmark: Any, swarm: Any, report: Any) -> None:
    engine, n, monitor, ids = swarm
    sample = ids[: _calls(n)]
    check = monitor.check_agent_health

    def run() -> None:
        for agent_id in sample:
            check(agent_id)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    report(f"check_agent_health, {n:,} agents (ns/call)", engine,
           per_call_ns(benchmark, len(sample)), "ns",
           200 if engine == "compiled" and n == 100_000 else None)


@pytest.mark.parametrize("min_state", [HealthState.DEGRADED, HealthState.HEALTHY],
                         ids=["degraded", "healthy-returns-all"])
def test_get_unhealthy_agents(benchmark: Any, swarm: Any, report: Any,
                              min_state: HealthState) -> None:
    engine, n, monitor, _ = swarm
    result = benchmark.pedantic(monitor.get_unhealthy_agents, args=(min_state,), rounds=5,
                                iterations=1, warmup_rounds=1)
    assert len(result) == (n if min_state is HealthState.HEALTHY else 0)
    report(f"get_unhealthy_agents({min_state.name}), {n:,} agents (ms)", engine,
           per_call_ns(benchmark, 1) / 1e6, "ms",
           5.0 if engine == "compiled" and n == 100_000 else None)


def test_get_monitoring_stats(benchmark: Any, swarm: Any, report: Any) -> None:
    engine, n, monitor, _ = swarm
    stats = benchmark.pedantic(monitor.get_monitoring_stats, rounds=5, iterations=1,
                               warmup_rounds=1)
    assert stats["total_agents"] == n
    report(f"get_monitoring_stats, {n:,} agents (ms)", engine, per_call_ns(benchmark, 1) / 1e6,
           "ms", 5.0 if engine == "compiled" and n == 100_000 else None)
