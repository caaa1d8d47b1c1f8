"""The cluster's settings, the partition function and the names of its Redis keys: the parts
of the wire format that senders in any language need, with no Redis client imported."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

__all__ = ["ClusterConfig", "Keys", "check_int", "partition_of"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-:]{1,64}$")


def partition_of(agent_id: str, partitions: int) -> int:
    """The partition of `agent_id`: crc32 of its UTF-8 bytes modulo `partitions`."""
    if not isinstance(agent_id, str):
        raise TypeError(f"agent_id must be a str, got {type(agent_id).__name__}")
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise TypeError(f"partitions must be an int, got {type(partitions).__name__}")
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(agent_id.encode("utf-8")) % partitions


class Keys:
    """Key names under one prefix (documented in the package docstring)."""

    __slots__ = ("alerts", "prefix", "shards")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.alerts = f"{prefix}:alerts"
        self.shards = f"{prefix}:shards"

    def hb(self, p: int) -> str:
        return f"{self.prefix}:hb:{p}"

    def reg(self, p: int) -> str:
        return f"{self.prefix}:reg:{p}"

    def agents(self, p: int) -> str:
        return f"{self.prefix}:agents:{p}"

    def lease(self, p: int) -> str:
        return f"{self.prefix}:lease:{p}"

    def fence(self, p: int) -> str:
        return f"{self.prefix}:fence:{p}"

    def pos(self, p: int) -> str:
        return f"{self.prefix}:pos:{p}"

    def last(self, p: int) -> str:
        return f"{self.prefix}:last:{p}"

    def shard(self, name: str) -> str:
        return f"{self.prefix}:shard:{name}"


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """`value` if it is an int (not a bool) in [lo, hi]; else TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


@dataclass(frozen=True)
class ClusterConfig:
    """One shard's view of the cluster. All shards of a cluster share url, prefix and
    partitions; each has its own shard_name."""

    url: str                       # redis://host:port/db
    shard_name: str
    prefix: str = "mff"
    partitions: int = 16
    lease_ms: int = 3000           # lease expiry; renewed about every lease_ms/3
    poll_ms: int = 100             # XREAD block time
    batch: int = 10_000            # max entries read per stream per call
    replay_margin_s: float = 5.0   # replayed beyond the largest interval x threshold
    http_url: str | None = None    # this shard's HTTP base URL, advertised to the others
    settle_ms: int = 100           # a crossing is published once the log is read this far past it
    stream_maxlen: int = 1_000_000   # XADD MAXLEN ~ cap per partition (unowned partitions)
    alerts_maxlen: int = 1_000_000   # XADD MAXLEN ~ cap of {prefix}:alerts
    max_pending: int = 1_000_000     # transitions held for publication (beyond: dropped, counted)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise TypeError(f"url must be a str, got {type(self.url).__name__}")
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must be a redis:// URL, got {self.url!r}")
        if not isinstance(self.shard_name, str):
            raise TypeError(f"shard_name must be a str, got {type(self.shard_name).__name__}")
        if not _NAME.match(self.shard_name):
            raise ValueError("shard_name must be 1-64 characters of letters, digits, '_', '.', "
                             f"'-', got {self.shard_name!r}")
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix must be a str, got {type(self.prefix).__name__}")
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"prefix must be 1-64 characters of letters, digits, '_', '.', "
                             f"'-', ':', got {self.prefix!r}")
        check_int("partitions", self.partitions, 1, 4096)
        check_int("lease_ms", self.lease_ms, 300, 600_000)
        check_int("poll_ms", self.poll_ms, 1, 60_000)
        if self.poll_ms * 2 > self.lease_ms:
            raise ValueError(f"poll_ms must be at most lease_ms / 2, got {self.poll_ms} "
                             f"with lease_ms={self.lease_ms}")
        check_int("batch", self.batch, 1, 1_000_000)
        if isinstance(self.replay_margin_s, bool) or not isinstance(self.replay_margin_s,
                                                                    (int, float)):
            raise TypeError("replay_margin_s must be a number, "
                            f"got {type(self.replay_margin_s).__name__}")
        if not math.isfinite(self.replay_margin_s) or not 0 <= self.replay_margin_s <= 86_400:
            raise ValueError(f"replay_margin_s must be between 0 and 86400, "
                             f"got {self.replay_margin_s!r}")
        if self.http_url is not None and not isinstance(self.http_url, str):
            raise TypeError(f"http_url must be a str or None, got {type(self.http_url).__name__}")
        check_int("settle_ms", self.settle_ms, 0, 60_000)
        check_int("stream_maxlen", self.stream_maxlen, 1000, 1 << 40)
        check_int("alerts_maxlen", self.alerts_maxlen, 1000, 1 << 40)
        check_int("max_pending", self.max_pending, 1, 1 << 40)

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    def partition_of(self, agent_id: str) -> int:
        return partition_of(agent_id, self.partitions)
