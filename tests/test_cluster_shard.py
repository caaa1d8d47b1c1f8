"""Shards against a real redis-server: heartbeats through Redis reach the owner, partitions
split evenly, takeover after a stop or a crash (no false FAILED, the dead reported once with
takeover=1 and their true deadline, no republication), and fencing of a stale shard."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_util import RedisServer, Swarm, read_alerts, redis_server, wait_for

from moai_flow_fast import HealthState, HeartbeatMonitor
from moai_flow_fast.cluster import ClusterConfig, Shard, partition_of

LEASE_MS = 1000
POLL_MS = 50
INTERVAL_MS = 300
THRESHOLD = 3
MARGIN_S = 2.0     # covers lease expiry + a keeper tick: the dead agents' last beats replay


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def make_shard(redis: RedisServer) -> Iterator[Callable[..., Shard]]:
    made: list[tuple[Shard, HeartbeatMonitor]] = []

    def make(name: str, start: bool = True, silent_starters: bool = False,
             **overrides: Any) -> Shard:
        monitor = HeartbeatMonitor(interval_ms=INTERVAL_MS, failure_threshold=THRESHOLD,
                                   start_clock_on_register=silent_starters)
        settings: dict[str, Any] = {"lease_ms": LEASE_MS, "poll_ms": POLL_MS,
                                    "replay_margin_s": MARGIN_S}
        settings.update(overrides)
        shard = Shard(monitor, ClusterConfig(url=redis.url, shard_name=name, **settings))
        made.append((shard, monitor))
        if start:
            shard.start()
        return shard

    yield make
    for shard, monitor in made:
        shard.stop(release=False)
        monitor.shutdown()


@pytest.fixture
def swarms() -> Iterator[list[Swarm]]:
    running: list[Swarm] = []
    yield running
    for swarm in running:
        swarm.stop()


def _split(a: Shard, b: Shard) -> bool:
    return len(a.owned) == 8 and len(b.owned) == 8 and not (a.owned & b.owned)


def _monitored(shard: Shard, ids: list[str]) -> bool:
    return all(agent_id in shard.monitor.monitoring_agents for agent_id in ids)


def test_heartbeats_through_redis_reach_the_owner(redis: RedisServer, make_shard: Any,
                                                  swarms: list[Swarm]) -> None:
    shard = make_shard("a")
    ids = [f"agent-{i}" for i in range(30)]
    assert shard.register([(i, INTERVAL_MS, THRESHOLD) for i in ids]) == 30
    assert shard.register([(ids[0], None, None)]) == 0          # already registered
    wait_for(lambda: len(shard.owned) == 16, 3, what="all partitions owned")
    wait_for(lambda: _monitored(shard, ids), 3, what="registry picked up")
    swarm = Swarm(redis.url, ids)
    swarms.append(swarm)
    wait_for(lambda: all(shard.monitor.history_array(i).size >= 3 for i in ids), 5,
             what="heartbeats recorded")
    # Recorded at the senders' own times.
    history = shard.monitor.history_array(ids[0])
    assert abs(history[-1] - swarm.last[ids[0]]) < 0.5
    dead = ids[:3]
    swarm.kill(dead)
    killed_at = {i: swarm.last[i] for i in dead}
    failed = wait_for(lambda: [a for a in read_alerts(redis.url) if a["state"] == "failed"]
                      if len([a for a in read_alerts(redis.url) if a["state"] == "failed"]) >= 3
                      else None, 5, what="three failures published")
    assert sorted(a["id"] for a in failed) == sorted(dead)
    for alert in failed:
        assert alert["shard"] == "a" and alert["takeover"] == "0"
        assert alert["previous"] == "critical"
        true_deadline = killed_at[alert["id"]] + INTERVAL_MS * THRESHOLD / 1000
        assert abs(float(alert["deadline"]) - true_deadline) < 0.05
        assert int(alert["partition"]) == partition_of(alert["id"], 16)
    time.sleep(0.5)   # nothing else: the live agents were never reported
    states = {a["id"] for a in read_alerts(redis.url)}
    assert states == set(dead)
    # Unknown ids are counted, not recorded.
    shard.send(["nobody-1", "nobody-2"])
    wait_for(lambda: shard.status()["unknown_heartbeats"] >= 2, 3, what="unknown counted")
    # Unregistering reaches the owner.
    assert shard.unregister(ids[5]) is True and shard.unregister(ids[5]) is False
    wait_for(lambda: ids[5] not in shard.monitor.monitoring_agents, 3, what="unregistered")
    owner = shard.owner_of(ids[7])
    assert owner is not None and owner["name"] == "a"
    status = shard.status()
    assert status["redis"] == "ok" and status["fenced_writes"] == 0
    assert status["published"] == 9      # 3 agents x degraded, critical, failed


def test_two_shards_split_evenly_and_take_over_after_a_stop(
        redis: RedisServer, make_shard: Any, swarms: list[Swarm]) -> None:
    a = make_shard("a", http_url="http://127.0.0.1:1111")
    b = make_shard("b", http_url="http://127.0.0.1:2222")
    ids = [f"w-{i}" for i in range(40)]
    a.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: _split(a, b), 5, what="an 8/8 split")
    swarms.append(Swarm(redis.url, ids))
    view = a.cluster()
    by_name = {s["name"]: s for s in view["shards"]}
    assert sorted(by_name) == ["a", "b"] and view["unowned"] == []
    assert by_name["a"]["partitions"] == sorted(a.owned)
    assert by_name["b"]["http_url"] == "http://127.0.0.1:2222"
    assert by_name["a"]["lease_expires"] > time.time()
    in_b = [i for i in ids if partition_of(i, 16) in b.owned]
    owner = a.owner_of(in_b[0])
    assert owner is not None and owner == {"name": "b", "http_url": "http://127.0.0.1:2222",
                                           "partition": partition_of(in_b[0], 16)}
    wait_for(lambda: _monitored(a, [i for i in ids if i not in in_b]) and _monitored(b, in_b),
             3, what="each owner monitors its agents")
    stopped = time.monotonic()
    b.stop()                     # releases its leases: no need to wait for expiry
    wait_for(lambda: len(a.owned) == 16, 3, what="a owns everything")
    handover = time.monotonic() - stopped
    assert handover < LEASE_MS / 1000   # released leases are taken at a's next tick
    wait_for(lambda: _monitored(a, ids), 3, what="a monitors b's agents")
    time.sleep(INTERVAL_MS * THRESHOLD / 1000 + 0.3)
    assert read_alerts(redis.url) == []          # everybody kept beating: no alert at all
    assert all(a.monitor.check_agent_health(i) is HealthState.HEALTHY for i in ids)


def test_crash_takeover_reports_the_dead_once_with_true_deadline(
        redis: RedisServer, make_shard: Any, swarms: list[Swarm]) -> None:
    a = make_shard("a")
    b = make_shard("b", batch=1)     # the replay reads the log one entry at a time
    # Every transition b's monitor makes (what its SSE clients, webhooks and log would see).
    seen: list[str] = []
    b.monitor._dispatcher.add_listener(lambda ids, block: seen.extend(ids))
    ids = [f"c-{i}" for i in range(40)]
    a.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: _split(a, b), 5, what="an 8/8 split")
    swarm = Swarm(redis.url, ids)
    swarms.append(swarm)
    in_a = [i for i in ids if partition_of(i, 16) in a.owned]
    wait_for(lambda: _monitored(a, in_a), 3, what="a monitors its agents")
    time.sleep(0.3)
    dead = in_a[:4]
    swarm.kill(dead)
    killed_at = {i: swarm.last[i] for i in dead}
    crashed = time.monotonic()
    a.stop(release=False)        # a crash: threads gone, leases left to expire
    wait_for(lambda: len(b.owned) == 16, LEASE_MS / 1000 + 2, what="b takes over")
    takeover_s = time.monotonic() - crashed
    # Lease expiry + one keeper tick (lease / 3) + a poll, with slack for a loaded machine.
    assert takeover_s < LEASE_MS / 1000 * 4 / 3 + POLL_MS / 1000 + 0.5, takeover_s
    failed = wait_for(lambda: [x for x in read_alerts(redis.url) if x["state"] == "failed"]
                      if sum(x["state"] == "failed" for x in read_alerts(redis.url)) >= 4
                      else None, 5, what="the dead reported")
    time.sleep(0.5)
    alerts = read_alerts(redis.url)
    assert {x["id"] for x in alerts} == set(dead)        # no false alert for the living
    failed = [x for x in alerts if x["state"] == "failed"]
    assert sorted(x["id"] for x in failed) == sorted(dead)   # each exactly once
    for alert in failed:
        assert alert["shard"] == "b" and alert["takeover"] == "1"
        true_deadline = killed_at[alert["id"]] + INTERVAL_MS * THRESHOLD / 1000
        assert abs(float(alert["deadline"]) - true_deadline) < 0.05
    for agent_id in set(ids) - set(dead):
        assert b.monitor.check_agent_health(agent_id) is HealthState.HEALTHY
    # No false alarm even inside b: the replay made no transition for a living agent.
    assert set(seen) <= set(dead), sorted(set(seen) - set(dead))
    assert b.status()["replayed"] > 0 and b.status()["takeovers"] >= 16


def test_new_owner_does_not_republish_what_the_old_one_published(
        redis: RedisServer, make_shard: Any, swarms: list[Swarm]) -> None:
    a = make_shard("a")
    b = make_shard("b")
    ids = [f"d-{i}" for i in range(40)]
    a.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: _split(a, b), 5, what="an 8/8 split")
    swarm = Swarm(redis.url, ids)
    swarms.append(swarm)
    victim = next(i for i in ids if partition_of(i, 16) in a.owned)
    # Re-register the victim with a long threshold: a publishes degraded and critical,
    # then crashes well before failed is due.
    a.unregister(victim)
    wait_for(lambda: victim not in a.monitor.monitoring_agents, 3, what="unregistered")
    a.register([(victim, INTERVAL_MS, 8)])
    wait_for(lambda: victim in a.monitor.monitoring_agents, 3, what="re-registered")
    time.sleep(0.3)
    swarm.kill([victim])
    wait_for(lambda: any(x["state"] == "critical" for x in read_alerts(redis.url)), 3,
             what="critical published by a")
    a.stop(release=False)
    wait_for(lambda: len(b.owned) == 16, LEASE_MS / 1000 + 2, what="b takes over")
    wait_for(lambda: any(x["state"] == "failed" for x in read_alerts(redis.url)), 5,
             what="failed published by b")
    time.sleep(0.3)
    alerts = [(x["id"], x["state"], x["shard"]) for x in read_alerts(redis.url)]
    assert alerts == [(victim, "degraded", "a"), (victim, "critical", "a"),
                      (victim, "failed", "b")]
    assert b.status()["suppressed"] >= 2       # b's own degraded and critical were deduped


def test_a_stale_shard_is_fenced(redis: RedisServer, make_shard: Any,
                                 swarms: list[Swarm]) -> None:
    a = make_shard("a")
    b = make_shard("b")
    ids = [f"f-{i}" for i in range(40)]
    a.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: _split(a, b), 5, what="an 8/8 split")
    swarm = Swarm(redis.url, ids)
    swarms.append(swarm)
    in_a = [i for i in ids if partition_of(i, 16) in a.owned]
    wait_for(lambda: _monitored(a, in_a), 3, what="a monitors its agents")
    a._keeper.suspended.set()        # a paused shard: its renewals stop, its threads do not
    wait_for(lambda: len(b.owned) == 16, LEASE_MS / 1000 + 2, what="b takes a's partitions")
    time.sleep(0.3)
    victim = in_a[0]
    swarm.kill([victim])
    # Both detect the death; only the lease holder may publish it.
    wait_for(lambda: a.status()["fenced_writes"] >= 1, 5, what="a's write refused")
    wait_for(lambda: any(x["state"] == "failed" for x in read_alerts(redis.url)), 5,
             what="failed published")
    time.sleep(0.3)
    alerts = read_alerts(redis.url)
    assert [x["state"] for x in alerts] == ["degraded", "critical", "failed"]
    assert {x["shard"] for x in alerts} == {"b"} and {x["id"] for x in alerts} == {victim}
    assert a.status()["leases_lost"] >= 1
    assert partition_of(victim, 16) not in a.owned        # a dropped what it was fenced on
    wait_for(lambda: victim not in a.monitor.monitoring_agents, 3, what="a unregistered it")
    # Resumed, it learns it lost the rest and the cluster rebalances.
    a._keeper.suspended.clear()
    wait_for(lambda: _split(a, b), 6, what="an 8/8 split again")


def test_three_shards_share_four_partitions_two_one_one(make_shard: Any) -> None:
    shards = [make_shard(name, partitions=4) for name in ("a", "b", "c")]

    def spread() -> bool:
        owned = [s.owned for s in shards]
        return (sorted(len(o) for o in owned) == [1, 1, 2]
                and set().union(*owned) == {0, 1, 2, 3} and sum(map(len, owned)) == 4)

    # The extra partition goes to the first name in sorted order ("a"). Until every shard
    # has seen the others, a 2/1/1 with another shard holding two can show up on the way.
    wait_for(lambda: spread() and len(shards[0].owned) == 2, 8, what="a 2/1/1 spread")
    held = [s.owned for s in shards]
    time.sleep(LEASE_MS / 1000)          # a few keeper ticks: it stays put
    assert [s.owned for s in shards] == held
    shards[0].stop()
    wait_for(lambda: sorted(len(s.owned) for s in shards[1:]) == [2, 2]
             and shards[1].owned.isdisjoint(shards[2].owned), 5, what="a 2/2 spread")


def test_an_agent_that_never_beats_fails_at_an_absolute_deadline(
        redis: RedisServer, make_shard: Any) -> None:
    shard = make_shard("a", silent_starters=True)
    wait_for(lambda: len(shard.owned) == 16, 3, what="all partitions owned")
    wait_for(lambda: shard.status()["live"] == list(range(16)), 5, what="all partitions live")
    registered = time.time()
    shard.register([("silent", INTERVAL_MS, THRESHOLD)])
    failed = wait_for(lambda: [x for x in read_alerts(redis.url) if x["state"] == "failed"],
                      INTERVAL_MS * THRESHOLD / 1000 + 3, what="the silent agent failed")
    assert [x["id"] for x in failed] == ["silent"]
    # Its deadline counts from its registration (in Unix seconds, not from 0), and it was
    # found live, not by a takeover replay.
    expected = registered + INTERVAL_MS * THRESHOLD / 1000
    assert expected - 0.05 < float(failed[0]["deadline"]) < expected + 0.5
    assert failed[0]["takeover"] == "0"


def test_hostile_entries_are_counted_and_never_stop_the_shard(
        redis: RedisServer, make_shard: Any) -> None:
    """Entries written by anybody (another language, a buggy or hostile sender): odd field
    layouts, bad `ts`, undecodable bytes, garbage registry specs. None stops the consumer;
    a bad `ts` falls back to the entry's own time; the good entries around them count."""
    import redis as redis_py

    shard = make_shard("a", partitions=1)
    wait_for(lambda: shard.status()["live"] == [0], 5, what="the partition live")
    ids = [f"h-{i}" for i in range(8)]
    shard.register([(i, INTERVAL_MS, THRESHOLD) for i in ids])
    wait_for(lambda: _monitored(shard, ids), 3, what="registered")
    client = redis_py.Redis.from_url(redis.url)
    client.hset("mff:agents:0", mapping={"junk-1": "x,y", "junk-2": "-5,0", "junk-3": "\xff"})
    client.xadd("mff:reg:0", {"op": "add", "id": "junk-1", "spec": "x,y"})
    client.xadd("mff:reg:0", {"op": "add", "id": "junk-2", "spec": "-5,0"})
    client.xadd("mff:reg:0", {"op": "bogus"})
    now = time.time()
    hostile: list[dict[Any, Any]] = [
        {"ts": str(now), "id": ids[0]},               # fields in another order
        {"id": ids[1], "ts": "not a number"},         # bad ts: the entry's own time
        {"id": ids[2], "ts": "nan"},
        {"id": ids[3], "ts": "1e300"},                # beyond year 2242
        {"id": ids[4], "ts": "-5"},
        {"id": ids[5]},                               # no ts at all
        {"id": ids[6], "ts": str(now), "extra": "x"},
        {"ts": str(now)},                             # no id
        {"who": "knows"},
        {"id": b"\xff\xfe\x00 not utf-8", "ts": str(now)},
        {"id": "", "ts": str(now)},
        {"id": "x" * 100_000, "ts": str(now)},
    ]
    before = shard.status()["unknown_heartbeats"]
    for fields in hostile:
        client.xadd("mff:hb:0", fields)
    client.xadd("mff:hb:0", {"id": ids[7], "ts": str(now)})   # a good one after them all
    wait_for(lambda: shard.monitor.history_array(ids[7]).size == 1, 3, what="the good entry")
    entry_times = {}
    for entry_id, fields in client.xrange("mff:hb:0"):
        agent_id = fields.get(b"id", b"").decode("utf-8", "replace")
        entry_times[agent_id] = int(entry_id.split(b"-")[0]) / 1000
    for agent_id in ids[:7]:
        history = shard.monitor.history_array(agent_id)
        assert history.size == 1, agent_id
        expected = now if agent_id in (ids[0], ids[6]) else entry_times[agent_id]
        assert abs(history[0] - expected) < 1e-3, agent_id
    status = shard.status()
    assert status["unknown_heartbeats"] - before == 5    # no id (2), undecodable, "", huge
    assert status["redis"] == "ok" and status["live"] == [0]
    assert status["invalid_specs"] >= 2
    assert "junk-1" not in shard.monitor.monitoring_agents
    # The consumer still runs: a heartbeat sent now is recorded.
    shard.send([ids[0]])
    wait_for(lambda: shard.monitor.history_array(ids[0]).size == 2, 3, what="still consuming")
    client.close()
