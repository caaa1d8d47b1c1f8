"""Cluster settings and arguments: the partition function, and bad input raising
TypeError/ValueError naming the argument (ClusterConfig, Shard, the sender)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from redis_util import RedisServer, redis_server

from moai_flow_fast import HeartbeatMonitor
from moai_flow_fast.client import RedisHeartbeatSender
from moai_flow_fast.cluster import ClusterConfig, Keys, Shard, partition_of

URL = "redis://127.0.0.1:6379/0"


def test_partition_of_is_crc32_modulo() -> None:
    for agent_id in ["a", "agent-001", "ünïcode-✓", "x" * 500]:
        assert partition_of(agent_id, 16) == zlib.crc32(agent_id.encode("utf-8")) % 16
    assert partition_of("anything", 1) == 0
    with pytest.raises(TypeError, match="agent_id"):
        partition_of(b"bytes", 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partitions"):
        partition_of("a", 0)
    with pytest.raises(TypeError, match="partitions"):
        partition_of("a", True)


def test_keys_follow_the_documented_names() -> None:
    keys = ClusterConfig(url=URL, shard_name="s1", prefix="swarm").keys
    assert isinstance(keys, Keys)
    assert (keys.hb(3), keys.agents(3), keys.reg(3), keys.lease(3), keys.fence(3),
            keys.pos(3), keys.last(3), keys.alerts, keys.shards, keys.shard("s1")) == (
        "swarm:hb:3", "swarm:agents:3", "swarm:reg:3", "swarm:lease:3", "swarm:fence:3",
        "swarm:pos:3", "swarm:last:3", "swarm:alerts", "swarm:shards", "swarm:shard:s1")


def test_defaults() -> None:
    config = ClusterConfig(url=URL, shard_name="a")
    assert (config.prefix, config.partitions, config.lease_ms, config.poll_ms,
            config.batch, config.replay_margin_s, config.http_url) == (
        "mff", 16, 3000, 100, 10_000, 5.0, None)


@pytest.mark.parametrize(("field", "value", "error"), [
    ("url", 5, TypeError),
    ("url", "http://x", ValueError),
    ("shard_name", None, TypeError),
    ("shard_name", "", ValueError),
    ("shard_name", "a b", ValueError),
    ("shard_name", "a|b", ValueError),
    ("prefix", 1, TypeError),
    ("prefix", "", ValueError),
    ("prefix", "a b", ValueError),
    ("partitions", 0, ValueError),
    ("partitions", 1.5, TypeError),
    ("partitions", True, TypeError),
    ("lease_ms", 10, ValueError),
    ("lease_ms", "3000", TypeError),
    ("poll_ms", 0, ValueError),
    ("poll_ms", 2000, ValueError),        # more than half the lease
    ("batch", 0, ValueError),
    ("replay_margin_s", -1.0, ValueError),
    ("replay_margin_s", float("nan"), ValueError),
    ("replay_margin_s", "5", TypeError),
    ("http_url", 8080, TypeError),
    ("settle_ms", -1, ValueError),
    ("stream_maxlen", 10, ValueError),
    ("max_pending", 0, ValueError),
])
def test_bad_config_names_the_field(field: str, value: Any, error: type[Exception]) -> None:
    settings: dict[str, Any] = {"url": URL, "shard_name": "a", field: value}
    with pytest.raises(error, match=field):
        ClusterConfig(**settings)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_bad_shard_arguments(redis: RedisServer) -> None:
    config = ClusterConfig(url=redis.url, shard_name="a")
    with pytest.raises(TypeError, match="monitor"):
        Shard(object(), config)
    monitor = HeartbeatMonitor(background=False)
    with pytest.raises(TypeError, match="config"):
        Shard(monitor, {"url": redis.url})  # type: ignore[arg-type]
    shard = Shard(monitor, config)          # not started: the calls below need no thread
    try:
        with pytest.raises(TypeError, match="specs"):
            shard.register("agent")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"specs\[0\]"):
            shard.register([("agent", 1000)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"specs\[1\] agent_id"):
            shard.register([("ok", None, None), (5, None, None)])  # type: ignore[list-item]
        with pytest.raises(ValueError, match=r"specs\[0\] interval_ms"):
            shard.register([("a", 50, 3)])
        with pytest.raises(ValueError, match=r"specs\[0\] failure_threshold"):
            shard.register([("a", 1000, 0)])
        with pytest.raises(TypeError, match=r"specs\[0\] interval_ms"):
            shard.register([("a", 1000.5, 3)])  # type: ignore[list-item]
        assert shard.register([]) == 0
        with pytest.raises(TypeError, match="agent_id"):
            shard.unregister(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="agent_id"):
            shard.owner_of(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ids"):
            shard.send("agent")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"ids\[1\]"):
            shard.send(["a", 2])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="timestamps"):
            shard.send(["a"], [1.0, 2.0])
        with pytest.raises(ValueError, match="timeout"):
            shard.stop(-1)
        assert shard.owner_of("nobody-owns-this") is None
        assert shard.cluster()["unowned"] == list(range(16))
    finally:
        shard.stop()
        shard.stop()                          # idempotent
        monitor.shutdown()


def test_bad_sender_arguments(redis: RedisServer) -> None:
    with pytest.raises(ValueError, match="url"):
        RedisHeartbeatSender("localhost:6379")
    with pytest.raises(ValueError, match="partitions"):
        RedisHeartbeatSender(redis.url, partitions=0)
    with pytest.raises(ValueError, match="prefix"):
        RedisHeartbeatSender(redis.url, prefix="a b")
    with pytest.raises(ValueError, match="batch"):
        RedisHeartbeatSender(redis.url, batch=0)
    with pytest.raises(ValueError, match="max_buffer"):
        RedisHeartbeatSender(redis.url, max_buffer=0)
    with pytest.raises(TypeError, match="timestamps"):
        RedisHeartbeatSender(redis.url, timestamps=1)  # type: ignore[arg-type]
    with RedisHeartbeatSender(redis.url) as sender:
        with pytest.raises(TypeError, match="agent_id"):
            sender.send(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="agent_id"):
            sender.send("")
        with pytest.raises(ValueError, match="ts"):
            sender.send("a", ts=-1.0)
        with pytest.raises(ValueError, match="ts"):
            sender.send("a", ts=float("nan"))
    with pytest.raises(RuntimeError, match="closed"):
        sender.send("a")
