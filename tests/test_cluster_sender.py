"""RedisHeartbeatSender against a real redis-server: the wire format, batching, and a
bounded buffer that keeps heartbeats (with their times) through an outage."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis as redis_py
from redis_util import RedisServer, redis_server

from moai_flow_fast.client import RedisHeartbeatSender
from moai_flow_fast.cluster import partition_of


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def _entries(url: str, key: str) -> list[tuple[str, dict[str, str]]]:
    client = redis_py.Redis.from_url(url, decode_responses=True)
    try:
        return list(client.xrange(key))
    finally:
        client.close()


def test_wire_format_and_batching(redis: RedisServer) -> None:
    with RedisHeartbeatSender(redis.url, prefix="t", partitions=8, batch=3) as sender:
        sender.send("agent-a", ts=1_700_000_000.25)
        sender.send("agent-b")
        assert sender.buffered == 2 and sender.sent == 0     # below the batch: buffered
        sender.send("agent-c")                                # the third fills the batch
        assert sender.buffered == 0 and sender.sent == 3
        sender.send("agent-a", ts=1_700_000_001.5)
    assert sender.sent == 4                                   # close() flushed the rest
    p = partition_of("agent-a", 8)
    entries = _entries(redis.url, f"t:hb:{p}")
    mine = [fields for _, fields in entries if fields["id"] == "agent-a"]
    assert [float(f["ts"]) for f in mine] == [1_700_000_000.25, 1_700_000_001.5]
    other = _entries(redis.url, f"t:hb:{partition_of('agent-b', 8)}")
    stamp = next(float(f["ts"]) for _, f in other if f["id"] == "agent-b")
    assert abs(stamp - time.time()) < 5                      # stamped at send time
    total = sum(len(_entries(redis.url, f"t:hb:{q}")) for q in range(8))
    assert total == 4


def test_buffer_survives_an_outage_and_is_bounded(redis: RedisServer) -> None:
    sender = RedisHeartbeatSender(redis.url, batch=1000, max_buffer=5, timeout=0.5)
    try:
        redis.stop()
        for i in range(8):
            sender.send(f"agent-{i}", ts=1_700_000_000.0 + i)
        assert sender.flush() == 0 and sender.last_error is not None
        assert sender.buffered == 5 and sender.dropped == 3   # the oldest went first
        redis.start()
        assert sender.flush() == 5 and sender.buffered == 0
    finally:
        sender.close()
    stored = sorted(float(fields["ts"]) for q in range(16)
                    for _, fields in _entries(redis.url, f"mff:hb:{q}"))
    assert stored == [1_700_000_000.0 + i for i in range(3, 8)]   # original times kept


def test_client_package_imports_without_redis() -> None:
    code = ("import sys; sys.modules['redis'] = None; import moai_flow_fast.client as c; "
            "print(c.UdpHeartbeatSender.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "UdpHeartbeatSender" in out.stdout
