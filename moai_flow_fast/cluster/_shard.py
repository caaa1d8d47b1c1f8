"""`Shard`: one monitor's membership in a cluster, with its three daemon threads (lease
keeper, consumer, publisher) and the calls the service makes (send, register, views)."""

from __future__ import annotations

import math
import threading
from typing import Any

from ._config import ClusterConfig, partition_of
from ._consumer import Consumer
from ._core import REG_MAXLEN, Core, Part, RedisUnavailable, spec_text
from ._lease import LeaseKeeper
from ._publish import Publisher

__all__ = ["Shard"]


def _check_spec(i: int, spec: Any) -> tuple[str, int | None, int | None]:
    if not isinstance(spec, (tuple, list)) or len(spec) != 3:
        raise TypeError(f"specs[{i}] must be (agent_id, interval_ms, failure_threshold)")
    agent_id, interval, threshold = spec
    if not isinstance(agent_id, str) or not agent_id:
        raise TypeError(f"specs[{i}] agent_id must be a non-empty str")
    for name, value, lo in (("interval_ms", interval, 100), ("failure_threshold", threshold, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"specs[{i}] {name} must be an int or None, "
                            f"got {type(value).__name__}")
        if value < lo:
            raise ValueError(f"specs[{i}] {name} must be >= {lo}, got {value}")
    return agent_id, interval, threshold


class Shard:
    """Joins `monitor` to the cluster described by `config`: holds leases on an even share
    of the partitions, registers their agents into the monitor, feeds it their heartbeats
    from Redis and publishes its transitions. See the package docstring."""

    def __init__(self, monitor: Any, config: ClusterConfig) -> None:
        from ..core._monitor import HeartbeatMonitor

        if not isinstance(monitor, HeartbeatMonitor):
            raise TypeError(f"monitor must be a HeartbeatMonitor, got {type(monitor).__name__}")
        if not isinstance(config, ClusterConfig):
            raise TypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
        self.monitor = monitor
        self.config = config
        self._core = Core(monitor, config)
        self._publisher = Publisher(self._core, self._lose, self._reacquire)
        self._consumer = Consumer(self._core, self._publisher.enqueue)
        self._keeper = LeaseKeeper(self._core, self._consumer.adopt, self._lose)
        self._state_mu = threading.Lock()
        self._started = False
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the lease keeper, consumer and publisher threads; returns at once."""
        with self._state_mu:
            if self._started:
                return
            if self._stopped:
                raise RuntimeError("a stopped Shard cannot be started again; make a new one")
            self._started = True
        self.monitor._dispatcher.add_listener(self._publisher.listener)
        self._publisher.thread.start()
        self._consumer.thread.start()
        self._keeper.thread.start()

    def stop(self, timeout: float = 5.0, *, release: bool = True) -> None:
        """Stop the threads and (with `release`) hand the leases back at once so another
        shard takes over without waiting for expiry. `release=False` leaves them to
        expire, as a crashed shard would. Idempotent."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a finite number >= 0, got {timeout!r}")
        with self._state_mu:
            if self._stopped:
                return
            self._stopped = True
            started = self._started
        core = self._core
        core.stop_event.set()
        core.wake_publisher.set()
        if started:
            self.monitor._dispatcher.remove_listener(self._publisher.listener)
            for thread in (self._keeper.thread, self._consumer.thread, self._publisher.thread):
                thread.join(timeout)
        if release:
            try:
                self._keeper.release_all()
            except core.errors as exc:
                core.failed(exc)     # the leases will expire by themselves
        core.client.close()

    def _lose(self, part: Part, lost: bool) -> None:
        core = self._core
        with core.mu:
            if core.parts.get(part.number) is not part:
                return
            del core.parts[part.number]
            core.set_owned()
        if lost:
            core.stats.leases_lost += 1
        part.live = False
        self._publisher.pending -= len(part.pending)
        part.pending.clear()
        self._consumer.drop(part)

    def _reacquire(self, part: Part, seen: str) -> bool:
        return self._keeper.reacquire(part, seen)

    @property
    def owned(self) -> frozenset[int]:
        """Partitions whose lease this shard holds now."""
        return self._core.owned

    # -- writes any shard may make ----------------------------------------------------------

    def send(self, ids: list[str], timestamps: list[float] | None = None) -> int:
        """XADD heartbeats into their partitions' streams in one pipeline; the number
        Redis acknowledged (0 when it is unreachable: counted in send_errors)."""
        from ._wire import add_heartbeats

        core = self._core
        if not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be a list of str, got {type(ids).__name__}")
        if timestamps is not None and len(timestamps) != len(ids):
            raise ValueError(f"timestamps has {len(timestamps)} values for {len(ids)} ids")
        try:
            acked = add_heartbeats(core.client, core.keys, self.config.partitions, ids,
                                   timestamps, self.config.stream_maxlen)
        except core.errors as exc:
            core.failed(exc)
            core.stats.send_errors += len(ids)
            return 0
        core.stats.sent += acked
        return acked

    def register(self, specs: list[tuple[str, int | None, int | None]]) -> int:
        """Write agents (id, interval_ms, failure_threshold; None = the owner's default)
        into the Redis registry; their owner picks them up. Returns how many were new."""
        if not isinstance(specs, (list, tuple)):
            raise TypeError(f"specs must be a list of tuples, got {type(specs).__name__}")
        checked = [_check_spec(i, spec) for i, spec in enumerate(specs)]
        by_part: dict[int, list[str]] = {}
        for agent_id, interval, threshold in checked:
            by_part.setdefault(partition_of(agent_id, self.config.partitions), []).extend(
                (agent_id, spec_text(interval, threshold)))
        core = self._core
        pipe = core.client.pipeline(transaction=False)
        for p, args in by_part.items():
            core.scripts.register(keys=[core.keys.agents(p), core.keys.reg(p)],
                                  args=[REG_MAXLEN, *args], client=pipe)
        try:
            return sum(int(n) for n in pipe.execute())
        except core.errors as exc:
            core.failed(exc)
            raise RedisUnavailable(str(exc)) from exc

    def unregister(self, agent_id: str) -> bool:
        """Remove an agent from the registry (its owner stops monitoring it)."""
        if not isinstance(agent_id, str):
            raise TypeError(f"agent_id must be a str, got {type(agent_id).__name__}")
        core = self._core
        p = partition_of(agent_id, self.config.partitions)
        try:
            return bool(core.scripts.unregister(keys=[core.keys.agents(p), core.keys.reg(p)],
                                                args=[REG_MAXLEN, agent_id]))
        except core.errors as exc:
            core.failed(exc)
            raise RedisUnavailable(str(exc)) from exc

    # -- views ------------------------------------------------------------------------------

    def owner_of(self, agent_id: str) -> dict[str, Any] | None:
        """{"name", "http_url", "partition"} of the shard holding the agent's partition now;
        None when nobody holds it."""
        if not isinstance(agent_id, str):
            raise TypeError(f"agent_id must be a str, got {type(agent_id).__name__}")
        core = self._core
        p = partition_of(agent_id, self.config.partitions)
        try:
            holder = core.client.get(core.keys.lease(p))
            if holder is None:
                return None
            name = holder.rpartition("|")[0]
            url = core.client.hget(core.keys.shard(name), "http_url")
        except core.errors as exc:
            core.failed(exc)
            raise RedisUnavailable(str(exc)) from exc
        return {"name": name, "http_url": url or None, "partition": p}

    def cluster(self) -> dict[str, Any]:
        """{"shards": [{"name", "partitions", "lease_expires", "lag_ms", "http_url"}, ...],
        "unowned": [partitions]} from the leases and membership keys in Redis."""
        core, keys, n = self._core, self._core.keys, self.config.partitions
        try:
            pipe = core.client.pipeline(transaction=False)
            pipe.time()
            pipe.zrange(keys.shards, 0, -1, withscores=True)
            for p in range(n):
                pipe.get(keys.lease(p))
                pipe.pttl(keys.lease(p))
            out = pipe.execute()
            secs, micros = out[0]
            now = secs + micros / 1e6
            members = [name for name, expiry in out[1] if expiry / 1000 > now]
            info_pipe = core.client.pipeline(transaction=False)
            for name in members:
                info_pipe.hgetall(keys.shard(name))
            infos = dict(zip(members, info_pipe.execute()))
        except core.errors as exc:
            core.failed(exc)
            raise RedisUnavailable(str(exc)) from exc
        shards: dict[str, dict[str, Any]] = {}
        unowned: list[int] = []
        for p in range(n):
            holder, ttl = out[2 + 2 * p], out[3 + 2 * p]
            if holder is None:
                unowned.append(p)
                continue
            name = holder.rpartition("|")[0]
            entry = shards.setdefault(name, {"name": name, "partitions": [],
                                             "lease_expires": math.inf})
            entry["partitions"].append(p)
            entry["lease_expires"] = min(entry["lease_expires"], now + max(ttl, 0) / 1000)
        for name in members:
            shards.setdefault(name, {"name": name, "partitions": [], "lease_expires": None})
        result = []
        for name in sorted(shards):
            entry = shards[name]
            info = infos.get(name) or {}
            entry["http_url"] = info.get("http_url") or None
            entry["lag_ms"] = float(info.get("lag_ms", 0.0) or 0.0)
            entry["live"] = name in infos
            if entry["lease_expires"] is not None:
                entry["lease_expires"] = round(entry["lease_expires"], 3)
            result.append(entry)
        return {"shards": result, "unowned": unowned, "partitions": n}

    def status(self) -> dict[str, Any]:
        """This shard's health and counters (no Redis call)."""
        core, stats = self._core, self._core.stats
        with core.mu:
            parts = list(core.parts.values())
        now = core.wall()
        horizons = [part.horizon for part in parts if part.live]
        return {
            "shard": core.name,
            "redis": "ok" if core.reachable else "unreachable",
            "last_error": core.last_error,
            "owned": sorted(part.number for part in parts),
            "live": sorted(part.number for part in parts if part.live),
            "live_shards": list(self._keeper.live_shards),
            "lag_ms": max(0.0, (now - min(horizons)) * 1000) if horizons else 0.0,
            "leases_lost": stats.leases_lost,
            "leases_reacquired": stats.leases_reacquired,
            "fenced_writes": stats.fenced_writes,
            "takeovers": stats.takeovers,
            "replayed": stats.replayed,
            "consumed": stats.consumed,
            "unknown_heartbeats": stats.unknown,
            "registry_changes": stats.registry_changes,
            "invalid_specs": self._consumer.invalid_specs,
            "published": stats.published,
            "suppressed": stats.suppressed,
            "disproved": self._publisher.disproved,
            "pending": sum(len(part.pending) for part in parts),
            "pending_dropped": stats.pending_dropped,
            "sent": stats.sent,
            "send_errors": stats.send_errors,
            "internal_errors": stats.internal_errors,
            "outages": len(core.outages),
        }

    def __enter__(self) -> Shard:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Shard({self.config.shard_name!r}, owned={sorted(self.owned)})"
