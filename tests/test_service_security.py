"""Security by default: bearer token, loopback-only without one, token sources, limits."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from service_util import Served, served

TOKEN = "t0ken-for-tests"


def test_token_is_required_on_v1_and_metrics() -> None:
    with served("--token", TOKEN, token=TOKEN) as s:
        anonymous = httpx.Client(timeout=5)
        wrong = httpx.Client(timeout=5, headers={"authorization": "Bearer nope"})
        not_bearer = httpx.Client(timeout=5, headers={"authorization": TOKEN})
        try:
            for client in (anonymous, wrong, not_bearer):
                for method, path in (("GET", "/v1/stats"), ("GET", "/v1/agents"),
                                     ("POST", "/v1/heartbeats"), ("GET", "/metrics"),
                                     ("GET", "/v1/events")):
                    r = client.request(method, s.url + path, json={"ids": ["a"]})
                    assert r.status_code == 401, (method, path)
                    assert r.json()["field"] == "authorization"
                    assert r.headers["www-authenticate"].startswith("Bearer")
            # Liveness, the spec and the dashboard page stay public.
            assert anonymous.get(s.url + "/healthz").status_code == 200
            assert anonymous.get(s.url + "/openapi.json").status_code == 200
        finally:
            for client in (anonymous, wrong, not_bearer):
                client.close()
        assert s.post("/v1/agents", json={"agents": [{"id": "a"}]}).status_code == 200
        # Nothing of the refused requests was recorded.
        assert s.get("/v1/stats").json()["heartbeats_recorded"] == 0


@pytest.mark.parametrize("how", ["env", "file", "config"])
def test_token_sources(how: str, tmp_path: Path) -> None:
    args: list[str] = []
    env: dict[str, str] = {}
    if how == "env":
        env["MOAI_FLOW_FAST_TOKEN"] = TOKEN
    elif how == "file":
        (tmp_path / "token").write_text(TOKEN + "\n")
        args = ["--token-file", str(tmp_path / "token")]
    else:
        (tmp_path / "serve.toml").write_text(
            f'token = "{TOKEN}"\ninterval-ms = 250\nauto_register = true\n')
        args = ["--config", str(tmp_path / "serve.toml")]
    with served(*args, env=env, token=TOKEN) as s:
        assert httpx.get(s.url + "/v1/stats").status_code == 401
        stats = s.get("/v1/stats").json()
        assert stats["service"]["config"]["token"] == "***"
        if how == "config":
            assert stats["service"]["config"]["interval_ms"] == 250
            assert s.post("/v1/heartbeats", json={"ids": ["new"]}).json()["recorded"] == 1


def _refused(*args: str) -> Served:
    with served(*args, ready=False) as s:
        code = s.wait_exit()
        assert code == 2, s.log
        return s


def test_refuses_non_loopback_bind_without_token() -> None:
    s = _refused("--http", "0.0.0.0:0")
    assert "not a loopback address" in s.log and "token" in s.log
    s = _refused("--udp", "0.0.0.0:0", "--token", TOKEN)
    assert "udp" in s.log and "--udp-secret" in s.log


@pytest.mark.parametrize(("args", "words"), [
    (["--interval-ms", "5"], "interval_ms"),
    (["--http", "nonsense"], "HOST:PORT"),
    (["--token-file", "/nonexistent/token"], "token_file"),
])
def test_bad_settings_exit_2_naming_them(args: list[str], words: str) -> None:
    s = _refused(*args)
    assert words in s.log


def test_bad_config_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("no_such_key = 1\n")
    assert "no_such_key" in _refused("--config", str(tmp_path / "a.toml")).log
    (tmp_path / "b.toml").write_text("interval_ms = 'fast'\n")
    assert "interval_ms" in _refused("--config", str(tmp_path / "b.toml")).log


def test_body_limit_is_configurable() -> None:
    with served("--max-body-bytes", "2048") as s:
        r = s.post("/v1/heartbeats", json={"ids": [f"agent-{i}" for i in range(500)]})
        assert r.status_code == 413 and r.json()["field"] == "body"
        # Chunked (no Content-Length): refused as soon as it passes the limit.
        r = s.post("/v1/heartbeats", content=iter([b'{"ids": [', b'"a",' * 1000, b'"b"]}']))
        assert r.status_code == 413
        assert s.post("/v1/heartbeats", json={"ids": ["a"]}).status_code == 200


def test_auto_registration_is_capped_by_max_agents() -> None:
    with served("--auto-register", "--max-agents", "5") as s:
        r = s.post("/v1/heartbeats", json={"ids": [f"cap-{i}" for i in range(8)]})
        assert r.json() == {"recorded": 5, "unknown": 3, "rejected": 0}
        assert s.get("/v1/stats").json()["total_agents"] == 5
