"""Prometheus metrics for a HeartbeatMonitor (needs the `prometheus` extra:
pip install 'moai-flow-fast[prometheus]').

    from moai_flow_fast.prometheus import register, serve_metrics
    register(monitor)                          # into prometheus_client's default REGISTRY
    server, thread = serve_metrics(monitor, 9108)   # or serve /metrics on its own

Every scrape reads one `get_monitoring_stats()` (counts kept by the engine: no loop over
agents in Python). Per-agent series (`per_agent=True`) come from one `snapshot()` and are
capped at `max_agents`, because one series per agent explodes label cardinality.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:   # pragma: no cover - exercised without the extra
    raise ImportError("moai_flow_fast.prometheus needs prometheus_client: "
                      "pip install 'moai-flow-fast[prometheus]'") from exc

from ..core._rules import STATES

__all__ = ["MonitorCollector", "register", "serve_metrics"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STATE_NAMES = tuple(state.value for state in STATES)
# Crossings only ever lead to these states (the return to HEALTHY is a recovery).
_TARGET_STATES = _STATE_NAMES[1:]


class MonitorCollector(Collector):
    """A prometheus_client custom collector for one `HeartbeatMonitor`.

    Metrics (with the default namespace `moai_flow_fast`):

    - `moai_flow_fast_agents{state}` gauge: monitored agents per health state.
    - `moai_flow_fast_heartbeat_records` gauge: heartbeat records held in the histories.
    - `moai_flow_fast_heartbeats_total` counter: heartbeats recorded since the start.
    - `moai_flow_fast_transitions_total{state}` counter: threshold crossings dispatched, by
      target state (degraded, critical, failed).
    - `moai_flow_fast_recoveries_total`, `..._alerts_raised_total`,
      `..._alerts_coalesced_total`, `..._callback_errors_total`, `..._observer_stalls_total`
      counters.
    - `moai_flow_fast_wheel_lag_seconds`, `..._wheel_lag_max_seconds`,
      `..._last_stall_seconds`, `..._pending_deadlines`, `..._stopped_histories` gauges.
    - `moai_flow_fast_monitoring_thread_up` gauge (1 when the background thread runs).
    - `moai_flow_fast_monitor_info{engine, tick_ms}`.

    With `per_agent=True`, for at most `max_agents` agents (registration order), labelled
    `agent_id`: `..._agent_state` (0 healthy .. 3 failed), `..._agent_phi`, and
    `..._agent_last_heartbeat_timestamp_seconds` (Unix seconds of the instant the agent's
    silence is measured from: its last heartbeat, or its registration when its clock starts
    there; absent before that). `..._agent_series_omitted` counts agents left out by the cap.
    """

    def __init__(self, monitor: Any, *, namespace: str = "moai_flow_fast",
                 per_agent: bool = False, max_agents: int = 10_000) -> None:
        if not isinstance(namespace, str) or (namespace and not _NAME.fullmatch(namespace)):
            raise ValueError(f"namespace must be a valid Prometheus metric name prefix, "
                             f"got {namespace!r}")
        if not isinstance(per_agent, bool):
            raise TypeError(f"per_agent must be a bool, got {type(per_agent).__name__}")
        if isinstance(max_agents, bool) or not isinstance(max_agents, int):
            raise TypeError(f"max_agents must be an int, got {type(max_agents).__name__}")
        if max_agents < 0:
            raise ValueError(f"max_agents must be >= 0, got {max_agents!r}")
        if not callable(getattr(monitor, "get_monitoring_stats", None)):
            raise TypeError(f"monitor must be a HeartbeatMonitor, got {type(monitor).__name__}")
        self.monitor = monitor
        self.namespace = namespace
        self.per_agent = per_agent
        self.max_agents = max_agents
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples (lets a registry check names without a scrape)."""
        families = self._families(None)
        if self.per_agent:
            families.extend(self._agent_families(None))
        return iter(families)

    def collect(self) -> Iterator[Metric]:
        stats = self.monitor.get_monitoring_stats()
        families = self._families(stats)
        if self.per_agent:
            families.extend(self._agent_families(self.monitor.snapshot()))
        return iter(families)

    # -- building ----------------------------------------------------------------------------

    def _families(self, stats: dict[str, Any] | None) -> list[Metric]:
        p = self._prefix
        s: dict[str, Any] = stats or {}
        out: list[Metric] = []

        agents = GaugeMetricFamily(f"{p}agents", "Monitored agents per health state.",
                                   labels=["state"])
        transitions = CounterMetricFamily(
            f"{p}transitions", "Threshold crossings dispatched, by target state.",
            labels=["state"])
        if stats is not None:
            dist = s["health_distribution"]
            for name in _STATE_NAMES:
                agents.add_metric([name], dist.get(name, 0))
            to = s["transitions_to"]
            for name in _TARGET_STATES:
                transitions.add_metric([name], to.get(name, 0))
        out += [agents, transitions]

        def gauge(name: str, doc: str, value: float) -> None:
            family = GaugeMetricFamily(f"{p}{name}", doc)
            if stats is not None:
                family.add_metric([], value)
            out.append(family)

        def counter(name: str, doc: str, value: float) -> None:
            family = CounterMetricFamily(f"{p}{name}", doc)
            if stats is not None:
                family.add_metric([], value)
            out.append(family)

        get = s.get
        gauge("heartbeat_records", "Heartbeat records held in the agents' histories.",
              get("total_heartbeats", 0))
        counter("heartbeats", "Heartbeats recorded since the monitor started.",
                get("heartbeats_recorded", 0))
        counter("recoveries", "Agents that returned to HEALTHY.", get("recoveries", 0))
        counter("alerts_raised", "Alerts raised (callbacks called or WARNING lines logged).",
                get("alerts_raised", 0))
        counter("alerts_coalesced", "Transitions folded into storm summaries.",
                get("alerts_coalesced", 0))
        counter("callback_errors", "Alert callbacks (and coroutine callbacks) that raised.",
                get("callback_errors", 0))
        counter("observer_stalls", "Times the monitor itself ran late past the stall guard.",
                get("observer_stalls", 0))
        gauge("last_stall_seconds", "Length of the last observer stall.",
              get("last_stall_ms", 0.0) / 1e3)
        gauge("wheel_lag_seconds", "How late the last wheel advance ran after its deadline.",
              get("wheel_lag_ms", 0.0) / 1e3)
        gauge("wheel_lag_max_seconds", "The largest wheel lag seen.",
              get("max_wheel_lag_ms", 0.0) / 1e3)
        gauge("pending_deadlines", "Deadlines armed in the timer wheel.",
              get("pending_deadlines", 0))
        gauge("stopped_histories", "Histories of stopped agents still kept.",
              get("stopped_histories", 0))
        gauge("monitoring_thread_up", "1 when the background monitoring thread is alive.",
              1 if get("monitoring_thread_alive") else 0)
        info = InfoMetricFamily(f"{p}monitor", "The monitor's engine and wheel tick.")
        if stats is not None:
            info.add_metric([], {"engine": str(s["engine"]), "tick_ms": str(s["tick_ms"])})
        out.append(info)
        return out

    def _agent_families(self, snap: Any) -> list[Metric]:
        p = self._prefix
        state = GaugeMetricFamily(
            f"{p}agent_state", "Agent health state: 0 healthy, 1 degraded, 2 critical, 3 failed.",
            labels=["agent_id"])
        phi = GaugeMetricFamily(f"{p}agent_phi", "Agent phi-accrual suspicion.",
                                labels=["agent_id"])
        last = GaugeMetricFamily(f"{p}agent_last_heartbeat_timestamp_seconds",
                                 "Unix time the agent's silence is measured from "
                                 "(its last heartbeat).", labels=["agent_id"])
        omitted = GaugeMetricFamily(f"{p}agent_series_omitted",
                                    "Agents without per-agent series (over max_agents).")
        if snap is None:
            return [state, phi, last, omitted]
        n = min(len(snap.ids), self.max_agents)
        omitted.add_metric([], len(snap.ids) - n)
        ids = [str(i) for i in snap.ids[:n]]
        last_wall = (snap.wall - snap.elapsed_ms[:n] / 1e3).tolist()
        for agent, code, suspicion, t in zip(ids, snap.states[:n].tolist(),
                                             snap.phi[:n].tolist(), last_wall, strict=True):
            state.add_metric([agent], code)
            phi.add_metric([agent], suspicion)
            if not math.isnan(t):
                last.add_metric([agent], t)
        return [state, phi, last, omitted]

    def __repr__(self) -> str:
        return (f"MonitorCollector({self.monitor!r}, namespace={self.namespace!r}, "
                f"per_agent={self.per_agent}, max_agents={self.max_agents})")


def register(monitor: Any, registry: CollectorRegistry = REGISTRY, **kwargs: Any
             ) -> MonitorCollector:
    """Register a `MonitorCollector(monitor, **kwargs)` in `registry` (default: the global
    REGISTRY) and return it; `registry.unregister(collector)` removes it."""
    collector = MonitorCollector(monitor, **kwargs)
    registry.register(collector)
    return collector


def serve_metrics(monitor: Any, port: int, addr: str = "127.0.0.1",
                  registry: CollectorRegistry | None = None, **kwargs: Any
                  ) -> tuple[Any, threading.Thread]:
    """Serve the monitor's metrics at http://addr:port/metrics from a daemon thread.

    With `registry=None` a dedicated CollectorRegistry holding only this monitor's
    collector is served; otherwise the collector is added to `registry` and all of it is
    served. `port=0` picks a free port (`server.server_port`). Returns `(server, thread)`;
    stop with `server.shutdown(); server.server_close()`. Other keywords go to
    `MonitorCollector`."""
    _check_version()
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    collector = register(monitor, registry, **kwargs)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except BaseException:
        registry.unregister(collector)
        raise
    return server, thread


def _check_version() -> None:
    # start_http_server returns (server, thread) from prometheus_client 0.20 on.
    try:
        from importlib.metadata import version

        found = tuple(int(x) for x in version("prometheus_client").split(".")[:2])
    except Exception:   # unknown version (vendored, odd string): try anyway
        return
    if found < (0, 20):
        raise ImportError("serve_metrics needs prometheus_client >= 0.20: "
                          "pip install 'moai-flow-fast[prometheus]'")
