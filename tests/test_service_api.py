"""HTTP API v1 end to end: a real `serve` subprocess, spoken to only over the network."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from service_util import Served, served, wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with served("--interval-ms", "200", "--failure-threshold", "3") as s:
        yield s


def _stats(s: Served) -> dict:
    response = s.get("/v1/stats")
    assert response.status_code == 200
    return response.json()


def test_healthz_and_openapi(server: Served) -> None:
    assert server.get("/healthz").json()["status"] == "ok"
    spec = server.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v1/agents", "/v1/heartbeats", "/v1/agents/{agent_id}",
                 "/v1/agents/{agent_id}/history", "/v1/stats", "/v1/intervals", "/v1/events",
                 "/metrics", "/healthz"):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/heartbeats"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/HeartbeatRequest")
    assert "HeartbeatRequest" in spec["components"]["schemas"]


def test_register_heartbeat_and_read_back(server: Served) -> None:
    r = server.post("/v1/agents", json={"agents": [
        {"id": "api-a"}, {"id": "api-b", "interval_ms": 60_000, "failure_threshold": 5}]})
    assert r.status_code == 200
    assert r.json() == {"registered": 2, "already": 0}
    r = server.post("/v1/agents", json={"agents": [{"id": "api-a"}, {"id": "api-c"}]})
    assert r.json() == {"registered": 1, "already": 1}

    before = time.time()
    r = server.post("/v1/heartbeats", json={"ids": ["api-a", "api-b", "api-b", "nobody"]})
    assert r.status_code == 200
    assert r.json() == {"recorded": 3, "unknown": 1, "rejected": 0}

    info = server.get("/v1/agents/api-b").json()
    assert info["id"] == "api-b"
    assert info["state"] == "healthy"
    assert info["interval_ms"] == 60_000 and info["failure_threshold"] == 5
    assert before - 1 <= info["last_heartbeat"] <= time.time() + 1
    assert 0 <= info["elapsed_ms"] < 5_000
    history = server.get("/v1/agents/api-b/history").json()
    assert history["id"] == "api-b" and len(history["timestamps"]) == 2
    assert server.get("/v1/agents/nobody").status_code == 404
    assert server.get("/v1/agents/nobody/history").status_code == 404


def test_explicit_timestamps_and_stale_ones(server: Served) -> None:
    server.post("/v1/agents", json={"agents": [{"id": "ts-a", "interval_ms": 60_000}]})
    now = time.time()
    r = server.post("/v1/heartbeats", json={"ids": ["ts-a", "ts-a"],
                                             "timestamps": [now - 2, now - 1]})
    assert r.json() == {"recorded": 2, "unknown": 0, "rejected": 0}
    r = server.post("/v1/heartbeats", json={"ids": ["ts-a"], "timestamps": [now - 30]})
    assert r.json() == {"recorded": 0, "unknown": 0, "rejected": 1}
    timestamps = server.get("/v1/agents/ts-a/history").json()["timestamps"]
    assert timestamps == pytest.approx([now - 2, now - 1])


def test_silent_agent_degrades_fails_and_recovers(server: Served) -> None:
    server.post("/v1/agents", json={"agents": [{"id": "quiet", "interval_ms": 150}]})
    server.post("/v1/heartbeats", json={"ids": ["quiet"]})
    seen = []

    def state() -> str:
        s = server.get("/v1/agents/quiet").json()["state"]
        if not seen or seen[-1] != s:
            seen.append(s)
        return s

    wait_for(lambda: state() == "failed", timeout=5)
    assert seen[0] == "healthy" and seen[-1] == "failed"
    assert set(seen) <= {"healthy", "degraded", "critical", "failed"}
    failed = server.get("/v1/agents", params={"min_state": "failed", "limit": 10000}).json()
    assert "quiet" in failed["agents"]
    server.post("/v1/heartbeats", json={"ids": ["quiet"]})
    assert server.get("/v1/agents/quiet").json()["state"] == "healthy"


def test_paging_of_the_agent_list(server: Served) -> None:
    ids = [f"page-{i:03d}" for i in range(25)]
    server.post("/v1/agents", json={"agents": [{"id": i, "interval_ms": 60_000} for i in ids]})
    got: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"min_state": "healthy", "limit": 7}
        if cursor is not None:
            params["cursor"] = cursor
        page = server.get("/v1/agents", params=params).json()
        got.extend(page["agents"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert [i for i in got if i.startswith("page-")] == ids
    assert pages >= 4


def test_delete(server: Served) -> None:
    server.post("/v1/agents", json={"agents": [{"id": "gone"}]})
    assert server.delete("/v1/agents/gone").json() == {"deleted": "gone"}
    assert server.delete("/v1/agents/gone").status_code == 404
    assert server.get("/v1/agents/gone").status_code == 404
    assert server.post("/v1/heartbeats", json={"ids": ["gone"]}).json()["unknown"] == 1


def test_stats_intervals_metrics(server: Served) -> None:
    server.post("/v1/agents", json={"agents": [{"id": "iv", "interval_ms": 60_000}]})
    now = time.time()
    server.post("/v1/heartbeats", json={"ids": ["iv"] * 3, "timestamps": [now - 2, now - 1, now]})
    stats = _stats(server)
    assert stats["total_agents"] >= 1 and stats["heartbeats_recorded"] >= 3
    assert stats["service"]["events"]["published"] >= 0
    assert stats["service"]["config"]["token"] is None
    rows: dict[str, dict] = {}
    cursor = None
    while True:
        params = {"limit": 10000} if cursor is None else {"limit": 10000, "cursor": cursor}
        page = server.get("/v1/intervals", params=params).json()
        rows.update({row["id"]: row for row in page["agents"]})
        cursor = page["next"]
        if cursor is None:
            break
    assert rows["iv"]["count"] == 2
    assert rows["iv"]["mean"] == pytest.approx(1.0, abs=1e-3)
    metrics = server.get("/metrics")
    assert metrics.status_code == 200
    assert "moai_flow_fast_heartbeats_total" in metrics.text
    assert "moai_flow_fast_service_events_published_total" in metrics.text


def test_dashboard_route_answers(server: Served) -> None:
    r = server.get("/")
    # The page itself is the dashboard's; the route serves it when it is installed.
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert "text/html" in r.headers["content-type"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/heartbeats", b"{not json", "body"),
    ("/v1/heartbeats", b"[1, 2]", "body"),
    ("/v1/heartbeats", b'{"ids": "bad-1"}', "ids"),
    ("/v1/heartbeats", b'{"ids": ["bad-1", 5]}', "ids[1]"),
    ("/v1/heartbeats", b'{"ids": ["bad-1", ""]}', "ids[1]"),
    ("/v1/heartbeats", b'{"ids": ["bad-1", "x\\ny"]}', "ids"),
    ("/v1/heartbeats", b'{"ids": ["bad-1"], "timestamps": [1, 2]}', "timestamps"),
    ("/v1/heartbeats", b'{"ids": ["bad-1"], "timestamps": ["1"]}', "timestamps[0]"),
    ("/v1/heartbeats", b'{"ids": ["bad-1"], "timestamps": [-1]}', "timestamps[0]"),
    ("/v1/heartbeats", b'{"ids": ["bad-1"], "extra": 1}', "extra"),
    ("/v1/agents", b'{"agents": [{"id": "bad-1"}, {"id": "bad-2", "interval_ms": 5}]}',
     "agents[1].interval_ms"),
    ("/v1/agents", b'{"agents": [{"id": "bad-1"}, {"id": "bad-2", "failure_threshold": 1.5}]}',
     "agents[1].failure_threshold"),
    ("/v1/agents", b'{"agents": [{"id": "bad-1"}, {"id": "bad-2", "failure_threshold": true}]}',
     "agents[1].failure_threshold"),
    ("/v1/agents", b'{"agents": [{"id": "bad-1"}, {"name": "bad-2"}]}', "agents[1].id"),
])
def test_malformed_input_is_4xx_naming_the_field_and_records_nothing(
        server: Served, path: str, body: bytes, field: str) -> None:
    before = _stats(server)
    r = server.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["field"] == field, error
    assert error["error"]
    after = _stats(server)
    assert after["heartbeats_recorded"] == before["heartbeats_recorded"]
    assert after["total_agents"] == before["total_agents"]
    assert server.get("/v1/agents/bad-1").status_code == 404


def test_oversize_batch_and_body(server: Served) -> None:
    before = _stats(server)
    r = server.post("/v1/heartbeats", json={"ids": ["x"] * 100_001})
    assert r.status_code == 422 and r.json()["field"] == "ids"
    r = server.post("/v1/heartbeats", content=b'{"ids": ["' + b"y" * (9 << 20) + b'"]}')
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert _stats(server)["heartbeats_recorded"] == before["heartbeats_recorded"]


def test_bad_query_parameters(server: Served) -> None:
    for params, field in (({"min_state": "sick"}, "min_state"), ({"limit": 0}, "limit"),
                          ({"limit": "many"}, "limit"), ({"cursor": "abc"}, "cursor")):
        r = server.get("/v1/agents", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    assert server.get("/v1/nothing").status_code == 404
    assert server.http.put(server.url + "/v1/agents").status_code == 405
