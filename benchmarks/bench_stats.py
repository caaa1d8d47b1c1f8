"""Interval statistics (issue 3, item 5; issue 11, item 4): 10^6 agents x 100 timestamps.

- through the monitor: ``HeartbeatMonitor.interval_stats()`` on a compiled monitor whose
  10^6 agents hold 100 heartbeats each, recorded in virtual time with record_heartbeats
  (target <= 500 ms; goal 300 ms); beside it the engine's own share, its copy of the rings
  with a kernel that does nothing, and ``phi()`` (Akka's windows, one more pass);
- the compiled kernel ``_stats_c.interval_stats`` alone at 10^6 agents, as shipped (split
  over the CPUs) and pinned to one thread;
- its pure twin ``_stats_py.interval_stats`` at 10^5 agents (about 4 s at 10^6), so the
  side-by-side figure is per agent;
- the plain numpy baseline (diff, mean, std, percentile along the rows of the unrolled
  10^6 x 100 history) at the same size as the compiled kernel.

Rings are full and wrapped at random heads, as a live monitor's are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bench_utils import per_call_ns

from moai_flow_fast import HeartbeatMonitor, VirtualClock
from moai_flow_fast.analytics import _stats_c as stats_c  # a missing build fails loudly
from moai_flow_fast.analytics import _stats_py as stats_py

AGENTS = 1_000_000
PURE_AGENTS = 100_000
SAMPLES = 100                       # timestamps per agent: 99 intervals
TARGET_MS = 500.0
GOAL_MS = 300.0
FIG_MONITOR = "interval_stats through the monitor, 10^6 agents x 100 (ms)"
# Figures of the session table (compiled and pure columns):
FIG_VS_NUMPY = "interval_stats 10^6 x 100 (ms) [pure column: plain numpy]"
FIG_PER_AGENT = "interval_stats per agent (ns) [pure twin at 10^5]"


@pytest.fixture(scope="module")
def rings() -> dict[str, Any]:
    rng = np.random.default_rng(2024)
    ring = 1.7e9 + np.cumsum(rng.exponential(1.0, (AGENTS, SAMPLES)), axis=1)
    heads = rng.integers(0, SAMPLES, AGENTS).astype(np.int32)
    # store each history rotated so that its oldest record sits at its head
    idx = (np.arange(SAMPLES)[None, :] - heads[:, None]) % SAMPLES
    ring = np.ascontiguousarray(np.take_along_axis(ring, idx, axis=1))
    return {
        "ring": ring,
        "heads": heads,
        "counts": np.full(AGENTS, SAMPLES, np.int32),
        "rows": np.arange(AGENTS, dtype=np.int64),
    }


@pytest.fixture(scope="module")
def monitor() -> Any:
    """A compiled monitor, 10^6 agents with full 100-record histories: record_heartbeats
    with explicit jittered timestamps about 1 s apart, in virtual time, well inside the 5 s
    interval (no crossings)."""
    clock = VirtualClock(start=1000.0)
    m = HeartbeatMonitor(interval_ms=5000, history_size=SAMPLES, clock=clock,
                         engine="compiled")
    ids = [f"agent-{i:07d}" for i in range(AGENTS)]
    m.start_monitoring_many(ids)
    handles = m.handles(ids)
    clock.advance(SAMPLES * 2.0)
    rng = np.random.default_rng(7)
    stamps = clock.time() - SAMPLES * 1.5 + rng.uniform(0.0, 0.3, AGENTS)
    for _ in range(SAMPLES):
        assert m.record_heartbeats(handles, stamps).all()
        stamps = stamps + rng.uniform(0.8, 1.2, AGENTS)
    clock.advance(0.5)
    yield m
    m.shutdown()


def test_interval_stats_through_monitor(benchmark: Any, monitor: Any, report: Any) -> None:
    out = benchmark.pedantic(monitor.interval_stats, rounds=7, iterations=1, warmup_rounds=1)
    assert len(out) == AGENTS and (out["count"] == SAMPLES - 1).all()
    # numpy's figures to the bit, on a sample of agents
    for i in (0, 123_457, AGENTS - 1):
        d = np.diff(monitor.history_array(f"agent-{i:07d}"))
        want = [d.mean(), d.std(), d.min(), d.max(), *np.percentile(d, [50, 95, 99]), d[-1]]
        assert [float(out[name][i]) for name in stats_c.COLUMNS[1:]] == want
    _info(benchmark, AGENTS, goal_ms=GOAL_MS)
    ms = per_call_ns(benchmark, 1) / 1e6
    benchmark.extra_info["min_ms"] = float(benchmark.stats.stats.min) * 1e3
    report(FIG_MONITOR, "compiled", ms, "ms", TARGET_MS)


def test_engine_copy_through_monitor(benchmark: Any, monitor: Any, report: Any) -> None:
    """The engine's share of the figure above: it copies the rings a block at a time under
    its lock (and scatters the kernel's rows); here the kernel does nothing."""
    engine = monitor._engine
    handles = engine.all_handles()

    def copy_only() -> Any:
        return engine.interval_stats(handles, -np.inf, np.inf, lambda *args, **kw: None)

    benchmark.pedantic(copy_only, rounds=5, iterations=1, warmup_rounds=1)
    _info(benchmark, AGENTS)
    report("  of which the engine's copy of the rings (ms)", "compiled",
           per_call_ns(benchmark, 1) / 1e6, "ms")


def test_phi_through_monitor(benchmark: Any, monitor: Any, report: Any) -> None:
    phi = benchmark.pedantic(monitor.phi, rounds=3, iterations=1, warmup_rounds=1)
    assert len(phi) == AGENTS and np.isfinite(phi).all()
    _info(benchmark, AGENTS)
    report("phi through the monitor (Akka windows), 10^6 x 100 (ms)", "compiled",
           per_call_ns(benchmark, 1) / 1e6, "ms")


def _info(benchmark: Any, agents: int, **extra: Any) -> None:
    benchmark.extra_info["agents"] = agents
    benchmark.extra_info["samples"] = SAMPLES
    benchmark.extra_info.update(extra)


def _threads(agents: int) -> int:
    return int(min(stats_c._cpus(), stats_c._MAX_THREADS,
                   max(1, agents * SAMPLES // stats_c._MIN_PARALLEL)))


def test_interval_stats_compiled(benchmark: Any, rings: dict[str, Any], report: Any) -> None:
    r = rings
    out = np.empty((AGENTS, 9))
    benchmark.pedantic(stats_c.interval_stats,
                       args=(r["ring"], r["heads"], r["counts"], r["rows"], -np.inf, np.inf,
                             out, 0), rounds=5, iterations=1, warmup_rounds=1)
    _info(benchmark, AGENTS, threads=_threads(AGENTS))
    ms = per_call_ns(benchmark, 1) / 1e6
    report(FIG_VS_NUMPY, "compiled", ms, "ms", TARGET_MS)
    report(FIG_PER_AGENT, "compiled", ms * 1e6 / AGENTS, "ns")


def test_interval_stats_compiled_one_thread(benchmark: Any, rings: dict[str, Any],
                                            report: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(stats_c, "_MIN_PARALLEL", 1 << 62)
    r = rings
    out = np.empty((AGENTS, 9))
    benchmark.pedantic(stats_c.interval_stats,
                       args=(r["ring"], r["heads"], r["counts"], r["rows"], -np.inf, np.inf,
                             out, 0), rounds=3, iterations=1, warmup_rounds=1)
    _info(benchmark, AGENTS, threads=1)
    report("interval_stats, 1,000,000 agents x 100, one thread (ms)", "compiled",
           per_call_ns(benchmark, 1) / 1e6, "ms")


def test_interval_stats_pure_100k(benchmark: Any, rings: dict[str, Any], report: Any) -> None:
    n = PURE_AGENTS
    r = rings
    out = np.empty((n, 9))
    benchmark.pedantic(stats_py.interval_stats,
                       args=(r["ring"], r["heads"][:n], r["counts"][:n], r["rows"][:n],
                             -np.inf, np.inf, out, 0), rounds=3, iterations=1, warmup_rounds=1)
    _info(benchmark, n)
    report(FIG_PER_AGENT, "pure", per_call_ns(benchmark, n), "ns")


def _numpy_baseline(ring: np.ndarray, heads: np.ndarray) -> np.ndarray:
    idx = (heads[:, None] + np.arange(SAMPLES)[None, :]) % SAMPLES   # unroll oldest first
    t = np.take_along_axis(ring, idx, axis=1)
    d = np.diff(t, axis=1)
    out = np.empty((len(d), 9))
    out[:, 0] = d.shape[1]
    out[:, 1] = d.mean(axis=1)
    out[:, 2] = d.std(axis=1)
    out[:, 3] = d.min(axis=1)
    out[:, 4] = d.max(axis=1)
    out[:, 5:8] = np.percentile(d, [50, 95, 99], axis=1).T
    out[:, 8] = d[:, -1]
    return out


def test_numpy_baseline(benchmark: Any, rings: dict[str, Any], report: Any) -> None:
    r = rings
    result = benchmark.pedantic(_numpy_baseline, args=(r["ring"], r["heads"]), rounds=2,
                                iterations=1)
    _info(benchmark, AGENTS)
    report(FIG_VS_NUMPY, "pure", per_call_ns(benchmark, 1) / 1e6, "ms")
    # the kernel computes the same thing (checked on a slice, to the bit on x86-64)
    out = np.empty((1000, 9))
    stats_c.interval_stats(r["ring"], r["heads"][:1000], r["counts"][:1000], r["rows"][:1000],
                           -np.inf, np.inf, out, 0)
    np.testing.assert_allclose(out, result[:1000], rtol=1e-9, atol=0)
