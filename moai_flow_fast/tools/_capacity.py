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

**The answer** for each interval I and a CPU budget B (percent of one core): each agent
costs ``heartbeat_cost / (HEARTBEAT_FRACTION x I) + wheel_cpu_per_s / N`` of a core, so one
monitor can watch ``N_max = B / 100 / that``, with the costs measured at the smallest N
whose CPU share is over the budget (see `answers`). It is labelled an extrapolation when
N_max is outside the measured range.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from ..core._clock import VirtualClock
from ..core._monitor import HeartbeatMonitor
from ._report import percentile

__all__ = ["CapacityConfig", "Progress", "format_result", "have_matplotlib", "plot", "run"]

_NS = 1_000_000_000
HEARTBEAT_FRACTION = 0.8
MIN_MEASURED = 50_000          # heartbeats measured per point, at least


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


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


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


class Progress:
    """A progress bar on stderr, shown only once a sweep has run for `after` seconds.
    On a terminal it redraws one line; otherwise it prints a line every 5 seconds."""

    def __init__(self, stream: TextIO | None, *, enabled: bool = True, after: float = 2.0
                 ) -> None:
        self.stream = stream
        self.enabled = enabled and stream is not None
        self.after = after
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.total = 1.0
        self.done = 0.0
        self.label = ""
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.shown = False

    def start(self, total: float) -> None:
        self.total, self.done, self.t0 = max(total, 1.0), 0.0, time.perf_counter()

    def step(self, units: float, label: str | None = None) -> None:
        self.done += units
        if label is not None:
            self.label = label
        self._draw()

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or self.stream is None:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if elapsed < self.after and not force:
            return
        if not force and now - self.last_draw < (0.2 if self.tty else 5.0):
            return
        self.last_draw = now
        frac = min(1.0, self.done / self.total)
        eta = elapsed * (1 - frac) / frac if frac > 0.01 else None
        eta_text = f"ETA {eta:4.0f} s" if eta is not None else "ETA    ? s"
        if self.tty:
            width = 28
            bar = "#" * round(frac * width) + "." * (width - round(frac * width))
            self.stream.write(f"\r\x1b[2Kcapacity [{bar}] {frac * 100:3.0f}%  {eta_text}  "
                              f"{self.label}")
        else:
            self.stream.write(f"capacity: {frac * 100:3.0f}% ({eta_text}) {self.label}\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty and self.stream is not None:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


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
        expected = sample * len(_mults(config.threshold))
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


def _mults(threshold: int) -> list[int]:
    return [1, 2, threshold] if threshold > 2 else [1, 2]


def _per_agent(p: dict[str, Any]) -> float:
    """Seconds of CPU per second per agent at a measured point."""
    return float(p["heartbeat_cost_ns"] / 1e9 / p["heartbeat_period_s"]
                 + p["wheel_cpu_per_s"] / p["agents"])


def answers(points: list[dict[str, Any]], config: CapacityConfig) -> list[dict[str, Any]]:
    """'At interval X with a CPU budget of Y % of a core, one monitor can watch N agents.'

    N = budget / (CPU per agent), with the CPU per agent measured at the smallest agent
    count whose CPU share is over the budget (per-agent costs grow with the agent count,
    as caches stop holding the tables, so this errs on the safe side), and never less than
    a measured count that was within the budget. When every measured count is within the
    budget, the costs of the largest are extrapolated beyond it.
    """
    out = []
    budget = config.cpu_budget / 100
    for interval in config.intervals:
        pts = sorted((p for p in points if p["interval_s"] == interval),
                     key=lambda p: p["agents"])
        if not pts:
            continue
        over = [p for p in pts if p["cpu_share"] > budget]
        if over:
            basis = over[0]
            under = [p for p in pts if p["agents"] < basis["agents"]
                     and p["cpu_share"] <= budget]
        else:
            basis, under = pts[-1], []
        per_agent = _per_agent(basis)
        n_max = int(budget / per_agent) if per_agent > 0 else 0
        if under:
            n_max = max(n_max, under[-1]["agents"])
            extrapolated = False
            note = (f"between the measured {under[-1]['agents']:,} and {basis['agents']:,} "
                    f"agents, with the costs measured at {basis['agents']:,}")
        elif over:
            extrapolated = True
            note = (f"extrapolated below the smallest measured count, from the costs at "
                    f"{basis['agents']:,} agents")
        else:
            extrapolated = True
            note = (f"extrapolated beyond the largest measured count, from the costs at "
                    f"{basis['agents']:,} agents")
        mem = basis["memory_bytes_per_agent"]
        text = (f"At interval {interval:g} s with a CPU budget of {config.cpu_budget:g}% "
                f"of a core, one monitor can watch {_round_sig(n_max):,} agents"
                + (f" (~{_bytes(mem * n_max)} of memory)" if mem else "") + ".")
        out.append({
            "interval_s": interval,
            "cpu_budget_percent": config.cpu_budget,
            "max_agents": n_max,
            "basis_agents": basis["agents"],
            "cpu_per_agent": per_agent,
            "extrapolated": extrapolated,
            "note": note,
            "text": text,
        })
    return out


def _round_sig(n: int, digits: int = 2) -> int:
    if n <= 0:
        return 0
    scale = int(10 ** max(0, len(str(n)) - digits))
    return (n // scale) * scale


def _short(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:g}{suffix}" if v == int(v) or v >= 10 else f"{v:.1f}{suffix}"
    return str(n)


def _bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 1024 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TB"


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
        if engine_name is None:
            engine_name = HeartbeatMonitor(clock=VirtualClock(), engine=config.engine).engine_name
    finally:
        progress.close()
    return {
        "version": 1,
        "moai_flow_fast": __version__,
        "engine": engine_name,
        "machine": machine(),
        "parameters": {**asdict(config), "heartbeat_fraction": HEARTBEAT_FRACTION,
                       "probe_interval_ms": PROBE_INTERVAL_MS, "timer": CPU_CLOCK_NAME},
        "points": points,
        "latency": latencies,
        "answers": answers(points, config),
        "elapsed_s": time.perf_counter() - wall0,
    }


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def format_result(result: dict[str, Any]) -> list[str]:
    p = result["parameters"]
    m = result["machine"]
    lines = [
        f"Capacity of one monitor: engine {result['engine']}, threshold {p['threshold']}, "
        f"history_size {p['history_size']}, tick {p['tick_ms']} ms",
        f"Machine: {m['processor']}, {m['cpus']} CPUs, Python {m['python']}",
        "Virtual time: agents heartbeat every "
        f"{p['heartbeat_fraction']:g} x interval; costs are "
        + ("CPU time (thread_time)" if p.get("timer") == "thread_time" else "wall time")
        + " per call from Python.",
        "",
        f"{'agents':>10} {'interval':>9} {'hb/s':>10} {'ns/hb':>7} {'wheel ms/s':>11} "
        f"{'ns/op':>6} {'CPU %':>7} {'B/agent':>8}   {'latency ms p50/p99/max':>22}",
    ]
    for pt in result["points"]:
        lat = pt["latency_ms"]
        lat_text = ("-" if not lat or lat["p50"] is None
                    else f"{lat['p50']:.1f}/{lat['p99']:.1f}/{lat['max']:.1f}")
        lines.append(
            f"{pt['agents']:>10,} {pt['interval_s']:>8g}s {pt['heartbeats_per_s']:>10,.0f} "
            f"{pt['heartbeat_cost_ns']:>7.0f} {pt['wheel_cpu_per_s'] * 1e3:>11.3f} "
            f"{_fmt(pt['wheel_op_cost_ns'], '>6.0f')} {pt['cpu_share'] * 100:>7.3f} "
            f"{_fmt(pt['memory_bytes_per_agent'], '>8.0f')}   {lat_text:>22}")
    lines += [
        "",
        "ns/hb: CPU ns per record_heartbeat; wheel ms/s: CPU ms in advance() per simulated second "
        "(ns/op: per wheel operation);",
        "CPU %: share of one core for heartbeats + wheel; B/agent: tracemalloc bytes per agent; "
        "latency: real time,",
        f"{p['latency_sample']} silent probe agents (interval {p['probe_interval_ms']} ms) "
        "among the N agents, callback time - deadline.",
        "",
        f"Answers (CPU budget / CPU per agent, from the measured costs; "
        f"budget {p['cpu_budget']:g}% of one core):",
    ]
    for ans in result["answers"]:
        lines.append(f"  {ans['text']}")
        lines.append(f"      [{ans['note']}]")
    lines.append(f"Sweep took {result['elapsed_s']:.1f} s.")
    return lines


def plot(result: dict[str, Any], path: str) -> None:
    """A PNG of cost per heartbeat, CPU share and memory per agent against agent count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    intervals = sorted({p["interval_s"] for p in points})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for interval in intervals:
        pts = sorted((p for p in points if p["interval_s"] == interval), key=lambda p: p["agents"])
        xs = [p["agents"] for p in pts]
        axes[0].plot(xs, [p["heartbeat_cost_ns"] for p in pts], marker="o",
                     label=f"interval {interval:g} s")
        axes[1].plot(xs, [p["cpu_share"] * 100 for p in pts], marker="o",
                     label=f"interval {interval:g} s")
    mem = sorted({p["agents"]: p["memory_bytes_per_agent"] for p in points
                  if p["memory_bytes_per_agent"] is not None}.items())
    axes[2].plot([m[0] for m in mem], [m[1] for m in mem], marker="o", color="tab:green")
    axes[0].set_title("cost per heartbeat")
    axes[0].set_ylabel("ns per record_heartbeat")
    axes[1].set_title("CPU share (heartbeats + wheel)")
    axes[1].set_ylabel("% of one core")
    axes[1].set_yscale("log")
    axes[2].set_title(f"memory per agent (history_size {result['parameters']['history_size']})")
    axes[2].set_ylabel("bytes (tracemalloc)")
    from matplotlib.ticker import NullFormatter

    counts = sorted({p["agents"] for p in points})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("agents")
        ax.set_xticks(counts)
        ax.set_xticklabels([_short(n) for n in counts])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    axes[0].legend()
    axes[1].legend()
    budget = result["parameters"]["cpu_budget"]
    axes[1].axhline(budget, color="tab:red", linestyle="--", linewidth=1)
    axes[1].text(xs[0] if xs else 1, budget, f" budget {budget:g}%", color="tab:red",
                 va="bottom")
    fig.suptitle(f"moai-flow-fast capacity ({result['engine']} engine, "
                 f"{result['machine']['processor']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    out = run(CapacityConfig.from_args(quick=True), Progress(sys.stderr))
    print("\n".join(format_result(out)))
