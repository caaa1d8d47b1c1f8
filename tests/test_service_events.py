"""Transitions leaving the service: the SSE stream (and its slow-client drop) and webhooks."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from service_util import Served, served, wait_for


def _sse_events(s: Served, out: list[tuple[str, dict]]) -> None:
    """Collect (event, data) pairs of /v1/events until the stream ends."""
    with httpx.Client(timeout=httpx.Timeout(10, read=30)) as client, \
            client.stream("GET", s.url + "/v1/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if event == "end":
                    return


def test_silent_agent_seen_degraded_critical_failed_on_the_stream() -> None:
    with served("--interval-ms", "100") as s:
        s.post("/v1/agents", json={"agents": [{"id": "loud", "interval_ms": 60_000}]})
        got: list[tuple[str, dict]] = []
        reader = threading.Thread(target=_sse_events, args=(s, got), daemon=True)
        reader.start()
        wait_for(lambda: s.get("/v1/stats").json()["service"]["events"]["sse_clients"] == 1)
        s.post("/v1/agents", json={"agents": [{"id": "silent"}]})
        s.post("/v1/heartbeats", json={"ids": ["silent", "loud"]})
        wait_for(lambda: any(d["id"] == "silent" and d["state"] == "failed" for _, d in got),
                 timeout=5)
        s.post("/v1/heartbeats", json={"ids": ["silent"]})
        wait_for(lambda: any(d["kind"] == "recovery" for _, d in got), timeout=5)
        assert s.stop() == 0
        reader.join(5)
        assert got[-1] == ("end", {"reason": "server shutting down"})
        got.pop()
        mine = [d for e, d in got if e == "transition" and d["id"] == "silent"]
        assert [(d["previous"], d["state"], d["kind"]) for d in mine] == [
            ("healthy", "degraded", "crossing"), ("degraded", "critical", "crossing"),
            ("critical", "failed", "crossing"), ("failed", "healthy", "recovery")]
        failed = mine[2]
        # Times are Unix seconds; the failure was due 3 intervals after the heartbeat.
        assert abs(failed["detected"] - time.time()) < 10
        assert 0 <= failed["latency_ms"] < 200
        assert failed["elapsed_ms"] >= 300
        assert [d["seq"] for _, d in got] == sorted(d["seq"] for _, d in got)
        assert not any(d["id"] == "loud" for _, d in got)


def _raw_stream(s: Served, stop: threading.Event, out: bytearray) -> None:
    """Read /v1/events as fast as a socket can (recv releases the GIL), keeping the bytes."""
    host, port = s.url[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                return
            out += chunk


def test_slow_client_is_dropped_with_a_final_event_and_others_are_not() -> None:
    groups, size = 100, 150
    with served("--interval-ms", "100", "--failure-threshold", "2", "--sse-queue", "5000") as s:
        host, port = s.url[len("http://"):].rsplit(":", 1)
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # and it never reads
        slow.connect((host, int(port)))
        slow.sendall(f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        fast = bytearray()
        stop = threading.Event()
        reader = threading.Thread(target=_raw_stream, args=(s, stop, fast), daemon=True)
        reader.start()
        wait_for(lambda: s.get("/v1/stats").json()["service"]["events"]["sse_clients"] == 2)
        # Groups registered 20 ms apart: each wheel batch holds at most a few hundred
        # transitions (within the bound); 30,000 in all over ~3 s, ~6.6 MB: far more than
        # the slow client's queue and the sockets' buffers (~3 MB here) hold.
        for g in range(groups):
            s.post("/v1/agents", json={"agents": [{"id": f"s{g}-{i}"} for i in range(size)]})
            time.sleep(0.02)
        wait_for(lambda: s.get("/v1/stats").json()["service"]["events"]["sse_clients_dropped"]
                 >= 1, timeout=10)
        t0 = time.monotonic()
        assert s.get("/healthz").status_code == 200       # the service is not held up
        assert time.monotonic() - t0 < 1.0
        slow.settimeout(10)
        raw = b""
        while b"event: end" not in raw or not raw.endswith(b"\r\n0\r\n\r\n"):
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            raw += chunk
        slow.close()
        assert b"event: end" in raw
        tail = raw[raw.index(b"event: end"):]
        assert b"slow client" in tail
        assert raw.count(b"event: transition") < 2 * groups * size
        try:
            wait_for(lambda: fast.count(b"event: transition") >= 2 * groups * size, timeout=20)
        except AssertionError:
            raise AssertionError(f"fast client got {fast.count(b'event: transition')}: "
                                 f"{bytes(fast[-300:])!r} {s.get('/v1/stats').json()}") from None
        stop.set()
        assert b"event: end" not in fast
        stats = s.get("/v1/stats").json()["service"]["events"]
        assert stats["sse_clients_dropped"] == 1 and stats["dropped"] == 0


class _Receiver:
    """A local webhook receiver that fails its first `fail_first` POSTs with 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [e for body in self.bodies for e in body["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_are_delivered_with_retries_and_failures_counted() -> None:
    receiver = _Receiver(fail_first=2)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))          # bound, never listening: connections are refused
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    try:
        with served("--interval-ms", "100", "--webhook", receiver.url, "--webhook", dead_url,
                    "--webhook-retries", "3") as s:
            s.post("/v1/agents", json={"agents": [{"id": f"w{i}"} for i in range(5)]})
            wait_for(lambda: sum(e["state"] == "failed" for e in receiver.events()) == 5,
                     timeout=10)
            events = receiver.events()
            assert {e["id"] for e in events} == {f"w{i}" for i in range(5)}
            assert all(set(e) >= {"id", "kind", "state", "previous", "deadline", "detected"}
                       for e in events)
            assert receiver.attempts >= 3      # two refused, then delivered
            hooks = wait_for(lambda: (h := s.get("/v1/stats").json()["service"]["webhooks"])
                             [1]["dropped_after_retries"] > 0 and h, timeout=15)
            good, bad = hooks
            assert good["url"] == receiver.url and good["attempts_failed"] >= 2
            assert good["delivered"] == len(events)
            assert bad["delivered"] == 0 and bad["attempts_failed"] >= 4
            assert "ConnectError" in bad["last_error"]
            metrics = s.get("/metrics").text
            assert "moai_flow_fast_service_webhook_events_total" in metrics
    finally:
        receiver.close()
        dead.close()
