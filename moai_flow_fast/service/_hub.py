"""Fan-out of the monitor's transitions to SSE clients and webhooks, never blocking the monitor.

The monitor's dispatcher thread hands each batch to `EventHub.on_batch`, which only appends
it to a bounded buffer and wakes the event loop; the loop turns batches into JSON events
once and offers them to every sink. Each sink has its own bound and says what it dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import orjson

from ..core._events import AlertBatch
from ..core._rules import STATES

__all__ = ["EventHub", "SseClient", "events_of"]

logger = logging.getLogger("moai_flow_fast.service")

_NAMES = [state.value for state in STATES]
_KINDS = ("crossing", "recovery")
_KEEPALIVE_S = 15.0
_FRAMES_PER_WRITE = 512
_LOG_PER_S = 20


def events_of(batch: AlertBatch, mono_to_wall: float, first_seq: int) -> list[dict[str, Any]]:
    """JSON-ready events of one batch; times become Unix seconds (monotonic + offset)."""
    prev = batch.previous.tolist()
    cur = batch.current.tolist()
    kind = batch.kind.tolist()
    elapsed = np.round(batch.elapsed_s * 1e3, 3).tolist()
    deadline = (batch.deadline_monotonic + mono_to_wall).tolist()
    detected = (batch.detected_monotonic + mono_to_wall).tolist()
    latency = np.round((batch.detected_monotonic - batch.deadline_monotonic) * 1e3, 3).tolist()
    return [{"seq": first_seq + i, "id": agent_id, "kind": _KINDS[k], "state": _NAMES[c],
             "previous": _NAMES[p], "elapsed_ms": e, "deadline": d, "detected": t,
             "latency_ms": lat}
            for i, (agent_id, p, c, k, e, d, t, lat) in enumerate(zip(
                batch.ids, prev, cur, kind, elapsed, deadline, detected, latency))]


class SseClient:
    """One `/v1/events` subscriber: a bounded queue of encoded frames. A client whose queue
    would overflow is dropped (`reason` set) instead of holding memory or the monitor."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.reason: str | None = None
        self.sent = 0

    def offer(self, frames: list[bytes]) -> bool:
        """Queue frames; False (and the client is marked dropped) when they do not fit."""
        if self.reason is not None:
            return False
        if len(self.queue) + len(frames) > self.maxsize:
            self.end(f"slow client: more than {self.maxsize} events were waiting to be sent")
            return False
        self.queue.extend(frames)
        self.wake.set()
        return True

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.queue.clear()
        self.wake.set()

    async def frames(self) -> AsyncIterator[bytes]:
        """The byte chunks to write, until the client is ended; the last says why."""
        yield b"retry: 2000\n: connected\n\n"
        while True:
            if self.reason is not None:
                yield b"event: end\ndata: " + orjson.dumps({"reason": self.reason}) + b"\n\n"
                return
            if self.queue:
                n = min(len(self.queue), _FRAMES_PER_WRITE)
                chunk = b"".join([self.queue.popleft() for _ in range(n)])
                self.sent += n
                yield chunk
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), _KEEPALIVE_S)
            except TimeoutError:
                yield b": keepalive\n\n"


Sink = Callable[[list[dict[str, Any]]], None]


class EventHub:
    """Receives the monitor's batches (any thread) and fans them out in the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monotonic_to_wall: Callable[[], float],
                 max_pending: int = 1_000_000) -> None:
        self.loop = loop
        self.monotonic_to_wall = monotonic_to_wall
        self.max_pending = max_pending
        self.ignore_until = -np.inf       # monotonic s: transitions found before are not news
        self.clients: set[SseClient] = set()
        self.sinks: list[Sink] = []
        self.seq = 0
        self.published = 0
        self.suppressed = 0               # found while the state file was being restored
        self.dropped = 0                  # the loop fell more than max_pending behind
        self.clients_dropped = 0
        self.by_state = dict.fromkeys(_NAMES, 0)
        self._log_window = time.monotonic()
        self._logged = 0
        self._unlogged = 0
        self._pending: deque[AlertBatch] = deque()
        self._pending_events = 0
        self._scheduled = False
        self._closed = False
        self._mu = threading.Lock()

    # -- the dispatcher thread ----------------------------------------------------------------

    def on_batch(self, batch: AlertBatch) -> None:
        """The monitor's batch callback: O(1), never blocks, never raises."""
        if len(batch) == 0:
            return
        fresh = batch.detected_monotonic > self.ignore_until
        if not fresh.all():
            self.suppressed += int((~fresh).sum())
            if not fresh.any():
                return
            batch = _subset(batch, fresh)
        with self._mu:
            if self._closed:
                return
            if self._pending_events + len(batch) > self.max_pending:
                self.dropped += len(batch)
                return
            self._pending.append(batch)
            self._pending_events += len(batch)
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._pump)
            except RuntimeError:      # the loop is closed: the service is stopping
                pass

    # -- the event loop -----------------------------------------------------------------------

    def _pump(self) -> None:
        with self._mu:
            batches = list(self._pending)
            self._pending.clear()
            self._pending_events = 0
            self._scheduled = False
        offset = self.monotonic_to_wall()
        for batch in batches:
            events = events_of(batch, offset, self.seq)
            self.seq += len(events)
            self.published += len(events)
            self._log(events)
            if self.clients:
                frames = [b"id: %d\nevent: transition\ndata: %s\n\n" % (e["seq"], orjson.dumps(e))
                          for e in events]
                for client in list(self.clients):
                    if not client.offer(frames):
                        self.clients_dropped += 1
                        self.clients.discard(client)
            for sink in self.sinks:
                sink(events)

    def _log(self, events: list[dict[str, Any]]) -> None:
        """Count by state; log failures one per line up to _LOG_PER_S a second, then one
        summary line a second (a storm must not flood the log)."""
        failed = 0
        for e in events:
            if e["kind"] == "crossing":
                self.by_state[e["state"]] += 1
                if e["state"] == "failed":
                    failed += 1
                    if self._logged < _LOG_PER_S:
                        self._logged += 1
                        logger.warning("agent %s failed (no heartbeat for %.0f ms)", e["id"],
                                       e["elapsed_ms"])
                    else:
                        self._unlogged += 1
            else:
                self.by_state["healthy"] += 1
        now = time.monotonic()
        if now - self._log_window >= 1.0:
            if self._unlogged:
                logger.warning("... and %d more agents failed", self._unlogged)
            self._log_window, self._logged, self._unlogged = now, 0, 0

    def subscribe(self, maxsize: int) -> SseClient:
        client = SseClient(maxsize)
        if self._closed:
            client.end("server shutting down")
        else:
            self.clients.add(client)
        return client

    def unsubscribe(self, client: SseClient) -> None:
        self.clients.discard(client)

    def close(self) -> None:
        """End every stream (in the event loop): the service is shutting down."""
        with self._mu:
            self._closed = True
        for client in list(self.clients):
            client.end("server shutting down")
        self.clients.clear()

    def stats(self) -> dict[str, Any]:
        return {"published": self.published, "suppressed_at_restore": self.suppressed,
                "dropped": self.dropped, "sse_clients": len(self.clients),
                "sse_clients_dropped": self.clients_dropped, "by_state": dict(self.by_state)}


def _subset(batch: AlertBatch, keep: np.ndarray[Any, np.dtype[np.bool_]]) -> AlertBatch:
    """The rows of `batch` where `keep` is True (every array field, and the ids)."""
    flags = keep.tolist()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, np.ndarray) and value.shape[:1] == keep.shape:
            changes[f.name] = value[keep]
        elif isinstance(value, list) and len(value) == len(flags):
            changes[f.name] = [v for v, k in zip(value, flags) if k]
    return dataclasses.replace(batch, **changes)
