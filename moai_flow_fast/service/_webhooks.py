"""Webhooks: transitions POSTed as JSON batches, with retries, backoff and a bounded queue.

Each URL has its own queue (oldest events dropped first when it is full) and one sender
task, so a slow or dead receiver delays only itself. Body of each POST:
``{"events": [...], "dropped": <events this webhook has dropped so far>}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

import httpx
import orjson

__all__ = ["Webhook"]

logger = logging.getLogger("moai_flow_fast.service")

_BATCH = 1000              # events per POST
_BACKOFF_S = 0.25          # first retry delay; doubles each retry
_BACKOFF_MAX_S = 30.0
_LOG_EVERY_S = 10.0


class Webhook:
    """Delivers events to one URL from a task of the event loop."""

    def __init__(self, url: str, client: httpx.AsyncClient, *, maxsize: int = 10_000,
                 retries: int = 5) -> None:
        self.url = url
        self.client = client
        self.retries = retries
        self.queue: deque[dict[str, Any]] = deque(maxlen=maxsize)
        self.headers = {"content-type": "application/json",
                        "user-agent": "moai-flow-fast-webhook"}
        self.delivered = 0           # events
        self.posts = 0               # successful POSTs
        self.attempts_failed = 0
        self.dropped_full = 0        # events pushed out of a full queue
        self.dropped_failed = 0      # events given up after the retries
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_log = 0.0
        self._task: asyncio.Task[None] | None = None

    def offer(self, events: list[dict[str, Any]]) -> None:
        """Queue events (in the event loop); never blocks."""
        overflow = len(self.queue) + len(events) - (self.queue.maxlen or 0)
        if overflow > 0:
            self.dropped_full += overflow
            self._warn(f"webhook {self.url}: queue full, {overflow} oldest events dropped")
        self.queue.extend(events)
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"webhook {self.url}")

    async def close(self, timeout: float) -> None:
        """Deliver what is queued for at most `timeout` seconds, then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            left = len(self.queue)
            self.dropped_failed += left
            if left:
                logger.warning("webhook %s: %d events not delivered at shutdown", self.url, left)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.queue.popleft() for _ in range(min(_BATCH, len(self.queue)))]
            await self._deliver(batch)

    async def _deliver(self, batch: list[dict[str, Any]]) -> None:
        delay = _BACKOFF_S
        for attempt in range(self.retries + 1):
            body = orjson.dumps({"events": batch,
                                 "dropped": self.dropped_full + self.dropped_failed})
            try:
                response = await self.client.post(self.url, content=body, headers=self.headers)
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                retryable = True
            else:
                if response.status_code < 300:
                    self.delivered += len(batch)
                    self.posts += 1
                    return
                self.last_error = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code in (408, 429)
            self.attempts_failed += 1
            if not retryable or attempt == self.retries:
                break
            # Full jitter keeps many services from retrying in step against one receiver.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, _BACKOFF_MAX_S)
        self.dropped_failed += len(batch)
        self._warn(f"webhook {self.url}: {len(batch)} events dropped ({self.last_error})")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            logger.warning(message)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "queued": len(self.queue), "delivered": self.delivered,
                "posts": self.posts, "attempts_failed": self.attempts_failed,
                "dropped_queue_full": self.dropped_full,
                "dropped_after_retries": self.dropped_failed, "last_error": self.last_error}
