"""Redis going away under a running shard: a crash and restart (AOF) and a SIGSTOP pause.
The shard reconnects by itself, says `unreachable` meanwhile, loses no heartbeat Redis
acknowledged and convicts no agent for the outage, while a really dead agent is reported."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis as redis_py
from redis_util import RedisServer, Swarm, read_alerts, redis_server, wait_for

from moai_flow_fast import HealthState, HeartbeatMonitor
from moai_flow_fast.cluster import ClusterConfig, Shard

LEASE_MS = 1000
INTERVAL_MS = 300
THRESHOLD = 3


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def shard(redis: RedisServer) -> Iterator[Shard]:
    monitor = HeartbeatMonitor(interval_ms=INTERVAL_MS, failure_threshold=THRESHOLD)
    shard = Shard(monitor, ClusterConfig(url=redis.url, shard_name="a", lease_ms=LEASE_MS,
                                         poll_ms=50, replay_margin_s=2.0))
    shard.start()
    yield shard
    shard.stop(release=False)
    monitor.shutdown()


def _stored_stamps(url: str, partitions: int = 16) -> dict[str, list[float]]:
    client = redis_py.Redis.from_url(url, decode_responses=True)
    out: dict[str, list[float]] = {}
    try:
        for p in range(partitions):
            for _, fields in client.xrange(f"mff:hb:{p}"):
                out.setdefault(fields["id"], []).append(float(fields["ts"]))
    finally:
        client.close()
    return out


def _outage_case(redis: RedisServer, shard: Shard, outage: str) -> None:
    ids = [f"r-{i}" for i in range(30)]
    shard.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: len(shard.owned) == 16 and all(
        i in shard.monitor.monitoring_agents for i in ids), 5, what="agents monitored")
    swarm = Swarm(redis.url, ids)
    try:
        wait_for(lambda: all(shard.monitor.history_array(i).size >= 3 for i in ids), 5,
                 what="heartbeats flowing")
        dead = ids[0]
        swarm.kill([dead])
        died_at = swarm.last[dead]
        time.sleep(0.1)
        if outage == "restart":
            redis.kill()                     # a crash: the AOF (fsync always) keeps the acked
            wait_for(lambda: shard.status()["redis"] == "unreachable", 5,
                     what="shard notices")
            time.sleep(1.0)                  # longer than the agents' interval x threshold
            redis.start()
        else:
            redis.suspend()                  # hung, not closed: reads time out
            wait_for(lambda: shard.status()["redis"] == "unreachable", 5,
                     what="shard notices")
            time.sleep(0.5)
            redis.resume()
        wait_for(lambda: shard.status()["redis"] == "ok" and len(shard.owned) == 16, 5,
                 what="shard reconnects and holds its leases")
        wait_for(lambda: any(x["id"] == dead and x["state"] == "failed"
                             for x in read_alerts(redis.url)), 5, what="the dead reported")
        time.sleep(INTERVAL_MS * THRESHOLD / 1000 + 0.5)   # time for any false alarm
        alerts = read_alerts(redis.url)
        assert {x["id"] for x in alerts} == {dead}, [a for a in alerts if a["id"] != dead]
        failed = [x for x in alerts if x["state"] == "failed"]
        assert len(failed) == 1
        assert abs(float(failed[0]["deadline"]) - (died_at + 0.9)) < 0.05
        for agent_id in ids[1:]:
            assert shard.monitor.check_agent_health(agent_id) is HealthState.HEALTHY
    finally:
        swarm.stop()
    # Every heartbeat Redis holds (all it acknowledged) was recorded by the owner.
    time.sleep(0.3)
    for agent_id, stamps in _stored_stamps(redis.url).items():
        recorded = shard.monitor.history_array(agent_id, copy=True)
        missing = [t for t in stamps if t >= recorded[0] and
                   not np.isclose(recorded, t, atol=1e-5, rtol=0).any()]
        assert missing == [], (agent_id, missing[:5])
    status = shard.status()
    assert status["fenced_writes"] == 0 and status["outages"] >= 1
    assert status["last_error"] is not None


def test_redis_crash_and_restart(redis: RedisServer, shard: Shard) -> None:
    _outage_case(redis, shard, "restart")


def test_redis_paused(redis: RedisServer, shard: Shard) -> None:
    _outage_case(redis, shard, "pause")
