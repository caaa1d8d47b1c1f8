"""`serve --redis`: several real `serve` subprocesses sharing a swarm through one real
redis-server: ingestion on any shard, an even spread, one view of the cluster (forwarding,
merged lists), health and metrics, and the cluster options' errors. Helpers for
tests/test_service_cluster_faults.py are here too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import redis
from redis_util import RedisServer, redis_server
from service_util import Served, served, wait_for

from moai_flow_fast.cluster import partition_of

LEASE_MS = 1000
POLL_MS = 100


@pytest.fixture
def r() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def shard_args(r: RedisServer, name: str, partitions: int, *extra: str) -> list[str]:
    return ["--redis", r.url, "--shard-name", name, "--partitions", str(partitions),
            "--lease-ms", str(LEASE_MS), "--poll-ms", str(POLL_MS), *extra]


@contextmanager
def cluster(r: RedisServer, names: list[str], partitions: int, *extra: str
            ) -> Iterator[dict[str, Served]]:
    """One ready `serve --redis` per name, on free loopback ports, all stopped at exit."""
    with ExitStack() as stack:
        yield {n: stack.enter_context(served(*shard_args(r, n, partitions, *extra)))
               for n in names}


def spread(s: Served) -> dict[str, list[int]]:
    """{shard: partitions} of the shards holding any, from `GET /v1/cluster`."""
    body = s.get("/v1/cluster").json()
    return {sh["name"]: sorted(sh["partitions"]) for sh in body["shards"] if sh["partitions"]}


def wait_even(s: Served, names: list[str], partitions: int, timeout: float = 15.0
              ) -> dict[str, list[int]]:
    """Wait until every partition is held by one of `names` (all of them), evenly."""
    def even() -> dict[str, list[int]] | None:
        view = spread(s)
        held = sorted(p for ps in view.values() for p in ps)
        counts = [len(view.get(n, [])) for n in names]
        ok = held == list(range(partitions)) and set(view) == set(names)
        return view if ok and max(counts) - min(counts) <= 1 else None
    view: dict[str, list[int]] = wait_for(even, timeout=timeout, every=0.05)
    return view


def alerts(r: RedisServer, prefix: str = "mff") -> list[dict[str, Any]]:
    """Every entry of `{prefix}:alerts`, read with redis-py, plus its time as `at_ms`."""
    client = redis.Redis.from_url(r.url, decode_responses=True)
    try:
        entries = client.xrange(f"{prefix}:alerts")
    finally:
        client.close()
    return [{**fields, "at_ms": int(entry_id.split("-", 1)[0])} for entry_id, fields in entries]


def ids_in(partitions: list[int], total: int, count: int, prefix: str) -> list[str]:
    """`count` agent ids whose partitions (out of `total`) are in `partitions`."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        agent_id = f"{prefix}-{i}"
        if partition_of(agent_id, total) in partitions:
            out.append(agent_id)
        i += 1
    return out


# -- the tests ---------------------------------------------------------------------------------


def test_three_shards_share_the_swarm_and_answer_for_every_agent(r: RedisServer) -> None:
    names = ["shard-a", "shard-b", "shard-c"]
    n_parts = 12
    with cluster(r, names, n_parts, "--interval-ms", "1000", "--udp", "127.0.0.1:0") as sh:
        a, b, c = sh["shard-a"], sh["shard-b"], sh["shard-c"]
        view = wait_even(a, names, n_parts)
        assert sorted(len(p) for p in view.values()) == [4, 4, 4]
        assert spread(b) == spread(c) == view               # one view from every shard
        urls = {x["name"]: x["http_url"] for x in a.get("/v1/cluster").json()["shards"]}
        assert urls == {n: sh[n].url for n in names}
        owner = {p: n for n, ps in view.items() for p in ps}

        agents = [f"agent-{i}" for i in range(60)]
        quiet = [{"id": "quiet", "interval_ms": 300, "failure_threshold": 3}]
        assert a.post("/v1/agents", json={"agents": [{"id": i} for i in agents]}).json() == {
            "registered": 60, "already": 0}
        assert b.post("/v1/agents", json={"agents": [{"id": "agent-0"}, *quiet]}).json() == {
            "registered": 1, "already": 1}
        # Each owner picks its agents up from the registry.
        def picked_up() -> bool:
            return sum(x.get("/healthz").json()["agents"] for x in sh.values()) == 61
        wait_for(picked_up, timeout=10)

        # Heartbeats to any shard, over HTTP and UDP, reach the owners.
        t0 = time.time()
        beat = b.post("/v1/heartbeats", json={"ids": [*agents[:30], "quiet"]}).json()
        assert beat == {"recorded": 31, "unknown": 0, "rejected": 0}
        c.send_udp(["\n".join(agents[30:]).encode()])
        def all_beat() -> bool:
            return all((info := a.get(f"/v1/agents/{i}").json())["last_heartbeat"] is not None
                       and info["last_heartbeat"] >= t0 - 1 for i in agents)
        wait_for(all_beat, timeout=10)

        # GET from a non-owner is forwarded to the owner: the same answer from every shard.
        for agent_id in agents[:12]:
            home = sh[owner[partition_of(agent_id, n_parts)]]
            mine = home.get(f"/v1/agents/{agent_id}").json()
            assert mine["state"] == "healthy" and mine["interval_ms"] == 1000
            for other in sh.values():
                got = other.get(f"/v1/agents/{agent_id}").json()
                assert {k: got[k] for k in ("id", "state", "interval_ms", "failure_threshold",
                                            "last_heartbeat")} == {
                    k: mine[k] for k in ("id", "state", "interval_ms", "failure_threshold",
                                         "last_heartbeat")}
            hist = b.get(f"/v1/agents/{agent_id}/history").json()
            assert hist["timestamps"][-1] == mine["last_heartbeat"]
        forwarded = sum(_metric(x, "moai_flow_fast_cluster_forwarded_total") for x in sh.values())
        assert forwarded >= 12 * 2 + 8       # 2 non-owners per GET, plus the history GETs
        missing = c.get("/v1/agents/nobody")
        assert missing.status_code == 404 and missing.json()["field"] == "agent_id"

        # The quiet agent fails; every shard lists it, and only it, cluster-wide.
        wait_for(lambda: a.get("/v1/agents/quiet").json()["state"] == "failed", timeout=10)
        for x in sh.values():
            failed = x.get("/v1/agents", params={"min_state": "failed"}).json()
            assert failed == {"agents": ["quiet"], "next": None, "incomplete": []}
            everyone = x.get("/v1/agents", params={"min_state": "healthy"}).json()
            assert sorted(everyone["agents"]) == sorted([*agents, "quiet"])
            assert everyone["incomplete"] == []
        # Pages of the merged list: partition by partition, complete, no repeat.
        first = a.get("/v1/agents", params={"min_state": "healthy", "limit": 25}).json()
        rest = a.get("/v1/agents", params={"min_state": "healthy", "cursor": first["next"]})
        paged = first["agents"] + rest.json()["agents"]
        assert paged == everyone["agents"] and len(set(paged)) == 61
        assert [partition_of(i, n_parts) for i in paged] == sorted(
            partition_of(i, n_parts) for i in paged)
        # Published once the owner has read the log past the deadline (and re-checked it).
        wait_for(lambda: [e for e in alerts(r) if e["id"] == "quiet" and e["state"] == "failed"],
                 timeout=5)
        fails = [e for e in alerts(r) if e["id"] == "quiet" and e["state"] == "failed"]
        assert len(fails) == 1 and fails[0]["takeover"] == "0"
        assert fails[0]["shard"] == owner[partition_of("quiet", n_parts)]
        last = a.get("/v1/agents/quiet").json()["last_heartbeat"]
        assert abs(float(fails[0]["deadline"]) - (last + 0.9)) < 0.01
        lag_ms = fails[0]["at_ms"] - float(fails[0]["deadline"]) * 1000
        print(f"\ndetection lag of 'quiet' (deadline -> alerts entry): {lag_ms:.0f} ms")
        assert -50 < lag_ms < 2000

        # A delete on any shard removes the agent everywhere.
        assert c.delete("/v1/agents/agent-5").json() == {"deleted": "agent-5"}
        wait_for(lambda: a.get("/v1/agents/agent-5").status_code == 404, timeout=10)
        assert b.delete("/v1/agents/agent-5").status_code == 404

        # Health, metrics and stats carry the shard's view.
        health = a.get("/healthz")
        assert health.status_code == 200
        assert health.json()["redis"] == "ok" and health.json()["shard"] == "shard-a"
        assert health.json()["partitions"] == view["shard-a"]
        assert _metric(a, "moai_flow_fast_cluster_redis_up") == 1
        assert _metric(a, "moai_flow_fast_cluster_owned_partitions") == 4
        assert _metric(a, "moai_flow_fast_cluster_fenced_writes_total") == 0
        stats = a.get("/v1/stats").json()["service"]
        assert stats["cluster"]["shard"] == "shard-a" and stats["cluster"]["redis"] == "ok"
        assert "redis://127.0.0.1" in stats["config"]["redis"]

        # Bad input is still a 4xx naming the field, and nothing is registered.
        bad = a.post("/v1/agents", json={"agents": [{"id": "x"}, {"id": "y",
                                                                 "interval_ms": 1500.5}]})
        assert bad.status_code == 422 and bad.json()["field"] == "agents[1].interval_ms"
        bad = a.post("/v1/heartbeats", json={"ids": ["a", 3]})
        assert bad.status_code == 422 and bad.json()["field"] == "ids[1]"
        assert a.get("/v1/agents/x").status_code == 404
        spec = a.get("/openapi.json").json()["paths"]
        assert "/v1/cluster" in spec and "get" in spec["/v1/agents/{agent_id}"]

        # SIGTERM: exit 0, and the leases are handed back (no wait for their expiry).
        t_stop = time.monotonic()
        assert c.stop() == 0, c.log
        wait_even(a, ["shard-a", "shard-b"], n_parts, timeout=10)
        handoff_s = time.monotonic() - t_stop
        print(f"graceful hand-off after SIGTERM: {handoff_s * 1000:.0f} ms")
        assert a.get("/v1/agents", params={"min_state": "failed"}).json()["agents"] == ["quiet"]
        for x in (a, b):
            assert x.stop() == 0, x.log


def _metric(s: Served, name: str) -> float:
    for line in s.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_token_is_forwarded_and_loops_are_refused(r: RedisServer) -> None:
    names = ["tok-a", "tok-b"]
    env = {"MOAI_FLOW_FAST_TOKEN": "s3cret"}
    with ExitStack() as stack:
        sh = {n: stack.enter_context(served(*shard_args(r, n, 4), env=env, token="s3cret"))
              for n in names}
        a, b = sh["tok-a"], sh["tok-b"]
        view = wait_even(a, names, 4)
        assert a.get("/v1/cluster", headers={"authorization": "Bearer nope"}).status_code == 401
        remote = ids_in(view["tok-b"], 4, 1, "t")[0]
        assert a.post("/v1/agents", json={"agents": [{"id": remote}]}).json()["registered"] == 1
        wait_for(lambda: b.get(f"/v1/agents/{remote}").status_code == 200, timeout=10)
        got = a.get(f"/v1/agents/{remote}")       # forwarded to tok-b with the same token
        assert got.status_code == 200 and got.json()["id"] == remote
        # A request already forwarded is never forwarded again: a stale view cannot loop.
        looped = a.get(f"/v1/agents/{remote}", headers={"x-mff-forwarded": "1"})
        assert looped.status_code == 503 and looped.json()["partition"] == partition_of(remote, 4)
        # The env URL works as --redis does.
        with served("--shard-name", "tok-env", "--lease-ms", str(LEASE_MS), "--partitions", "4",
                    env={**env, "MOAI_FLOW_FAST_REDIS": r.url}, token="s3cret") as e:
            wait_for(lambda: "tok-env" in {x["name"] for x in
                                            e.get("/v1/cluster").json()["shards"]}, timeout=10)
            # tok-env's arrival moves partitions (4 over 3 shards: 2/1/1); while the agent's
            # partition is handed over the answer is a 503, then the new owner's.
            got = wait_for(lambda: (x := e.get(f"/v1/agents/{remote}")).status_code == 200
                           and x, timeout=10)
            assert got.json()["id"] == remote
            assert e.stop() == 0


def test_auto_register_through_the_registry(r: RedisServer) -> None:
    names = ["auto-a", "auto-b"]
    with cluster(r, names, 4, "--auto-register", "--udp", "127.0.0.1:0") as sh:
        a, b = sh["auto-a"], sh["auto-b"]
        wait_even(a, names, 4)
        fresh = [f"fresh-{i}" for i in range(20)]
        assert a.post("/v1/heartbeats", json={"ids": fresh[:10]}).json()["recorded"] == 10
        b.send_udp(["\n".join(fresh[10:]).encode()])
        # Registered in Redis by the shard that received them; monitored by their owners.
        for agent_id in fresh:
            wait_for(lambda i=agent_id: b.get(f"/v1/agents/{i}").status_code == 200, timeout=10)
        assert sum(x.get("/v1/stats").json()["service"]["auto_registered"]
                   for x in (a, b)) == 20
        listed = a.get("/v1/agents", params={"min_state": "healthy"}).json()["agents"]
        assert sorted(listed) == sorted(fresh)


@pytest.mark.parametrize(("args", "message"), [
    (["--partitions", "4"], "partitions needs redis"),
    (["--redis", "http://x"], "redis must be a URL redis://HOST:PORT/DB"),
    (["--redis", "redis://127.0.0.1:6379/0", "--state-file", "s.npz"],
     "state_file cannot be used with redis"),
    (["--redis", "redis://127.0.0.1:6379/0", "--lease-ms", "100"], "lease_ms must be between"),
    (["--redis", "redis://127.0.0.1:6379/0", "--lease-ms", "1000", "--poll-ms", "900"],
     "poll_ms must be at most"),
    (["--redis", "redis://127.0.0.1:6379/0", "--shard-name", "a b"], "shard_name must be"),
    (["--redis", "redis://:pw@127.0.0.1:6379/x"], "redis://:***@127.0.0.1:6379/x"),
    (["--redis", "redis://127.0.0.1:6379/0", "--interval-ms", "1500.5"],
     "interval_ms must be a whole number"),
])
def test_cluster_options_are_checked_before_start(args: list[str], message: str) -> None:
    with served(*args, ready=False) as s:
        assert s.wait_exit() == 2
        assert message in s.log and "pw" not in s.log, s.log
