"""Capacity planning: how many agents one monitor can watch, at which interval, for how much
CPU and memory, and how late it notices a failure.

For each (agent count N, interval I) point, in **virtual time** (a `VirtualClock`, no thread):
N agents are registered with interval I and heartbeat every `HEARTBEAT_FRACTION` x I (so a
healthy agent never crosses I), their phases spread evenly. The clock moves one tick at a
time; at each tick the agents due send their heartbeat, then `advance()` runs the wheel.
After a warm-up of I + one heartbeat period, at least two heartbeat periods (and at least
`MIN_MEASURED` heartbeats) are measured:

- `heartbeat_cost_ns`: CPU time per `record_heartbeat` call, from a Python loop (less the
  cost of reading the timer around each tick's loop). CPU time is this thread's
  (`time.thread_time`, where it has a fine resolution; wall time otherwise): time spent
  waiting while other processes had the CPU is not counted;
- `wheel_cpu_per_s`: CPU time spent in `advance()` per simulated second, less the timer's
  cost: the work of the monitor's wheel thread (`advance()` is called every tick, the most
  often the real thread wakes); with the wheel operations per second and the cost per
  operation where the engine counts them (`wheel_ops`);
- both are the median over the measured heartbeat periods (a period's total divided by
  its heartbeats, or by its simulated seconds), so that a burst of interference does not
  skew them; the plain means are in the JSON too (`mean_heartbeat_cost_ns`,
  `mean_wheel_cpu_per_s`);
- `cpu_share`: (heartbeats per second x heartbeat cost + wheel time per second), as a
  fraction of one core;
- `memory_bytes_per_agent`: bytes allocated (tracemalloc) by the monitor holding N agents
  after their first heartbeat, with `history_size` slots each, divided by N; the agent-id
  objects themselves, which belong to the caller, are not counted.

Per agent count, in **real time** (system clock, the real background threads):
`latency_sample` probe agents (interval 100 ms) are added to a monitor holding the N agents
(heartbeated once, interval 60 s, so the wheel holds N pending deadlines); each probe
heartbeats once and goes silent, and the latency of each of its crossings (callback time
minus deadline) is recorded.

The wheel's **fixed cost** (`measure_fixed`): `advance()` every tick on a monitor with no
agent, measured the same way; it is paid once per monitor whatever the agent count.

**The answer** for each interval I and a CPU budget B (percent of one core) is made in
`_capacity_report.answers`: each agent costs ``heartbeat_cost / (HEARTBEAT_FRACTION x I) +
(wheel_cpu_per_s - fixed) / N`` of a core, so one monitor can watch
``N_max = (B / 100 - fixed) / that``, from a point large enough for the per-agent cost to
show through the fixed one.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core._clock import VirtualClock
from ..core._monitor import HeartbeatMonitor
from ..core._rules import crossing_schedule
from ._capacity_report import answers, format_result
from ._report import percentile
from ._screen import Progress

__all__ = ["CapacityConfig", "measure_fixed", "measure_latency", "measure_point", "run"]

_NS = 1_000_000_000
HEARTBEAT_FRACTION = 0.8
MIN_MEASURED = 50_000          # heartbeats measured per point, at least
FIXED_TICKS, FIXED_BLOCKS = 1_000, 9


def _cpu_clock() -> tuple[Any, str]:
    """This thread's CPU time when the platform measures it finely, else wall time."""
    try:
        if time.get_clock_info("thread_time").resolution <= 1e-6:
            return time.thread_time, "thread_time"
    except (AttributeError, ValueError, OSError):
        pass
    return time.perf_counter, "perf_counter"


CPU_CLOCK, CPU_CLOCK_NAME = _cpu_clock()
PROBE_INTERVAL_MS = 100
BALLAST_INTERVAL_MS = 60_000
DEFAULT_AGENTS = [1_000, 10_000, 100_000, 1_000_000]
QUICK_AGENTS = [200, 2_000]
DEFAULT_INTERVALS = [1.0, 5.0, 30.0]
QUICK_INTERVALS = [1.0]

# Keys of the JSON file (documented in the README).
POINT_KEYS = ("agents", "interval_s", "heartbeat_period_s", "heartbeats_measured",
              "heartbeat_cost_ns", "heartbeats_per_s", "wheel_cpu_per_s", "wheel_ops_per_s",
              "wheel_op_cost_ns", "mean_heartbeat_cost_ns", "mean_wheel_cpu_per_s",
              "timer_overhead_ns", "periods_measured", "cpu_share", "memory_bytes_per_agent",
              "rss_bytes_per_agent", "transitions", "latency_ms")


@dataclass
class CapacityConfig:
    agents: list[int] = field(default_factory=lambda: list(DEFAULT_AGENTS))
    intervals: list[float] = field(default_factory=lambda: list(DEFAULT_INTERVALS))
    cpu_budget: float = 1.0          # percent of one core
    threshold: int = 3
    history_size: int = 100
    tick_ms: int = 10
    engine: str = "auto"
    latency_sample: int = 200
    quick: bool = False

    @classmethod
    def from_args(cls, *, agents: list[int] | None = None, max_agents: int | None = None,
                  intervals: list[float] | None = None, cpu_budget: float = 1.0,
                  threshold: int = 3, history_size: int = 100, tick_ms: int = 10,
                  engine: str = "auto", latency_sample: int | None = None,
                  quick: bool = False) -> CapacityConfig:
        if agents is None:
            if max_agents is not None:
                n = 100 if quick or max_agents < 1000 else 1000
                agents = []
                while n < max_agents:
                    agents.append(n)
                    n *= 10
                agents.append(max_agents)
            else:
                agents = list(QUICK_AGENTS if quick else DEFAULT_AGENTS)
        if intervals is None:
            intervals = list(QUICK_INTERVALS if quick else DEFAULT_INTERVALS)
        if latency_sample is None:
            latency_sample = 50 if quick else 200
        return cls(agents=sorted(set(agents)), intervals=sorted(set(intervals)),
                   cpu_budget=cpu_budget, threshold=threshold, history_size=history_size,
                   tick_ms=tick_ms, engine=engine, latency_sample=latency_sample, quick=quick)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _ids(n: int) -> list[str]:
    return [f"agent-{i}" for i in range(n)]


def measure_point(ids: list[str], interval_s: float, config: CapacityConfig,
                  progress: Progress, *, memory: bool) -> dict[str, Any]:
    """One (N, interval) point in virtual time (see the module docstring)."""
    n = len(ids)
    tick = config.tick_ms * 1_000_000
    interval_ms = round(interval_s * 1000)
    period = max(tick, round(interval_ms * 1_000_000 * HEARTBEAT_FRACTION / tick) * tick)
    steps = period // tick                      # ticks per heartbeat period
    bounds = [round(k * n / steps) for k in range(steps + 1)]
    warm_steps = -(-(interval_ms * 1_000_000 + period) // tick)
    # At least two heartbeat periods, and enough heartbeats that a stray millisecond of
    # scheduling noise does not show in the per-heartbeat cost.
    measure_steps = max(2, -(-MIN_MEASURED // n)) * steps
    label = f"{n:,} agents, interval {interval_s:g} s"

    gc.collect()
    timer = _timer_overhead()      # before tracemalloc, which slows the timer's floats
    rss0 = _rss_bytes()
    if memory:
        tracemalloc.start()
    clock = VirtualClock(start=1000.0)
    t0_ns = clock.monotonic_ns()
    monitor = HeartbeatMonitor(interval_ms, config.threshold, config.history_size,
                               tick_ms=config.tick_ms, clock=clock, engine=config.engine)
    progress.set_label(f"{label}: registering")
    start = monitor.start_monitoring
    for i, aid in enumerate(ids):
        start(aid)
        if i & 0xFFFF == 0xFFFF:
            progress.step(0x10000)
    progress.step(n & 0xFFFF)
    record = monitor.record_heartbeat
    engine = monitor._engine
    hb_time = wheel_time = 0.0
    hb_count = 0
    blocks: list[tuple[float, float]] = []   # per heartbeat period: (s per heartbeat, wheel s)
    block_hb = block_wheel = 0.0
    ops0 = ops1 = None
    mem_bytes = rss_bytes = None
    perf = CPU_CLOCK
    progress.set_label(f"{label}: heartbeats")
    for s in range(warm_steps + measure_steps):
        if s == steps and memory:
            # Every agent has heartbeated once: this is the monitor's resident size.
            mem_bytes, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss1 = _rss_bytes()
            rss_bytes = None if rss0 is None or rss1 is None else rss1 - rss0
        if s == warm_steps:
            ops0 = getattr(engine, "wheel_ops", None)
        clock.set((t0_ns + (s + 1) * tick) / _NS)
        k = s % steps
        chunk = ids[bounds[k]:bounds[k + 1]]
        if chunk:
            a = perf()
            for aid in chunk:
                record(aid)
            b = perf()
            dt = max(0.0, b - a - timer)
        else:
            b, dt = perf(), 0.0
        monitor.advance()
        c = perf()
        if s >= warm_steps:
            dw = max(0.0, c - b - timer)
            hb_time += dt
            hb_count += len(chunk)
            wheel_time += dw
            block_hb += dt
            block_wheel += dw
            if k == steps - 1:
                blocks.append((block_hb / n, block_wheel))
                block_hb = block_wheel = 0.0
        if s % 64 == 63:
            progress.step(n * 64 / steps)
    progress.step(n * ((warm_steps + measure_steps) % 64) / steps)
    ops1 = getattr(engine, "wheel_ops", None)
    if memory and tracemalloc.is_tracing():
        tracemalloc.stop()
    stats = monitor.get_monitoring_stats()
    monitor.shutdown()
    del monitor, engine, record, start
    gc.collect()
    sim_s = measure_steps * tick / _NS
    # The median heartbeat period: robust to other processes taking the CPU for a while.
    hb_cost = _median([b[0] for b in blocks])
    wheel_per_s = _median([b[1] for b in blocks]) / (period / _NS)
    hb_per_s = n / (period / _NS)
    ops_per_s = None if ops0 is None or ops1 is None else (ops1 - ops0) / sim_s
    return {
        "agents": n,
        "interval_s": interval_s,
        "heartbeat_period_s": period / _NS,
        "heartbeats_measured": hb_count,
        "heartbeat_cost_ns": hb_cost * 1e9,
        "heartbeats_per_s": hb_per_s,
        "wheel_cpu_per_s": wheel_per_s,
        "wheel_ops_per_s": ops_per_s,
        "wheel_op_cost_ns": (wheel_per_s / ops_per_s * 1e9 if ops_per_s else None),
        "mean_heartbeat_cost_ns": hb_time / hb_count * 1e9 if hb_count else None,
        "timer_overhead_ns": timer * 1e9,
        "periods_measured": len(blocks),
        "mean_wheel_cpu_per_s": wheel_time / sim_s,
        "cpu_share": hb_per_s * hb_cost + wheel_per_s,
        "memory_bytes_per_agent": None if mem_bytes is None else mem_bytes / n,
        "rss_bytes_per_agent": None if rss_bytes is None else rss_bytes / n,
        "transitions": stats["transitions"],
        "latency_ms": None,
    }


def _timer_overhead() -> float:
    """Seconds that a pair of CPU_CLOCK() calls around an empty loop costs (median)."""
    perf = CPU_CLOCK
    empty: list[str] = []
    samples = []
    for _ in range(2001):
        a = perf()
        for _aid in empty:
            pass
        samples.append(perf() - a)
    return _median(samples)


def measure_fixed(config: CapacityConfig) -> float:
    """CPU seconds per simulated second of the wheel with no agent: `advance()` every tick,
    bracketed as in `measure_point` (the median of FIXED_BLOCKS blocks of FIXED_TICKS,
    after one block of warm-up)."""
    tick = config.tick_ms * 1_000_000
    timer = _timer_overhead()
    clock = VirtualClock(start=1000.0)
    t0_ns = clock.monotonic_ns()
    monitor = HeartbeatMonitor(1000, config.threshold, config.history_size,
                               tick_ms=config.tick_ms, clock=clock, engine=config.engine)
    perf = CPU_CLOCK
    blocks: list[float] = []
    s = 0
    try:
        for _ in range(FIXED_BLOCKS + 1):
            total = 0.0
            for _ in range(FIXED_TICKS):
                s += 1
                clock.set((t0_ns + s * tick) / _NS)
                b = perf()
                monitor.advance()
                total += max(0.0, perf() - b - timer)
            blocks.append(total)
    finally:
        monitor.shutdown()
    return _median(blocks[1:]) / (FIXED_TICKS * tick / _NS)


def measure_latency(ids: list[str], config: CapacityConfig, progress: Progress
                    ) -> dict[str, Any] | None:
    """Real-time detection latency of `latency_sample` silent probes among N agents."""
    sample = config.latency_sample
    if sample <= 0:
        return None
    n = len(ids)
    progress.set_label(f"{n:,} agents: detection latency (real time)")
    monitor = HeartbeatMonitor(BALLAST_INTERVAL_MS, config.threshold, config.history_size,
                               tick_ms=config.tick_ms, engine=config.engine)
    try:
        for aid in ids:
            monitor.start_monitoring(aid)
        for aid in ids:
            monitor.record_heartbeat(aid)
        progress.step(n)
        got: list[float] = []
        lock = threading.Lock()
        expected = sample * len(crossing_schedule(config.threshold))
        done = threading.Event()

        def on_alert(agent_id: Any, state: Any, details: dict[str, Any]) -> None:
            late = time.monotonic() - details["deadline_monotonic"]
            if isinstance(agent_id, tuple):
                with lock:
                    got.append(late)
                    if len(got) >= expected:
                        done.set()

        monitor.configure_alerts(True, True, True, on_alert, on_alert, on_alert)
        probes = [("probe", i) for i in range(sample)]
        for p in probes:
            monitor.start_monitoring(p, PROBE_INTERVAL_MS)
        spread = PROBE_INTERVAL_MS / 1000 / sample
        for p in probes:            # staggered, so deadlines fall all over the tick
            monitor.record_heartbeat(p)
            time.sleep(spread)
        last = PROBE_INTERVAL_MS / 1000 * max(config.threshold, 2)
        done.wait(last + 2.0)
        with lock:
            values = list(got)
    finally:
        monitor.shutdown()
    del monitor
    gc.collect()
    return {
        "samples": len(values),
        "expected": expected,
        "p50": _ms(percentile(values, 50)),
        "p99": _ms(percentile(values, 99)),
        "max": _ms(percentile(values, 100)),
    }


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def machine() -> dict[str, Any]:
    import numpy

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(config: CapacityConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole sweep; returns the JSON-able result."""
    from .. import __version__

    progress = progress or Progress(None, enabled=False)
    per_interval = 6.0
    total = sum(n * (per_interval * len(config.intervals) + (2 if config.latency_sample else 0))
                for n in config.agents)
    progress.start(total)
    points: list[dict[str, Any]] = []
    latencies: list[dict[str, Any]] = []
    engine_name = None
    wall0 = time.perf_counter()
    try:
        progress.set_label("the wheel's fixed cost")
        fixed = measure_fixed(config)
        for n in config.agents:
            ids = _ids(n)
            latency = measure_latency(ids, config, progress)
            if latency is not None:
                latencies.append({"agents": n, **latency})
            for j, interval in enumerate(config.intervals):
                point = measure_point(ids, interval, config, progress, memory=(j == 0))
                if j > 0:   # memory does not depend on the interval: measured once per N
                    first = next(p for p in points if p["agents"] == n)
                    point["memory_bytes_per_agent"] = first["memory_bytes_per_agent"]
                    point["rss_bytes_per_agent"] = first["rss_bytes_per_agent"]
                point["latency_ms"] = latency
                points.append(point)
            del ids
            gc.collect()
        # Measured again at the end, the lower kept: a cold start only makes it look larger.
        fixed = min(fixed, measure_fixed(config))
        if engine_name is None:
            engine_name = HeartbeatMonitor(clock=VirtualClock(), engine=config.engine).engine_name
    finally:
        progress.close()
    return {
        "version": 2,
        "moai_flow_fast": __version__,
        "engine": engine_name,
        "machine": machine(),
        "parameters": {**asdict(config), "heartbeat_fraction": HEARTBEAT_FRACTION,
                       "probe_interval_ms": PROBE_INTERVAL_MS, "timer": CPU_CLOCK_NAME},
        "fixed_cpu_per_s": fixed,
        "points": points,
        "latency": latencies,
        "answers": answers(points, config, fixed),
        "elapsed_s": time.perf_counter() - wall0,
    }


if __name__ == "__main__":  # pragma: no cover
    out = run(CapacityConfig.from_args(quick=True), Progress(sys.stderr))
    print("\n".join(format_result(out)))
