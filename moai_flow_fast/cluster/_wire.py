"""Heartbeat entries on the wire: one pipelined XADD per heartbeat into its partition's
stream, shared by `Shard.send` and `client.RedisHeartbeatSender`."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from ._config import Keys

__all__ = ["add_heartbeats"]


def add_heartbeats(client: Any, keys: Keys, partitions: int, ids: Sequence[str],
                   timestamps: Sequence[float | None] | None, maxlen: int) -> int:
    """XADD {prefix}:hb:{p} MAXLEN ~ maxlen * id <id> [ts <unix s>] for each heartbeat, in
    one non-transactional pipeline. Returns how many Redis acknowledged; raises the
    client's connection errors (nothing is known to be stored then)."""
    if not ids:
        return 0
    pipe = client.pipeline(transaction=False)
    for i, agent_id in enumerate(ids):
        if not isinstance(agent_id, str) or not agent_id:
            raise TypeError(f"ids[{i}] must be a non-empty str, got {type(agent_id).__name__}")
        p = zlib.crc32(agent_id.encode("utf-8")) % partitions
        ts = None if timestamps is None else timestamps[i]
        fields: dict[str, Any] = {"id": agent_id} if ts is None else \
            {"id": agent_id, "ts": f"{float(ts):.6f}"}
        pipe.xadd(keys.hb(p), fields, maxlen=maxlen, approximate=True)
    replies = pipe.execute(raise_on_error=False)
    return sum(1 for reply in replies if not isinstance(reply, Exception))
