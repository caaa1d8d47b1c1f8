"""The cluster's Lua scripts: every lease operation and every write a shard makes for a
partition runs atomically in Redis, checking the fencing token first."""

from __future__ import annotations

from typing import Any

__all__ = ["Scripts"]

# KEYS: lease, fence. ARGV: shard name, ttl ms. A free lease gets a new fencing token
# (INCR, so tokens only grow); a held one, even by this name, is refused: a restarted shard
# waits for its old lease to expire rather than share a token with a stale twin.
ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: lease, pos, hb. ARGV: holder "name|token", ttl ms, position ('' = keep),
# trim MINID ('' = none). Returns 1 renewed, 0 lease gone, -1 held by another.
RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur then return -1 end
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
if ARGV[4] ~= '' then redis.call('XTRIM', KEYS[3], 'MINID', '~', ARGV[4]) end
return 1
"""

# KEYS: lease. ARGV: holder. Deletes the lease only if this holder still has it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: lease, last, alerts. ARGV: holder, shard, partition, fence, alerts maxlen, then
# groups of 5: id, state, previous, deadline, takeover. Returns -1 (fenced: another holds
# the lease), -2 (the lease expired and nobody holds it) or the number published.
# Dedup against {prefix}:last:{p}, the last state published per agent: a crossing is
# published only if more severe than the recorded state, a recovery only if the recorded
# state is not healthy; so a new owner replaying what the old one published writes
# nothing twice.
PUBLISH = """
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur then return -1 end
  return -2
end
local sev = {healthy = 0, degraded = 1, critical = 2, failed = 3}
local published = 0
for i = 6, #ARGV, 5 do
  local id = ARGV[i]
  local state = ARGV[i + 1]
  local last = redis.call('HGET', KEYS[2], id)
  local lsev = 0
  if last then lsev = sev[last] or 0 end
  local ok
  if state == 'healthy' then ok = lsev > 0 else ok = (sev[state] or 0) > lsev end
  if ok then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'id', id, 'state', state,
               'previous', ARGV[i + 2], 'deadline', ARGV[i + 3], 'shard', ARGV[2],
               'takeover', ARGV[i + 4], 'partition', ARGV[3], 'fence', ARGV[4])
    if state == 'healthy' then
      redis.call('HDEL', KEYS[2], id)
    else
      redis.call('HSET', KEYS[2], id, state)
    end
    published = published + 1
  end
end
return published
"""

# KEYS: shards zset, shard hash. ARGV: name, ttl ms, then field/value pairs. Membership
# by Redis' own clock, so shards need not agree on time. Returns {now ms, live names}.
MEMBER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {now, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""

# KEYS: shards zset, shard hash. ARGV: name.
LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: agents, reg. ARGV: reg maxlen, then id/spec pairs. Returns how many were new.
REGISTER = """
local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'op', 'add', 'id', ARGV[i],
               'spec', ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

# KEYS: agents, reg. ARGV: reg maxlen, id. Returns 1 if it was registered.
UNREGISTER = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'op', 'del', 'id', ARGV[2])
  return 1
end
return 0
"""


class Scripts:
    """The scripts registered on one client (EVALSHA, reloaded after a Redis restart)."""

    def __init__(self, client: Any) -> None:
        self.acquire = client.register_script(ACQUIRE)
        self.renew = client.register_script(RENEW)
        self.release = client.register_script(RELEASE)
        self.publish = client.register_script(PUBLISH)
        self.member = client.register_script(MEMBER)
        self.leave = client.register_script(LEAVE)
        self.register = client.register_script(REGISTER)
        self.unregister = client.register_script(UNREGISTER)
