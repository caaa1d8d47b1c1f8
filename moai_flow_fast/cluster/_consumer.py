"""The consumer thread: adopts acquired partitions (registry load, replay of the heartbeat
log, then live), reads the owned partitions' heartbeat and registry streams in batches
into the monitor, and drops lost partitions."""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core._rules import STATES, HealthState
from ..core._validate import check_interval_ms
from ._core import Core, Part, entry_fields, parse_spec

__all__ = ["Consumer"]

_CODE = {state.value: code for code, state in enumerate(STATES)}
_MAX_TS = 2.0 ** 33   # the monitor's bound on Unix seconds (year 2242): beyond, a bad ts
Entry = list[Any]      # [entry id, [field, value, ...]]: the raw reply (see Core)


class Consumer:
    def __init__(self, core: Core, enqueue: Callable[[Part, tuple[Any, ...]], None]) -> None:
        self.core = core
        self._enqueue = enqueue
        self._commands: collections.deque[tuple[str, Part]] = collections.deque()
        self._commands_mu = threading.Lock()
        self.invalid_specs = 0
        self.thread = threading.Thread(target=self._run, name=f"mff-consume-{core.name}",
                                       daemon=True)

    def adopt(self, part: Part) -> None:
        with self._commands_mu:
            self._commands.append(("adopt", part))

    def drop(self, part: Part) -> None:
        with self._commands_mu:
            self._commands.append(("drop", part))

    def _run(self) -> None:
        self.core.run(self._step)

    def _step(self) -> None:
        self._apply_commands()
        self._read_once()

    def _apply_commands(self) -> None:
        while True:
            with self._commands_mu:
                if not self._commands:
                    return
                op, part = self._commands.popleft()
            try:
                if op == "adopt":
                    if self.core.parts.get(part.number) is part:
                        self._adopt(part)
                else:
                    self._drop(part)
            except BaseException:
                with self._commands_mu:   # retried after the backoff
                    self._commands.appendleft((op, part))
                raise

    # -- registry ---------------------------------------------------------------------------

    def _register(self, part: Part, specs: Sequence[tuple[str, str]], start_clock: bool) -> None:
        monitor = self.core.monitor
        ids: list[str] = []
        intervals: list[Any] = []
        thresholds: list[Any] = []
        for agent_id, text in specs:
            try:
                interval, threshold = parse_spec(text)
                iv = monitor.default_interval_ms if interval is None else interval
                th = monitor.default_failure_threshold if threshold is None else threshold
                if th < 1:
                    raise ValueError("failure_threshold must be >= 1")
                check_interval_ms(iv, th)
            except (TypeError, ValueError):
                self.invalid_specs += 1    # written by another language's client: skip it
                continue
            ids.append(agent_id)
            intervals.append(iv)
            thresholds.append(th)
            part.window_s = max(part.window_s, iv * th / 1000)
        if ids:
            monitor.start_monitoring_many(ids, intervals, thresholds, start_clock=start_clock)
            part.agents.update(ids)

    def _apply_registry(self, part: Part, entries: list[Entry]) -> None:
        adds: list[tuple[str, str]] = []
        for _, raw in entries:
            fields = entry_fields(raw)
            agent_id = fields.get("id")
            if agent_id is None:
                continue
            if fields.get("op") == "add":
                adds.append((agent_id, fields.get("spec", ",")))
            elif fields.get("op") == "del":
                if adds:
                    self._register(part, adds, self.core.monitor.start_clock_on_register)
                    adds = []
                if agent_id in part.agents:
                    part.agents.discard(agent_id)
                    if agent_id in self.core.monitor.monitoring_agents:
                        self.core.monitor.stop_monitoring(agent_id)
        if adds:
            self._register(part, adds, self.core.monitor.start_clock_on_register)
        self.core.stats.registry_changes += len(entries)

    # -- heartbeats -------------------------------------------------------------------------

    def _record(self, entries: list[Entry]) -> None:
        ids, stamps = self._parse(entries)
        self._record_ids(ids, stamps)

    def _parse(self, entries: list[Entry]) -> tuple[list[str], list[float]]:
        """(ids, Unix s) of heartbeat entries; an entry without an id is counted unknown."""
        # The hot loop of replay and live reading, hence inline: ~1 us an entry.
        ids: list[str] = []
        stamps: list[float] = []
        nan = math.nan
        for entry_id, raw in entries:
            if raw and len(raw) == 4 and raw[0] == "id" and raw[2] == "ts":
                agent_id, ts = raw[1], raw[3]      # what every sender here writes
            else:
                fields = entry_fields(raw)
                agent_id, ts = fields.get("id"), fields.get("ts")
            if agent_id is None:
                self.core.stats.unknown += 1
                continue
            value = nan
            if ts is not None:
                try:
                    value = float(ts)
                except ValueError:
                    pass
            if not 0.0 < value <= _MAX_TS:  # no usable ts: the entry ID's millisecond time
                value = int(entry_id.split("-", 1)[0]) / 1000.0
            ids.append(agent_id)
            stamps.append(value)
        return ids, stamps

    def _record_ids(self, ids: list[str], stamps: list[float]) -> None:
        if not ids:
            return
        monitor = self.core.monitor
        handles = monitor.handles(ids)
        self.core.stats.unknown += int(np.count_nonzero(handles == -1))
        monitor.record_heartbeats(handles, timestamps=np.asarray(stamps, dtype=np.float64))

    def _adopt(self, part: Part) -> None:
        core, keys, p = self.core, self.core.keys, part.number
        client = core.client
        newest = client.xrevrange(keys.reg(p), count=1)   # before the hash: nothing missed
        part.reg_pos = newest[0][0] if newest else "0-0"
        registry = client.hgetall(keys.agents(p))
        defaults = core.monitor.default_interval_ms * core.monitor.default_failure_threshold
        part.window_s = max(part.window_s, defaults / 1000)
        # No clock yet: an agent's deadlines start from its replayed heartbeats.
        self._register(part, sorted(registry.items()), False)
        start = core.wall() - part.window_s - core.config.replay_margin_s
        cursor = f"{max(0, int(start * 1000))}-0"
        replayed = 0
        # Only each agent's newest heartbeat of the window is recorded, once the whole log is
        # read: fed batch by batch, an agent whose older beats come first would cross to
        # FAILED (its present state from an old beat) and recover a batch later, and every
        # listener of the monitor (SSE, webhooks, the log) would see that false alarm. The
        # taken-over agent's history restarts from its last heartbeat.
        latest: dict[str, float] = {}
        newest = latest.get
        while True:
            started = core.wall()
            entries = client.xrange(keys.hb(p), min=cursor, max="+", count=core.config.batch)
            for agent_id, stamp in zip(*self._parse(entries), strict=True):
                if stamp > newest(agent_id, 0.0):
                    latest[agent_id] = stamp
            replayed += len(entries)
            if entries:
                part.pos = entries[-1][0]
                cursor = "(" + part.pos
            elif part.pos == "0-0":
                part.pos = cursor
            if len(entries) < core.config.batch:
                part.horizon = started
                break
        self._record_ids(list(latest), list(latest.values()))
        core.read_ok(core.wall())
        self._recoveries_found(part, client.hgetall(keys.last(p)), start)
        part.live_since = core.wall()
        part.live = True
        core.stats.replayed += replayed
        core.stats.takeovers += 1

    def _recoveries_found(self, part: Part, last: dict[str, str], since: float) -> None:
        """An agent the old owner published as down but that heartbeats again in the replay
        came back during the gap: its recovery is published now (else the dedup record
        would hide its next failure)."""
        monitor = self.core.monitor
        for agent_id, state in last.items():
            if state == "healthy" or agent_id not in part.agents:
                continue
            try:
                if monitor.check_agent_health(agent_id) is not HealthState.HEALTHY:
                    continue
            except ValueError:
                continue
            history = monitor.history_array(agent_id)
            if history.size and history[-1] >= since:
                beat = float(history[-1])
                self._enqueue(part, (agent_id, 1, _CODE.get(state, 3), 0, beat, beat))

    def _drop(self, part: Part) -> None:
        part.live = False
        part.pending.clear()
        monitor = self.core.monitor
        agents = monitor.monitoring_agents
        for agent_id in part.agents:
            if agent_id in agents and self.core.parts.get(part.number) is None:
                monitor.stop_monitoring(agent_id)
        part.agents.clear()

    def _read_once(self) -> None:
        core, keys = self.core, self.core.keys
        with core.mu:
            live = [part for part in core.parts.values() if part.live]
        if not live:
            core.stop_event.wait(core.config.poll_ms / 1000)
            return
        streams: dict[str, str] = {}
        for part in live:
            streams[keys.hb(part.number)] = part.pos
            streams[keys.reg(part.number)] = part.reg_pos
        started = core.wall()
        response = core.client.xread(streams, count=core.config.batch, block=core.config.poll_ms)
        core.read_ok(started)
        got: dict[str, list[Entry]] = dict(response.items() if isinstance(response, dict)
                                           else response or [])
        for part in live:
            if core.parts.get(part.number) is not part:
                continue
            changes = got.get(keys.reg(part.number))
            if changes:
                self._apply_registry(part, changes)
                part.reg_pos = changes[-1][0]
            beats = got.get(keys.hb(part.number))
            if beats:
                self._record(beats)
                part.pos = beats[-1][0]
                core.stats.consumed += len(beats)
            if not beats or len(beats) < core.config.batch:
                part.horizon = started
