"""Detection latency in real time: callback time minus the threshold deadline.

100,000 agents are monitored (their wheel entries armed) while a load thread keeps them
heartbeating; 1,000 probe agents heartbeat once at staggered times and go silent. Every
probe's DEGRADED callback measures time.monotonic() - its deadline.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import numpy as np
from bench_utils import ids_for

from moai_flow_fast import HeartbeatMonitor

TICK_MS = 10


def _run(n: int, probes: int) -> np.ndarray:
    monitor = HeartbeatMonitor(interval_ms=60_000, tick_ms=TICK_MS, engine="compiled")
    ids = ids_for(n)
    for agent_id in ids:
        monitor.start_monitoring(agent_id)
        monitor.record_heartbeat(agent_id)
    latencies: list[float] = []
    done = threading.Event()

    def on_degraded(agent_id: Any, state: Any, details: dict[str, Any]) -> None:
        if str(agent_id).startswith("probe"):
            latencies.append(time.monotonic() - details["deadline_monotonic"])
            if len(latencies) == probes:
                done.set()

    monitor.configure_alerts(degraded_callback=on_degraded)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for agent_id in ids[:20_000]:
                monitor.record_heartbeat(agent_id)
            time.sleep(0.001)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    rng = np.random.default_rng(3)
    for i in range(probes):
        probe = f"probe-{i}"
        monitor.start_monitoring(probe, interval_ms=int(rng.integers(100, 400)))
        monitor.record_heartbeat(probe)
        time.sleep(0.0005)
    done.wait(10)
    stop.set()
    loader.join()
    monitor.shutdown()
    assert len(latencies) == probes, f"only {len(latencies)} of {probes} probes detected"
    return np.array(latencies) * 1e3


def test_detection_latency(benchmark: Any, report: Any) -> None:
    # Start from a clean heap: a full cyclic-GC pass holds the GIL for as long as the
    # process has objects, and that delay (not the wheel's) is what a later pass would add.
    gc.collect()
    result: list[np.ndarray] = []
    benchmark.pedantic(lambda: result.append(_run(100_000, 1000)), rounds=1, iterations=1)
    ms = result[0]
    p50, p99, worst = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
    benchmark.extra_info.update(p50_ms=p50, p99_ms=p99, max_ms=worst, tick_ms=TICK_MS)
    assert ms.min() >= 0, "a probe was reported before its deadline"
    report("detection latency p50, 100,000 agents (ms)", "compiled", p50, "ms")
    report("detection latency p99, 100,000 agents (ms)", "compiled", p99, "ms", 2 * TICK_MS + 5)
    report("detection latency max, 100,000 agents (ms)", "compiled", worst, "ms")
