"""Heartbeats straight into a cluster's Redis streams (wire format: moai_flow_fast.cluster),
buffered and sent with pipelined XADDs; needs the `redis` extra."""

from __future__ import annotations

import collections
import threading
import time
from types import TracebackType
from typing import Any

from ..cluster._config import ClusterConfig, Keys, check_int, partition_of
from ..cluster._wire import add_heartbeats

__all__ = ["RedisHeartbeatSender"]


class RedisHeartbeatSender:
    """`send(id)` buffers a heartbeat stamped with its time (`ts`); a full batch, `flush()`,
    `close()` or leaving the `with` block sends the buffer as one pipeline of XADDs. When
    Redis cannot be reached the heartbeats stay buffered with their original times (so
    the owner places them where they belong once they arrive); beyond `max_buffer` the
    oldest are dropped and counted in `dropped`. Thread-safe."""

    def __init__(self, url: str, prefix: str = "mff", partitions: int = 16, batch: int = 1000,
                 *, max_buffer: int = 100_000, stream_maxlen: int = 1_000_000,
                 timestamps: bool = True, timeout: float = 2.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # The cluster's own checks of url, prefix and partitions, with the same messages.
        ClusterConfig(url=url, shard_name="sender", prefix=prefix, partitions=partitions)
        self.batch = check_int("batch", batch, 1, 1_000_000)
        self.max_buffer = check_int("max_buffer", max_buffer, 1, 1 << 40)
        self.stream_maxlen = check_int("stream_maxlen", stream_maxlen, 1000, 1 << 40)
        if not isinstance(timestamps, bool):
            raise TypeError(f"timestamps must be a bool, got {type(timestamps).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
        self.url = url
        self.partitions = partitions
        self.keys = Keys(prefix)
        self.timestamps = timestamps
        self._client: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._buffer: collections.deque[tuple[str, float | None]] = collections.deque()
        self._mu = threading.Lock()
        self._flush_mu = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.failed_flushes = 0
        self.last_error: str | None = None
        self._closed = False

    def partition_of(self, agent_id: str) -> int:
        return partition_of(agent_id, self.partitions)

    def send(self, agent_id: str, ts: float | None = None) -> None:
        """Buffer one heartbeat (sent at once when the buffer holds `batch`)."""
        if not isinstance(agent_id, str) or not agent_id:
            raise TypeError(f"agent_id must be a non-empty str, got {agent_id!r}")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))
                               or not 0 < ts < 2.0 ** 33):
            raise ValueError(f"ts must be Unix seconds or None, got {ts!r}")
        if self._closed:
            raise RuntimeError("the sender is closed")
        stamp = float(ts) if ts is not None else (time.time() if self.timestamps else None)
        with self._mu:
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append((agent_id, stamp))
            full = len(self._buffer) >= self.batch
        if full:
            self.flush()

    def flush(self) -> int:
        """Send everything buffered; returns how many Redis acknowledged (0 when it is
        unreachable: the heartbeats stay buffered, `last_error` says why)."""
        total = 0
        with self._flush_mu:
            while True:
                with self._mu:
                    if not self._buffer:
                        return total
                    take = [self._buffer.popleft()
                            for _ in range(min(self.batch, len(self._buffer)))]
                try:
                    acked = add_heartbeats(self._client, self.keys, self.partitions,
                                           [i for i, _ in take], [t for _, t in take],
                                           self.stream_maxlen)
                except self._errors as exc:
                    self.failed_flushes += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    with self._mu:   # back in front, oldest first; the bound still holds
                        self._buffer.extendleft(reversed(take))
                        while len(self._buffer) > self.max_buffer:
                            self._buffer.popleft()
                            self.dropped += 1
                    return total
                self.sent += acked
                total += acked

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Flush what can be sent and close the connections (idempotent)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._client.close()

    def __enter__(self) -> RedisHeartbeatSender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RedisHeartbeatSender({self.url!r}, partitions={self.partitions}, "
                f"sent={self.sent}, buffered={self.buffered}, dropped={self.dropped})")
