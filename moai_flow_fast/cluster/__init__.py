"""Sharded monitors on Redis Streams: partitions of the swarm owned through fenced leases,
with takeover by replay of the heartbeat log (issue 14; extra `moai-flow-fast[redis]`).

Wire format and keys (`{prefix}` defaults to `mff`; `p = zlib.crc32(id.encode()) % N`):

- `{prefix}:hb:{p}` stream: heartbeats, `XADD {prefix}:hb:{p} * id <agent id> [ts <unix s>]`.
  Without `ts` the entry ID's millisecond time is the heartbeat's time. Senders cap it with
  `MAXLEN ~` (`stream_maxlen`); the owner trims it with `MINID ~` to what a takeover
  replays: now - (max interval x threshold + replay_margin_s), never past what it read.
- `{prefix}:agents:{p}` hash: the registry, agent id -> "interval_ms,failure_threshold"
  (an empty part = the owner's monitor default). Any shard may write it.
- `{prefix}:reg:{p}` stream: registry changes, `op add id <id> spec <spec>` or
  `op del id <id>`, so the owner learns of them within one poll (MAXLEN ~ 100,000).
- `{prefix}:lease:{p}` string "shard name|fencing token", with a PX expiry of lease_ms;
  renewed every lease_ms / 3. `{prefix}:fence:{p}`: the token counter (INCR on acquire).
- `{prefix}:pos:{p}` string: the last heartbeat entry ID the owner consumed (written
  under the fence with each renewal).
- `{prefix}:last:{p}` hash: agent id -> the last state published for it (no field =
  healthy). Written under the fence together with the alert, and consulted for dedup.
- `{prefix}:alerts` stream: one entry per transition, fields `id`, `state` (`degraded`,
  `critical`, `failed`, or `healthy` for a recovery), `previous`, `deadline` (Unix s),
  `shard`, `takeover` (1 when found by a takeover replay), `partition`, `fence`.
- `{prefix}:shards` sorted set: shard name -> membership expiry (Redis ms), and
  `{prefix}:shard:{name}` hash (`http_url`, `partitions`, `lag_ms`, `lease_ms`) expiring
  with it: the live shards. Each shard holds its even share of the N partitions
  (N // live, one more for the first N % live names in sorted order): it acquires free or
  expired leases and releases its surplus when shards join.

Every write for a partition (alerts, last states, position, trimming) is a Lua script that
first checks the lease still holds this shard's token; a refused write is counted in
`fenced_writes` and the shard drops the partition (`leases_lost`).

Takeover: on acquiring a partition the shard loads its registry (agents without a clock),
reads the stream from now - (max interval x threshold + replay_margin_s) and records each
agent's newest heartbeat in it, at its own time (so no listener of the monitor sees an
agent cross and recover while the log is read; the agent's history restarts from that
heartbeat), then goes live. Crossings of agents whose last heartbeat precedes that
moment (their silence began in the gap) carry `takeover=1`; `{prefix}:last:{p}` stops
republication of what the old owner published. An agent the old owner published as down
that heartbeats in the replay gets its recovery published (`takeover=1`).

Publication rule (no conviction for what sits unread in Redis): a crossing with deadline D
is published only once the partition's stream has been read up to D + settle_ms (every
entry Redis acknowledged before then is recorded), and only if no heartbeat recorded since
falls between the agent's last heartbeat and D. A Redis outage is the time from the last
good read to the first good read after an error, or a read that itself took longer than a
poll + 0.5 s (a hung Redis). A crossing whose D falls in an outage or within the agent's
interval + settle_ms after it is held until that grace has passed, and dropped if the
agent heartbeated at all since its last heartbeat: the pause convicts nobody, while an
agent that stays silent is still reported, with its true deadline.
"""

from __future__ import annotations

from ._config import ClusterConfig, Keys, partition_of
from ._core import RedisUnavailable
from ._shard import Shard

__all__ = ["ClusterConfig", "Keys", "RedisUnavailable", "Shard", "partition_of"]
