"""HeartbeatClient against a real `serve`, and against no server at all."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from service_util import served, wait_for

from moai_flow_fast.client import HeartbeatClient


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_register_send_and_queued_heartbeats() -> None:
    with served("--interval-ms", "60000", "--token", "tk", token="tk") as s, \
            HeartbeatClient(s.url, token="tk", flush_interval=0.05) as client:
        assert client.register(["c-a", {"id": "c-b", "interval_ms": 1000}]) == {
            "registered": 2, "already": 0}
        assert client.send(["c-a", "zz"]) == {"recorded": 1, "unknown": 1, "rejected": 0}
        queued_at = time.time()
        client.heartbeat("c-a", "c-b")
        time.sleep(0.3)      # the background thread sends them; their stamps are kept
        wait_for(lambda: client.pending == 0 and client.sent == 4)
        stamps = s.get("/v1/agents/c-b/history").json()["timestamps"]
        assert stamps == [pytest.approx(queued_at, abs=0.05)]
        assert client.stats()["recorded"] == 3 and client.stats()["unknown"] == 1
        assert s.get("/v1/agents/c-b").json()["interval_ms"] == 1000


def test_batches_follow_batch_size() -> None:
    with served("--interval-ms", "60000", "--auto-register") as s, \
            HeartbeatClient(s.url, batch_size=100, flush_interval=10) as client:
        client.heartbeat(*[f"b-{i}" for i in range(250)])
        # Two full batches go at once; the rest waits for flush_interval or flush().
        wait_for(lambda: client.sent == 200)
        assert client.pending == 50
        assert client.flush() and client.sent == 250
        assert s.get("/v1/stats").json()["heartbeats_recorded"] == 250


def test_wrong_token_is_counted_not_raised() -> None:
    with served("--token", "right") as s:
        client = HeartbeatClient(s.url, token="wrong")
        try:
            assert client.send(["a"]) is None
            assert client.failures == 1 and "HTTP 401" in (client.last_error or "")
        finally:
            client.close()


def test_monitor_down_never_raises_nor_blocks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="moai_flow_fast.client")
    client = HeartbeatClient(f"http://127.0.0.1:{_closed_port()}", flush_interval=0.02,
                             max_pending=500, timeout=0.5)
    try:
        t0 = time.monotonic()
        for _ in range(10):
            client.heartbeat(*[f"d-{i}" for i in range(100)])
        assert time.monotonic() - t0 < 0.5
        assert client.send(["x"]) is None
        assert client.register(["x"]) is None
        wait_for(lambda: client.failures >= 3)
        assert client.dropped >= 500               # queue bound: the oldest went first
        assert client.pending <= 500
        assert "ConnectError" in (client.last_error or "")
        warnings = [r for r in caplog.records if r.name == "moai_flow_fast.client"]
        assert 1 <= len(warnings) <= 2             # rate-limited, not one per failure
        assert client.flush(timeout=0.5) is False
    finally:
        client.close(timeout=0.2)


def test_asyncio_flavour() -> None:
    with served("--interval-ms", "60000") as s:
        async def main() -> None:
            async with HeartbeatClient(s.url) as client:
                assert await client.aregister(["as-a", "as-b"]) == {"registered": 2,
                                                                    "already": 0}
                assert await client.asend(["as-a", "as-b", "as-a"]) == {
                    "recorded": 3, "unknown": 0, "rejected": 0}
                client.heartbeat("as-b")
                assert await client.aflush()
            down = HeartbeatClient(f"http://127.0.0.1:{_closed_port()}")
            assert await down.asend(["as-a"]) is None
            assert down.failures == 1
            await down.aclose()

        asyncio.run(main())
        assert len(s.get("/v1/agents/as-b/history").json()["timestamps"]) == 2


def test_bad_arguments_raise_at_construction() -> None:
    with pytest.raises(ValueError, match="url"):
        HeartbeatClient("ftp://x")
    with pytest.raises(ValueError, match="batch_size"):
        HeartbeatClient(batch_size=0)
    with pytest.raises(ValueError, match="flush_interval"):
        HeartbeatClient(flush_interval=0)
    client = HeartbeatClient()
    try:
        with pytest.raises(TypeError, match="agent id"):
            client.heartbeat(3)  # type: ignore[arg-type]
    finally:
        client.close(timeout=0.1)
