"""The publisher: takes the monitor's transitions (a dispatcher listener), holds each
crossing until the heartbeat log has been read past its deadline, re-checks it against the
heartbeats recorded meanwhile, and publishes it to {prefix}:alerts under the fence."""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core._rules import STATES
from ._core import Core, Part

__all__ = ["Publisher"]

_VALUES = tuple(state.value for state in STATES)
_CHUNK = 500          # transitions per Lua call: keeps each call short for Redis
_EPS = 1e-6
# A pending event: (agent id, kind 0 crossing / 1 recovery, previous code, new code,
# last heartbeat wall s, deadline wall s).
Event = tuple[str, int, int, int, float, float]


class Publisher:
    def __init__(self, core: Core, lose: Callable[[Part, bool], None],
                 reacquire: Callable[[Part, str], bool]) -> None:
        self.core = core
        self._lose = lose
        self._reacquire = reacquire
        self.pending = 0        # approximate: written by the listener and the publisher
        self.disproved = 0      # crossings a heartbeat recorded later showed were not real
        self.period_s = max(0.01, min(core.config.settle_ms, core.config.poll_ms) / 2000)
        self.thread = threading.Thread(target=self._run, name=f"mff-publish-{core.name}",
                                       daemon=True)

    # -- from the monitor's dispatcher thread ---------------------------------------------------

    def listener(self, ids: list[Any], block: np.ndarray[Any, Any]) -> None:
        core = self.core
        accepting = core.accepting
        if not accepting or not len(ids):
            return
        wall, mono = core.now_pair()
        last_wall = block["last_wall"]
        last_mono = block["last_mono"]
        deadline = block["deadline"]
        # An agent that never heartbeated has last_wall 0 and last_mono = the moment it was
        # registered: its times come from the clock pair, its "last" is its registration.
        known = np.isfinite(last_wall) & (last_wall > 0) & (last_mono > 0)
        with np.errstate(invalid="ignore"):
            walls = np.where(known, last_wall + (deadline - last_mono) / 1e9,
                             wall - (mono - deadline) / 1e9).tolist()
            lasts = np.where(known, last_wall,
                             np.where(last_mono > 0, wall - (mono - last_mono) / 1e9,
                                      -math.inf)).tolist()
        kinds = block["kind"].tolist()
        prevs = block["prev"].tolist()
        news = block["new"].tolist()
        n = core.config.partitions
        limit = core.config.max_pending
        parts = core.parts
        for i, agent_id in enumerate(ids):
            if not isinstance(agent_id, str):
                continue
            p = zlib.crc32(agent_id.encode("utf-8")) % n
            if p not in accepting:
                continue
            part = parts.get(p)
            if part is None:
                continue
            self.enqueue(part, (agent_id, kinds[i], prevs[i], news[i], lasts[i], walls[i]),
                         limit)
        core.wake_publisher.set()

    def enqueue(self, part: Part, event: tuple[Any, ...], limit: int | None = None) -> None:
        if self.pending >= (self.core.config.max_pending if limit is None else limit):
            self.core.stats.pending_dropped += 1
            return
        part.pending.append(event)
        self.pending += 1

    # -- the publisher thread ----------------------------------------------------------------

    def _run(self) -> None:
        self.core.run(self._step)

    def _step(self) -> None:
        self.core.wake_publisher.wait(self.period_s)
        self.core.wake_publisher.clear()
        self.flush_ready()

    def _grace(self, agent_id: str) -> float:
        """After an outage, an agent gets one of its intervals (plus settle) to report."""
        try:
            interval_s = float(self.core.monitor.monitoring_agents[agent_id]["interval_ms"]) / 1000
        except (KeyError, ValueError):
            interval_s = 0.0
        return interval_s + self.core.config.settle_ms / 1000

    def _outage_end(self, event: Event) -> float | None:
        """The end of the Redis outage (plus the agent's grace) the crossing's deadline fell
        in, or None. Outages are few (a bounded deque), usually none."""
        deadline = event[5]
        end = None
        grace = None
        for down, up in self.core.outages:
            if deadline < down:
                continue
            if grace is None:
                grace = self._grace(event[0])
            if deadline <= up + grace:
                end = max(end or up + grace, up + grace)
        return end

    def _ready_at(self, event: Event) -> float:
        """The horizon the partition's log must be read to before `event` can be judged."""
        if event[1] == 1:
            return -math.inf
        need = event[5] + self.core.config.settle_ms / 1000
        end = self._outage_end(event)
        return need if end is None else max(need, end)

    def flush_ready(self) -> None:
        with self.core.mu:
            parts = list(self.core.parts.values())
        for part in parts:
            if not part.pending or not part.live:
                continue
            ready: list[Event] = []
            while part.pending and part.horizon >= self._ready_at(part.pending[0]):
                ready.append(part.pending.popleft())
            if not ready:
                continue
            self.pending -= len(ready)
            try:
                self._publish(part, self._recheck(ready))
            except BaseException:
                part.pending.extendleft(reversed(ready))   # retried: the dedup makes it safe
                self.pending += len(ready)
                raise

    def _recheck(self, events: list[Event]) -> list[Event]:
        """Keeps a crossing only if no heartbeat recorded since disproves it: none in
        (last, deadline), or, for a deadline in a Redis outage, none at all after last."""
        monitor = self.core.monitor
        crossing = [i for i, e in enumerate(events) if e[1] == 0]
        if not crossing:
            return events
        handles = monitor.handles([events[i][0] for i in crossing])
        values, offsets = monitor.histories(np.where(handles >= 0, handles, 0).astype(np.int64),
                                            layout="flat")
        bad: set[int] = set()
        for j, i in enumerate(crossing):
            if handles[j] < 0:
                bad.add(i)      # unregistered meanwhile
                continue
            last, deadline = events[i][4], events[i][5]
            beats = values[offsets[j]:offsets[j + 1]]
            later = beats > last + _EPS
            if self._outage_end(events[i]) is None:
                later &= beats < deadline - _EPS
            if later.any():
                bad.add(i)
        self.disproved += len(bad)
        return [e for i, e in enumerate(events) if i not in bad]

    def _publish(self, part: Part, events: list[Event]) -> None:
        core = self.core
        keys = [core.keys.lease(part.number), core.keys.last(part.number), core.keys.alerts]
        for start in range(0, len(events), _CHUNK):
            chunk = events[start:start + _CHUNK]
            seen = part.holder
            args: list[Any] = [seen, core.name, part.number, part.token,
                               core.config.alerts_maxlen]
            for agent_id, _kind, prev, new, last, deadline in chunk:
                # Found by takeover: the agent's silence began before this owner went live.
                args += [agent_id, _VALUES[new], _VALUES[prev], f"{deadline:.3f}",
                         1 if last < part.live_since else 0]
            result = int(core.scripts.publish(keys=keys, args=args))
            if (result == -2 and self._reacquire(part, seen)) or \
                    (result == -1 and part.holder != seen):
                # Expired while nobody took it (Redis restarted or paused) and taken again
                # by this shard under a new token: nothing missed; dedup makes it safe.
                args[0], args[3] = part.holder, part.token
                result = int(core.scripts.publish(keys=keys, args=args))
            if result < 0:
                core.stats.fenced_writes += 1
                self._lose(part, True)
                return
            core.stats.published += result
            core.stats.suppressed += len(chunk) - result
