"""HTTP client of `moai-flow-fast serve` (needs httpx: pip install 'moai-flow-fast[client]').

`heartbeat()` only queues (with the time it was called, sent as the heartbeat's timestamp,
so batching delays nothing the monitor sees); a daemon thread posts batches. No method
raises into the agent's code because the monitor is down or slow: failures are counted in
`stats()` and logged at most once per `log_every` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

__all__ = ["HeartbeatClient"]

logger = logging.getLogger("moai_flow_fast.client")

_AgentSpec = str | Mapping[str, Any]


class HeartbeatClient:
    """Heartbeats and registration over HTTP, in sync and asyncio flavours.

    - `heartbeat(*ids)`: queue heartbeats now (thread-safe, never blocks, never raises);
      a background thread sends them every `flush_interval` seconds, or as soon as
      `batch_size` are waiting. At most `max_pending` wait; beyond that the oldest are
      dropped and counted. A batch that cannot be sent is retried (its timestamps keep it
      truthful) until it is older than `max_age` seconds.
    - `send(ids)` / `await asend(ids)`: one batch now; the server's answer, or None.
    - `register(agents)` / `await aregister(agents)`: agents are ids or dicts with `id`,
      `interval_ms`, `failure_threshold`; the server's answer, or None.
    - `flush(timeout)` / `close()` / `await aclose()`; also a (async) context manager.
    """

    def __init__(self, url: str = "http://127.0.0.1:8080", token: str | None = None, *,
                 batch_size: int = 1000, flush_interval: float = 0.25, timeout: float = 2.0,
                 max_pending: int = 100_000, max_age: float = 60.0,
                 log_every: float = 10.0) -> None:
        try:
            import httpx
        except ImportError:
            raise ImportError("HeartbeatClient needs httpx: "
                              "pip install 'moai-flow-fast[client]'") from None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError("token must be a non-empty str or None")
        for name, value, low in (("batch_size", batch_size, 1), ("max_pending", max_pending, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if batch_size > 100_000:
            raise ValueError(f"batch_size must be <= 100000 (the server's limit), got {batch_size}")
        for name, number in (("flush_interval", flush_interval), ("timeout", timeout),
                             ("max_age", max_age), ("log_every", log_every)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {number!r}")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_age = float(max_age)
        self.log_every = float(log_every)
        self._headers = {"content-type": "application/json"}
        if token is not None:
            self._headers["authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout)
        self._httpx = httpx
        self._client = httpx.Client(timeout=self._timeout, headers=self._headers)
        self._aclient: Any = None
        self._pending: deque[tuple[str, float]] = deque(maxlen=max_pending)
        self._mu = threading.Lock()
        self._send_mu = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log = -float("inf")
        self.sent = 0            # heartbeats the server answered for
        self.recorded = 0        # ... and recorded
        self.unknown = 0         # ... for ids it does not monitor
        self.dropped = 0         # never delivered: queue full or too old
        self.failures = 0        # requests that failed (network, timeout, HTTP error)
        self.last_error: str | None = None

    # -- queued heartbeats (background thread) ------------------------------------------------

    def heartbeat(self, *agent_ids: str) -> None:
        """Queue one heartbeat per id, stamped now. Never blocks and never raises for the
        network; a non-str id raises TypeError (a bug in the caller, not an outage)."""
        now = time.time()
        for agent_id in agent_ids:
            if not isinstance(agent_id, str):
                raise TypeError(f"agent id must be str, got {type(agent_id).__name__}")
        with self._mu:
            overflow = len(self._pending) + len(agent_ids) - (self._pending.maxlen or 0)
            if overflow > 0:
                self.dropped += overflow
            self._pending.extend((agent_id, now) for agent_id in agent_ids)
            waiting = len(self._pending)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="moai-flow-fast-client")
                self._thread.start()
        if waiting >= self.batch_size:
            self._wake.set()

    def _run(self) -> None:
        # Full batches go as soon as they are full; a partial one every flush_interval.
        last = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, last + self.flush_interval - time.monotonic()))
            self._wake.clear()
            due = time.monotonic() >= last + self.flush_interval
            self._drain(full_only=not due)
            if due:
                last = time.monotonic()

    def _take(self, full_only: bool = False) -> list[tuple[str, float]]:
        with self._mu:
            if full_only and len(self._pending) < self.batch_size:
                return []
            n = min(len(self._pending), self.batch_size)
            return [self._pending.popleft() for _ in range(n)]

    def _drain(self, deadline: float | None = None, full_only: bool = False) -> bool:
        """Send what is queued; False when a batch failed (it is put back)."""
        with self._send_mu:
            while True:
                batch = self._take(full_only)
                if not batch:
                    return True
                cutoff = time.time() - self.max_age
                fresh = [item for item in batch if item[1] >= cutoff]
                self.dropped += len(batch) - len(fresh)
                if not fresh:
                    continue
                body = {"ids": [i for i, _ in fresh], "timestamps": [t for _, t in fresh]}
                if self._post("/v1/heartbeats", body, len(fresh)) is None:
                    self._put_back(fresh)
                    return False
                if deadline is not None and time.monotonic() > deadline:
                    return not self._pending

    def _put_back(self, batch: list[tuple[str, float]]) -> None:
        """Return a batch that failed to the front of the queue, for the next try; if new
        heartbeats filled the queue meanwhile, the batch's oldest are dropped (counted)."""
        with self._mu:
            room = (self._pending.maxlen or 0) - len(self._pending)
            if len(batch) > room:
                self.dropped += len(batch) - room
                batch = batch[len(batch) - room:] if room > 0 else []
            self._pending.extendleft(reversed(batch))

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything queued now (at most `timeout` s); True when nothing is left."""
        return self._drain(time.monotonic() + timeout) and not self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- direct calls ------------------------------------------------------------------------

    def send(self, agent_ids: Iterable[str], timestamps: Iterable[float] | None = None
             ) -> dict[str, Any] | None:
        """Post one batch now; the server's answer ({"recorded", "unknown", "rejected"}),
        or None when it failed (counted and logged)."""
        ids = list(agent_ids)
        body: dict[str, Any] = {"ids": ids}
        if timestamps is not None:
            body["timestamps"] = list(timestamps)
        return self._post("/v1/heartbeats", body, len(ids))

    def register(self, agents: Iterable[_AgentSpec]) -> dict[str, Any] | None:
        """Register agents (ids, or dicts with id, interval_ms, failure_threshold)."""
        return self._post("/v1/agents", {"agents": _specs(agents)}, 0)

    def _post(self, path: str, body: dict[str, Any], heartbeats: int) -> dict[str, Any] | None:
        try:
            response = self._client.post(self.url + path, json=body)
        except Exception as exc:     # any transport failure: the agent must keep running
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        return self._answer(response, heartbeats)

    def _answer(self, response: Any, heartbeats: int) -> dict[str, Any] | None:
        if response.status_code != 200:
            try:
                detail = response.json().get("error")
            except Exception:
                detail = response.text[:200]
            self._failed(f"HTTP {response.status_code}: {detail}")
            return None
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            self._failed("the server's answer is not JSON")
            return None
        if heartbeats:
            self.sent += heartbeats
            self.recorded += int(answer.get("recorded", 0))
            self.unknown += int(answer.get("unknown", 0))
        return answer

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        now = time.monotonic()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            logger.warning("moai-flow-fast client: %s %s (failures so far: %d)", self.url,
                           error, self.failures)
        return None

    # -- asyncio -----------------------------------------------------------------------------

    def _async_client(self) -> Any:
        if self._aclient is None:
            self._aclient = self._httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
        return self._aclient

    async def asend(self, agent_ids: Iterable[str], timestamps: Iterable[float] | None = None
                    ) -> dict[str, Any] | None:
        """`send` for asyncio code."""
        ids = list(agent_ids)
        body: dict[str, Any] = {"ids": ids}
        if timestamps is not None:
            body["timestamps"] = list(timestamps)
        return await self._apost("/v1/heartbeats", body, len(ids))

    async def aregister(self, agents: Iterable[_AgentSpec]) -> dict[str, Any] | None:
        """`register` for asyncio code."""
        return await self._apost("/v1/agents", {"agents": _specs(agents)}, 0)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """Send the queued heartbeats from asyncio code (the batches go out one by one)."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            batch = self._take()
            body = {"ids": [i for i, _ in batch], "timestamps": [t for _, t in batch]}
            if await self._apost("/v1/heartbeats", body, len(batch)) is None:
                self._put_back(batch)
                return False
        return not self._pending

    async def _apost(self, path: str, body: dict[str, Any], heartbeats: int
                     ) -> dict[str, Any] | None:
        try:
            response = await self._async_client().post(self.url + path, json=body)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        return self._answer(response, heartbeats)

    async def aclose(self, timeout: float = 2.0) -> None:
        await self.aflush(timeout)
        self._stop_thread()
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self._client.close()

    async def __aenter__(self) -> HeartbeatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- lifecycle ---------------------------------------------------------------------------

    def _stop_thread(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(5.0)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (at most `timeout` s), then stop the thread."""
        self._stop_thread()
        self.flush(timeout)
        self.dropped += len(self._pending)
        self._pending.clear()
        self._client.close()

    def __enter__(self) -> HeartbeatClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "recorded": self.recorded, "unknown": self.unknown,
                "dropped": self.dropped, "failures": self.failures, "pending": self.pending,
                "last_error": self.last_error}

    def __repr__(self) -> str:
        return f"HeartbeatClient({self.url!r}, pending={self.pending}, failures={self.failures})"


def _specs(agents: Iterable[_AgentSpec]) -> list[dict[str, Any]]:
    out = []
    for i, agent in enumerate(agents):
        if isinstance(agent, str):
            out.append({"id": agent})
        elif isinstance(agent, Mapping):
            out.append(dict(agent))
        else:
            raise TypeError(f"agents[{i}] must be an id or a mapping, got {type(agent).__name__}")
    return out
