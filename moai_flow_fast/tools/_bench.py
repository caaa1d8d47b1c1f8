"""Micro-benchmarks of the hot operations, compiled and pure engines side by side.

Every operation is timed per call from Python (the way an application calls it), on a
monitor in virtual time (no background thread, so nothing else competes for the GIL),
holding `agents` agents that have each heartbeated once. Each figure is the best of
`repeat` runs. Operations that cost O(agents) by design (`get_unhealthy_agents`,
`get_monitoring_stats`) are timed per call at that agent count.
"""

from __future__ import annotations

import gc
import importlib
import platform
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..core._clock import VirtualClock
from ..core._monitor import HeartbeatMonitor
from ..core._rules import HealthState

__all__ = ["NOTES", "OPERATIONS", "compiled_available", "format_result", "run"]

_NS = 1_000_000_000
INTERVAL_MS = 1000
SCALAR_CALLS = 100_000      # calls timed per run for the per-agent operations, at most

OPERATIONS = [
    ("start_monitoring", "per call"),
    ("record_heartbeat", "per call"),
    ("check_agent_health", "per call"),
    ("get_unhealthy_agents", "per call [1]"),
    ("get_monitoring_stats", "per call [1]"),
    ("advance: idle", "per call [2]"),
    ("advance: re-arm", "per agent [3]"),
    ("advance: expire", "per crossing [4]"),
    ("stop_monitoring", "per call"),
]
NOTES = [
    "[1] scans every agent, by design",
    "[2] nothing due",
    "[3] per agent whose deadline came up after a newer heartbeat (re-armed)",
    "[4] per crossing found and dispatched (alerts off)",
]


def compiled_available() -> bool:
    try:
        importlib.import_module("moai_flow_fast.core._engine_c")
    except ImportError:
        return False
    return True


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def bench_engine(engine: str, agents: int, repeat: int,
                 note: Callable[[str], None] | None = None) -> dict[str, float]:
    """Seconds per unit for each operation of OPERATIONS on `engine`."""
    perf = time.perf_counter
    out: dict[str, float] = {}
    ids = [f"agent-{i}" for i in range(agents)]
    calls = min(agents, SCALAR_CALLS)
    sample = ids[:calls]
    tick_s = 0.01

    def fresh() -> tuple[HeartbeatMonitor, VirtualClock]:
        clock = VirtualClock(start=1000.0)
        m = HeartbeatMonitor(INTERVAL_MS, 3, 10, clock=clock, engine=engine)
        m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False)
        return m, clock

    def say(text: str) -> None:
        if note is not None:
            note(f"{engine}: {text}")

    # start_monitoring / stop_monitoring on fresh monitors.
    say("start_monitoring")

    def start_stop() -> tuple[float, float]:
        m, _ = fresh()
        start = m.start_monitoring
        a = perf()
        for aid in ids:
            start(aid)
        b = perf()
        stop = m.stop_monitoring
        c = perf()
        for aid in ids:
            stop(aid)
        d = perf()
        m.shutdown()
        return (b - a) / agents, (d - c) / agents

    runs = [start_stop() for _ in range(repeat)]
    out["start_monitoring"] = min(r[0] for r in runs)
    out["stop_monitoring"] = min(r[1] for r in runs)
    gc.collect()

    m, clock = fresh()
    for aid in ids:
        m.start_monitoring(aid)
    record = m.record_heartbeat
    for aid in ids:
        record(aid)

    say("record_heartbeat")

    def hb() -> float:
        clock.advance(tick_s)
        a = perf()
        for aid in sample:
            record(aid)
        return (perf() - a) / calls

    out["record_heartbeat"] = _best(hb, repeat)

    say("check_agent_health")
    check = m.check_agent_health

    def chk() -> float:
        a = perf()
        for aid in sample:
            check(aid)
        return (perf() - a) / calls

    out["check_agent_health"] = _best(chk, repeat)

    say("get_unhealthy_agents, get_monitoring_stats")
    loops = max(1, min(200, 2_000_000 // agents))

    def unhealthy() -> float:
        a = perf()
        for _ in range(loops):
            m.get_unhealthy_agents(HealthState.DEGRADED)
        return (perf() - a) / loops

    def stats() -> float:
        a = perf()
        for _ in range(loops):
            m.get_monitoring_stats()
        return (perf() - a) / loops

    out["get_unhealthy_agents"] = _best(unhealthy, repeat)
    out["get_monitoring_stats"] = _best(stats, repeat)

    say("advance")

    def idle() -> float:
        n = 2000
        a = perf()
        for _ in range(n):
            m.advance()
        return (perf() - a) / n

    out["advance: idle"] = _best(idle, repeat)

    # Re-arm: everyone heartbeats at t, then again at t + I/2; at t + I every deadline comes
    # up, finds a newer heartbeat and is re-armed: no crossing.
    def rearm() -> float:
        for aid in ids:
            record(aid)
        clock.advance(INTERVAL_MS / 2000)
        for aid in ids:
            record(aid)
        clock.advance(INTERVAL_MS / 2000)
        a = perf()
        found = m.advance()
        t = perf() - a
        assert found == 0, found
        return t / agents

    out["advance: re-arm"] = _best(rearm, repeat)

    # Expire: everyone heartbeats at t; at t + I every agent crosses into DEGRADED.
    def expire() -> float:
        for aid in ids:
            record(aid)
        clock.advance(INTERVAL_MS / 1000 + tick_s)
        a = perf()
        found = m.advance()
        t = perf() - a
        assert found == agents, (found, agents)
        return t / agents

    out["advance: expire"] = _best(expire, repeat)
    m.shutdown()
    return out


def run(agents: int, engines: list[str], repeat: int = 3,
        progress: TextIO | None = None) -> dict[str, Any]:
    """Benchmarks on each engine; returns a JSON-able result (times in ns)."""
    wall = time.perf_counter()

    def note(text: str) -> None:
        if progress is not None:
            progress.write(f"bench: {text}...\n")
            progress.flush()

    results = {name: {k: v * 1e9 for k, v in bench_engine(name, agents, repeat, note).items()}
               for name in engines}
    return {
        "version": 1,
        "agents": agents,
        "repeat": repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "engines": engines,
        "ns": results,
        "elapsed_s": time.perf_counter() - wall,
    }


def _time(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def format_result(result: dict[str, Any]) -> list[str]:
    """The table, 80 columns wide for one or two engines."""
    engines = result["engines"]
    ns = result["ns"]
    lines = [f"moai-flow-fast bench: {result['agents']:,} agents, best of {result['repeat']}, "
             "per call from Python",
             f"Python {result['python']} ({result['machine']})", ""]
    head = f"{'operation':<22}" + "".join(f"{e:>11}" for e in engines)
    both = "compiled" in engines and "pure" in engines
    if both:
        head += f"{'pure/compiled':>15}"
    lines.append(head + "  unit")
    for op, unit in OPERATIONS:
        row = f"{op:<22}" + "".join(f"{_time(ns[e][op]):>11}" for e in engines)
        if both:
            c, p = ns["compiled"][op], ns["pure"][op]
            row += f"{(p / c if c else float('inf')):>14.1f}x"
        lines.append(row + f"  {unit}")
    lines += ["", *NOTES, "", f"Took {result['elapsed_s']:.1f} s."]
    return lines
