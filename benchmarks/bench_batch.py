"""Issue 3 batch figures, compiled vs pure, in virtual time (no background thread).

- start_monitoring_many of 10^6 agents (target <= 1 s compiled); pure at the same size;
- record_heartbeats at 10^6 agents, with handles (>= 20 million/s compiled) and with
  string ids (>= 3 million/s), as heartbeats per second; pure at the same size;
- interval_stats over 10^6 agents x 100 samples (<= 0.5 s compiled), histories filled
  with record_heartbeats + explicit timestamps; pure at 10^5 agents x 100 samples (its
  figure is per agent, and the figure name says so);
- snapshot (with phi) on the same monitors;
- batch alert delivery: 10^5 agents crossing into FAILED in one advance, time from the
  advance() call to the batch_callback receiving them (<= 100 ms compiled); pure at the
  same size.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import pytest
from bench_utils import ids_for, per_call_ns

from moai_flow_fast import HeartbeatMonitor, VirtualClock

MILLION = 1_000_000
SAMPLES = 100
STATS_AGENTS = {"compiled": MILLION, "pure": 100_000}
ALERT_AGENTS = 100_000
ENGINES = ["compiled", "pure"]


def _monitor(engine: str, **kwargs: Any) -> tuple[HeartbeatMonitor, VirtualClock]:
    clock = VirtualClock(start=1000.0)
    return HeartbeatMonitor(clock=clock, engine=engine, **kwargs), clock


@pytest.fixture(scope="module")
def million_ids() -> list[str]:
    return ids_for(MILLION)


# ---------------------------------------------------------------------------------------
# start_monitoring_many
# ---------------------------------------------------------------------------------------

def test_start_monitoring_many(benchmark: Any, engine: str, million_ids: list[str],
                               report: Any) -> None:
    holder: dict[str, Any] = {}

    def setup() -> None:
        holder.pop("monitor", None)                  # free the previous round's monitor
        holder["monitor"], _ = _monitor(engine)

    def run() -> None:
        holder["mask"] = holder["monitor"].start_monitoring_many(million_ids)

    rounds = 3 if engine == "compiled" else 1
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    assert holder["mask"].all() and len(holder["monitor"].monitoring_agents) == MILLION
    holder.clear()
    benchmark.extra_info["agents"] = MILLION
    report("start_monitoring_many, 10^6 agents (s)", engine, per_call_ns(benchmark, 1) / 1e9,
           "s", 1.0 if engine == "compiled" else None)


# ---------------------------------------------------------------------------------------
# record_heartbeats
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=ENGINES)
def swarm(request: pytest.FixtureRequest, million_ids: list[str]) -> Any:
    monitor, clock = _monitor(request.param)
    monitor.start_monitoring_many(million_ids)
    handles = monitor.handles(million_ids)
    yield request.param, monitor, clock, handles
    monitor.shutdown()


def _heartbeats(benchmark: Any, swarm: Any, report: Any, what: str, target: float) -> None:
    engine, monitor, clock, handles = swarm
    ids = monitor.agent_ids(handles) if what == "ids" else None
    arg = handles if what == "handles" else ids
    masks = []

    def run() -> None:
        masks.append(monitor.record_heartbeats(arg))

    rounds = 5 if engine == "compiled" else 2
    # one warm-up round: the first write to each history ring page-faults it in
    benchmark.pedantic(run, setup=lambda: clock.advance(0.001), rounds=rounds, iterations=1,
                       warmup_rounds=1)
    assert all(m.all() for m in masks)
    benchmark.extra_info["heartbeats_per_call"] = MILLION
    rate = MILLION / (per_call_ns(benchmark, 1) / 1e9)
    report(f"record_heartbeats, 10^6 agents, {what} (heartbeats/s)", engine, rate, "/s",
           target if engine == "compiled" else None, lower_is_better=False)


def test_record_heartbeats_handles(benchmark: Any, swarm: Any, report: Any) -> None:
    _heartbeats(benchmark, swarm, report, "handles", 20e6)


def test_record_heartbeats_ids(benchmark: Any, swarm: Any, report: Any) -> None:
    _heartbeats(benchmark, swarm, report, "ids", 3e6)


# ---------------------------------------------------------------------------------------
# interval_stats and snapshot on full histories
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=ENGINES)
def filled(request: pytest.FixtureRequest) -> Any:
    """A monitor whose agents each hold SAMPLES heartbeats (full rings), recorded with
    record_heartbeats and explicit timestamps (jittered ~1 s intervals, well inside the
    5 s interval: no crossings, so no per-agent WARNING lines piling up in pytest's log
    capture)."""
    engine = request.param
    n = STATS_AGENTS[engine]
    monitor, clock = _monitor(engine, interval_ms=5000, history_size=SAMPLES)
    ids = ids_for(n)
    monitor.start_monitoring_many(ids)
    handles = monitor.handles(ids)
    clock.advance(SAMPLES * 2.0)
    now = clock.time()
    rng = np.random.default_rng(42)
    stamps = now - SAMPLES * 1.5 + rng.uniform(0.0, 0.3, n)
    for _ in range(SAMPLES):
        assert monitor.record_heartbeats(handles, stamps).all()
        stamps = stamps + rng.uniform(0.8, 1.2, n)
    clock.advance(0.5)
    assert monitor.get_monitoring_stats()["transitions"] == 0
    yield engine, n, monitor
    monitor.shutdown()


def test_interval_stats(benchmark: Any, filled: Any, report: Any) -> None:
    engine, n, monitor = filled
    out = benchmark.pedantic(monitor.interval_stats, rounds=3 if engine == "compiled" else 2,
                             iterations=1, warmup_rounds=1)
    assert len(out) == n and (out["count"] == SAMPLES - 1).all()
    benchmark.extra_info.update(agents=n, samples=SAMPLES)
    ns = per_call_ns(benchmark, 1)
    report("interval_stats x 100 samples (ns/agent) [compiled 10^6, pure 10^5 agents]",
           engine, ns / n, "ns")
    if engine == "compiled":
        report("interval_stats, 10^6 agents x 100 samples (s)", engine, ns / 1e9, "s", 0.5)


def test_snapshot_with_phi(benchmark: Any, filled: Any, report: Any) -> None:
    engine, n, monitor = filled
    snap = benchmark.pedantic(monitor.snapshot, rounds=3 if engine == "compiled" else 2,
                              iterations=1, warmup_rounds=1)
    assert len(snap) == n and np.isfinite(snap.phi).all()
    benchmark.extra_info.update(agents=n, samples=SAMPLES)
    ns = per_call_ns(benchmark, 1)
    if engine == "compiled":
        report("snapshot with phi, 10^6 agents x 100 samples (s)", engine, ns / 1e9, "s")
    report("snapshot with phi x 100 samples (ns/agent) [compiled 10^6, pure 10^5 agents]",
           engine, ns / n, "ns")


# ---------------------------------------------------------------------------------------
# Batch alert delivery
# ---------------------------------------------------------------------------------------

def test_batch_alert_delivery(benchmark: Any, engine: str, report: Any) -> None:
    """10^5 agents, all CRITICAL, cross into FAILED in one advance; the figure is the time
    from the advance() call to the batch callback's receipt of the AlertBatch. Per-agent
    alerts are disabled (with none configured, Part A logs one WARNING per agent)."""
    monitor, clock = _monitor(engine, interval_ms=1000, failure_threshold=3, history_size=2)
    ids = ids_for(ALERT_AGENTS)
    monitor.start_monitoring_many(ids)
    handles = monitor.handles(ids)
    monitor.configure_alerts(on_degraded=False, on_critical=False, on_failed=False)
    state: dict[str, Any] = {"armed": False, "t0": 0.0}
    latencies: list[float] = []
    sizes: list[int] = []

    def on_batch(batch: Any) -> None:
        if state["armed"]:
            latencies.append(time.perf_counter() - state["t0"])
            sizes.append(int((batch.current == 3).sum()))

    monitor.configure_alerts(batch_callback=on_batch)

    def setup() -> None:
        state["armed"] = False
        monitor.record_heartbeats(handles)           # all healthy again (recoveries)
        base = clock.now
        monitor.advance(to=base + 2.5)               # all CRITICAL
        state["to"] = base + 3.0

    def run() -> None:
        state["armed"] = True
        state["t0"] = time.perf_counter()
        monitor.advance(to=state["to"])

    rounds = 5 if engine == "compiled" else 3
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    monitor.shutdown()
    # one callback per advance, each with every agent's FAILED crossing
    assert sizes == [ALERT_AGENTS] * (rounds + 1)
    benchmark.extra_info["agents"] = ALERT_AGENTS
    report("batch alert delivery, 10^5 agents failing at once (ms)", engine,
           statistics.median(latencies) * 1e3, "ms", 100.0 if engine == "compiled" else None)
    report("advance() with 10^5 FAILED crossings, total (ms)", engine,
           per_call_ns(benchmark, 1) / 1e6, "ms")
