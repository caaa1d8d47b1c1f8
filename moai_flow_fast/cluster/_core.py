"""State shared by a shard's threads: the Redis client, the partitions it holds, the outage
record, the counters; and the conversions between entries, specs and the monitor."""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._config import ClusterConfig
from ._scripts import Scripts

__all__ = ["Core", "Part", "RedisUnavailable", "entry_fields", "parse_spec", "spec_text"]

REG_MAXLEN = 100_000          # registry change log per partition (the hash is the truth)
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0


class RedisUnavailable(RuntimeError):
    """Redis could not be reached for a control-plane call (register, owner_of, ...)."""


def entry_fields(raw: Any) -> dict[str, str]:
    """An entry's fields from the raw reply [field, value, ...] (None for a deleted one)."""
    return dict(zip(raw[::2], raw[1::2], strict=False)) if raw else {}


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def spec_text(interval_ms: int | None, threshold: int | None) -> str:
    return f"{'' if interval_ms is None else interval_ms},{'' if threshold is None else threshold}"


def parse_spec(text: str) -> tuple[int | None, int | None]:
    """'interval_ms,failure_threshold' with empty parts meaning the monitor's defaults;
    ValueError for anything else (the caller skips and counts it)."""
    interval, _, threshold = text.partition(",")
    return (int(interval) if interval else None, int(threshold) if threshold else None)


logger = logging.getLogger("moai_flow_fast.cluster")


@dataclass
class Part:
    """One partition this shard holds a lease on."""

    number: int
    token: int
    holder: str                      # "name|token", the value of the lease key
    live: bool = False               # replay done: consuming and publishing
    pos: str = "0-0"                 # last heartbeat entry consumed
    reg_pos: str = "0-0"             # last registry change consumed
    horizon: float = -math.inf       # wall s: every entry acknowledged before it is recorded
    live_since: float = math.inf     # wall s: crossings due before it were found by takeover
    agents: set[str] = field(default_factory=set)
    window_s: float = 0.0            # max interval x threshold of its agents
    pending: collections.deque[tuple[Any, ...]] = field(default_factory=collections.deque)


class Stats:
    """Counters (ints, written by one thread each or under the core lock)."""

    def __init__(self) -> None:
        self.leases_lost = 0
        self.leases_reacquired = 0
        self.fenced_writes = 0
        self.takeovers = 0
        self.replayed = 0
        self.consumed = 0
        self.unknown = 0
        self.published = 0
        self.suppressed = 0       # already published (dedup) or disproved by a later heartbeat
        self.pending_dropped = 0
        self.sent = 0
        self.send_errors = 0
        self.registry_changes = 0
        self.internal_errors = 0  # a worker step that raised something other than a Redis error


class Core:
    def __init__(self, monitor: Any, config: ClusterConfig) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.monitor = monitor
        self.config = config
        self.keys = config.keys
        self.name = config.shard_name
        # The socket timeout must outlast a blocking XREAD; a hung Redis shows up after it.
        timeout = max(1.0, 2 * config.poll_ms / 1000 + 0.5)
        self.client: Any = redis.Redis.from_url(
            # An undecodable id (bytes from anybody's XADD) must not fail a whole read: it
            # becomes U+FFFD, matches no agent and is counted as unknown.
            config.url, decode_responses=True, encoding_errors="replace", socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        # Stream replies stay as hiredis builds them ([id, [field, value, ...]]): redis-py's
        # callbacks make a dict of every entry in Python, which cost 6.5 us an entry here
        # against 1.8 us for the raw reply. The consumer reads the raw layout.
        for command in ("XRANGE", "XREVRANGE", "XREAD"):
            self.client.response_callbacks[command] = _raw_reply
        self.errors: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError,
                                                        redis.exceptions.TimeoutError)
        self.scripts = Scripts(self.client)
        self.mu = threading.Lock()
        self.parts: dict[int, Part] = {}
        self.owned: frozenset[int] = frozenset()       # leases held (replaced whole)
        self.accepting: frozenset[int] = frozenset()   # partitions whose alerts are kept
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.reachable = True
        self.last_error: str | None = None
        self.last_ok = self.wall()
        self.outages: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)
        self.wake_publisher = threading.Event()

    # -- time ---------------------------------------------------------------------------------

    def wall(self) -> float:
        return float(self.monitor.clock.time())

    def now_pair(self) -> tuple[float, int]:
        return float(self.monitor.clock.time()), int(self.monitor.clock.monotonic_ns())

    # -- Redis health -------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        self.reachable = False
        self.last_error = f"{type(exc).__name__}: {exc}"

    def read_ok(self, started: float) -> None:
        """A successful read that started at `started`. Recorded as an outage (senders may
        have been unable to write meanwhile): the time since the last good read when an
        error came between, or the read itself when it took longer than a poll plus half a
        second (a hung or stalled Redis). A gap due to this shard's own work is not one:
        the heartbeats then wait in Redis and the horizon rule covers them."""
        now = self.wall()
        if not self.reachable:
            self.outages.append((self.last_ok, now))
        elif now - started > self.config.poll_ms / 1000 + 0.5:
            self.outages.append((started, now))
        self.reachable = True
        self.last_ok = now

    def backoff(self, attempt: int) -> None:
        self.stop_event.wait(min(_BACKOFF_MAX_S, _BACKOFF_MIN_S * 2 ** min(attempt, 10)))

    def run(self, step: Callable[[], None]) -> None:
        """A worker thread's loop: `step()` until stopped; a Redis error is recorded (Redis
        unreachable) and the step retried after an exponential backoff."""
        attempt = 0
        while not self.stop_event.is_set():
            try:
                step()
                attempt = 0
            except self.errors as exc:
                self.failed(exc)
                attempt += 1
                self.backoff(attempt)
            except Exception as exc:   # a bug must not leave a zombie holding its leases
                self.stats.internal_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("cluster worker step failed; retrying")
                attempt += 1
                self.backoff(attempt)

    # -- partitions -------------------------------------------------------------------------

    def set_owned(self) -> None:
        """Refresh the published sets (call under `mu`)."""
        self.owned = frozenset(self.parts)
        self.accepting = frozenset(self.parts)
