"""Fire-and-forget UDP heartbeats to `moai-flow-fast serve --udp` (datagram format: _wire).

A send never blocks the agent (non-blocking socket) and never raises because the monitor is
down: what could not be sent is counted, and logged at most once per `log_every` seconds.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..service._wire import (
    DEFAULT_MAX_SIZE,
    MAX_UDP_PAYLOAD,
    TAG_SIZE,
    encode_datagrams,
    secret_key,
)

__all__ = ["UdpHeartbeatSender"]

logger = logging.getLogger("moai_flow_fast.client")

_DEFAULT_MAX_PENDING = 100_000


class UdpHeartbeatSender:
    """Sends agent heartbeats as UDP datagrams to ``host:port``.

    ``heartbeat(id)`` and ``heartbeats(ids)`` pack the ids given into as few datagrams as
    fit `max_size` and send them at once. With ``linger_ms > 0`` ids are buffered instead
    (at most `max_pending`; beyond that they are dropped and counted) and a daemon thread
    sends the buffer every `linger_ms`, or as soon as a full datagram is waiting: fewer
    datagrams for a process that hosts many agents, at the cost of up to `linger_ms` of
    delay. Every method is thread-safe. `stats()` says what was sent and dropped.
    """

    def __init__(self, host: str, port: int, secret: str | bytes | None = None, *,
                 max_size: int = DEFAULT_MAX_SIZE, linger_ms: float = 0.0,
                 max_pending: int = _DEFAULT_MAX_PENDING, log_every: float = 10.0) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, got {type(port).__name__}")
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be in [1, 65535], got {port}")
        self._key = secret_key(secret)
        overhead = TAG_SIZE if self._key is not None else 0
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be an int, got {type(max_size).__name__}")
        if not overhead + 1 <= max_size <= MAX_UDP_PAYLOAD:
            raise ValueError(f"max_size must be in [{overhead + 1}, {MAX_UDP_PAYLOAD}], "
                             f"got {max_size}")
        if isinstance(linger_ms, bool) or not isinstance(linger_ms, (int, float)):
            raise TypeError(f"linger_ms must be a number, got {type(linger_ms).__name__}")
        if not 0 <= linger_ms <= 60_000:
            raise ValueError(f"linger_ms must be in [0, 60000], got {linger_ms}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int):
            raise TypeError(f"max_pending must be an int, got {type(max_pending).__name__}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if isinstance(log_every, bool) or not isinstance(log_every, (int, float)):
            raise TypeError(f"log_every must be a number, got {type(log_every).__name__}")
        if log_every < 0:
            raise ValueError(f"log_every must be >= 0, got {log_every}")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ValueError(f"host {host!r} cannot be resolved: {exc}") from None
        family, _, proto, _, address = infos[0]
        self.host, self.port = host, port
        self.address: tuple[Any, ...] = tuple(address)
        self.max_size = max_size
        self.linger_ms = float(linger_ms)
        self.max_pending = max_pending
        self._room = max_size - overhead
        self._log_every = float(log_every)
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        sock.setblocking(False)
        # Connected: no address lookup per send, and the kernel reports a closed port
        # (ECONNREFUSED on a later send), which is counted as "monitor down".
        sock.connect(address)
        self._sock = sock
        self._lock = threading.Lock()
        self._closed = False
        self._counts = {"datagrams_sent": 0, "ids_sent": 0, "ids_dropped": 0,
                        "datagrams_dropped": 0, "send_errors": 0}
        self._last_error: str | None = None
        self._unlogged = 0
        self._last_log = float("-inf")
        self._pending: list[str] = []
        self._pending_bytes = -1
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        if self.linger_ms > 0:
            self._thread = threading.Thread(target=self._flusher, daemon=True,
                                            name="moai-flow-fast-udp-sender")
            self._thread.start()

    # -- sending ----------------------------------------------------------------------------

    def heartbeat(self, agent_id: str) -> None:
        """One heartbeat of `agent_id` (sent now, or buffered with linger_ms)."""
        self._check(agent_id, "agent_id")
        if self._thread is None:
            self._send_now([agent_id])
        else:
            self._enqueue([agent_id])

    def heartbeats(self, ids: Iterable[str]) -> None:
        """Heartbeats of many agents; every id is checked before anything is sent."""
        batch = list(ids) if not isinstance(ids, str) else None
        if batch is None:
            raise TypeError("ids must be an iterable of str, not a str")
        for i, agent_id in enumerate(batch):
            self._check(agent_id, f"ids[{i}]")
        if not batch:
            return
        if self._thread is None:
            self._send_now(batch)
        else:
            self._enqueue(batch)

    def _check(self, agent_id: object, name: str) -> None:
        if not isinstance(agent_id, str):
            raise TypeError(f"{name} must be str, got {type(agent_id).__name__}")
        if not agent_id or "\n" in agent_id:
            raise ValueError(f"{name} must be non-empty and contain no newline")
        if len(agent_id) * 4 > self._room and len(agent_id.encode("utf-8")) > self._room:
            raise ValueError(f"{name} is longer than fits a datagram of max_size="
                             f"{self.max_size}")

    def _send_now(self, ids: list[str]) -> None:
        datagrams = encode_datagrams(ids, self._key, self.max_size)
        if len(datagrams) == 1:
            self._send_datagrams(datagrams, [len(ids)])
            return
        # How many ids each datagram carries, to count drops exactly.
        self._send_datagrams(datagrams, [d.count(b"\n") + 1 for d in datagrams]
                             if self._key is None else
                             [d[TAG_SIZE:].count(b"\n") + 1 for d in datagrams])

    def _send_datagrams(self, datagrams: list[bytes], sizes: list[int]) -> None:
        sent_d = sent_i = drop_d = drop_i = errors = 0
        error: str | None = None
        send = self._sock.send
        for data, n in zip(datagrams, sizes):
            try:
                send(data)
            except BlockingIOError:
                # The socket buffer is full: the receiver cannot keep up; drop, never wait.
                drop_d += 1
                drop_i += n
                error = "socket buffer full"
            except OSError as exc:
                if self._closed:
                    error = "sender closed"
                elif exc.errno == errno.ECONNREFUSED:
                    error = "connection refused (monitor down?)"
                else:
                    error = f"{type(exc).__name__}: {exc}"
                errors += 1
                drop_d += 1
                drop_i += n
            else:
                sent_d += 1
                sent_i += n
        with self._lock:
            c = self._counts
            c["datagrams_sent"] += sent_d
            c["ids_sent"] += sent_i
            if drop_i:
                c["datagrams_dropped"] += drop_d
                c["ids_dropped"] += drop_i
                c["send_errors"] += errors
                self._last_error = error
                self._unlogged += drop_i
                self._maybe_log_locked()

    def _maybe_log_locked(self) -> None:
        now = time.monotonic()
        if now - self._last_log < self._log_every:
            return
        self._last_log = now
        logger.warning("UDP heartbeats to %s:%d: %d dropped (%s); totals %s", self.host,
                       self.port, self._unlogged, self._last_error, self._counts)
        self._unlogged = 0

    # -- buffering (linger_ms > 0) ---------------------------------------------------------------

    def _enqueue(self, ids: list[str]) -> None:
        with self._lock:
            if self._closed:
                self._drop_locked(len(ids), "sender closed")
                return
            room = self.max_pending - len(self._pending)
            if room < len(ids):
                self._drop_locked(len(ids) - max(room, 0), "buffer full")
                ids = ids[:max(room, 0)]
            pending = self._pending
            first = not pending
            pending.extend(ids)
            # Characters, not bytes: only decides when to send early, encode_datagrams
            # does the exact packing.
            self._pending_bytes += sum(map(len, ids)) + len(ids)
            if first or self._pending_bytes >= self._room:
                self._wake.notify()

    def _drop_locked(self, n: int, why: str) -> None:
        self._counts["ids_dropped"] += n
        self._last_error = why
        self._unlogged += n
        self._maybe_log_locked()

    def _take_locked(self) -> list[str]:
        batch, self._pending, self._pending_bytes = self._pending, [], -1
        return batch

    def _flusher(self) -> None:
        delay = self.linger_ms / 1000
        wait = self._wake.wait
        while True:
            with self._lock:
                while not self._closed and not self._pending:
                    wait()            # idle: no wake-ups until the first id comes
                if not self._closed and self._pending_bytes < self._room:
                    wait(delay)       # linger to gather more, unless a datagram fills up
                batch = self._take_locked()
                closing = self._closed
            if batch:
                self._send_now(batch)
            if closing:
                return

    def flush(self) -> None:
        """Send what is buffered now (no-op without linger_ms)."""
        with self._lock:
            batch = self._take_locked()
        if batch:
            self._send_now(batch)

    # -- life cycle -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts of datagrams and ids sent and dropped, pending ids, the last error."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["ids_pending"] = len(self._pending)
            out["last_error"] = self._last_error
            return out

    def close(self) -> None:
        """Send what is buffered, stop the flusher and close the socket (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        self._sock.close()

    def __enter__(self) -> UdpHeartbeatSender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"UdpHeartbeatSender({self.host!r}, {self.port}, "
                f"signed={self._key is not None}, linger_ms={self.linger_ms:g})")
