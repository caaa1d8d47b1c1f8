"""Prometheus metrics of `serve`: the monitor's collector, the service's counters and, in
cluster mode, the shard's gauges (owned partitions, Redis reachability, lost leases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cluster import ClusterFront
    from ._server import Service

__all__ = ["cluster_metrics", "registry"]


def registry(service: Service) -> Any:
    """A Prometheus registry of the monitor's, the service's and (in cluster mode) the
    shard's figures."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from ..integrations.prometheus import MonitorCollector

    class ServiceCollector:
        def collect(self) -> Any:
            p = "moai_flow_fast_service_"
            hub = service.hub.stats()
            yield CounterMetricFamily(f"{p}events_published", "Transitions published.",
                                      value=hub["published"])
            yield CounterMetricFamily(f"{p}events_dropped", "Transitions dropped before "
                                      "fan-out (the event loop fell behind).", value=hub["dropped"])
            yield GaugeMetricFamily(f"{p}sse_clients", "Connected SSE clients.",
                                    value=hub["sse_clients"])
            yield CounterMetricFamily(f"{p}sse_clients_dropped", "SSE clients ended for being "
                                      "too slow.", value=hub["sse_clients_dropped"])
            yield CounterMetricFamily(f"{p}unknown_heartbeats", "Heartbeats of ids that are "
                                      "not monitored.", value=service.unknown_heartbeats)
            yield CounterMetricFamily(f"{p}snapshots", "State-file snapshots written.",
                                      value=service.snapshots)
            yield CounterMetricFamily(f"{p}snapshot_errors", "State-file snapshots that "
                                      "failed.", value=service.snapshot_errors)
            if service.udp is not None:
                udp = service.udp.stats()
                yield CounterMetricFamily(f"{p}udp_datagrams", "UDP datagrams received.",
                                          value=udp["datagrams"])
                yield CounterMetricFamily(f"{p}udp_bad_datagrams", "UDP datagrams dropped "
                                          "(bad HMAC or not UTF-8).", value=udp["bad_datagrams"])
            hooks = CounterMetricFamily(f"{p}webhook_events", "Webhook events by outcome.",
                                        labels=["url", "outcome"])
            for w in service.webhooks:
                s = w.stats()
                hooks.add_metric([w.url, "delivered"], s["delivered"])
                hooks.add_metric([w.url, "dropped_queue_full"], s["dropped_queue_full"])
                hooks.add_metric([w.url, "dropped_after_retries"], s["dropped_after_retries"])
            yield hooks
            if service.cluster is not None:
                yield from cluster_metrics(service.cluster)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(service.monitor))
    registry.register(ServiceCollector())
    return registry


def cluster_metrics(front: ClusterFront) -> Iterator[Any]:
    """The shard's figures; `redis_up` is 0 while Redis does not answer."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    p = "moai_flow_fast_cluster_"
    status = front.status()
    yield GaugeMetricFamily(f"{p}redis_up", "1 when this shard reaches Redis, else 0.",
                            value=1 if status.get("redis") == "ok" else 0)
    yield GaugeMetricFamily(f"{p}owned_partitions", "Partitions this shard holds the lease "
                            "of.", value=len(front.owned()))
    for key, text in (("leases_lost", "Leases this shard lost (expired or taken)."),
                      ("fenced_writes", "Writes refused because this shard's fencing token "
                                        "was stale."),
                      ("takeovers", "Partitions adopted (registry loaded, log replayed): at "
                                     "start, on rebalancing or from a dead shard."),
                      ("replayed", "Heartbeat entries read from the streams at adoptions."),
                      ("published", "Transitions published to the alerts stream.")):
        value = status.get(key)
        if isinstance(value, (int, float)):
            yield CounterMetricFamily(f"{p}{key}", text, value=value)
    yield CounterMetricFamily(f"{p}forwarded", "Requests forwarded to the owner shard.",
                              value=front.forwarded)
    yield CounterMetricFamily(f"{p}forward_errors", "Forwarded requests the owner did not "
                              "answer.", value=front.forward_errors)
