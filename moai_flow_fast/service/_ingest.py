"""UDP heartbeat ingestion: a receiver thread drains every waiting datagram, then hands all
their ids to the monitor in one batch call (never one monitor call per datagram)."""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable

from ._wire import decode_datagrams

__all__ = ["UdpIngest", "udp_socket"]

logger = logging.getLogger("moai_flow_fast.service")

_MAX_DATAGRAMS = 8192          # per batch: bounds the memory and latency of one batch
_RECV_SIZE = 65_536            # a whole datagram of any size (UDP payloads are <= 65,507)
_RCVBUF = 32 << 20             # absorbs bursts while the thread records a batch
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def udp_socket(host: str, port: int) -> socket.socket:
    """A bound UDP socket with a large receive buffer (the kernel may cap it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):   # FORCE works for root only
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, _RCVBUF)
                break
            except OSError:
                continue
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class UdpIngest:
    """Receives datagrams on `sock` and calls `record(ids)` once per drained batch."""

    def __init__(self, sock: socket.socket, key: bytes | None,
                 record: Callable[[list[str]], object]) -> None:
        self.sock = sock
        self.key = key
        self.record = record
        self.datagrams = 0
        self.ids = 0
        self.bad = 0                # failed the HMAC or not UTF-8: dropped
        self.batches = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moai-flow-fast-udp", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after recording what is already waiting; closes the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.sock.close()

    def _run(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        recv = sock.recv
        while True:
            stopping = self._stop.is_set()
            if not poller.poll(0 if stopping else 100):
                if stopping:
                    return
                continue
            batch: list[bytes] = []
            try:
                while len(batch) < _MAX_DATAGRAMS:
                    batch.append(recv(_RECV_SIZE))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                if self._stop.is_set():
                    return
                self.errors += 1
            self._handle(batch)

    def _handle(self, batch: list[bytes]) -> None:
        if not batch:
            return
        ids, bad = decode_datagrams(batch, self.key)
        self.datagrams += len(batch)
        self.bad += bad
        self.batches += 1
        if not ids:
            return
        self.ids += len(ids)
        try:
            self.record(ids)
        except Exception:
            self.errors += 1
            logger.exception("recording %d UDP heartbeats failed", len(ids))

    def stats(self) -> dict[str, int]:
        return {"datagrams": self.datagrams, "ids": self.ids, "bad_datagrams": self.bad,
                "batches": self.batches, "errors": self.errors}
