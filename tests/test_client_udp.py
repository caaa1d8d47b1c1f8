"""UdpHeartbeatSender against a plain loopback UDP socket: format, batching, never raising."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from moai_flow_fast.client import UdpHeartbeatSender
from moai_flow_fast.service._wire import TAG_SIZE, decode_datagram


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _recv_all(sock: socket.socket, settle: float = 0.2) -> list[bytes]:
    """Every datagram that arrives until none has for `settle` seconds."""
    out = []
    sock.settimeout(settle)
    while True:
        try:
            out.append(sock.recv(70_000))
        except TimeoutError:
            return out


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_one_heartbeat_is_one_datagram_of_the_id(receiver: socket.socket) -> None:
    with UdpHeartbeatSender("127.0.0.1", _port(receiver)) as sender:
        sender.heartbeat("agent-1")
        assert receiver.recv(2000) == b"agent-1"
        st = sender.stats()
    assert st["datagrams_sent"] == 1 and st["ids_sent"] == 1 and st["ids_dropped"] == 0


def test_many_ids_are_packed_in_order_within_max_size(receiver: socket.socket) -> None:
    ids = [f"worker-{i:05d}" for i in range(1000)]      # 12 bytes + newline each
    with UdpHeartbeatSender("127.0.0.1", _port(receiver), max_size=500) as sender:
        sender.heartbeats(ids)
        got = _recv_all(receiver)
        st = sender.stats()
    assert all(len(d) <= 500 for d in got)
    # 38 ids of 12 bytes + 37 newlines = 493 bytes fit, a 39th does not: ceil(1000 / 38).
    assert len(got) == 27 == st["datagrams_sent"]
    decoded = [i for d in got for i in (decode_datagram(d) or [])]
    assert decoded == ids
    assert st["ids_sent"] == 1000


def test_signed_datagrams_carry_the_hmac_of_the_body(receiver: socket.socket) -> None:
    with UdpHeartbeatSender("127.0.0.1", _port(receiver), secret="s3cret") as sender:
        sender.heartbeats(["a", "b"])
        data = receiver.recv(2000)
    body = data[TAG_SIZE:]
    assert body == b"a\nb"
    assert data[:TAG_SIZE] == hmac.digest(b"s3cret", body, hashlib.sha256)
    assert decode_datagram(data, "s3cret") == ["a", "b"]
    assert decode_datagram(data, "wrong") is None


def test_monitor_down_never_raises_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    # A port with nothing behind it: the kernel answers ICMP port unreachable, which the
    # connected socket reports on a later send as ECONNREFUSED.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = _port(probe)
    probe.close()
    caplog.set_level(logging.WARNING, logger="moai_flow_fast.client")
    with UdpHeartbeatSender("127.0.0.1", port, log_every=3600) as sender:
        for _ in range(50):
            sender.heartbeat("a")
            time.sleep(0.001)
        st = sender.stats()
    assert st["ids_dropped"] > 0 and st["send_errors"] > 0
    assert "refused" in st["last_error"]
    assert st["ids_sent"] + st["ids_dropped"] == 50
    warnings = [r for r in caplog.records if r.name == "moai_flow_fast.client"]
    assert len(warnings) == 1          # rate-limited: one line per log_every
    assert "dropped" in warnings[0].getMessage()


def test_full_socket_buffer_drops_instead_of_blocking(receiver: socket.socket) -> None:
    # Loopback UDP drops silently at the receiver instead of pushing back, so the full
    # buffer is made with a Unix datagram pair, which does push back (EAGAIN when the
    # peer's queue is full): a blocking send would hang here forever.
    sender = UdpHeartbeatSender("127.0.0.1", _port(receiver))
    mine, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)
    sender._sock.close()
    sender._sock = mine
    t = time.perf_counter()
    for i in range(5000):
        sender.heartbeat(f"agent-{i}")
    elapsed = time.perf_counter() - t
    st = sender.stats()
    sender.close()
    peer.close()
    assert elapsed < 2.0
    assert st["ids_sent"] + st["ids_dropped"] == 5000
    assert st["ids_dropped"] > 0 and st["ids_sent"] > 0
    assert st["last_error"] == "socket buffer full"


def test_bad_ids_raise_naming_the_argument_and_send_nothing(receiver: socket.socket) -> None:
    with UdpHeartbeatSender("127.0.0.1", _port(receiver)) as sender:
        with pytest.raises(TypeError, match="agent_id"):
            sender.heartbeat(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="agent_id"):
            sender.heartbeat("a\nb")
        with pytest.raises(ValueError, match=r"ids\[1\]"):
            sender.heartbeats(["ok", ""])
        with pytest.raises(TypeError, match="ids"):
            sender.heartbeats("abc")
        with pytest.raises(ValueError, match=r"ids\[0\]"):
            sender.heartbeats(["x" * 2000])
        assert _recv_all(receiver) == []
        assert sender.stats()["datagrams_sent"] == 0


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"port": 0}, ValueError, "port"),
    ({"port": "80"}, TypeError, "port"),
    ({"host": ""}, TypeError, "host"),
    ({"host": "no-such-host.invalid"}, ValueError, "host"),
    ({"max_size": 10, "secret": "k"}, ValueError, "max_size"),
    ({"linger_ms": -1}, ValueError, "linger_ms"),
    ({"max_pending": 0}, ValueError, "max_pending"),
    ({"secret": ""}, ValueError, "secret"),
])
def test_bad_constructor_arguments(kwargs: dict[str, object], exc: type[Exception],
                                   word: str) -> None:
    args: dict[str, object] = {"host": "127.0.0.1", "port": 9}
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        UdpHeartbeatSender(**args)  # type: ignore[arg-type]


def test_linger_batches_calls_from_many_threads(receiver: socket.socket) -> None:
    sender = UdpHeartbeatSender("127.0.0.1", _port(receiver), linger_ms=50)
    per_thread, threads = 200, 8

    def agent(k: int) -> None:
        for i in range(per_thread):
            sender.heartbeat(f"t{k}-{i}")

    workers = [threading.Thread(target=agent, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sender.close()                       # sends what is still buffered
    got = _recv_all(receiver)
    ids = [i for d in got for i in (decode_datagram(d) or [])]
    assert sorted(ids) == sorted(f"t{k}-{i}" for k in range(threads) for i in range(per_thread))
    # 1,600 ids of ~7 bytes: batched into far fewer datagrams than calls.
    assert len(got) < 100
    st = sender.stats()
    assert st["ids_sent"] == 1600 and st["ids_pending"] == 0 and st["ids_dropped"] == 0


def test_linger_sends_within_the_linger_time(receiver: socket.socket) -> None:
    with UdpHeartbeatSender("127.0.0.1", _port(receiver), linger_ms=20) as sender:
        t = time.monotonic()
        sender.heartbeat("late")
        assert receiver.recv(100) == b"late"
        assert time.monotonic() - t < 1.0
        sender.heartbeat("again")
        sender.flush()
        assert receiver.recv(100) == b"again"


def test_linger_buffer_is_bounded_and_counts_drops(receiver: socket.socket) -> None:
    sender = UdpHeartbeatSender("127.0.0.1", _port(receiver), linger_ms=60_000,
                                max_pending=10, max_size=65_000)
    sender.heartbeats([f"id{i}" for i in range(25)])
    st = sender.stats()
    assert st["ids_pending"] == 10 and st["ids_dropped"] == 15
    assert st["last_error"] == "buffer full"
    sender.close()
    assert decode_datagram(receiver.recv(70_000)) == [f"id{i}" for i in range(10)]
    sender.heartbeat("after-close")        # never raises: counted
    assert sender.stats()["ids_dropped"] == 16


def test_send_after_close_is_counted_not_raised(receiver: socket.socket) -> None:
    sender = UdpHeartbeatSender("127.0.0.1", _port(receiver))
    sender.close()
    sender.close()
    sender.heartbeat("a")
    st = sender.stats()
    assert st["ids_dropped"] == 1 and st["last_error"] == "sender closed"


def test_against_serve_signed_batched_and_after_it_stops() -> None:
    from service_util import served, wait_for

    ids = [f"udp-client-{i}" for i in range(500)]
    with served("--udp", "127.0.0.1:0", "--udp-secret", "k3y", "--interval-ms", "60000") as s:
        assert s.udp is not None
        s.post("/v1/agents", json={"agents": [{"id": i} for i in ids]})
        host, port = s.udp
        with UdpHeartbeatSender(host, port, secret="k3y") as sender, \
                UdpHeartbeatSender(host, port, secret="k3y", linger_ms=20) as lingering:
            sender.heartbeats(ids)                  # packed into datagrams of <= 1,400 bytes
            for agent_id in ids[:100]:
                lingering.heartbeat(agent_id)       # gathered by the flusher
            wait_for(lambda: s.get("/v1/stats").json()["heartbeats_recorded"] == 600)
            udp = s.get("/v1/stats").json()["service"]["udp"]
            assert udp["bad_datagrams"] == 0 and udp["ids"] == 600
            sent = sender.stats()["datagrams_sent"] + lingering.stats()["datagrams_sent"]
            assert udp["datagrams"] == sent < 100
            history = s.get(f"/v1/agents/{ids[0]}/history").json()["timestamps"]
            assert len(history) == 2
            assert len(s.get(f"/v1/agents/{ids[-1]}/history").json()["timestamps"]) == 1
            assert s.stop() == 0
            # The monitor is down: heartbeats go on without an exception, and are counted.
            for _ in range(20):
                sender.heartbeats(ids[:10])
                time.sleep(0.002)
            st = sender.stats()
            assert st["ids_dropped"] > 0 and "refused" in (st["last_error"] or "")
