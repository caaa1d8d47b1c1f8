"""Prometheus metrics (issue 6 item 1): the real /metrics endpoint on loopback, scraped
with urllib and parsed with prometheus_client's own parser, checked against the monitor.
prometheus_client comes with the test extra: a missing install fails loudly."""
from __future__ import annotations

import importlib
import math
import sys
import time
import urllib.request

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from moai_flow_fast import HealthState
from moai_flow_fast.prometheus import MonitorCollector, register, serve_metrics

STATES = ("healthy", "degraded", "critical", "failed")


# ---------------------------------------------------------------- helpers

def parse(text):
    """{sample name: {frozenset(labels.items()): value}} and the family types."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


def scrape(server):
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


@pytest.fixture
def serve():
    """serve_metrics(...) that shuts every server down at teardown."""
    started = []

    def start(monitor, **kw):
        server, thread = serve_metrics(monitor, 0, **kw)
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


def drive(m, vclock):
    """Five agents through crossings, a recovery, a raising callback and a stop."""
    t0 = vclock.now
    for a in "abcde":
        m.start_monitoring(a)
    m.record_heartbeats(list("abcde"))
    m.start_monitoring("never")          # no heartbeat yet: HEALTHY, no timestamp

    def bad(agent_id, state, details):
        raise RuntimeError("callback bug")

    m.configure_alerts(degraded_callback=bad, on_recovery=True)
    m.advance(to=t0 + 2.5)               # a..e DEGRADED then CRITICAL
    m.record_heartbeat("a")              # a recovers
    m.advance(to=t0 + 5.0)               # b..e FAILED; a DEGRADED (3.5), CRITICAL (4.5)
    m.stop_monitoring("e")               # its history is kept (Part A)


# ---------------------------------------------------------------- the endpoint

def test_endpoint_values_match_the_monitor(make_monitor, vclock, serve, engine):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    drive(m, vclock)
    stats = m.get_monitoring_stats()
    assert stats["health_distribution"] == {"healthy": 1, "degraded": 0, "critical": 1,
                                            "failed": 3}
    server = serve(m)
    samples, types = parse(scrape(server))
    ns = "moai_flow_fast"

    for state in STATES:
        assert value(samples, f"{ns}_agents", state=state) == \
            stats["health_distribution"][state]
    assert sum(samples[f"{ns}_agents"].values()) == stats["total_agents"] == 5
    assert types[f"{ns}_agents"] == "gauge"

    assert types[f"{ns}_transitions"] == "counter"
    assert set(samples[f"{ns}_transitions_total"]) == {
        frozenset({("state", s)}) for s in STATES[1:]}
    for state in STATES[1:]:
        assert value(samples, f"{ns}_transitions_total", state=state) == \
            stats["transitions_to"][state]
    assert value(samples, f"{ns}_transitions_total", state="degraded") == 5 + 1
    assert value(samples, f"{ns}_transitions_total", state="failed") == 4

    counters = {"recoveries": "recoveries", "alerts_raised": "alerts_raised",
                "alerts_coalesced": "alerts_coalesced", "callback_errors": "callback_errors",
                "observer_stalls": "observer_stalls"}
    for metric, key in counters.items():
        assert types[f"{ns}_{metric}"] == "counter"
        assert value(samples, f"{ns}_{metric}_total") == stats[key], metric
    assert value(samples, f"{ns}_recoveries_total") == 1
    assert value(samples, f"{ns}_callback_errors_total") == 6   # every DEGRADED callback

    gauges = {"heartbeat_records": stats["total_heartbeats"],
              "pending_deadlines": stats["pending_deadlines"],
              "stopped_histories": stats["stopped_histories"],
              "wheel_lag_seconds": stats["wheel_lag_ms"] / 1e3,
              "wheel_lag_max_seconds": stats["max_wheel_lag_ms"] / 1e3,
              "last_stall_seconds": stats["last_stall_ms"] / 1e3,
              "monitoring_thread_up": 0}
    for metric, expected in gauges.items():
        assert types[f"{ns}_{metric}"] == "gauge"
        assert value(samples, f"{ns}_{metric}") == pytest.approx(expected), metric
    assert value(samples, f"{ns}_heartbeat_records") == 6      # 5 + a's second
    assert value(samples, f"{ns}_stopped_histories") == 1

    assert value(samples, f"{ns}_monitor_info", engine=engine, tick_ms="10") == 1
    assert not [name for name in samples if name.startswith(f"{ns}_agent_")]


def test_scrapes_follow_the_monitor(make_monitor, vclock, serve):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    server = serve(m)
    samples, _ = parse(scrape(server))
    assert sum(samples["moai_flow_fast_agents"].values()) == 0
    m.start_monitoring("x")
    m.record_heartbeat("x")
    m.advance(to=vclock.now + 3.0)
    samples, _ = parse(scrape(server))
    assert value(samples, "moai_flow_fast_agents", state="failed") == 1
    assert value(samples, "moai_flow_fast_transitions_total", state="failed") == 1
    m.record_heartbeat("x")
    samples, _ = parse(scrape(server))
    assert value(samples, "moai_flow_fast_agents", state="healthy") == 1
    assert value(samples, "moai_flow_fast_recoveries_total") == 1


def test_background_monitor_reports_its_thread(make_monitor, serve):
    m = make_monitor(interval_ms=1000, clock=None)
    assert m.monitoring_thread is not None
    server = serve(m)
    samples, _ = parse(scrape(server))
    assert value(samples, "moai_flow_fast_monitoring_thread_up") == 1
    m.shutdown()
    samples, _ = parse(scrape(server))
    assert value(samples, "moai_flow_fast_monitoring_thread_up") == 0


# ---------------------------------------------------------------- per-agent series

def test_per_agent_series_match_one_snapshot(make_monitor, vclock, serve):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    drive(m, vclock)
    server = serve(m, per_agent=True)
    samples, types = parse(scrape(server))
    snap = m.snapshot()
    ns = "moai_flow_fast"
    assert list(snap.ids) == ["a", "b", "c", "d", "never"]
    for i, agent in enumerate(snap.ids):
        assert value(samples, f"{ns}_agent_state", agent_id=agent) == snap.states[i]
        assert value(samples, f"{ns}_agent_phi", agent_id=agent) == pytest.approx(snap.phi[i])
    assert value(samples, f"{ns}_agent_state", agent_id="b") == 3
    assert value(samples, f"{ns}_agent_state", agent_id="a") == \
        m.check_agent_health("a").severity == 2
    stamps = samples[f"{ns}_agent_last_heartbeat_timestamp_seconds"]
    assert len(stamps) == 4                      # "never" has no heartbeat
    for agent in "abcd":
        expected = m.monitoring_agents[agent]["last_heartbeat"]
        got = value(samples, f"{ns}_agent_last_heartbeat_timestamp_seconds", agent_id=agent)
        assert got == pytest.approx(expected, abs=1e-6)
    assert value(samples, f"{ns}_agent_series_omitted") == 0
    assert types[f"{ns}_agent_state"] == "gauge"


def test_per_agent_series_are_capped(make_monitor, serve):
    m = make_monitor(interval_ms=1000)
    ids = [f"agent-{i:03d}" for i in range(25)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    server = serve(m, per_agent=True, max_agents=10)
    samples, _ = parse(scrape(server))
    for family in ("agent_state", "agent_phi", "agent_last_heartbeat_timestamp_seconds"):
        labels = {dict(k)["agent_id"] for k in samples[f"moai_flow_fast_{family}"]}
        assert labels == set(ids[:10]), family          # registration order
    assert value(samples, "moai_flow_fast_agent_series_omitted") == 15
    assert sum(samples["moai_flow_fast_agents"].values()) == 25   # aggregates uncapped

    server = serve(m, per_agent=True, max_agents=0)
    samples, _ = parse(scrape(server))
    assert "moai_flow_fast_agent_state" not in samples
    assert value(samples, "moai_flow_fast_agent_series_omitted") == 25


def test_per_agent_off_by_default(make_monitor):
    m = make_monitor()
    m.start_monitoring("a")
    collector = MonitorCollector(m)
    assert collector.per_agent is False and collector.max_agents == 10_000
    names = [f.name for f in collector.collect()]
    assert not [n for n in names if "agent_" in n and n != "moai_flow_fast_agents"]


# ---------------------------------------------------------------- cost of a scrape

def test_collect_reads_one_stats_and_snapshots_only_when_asked(make_monitor, monkeypatch):
    m = make_monitor()
    m.start_monitoring_many([f"x{i}" for i in range(100)])
    calls = {"stats": 0, "snapshot": 0}
    real_stats, real_snapshot = m.get_monitoring_stats, m.snapshot

    def stats():
        calls["stats"] += 1
        return real_stats()

    def snapshot(**kw):
        calls["snapshot"] += 1
        return real_snapshot(**kw)

    def no_views(*args, **kw):
        raise AssertionError("collect() must not walk agents one by one")

    monkeypatch.setattr(m, "get_monitoring_stats", stats)
    monkeypatch.setattr(m, "snapshot", snapshot)
    for name in ("check_agent_health", "get_heartbeat_history", "phi", "histories"):
        monkeypatch.setattr(m, name, no_views)
    list(MonitorCollector(m).collect())
    assert calls == {"stats": 1, "snapshot": 0}
    list(MonitorCollector(m, per_agent=True).collect())
    assert calls == {"stats": 2, "snapshot": 1}


# ---------------------------------------------------------------- registry helpers

def test_register_namespace_and_unregister(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    m.advance(to=vclock.now + 1.0)
    registry = CollectorRegistry()
    collector = register(m, registry, namespace="swarm")
    assert isinstance(collector, MonitorCollector)
    samples, _ = parse(generate_latest(registry).decode())
    assert value(samples, "swarm_agents", state="degraded") == 1
    assert value(samples, "swarm_transitions_total", state="degraded") == 1
    assert not [n for n in samples if n.startswith("moai_flow_fast")]
    # The same names twice in one registry are refused (describe() lists them).
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(m, registry, namespace="swarm")
    register(m, registry, namespace="other")
    registry.unregister(collector)
    samples, _ = parse(generate_latest(registry).decode())
    assert "swarm_agents" not in samples and "other_agents" in samples


def test_register_defaults_to_the_global_registry(make_monitor):
    m = make_monitor()
    collector = register(m, namespace="moai_test_global")
    try:
        assert prometheus_client.REGISTRY.get_sample_value(
            "moai_test_global_agents", {"state": "healthy"}) == 0
        m.start_monitoring("a")
        assert prometheus_client.REGISTRY.get_sample_value(
            "moai_test_global_agents", {"state": "healthy"}) == 1
    finally:
        prometheus_client.REGISTRY.unregister(collector)


def test_serve_metrics_with_a_given_registry(make_monitor, serve):
    m = make_monitor()
    registry = CollectorRegistry()
    extra = prometheus_client.Counter("app_requests", "Requests.", registry=registry)
    extra.inc(3)
    server = serve(m, registry=registry)
    samples, _ = parse(scrape(server))
    assert value(samples, "app_requests_total") == 3
    assert "moai_flow_fast_agents" in samples


def test_serve_metrics_defaults_to_loopback(make_monitor, serve):
    server = serve(make_monitor())
    assert server.server_address[0] == "127.0.0.1"
    assert server.server_port > 0


def test_serve_metrics_port_in_use_leaves_registry_clean(make_monitor, serve):
    m = make_monitor()
    server = serve(m)
    registry = CollectorRegistry()
    with pytest.raises(OSError):
        serve_metrics(m, server.server_port, registry=registry)
    assert list(registry.collect()) == []


def test_bad_arguments(make_monitor):
    m = make_monitor()
    with pytest.raises(ValueError, match="namespace"):
        MonitorCollector(m, namespace="bad-name")
    with pytest.raises(ValueError, match="namespace"):
        MonitorCollector(m, namespace="1abc")
    with pytest.raises(TypeError, match="per_agent"):
        MonitorCollector(m, per_agent=1)
    with pytest.raises(TypeError, match="max_agents"):
        MonitorCollector(m, max_agents=2.5)
    with pytest.raises(ValueError, match="max_agents"):
        MonitorCollector(m, max_agents=-1)
    with pytest.raises(TypeError, match="monitor"):
        MonitorCollector(object())
    with pytest.raises(TypeError):
        MonitorCollector(m, "positional")
    collector = MonitorCollector(m, namespace="")
    assert {f.name for f in collector.collect()} >= {"agents", "transitions", "monitor"}


def test_describe_lists_the_families_without_reading(make_monitor, monkeypatch):
    m = make_monitor()

    def boom():
        raise AssertionError("describe() must not read the monitor")

    monkeypatch.setattr(m, "get_monitoring_stats", boom)
    monkeypatch.setattr(m, "snapshot", boom)
    described = {f.name for f in MonitorCollector(m, per_agent=True).describe()}
    monkeypatch.undo()
    collected = {f.name for f in MonitorCollector(m, per_agent=True).collect()}
    assert described == collected
    assert all(not f.samples for f in MonitorCollector(m).describe())


def test_phi_is_finite_or_exposed_as_nan(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    for _ in range(5):
        m.record_heartbeat("a")
        vclock.advance(1.0)
    registry = CollectorRegistry()
    register(m, registry, per_agent=True)
    samples, _ = parse(generate_latest(registry).decode())
    phi = value(samples, "moai_flow_fast_agent_phi", agent_id="a")
    assert math.isfinite(phi) and phi == pytest.approx(m.phi(["a"])[0])
    assert value(samples, "moai_flow_fast_agent_state", agent_id="a") == \
        m.check_agent_health("a").severity == HealthState.DEGRADED.severity


def test_import_without_prometheus_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "moai_flow_fast.prometheus")
    monkeypatch.delitem(sys.modules, "moai_flow_fast.integrations.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'moai-flow-fast\[prometheus\]'"):
        importlib.import_module("moai_flow_fast.prometheus")


def test_scrape_is_cheap_for_many_agents(make_monitor, serve):
    m = make_monitor(interval_ms=1000)
    ids = list(range(20_000))
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    server = serve(m)
    scrape(server)
    t = time.perf_counter()
    for _ in range(5):
        samples, _ = parse(scrape(server))
    per_scrape = (time.perf_counter() - t) / 5
    assert value(samples, "moai_flow_fast_agents", state="healthy") == 20_000
    assert per_scrape < 0.5   # generous: no per-agent Python work for the aggregates
