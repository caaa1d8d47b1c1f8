"""Time in state and uptime per agent, from the transitions the engine reports.

Fed by the alert dispatcher (every block of crossings and recoveries, whatever the alert
settings), so it works alike on both engines. An agent is *up* while HEALTHY or DEGRADED
and *down* while CRITICAL or FAILED. Each change is placed at its true time: a crossing at
its threshold deadline, a recovery at the heartbeat that ended the silence. Only agents
that ever left HEALTHY hold a record: a bounded list of their last state changes."""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime
from typing import Any

import numpy as np

from ..core._batch import Batch
from ..core._contract import Engine
from ..core._rules import CROSSING, HEALTHY, STATES
from ..core._validate import check_agent_id

__all__ = ["UP_STATES", "StateLog", "Uptime"]

UP_STATES = frozenset({0, 1})   # state codes counted as up: HEALTHY, DEGRADED


class _Track:
    """One agent's state changes (wall s, new state), oldest first, and the time in each
    state folded in from the changes that were pushed out of the bounded list."""

    __slots__ = ("base_state", "base_t", "changes", "complete", "folded", "registered")

    def __init__(self, size: int, registered: float) -> None:
        self.changes: deque[tuple[float, int]] = deque(maxlen=size)
        self.registered = registered
        self.base_state, self.base_t = HEALTHY, registered   # where `changes` start from
        self.folded = [0.0, 0.0, 0.0, 0.0]
        self.complete = True    # False once a change was folded in

    def add(self, wall: float, new: int) -> None:
        changes = self.changes
        if len(changes) == changes.maxlen:
            w0, s0 = changes[0]
            self.folded[self.base_state] += max(w0 - self.base_t, 0.0)
            self.base_state, self.base_t, self.complete = s0, max(w0, self.base_t), False
        changes.append((wall, new))


class StateLog:
    """Bounded per-agent records of reported state changes (a dispatcher listener).

    `size` changes are kept per agent, with running time-in-state totals of older ones: a
    window from registration on is always answered; one that starts before the oldest
    kept change of an agent with folded changes is not (None)."""

    def __init__(self, engine: Engine, size: int = 256) -> None:
        self._engine = engine
        self._size = size
        self._tracks: dict[int, _Track] = {}
        self._mu = threading.Lock()

    def __call__(self, ids: list[Any], block: Any) -> None:
        """Takes one block of events (the dispatcher's listener signature)."""
        kind = block["kind"]
        mono = np.where(kind == CROSSING, block["deadline"], block["last_mono"])
        # Wall time of each change: the heartbeat's wall time plus the monotonic time since
        # (for an agent with no heartbeat yet, whose clock started at registration, the
        # time since registration).
        since = ((mono - block["last_mono"]) / 1e9).tolist()
        rows = zip(ids, block["handle"].tolist(), since, block["new"].tolist(),
                   block["last_wall"].tolist())
        with self._mu:
            tracks = self._tracks
            for agent_id, handle, dt, new, last_wall in rows:
                track = tracks.get(handle)
                if track is None:
                    info = self._engine.info(agent_id)
                    if info is None:
                        continue   # stopped since: its record would be forgotten anyway
                    track = tracks[handle] = _Track(self._size, info[4])
                track.add((last_wall or track.registered) + dt, new)

    def tracked(self) -> set[int]:
        """Handles of the agents that ever left HEALTHY (and so hold a record)."""
        with self._mu:
            return set(self._tracks)

    def forget(self, handle: int) -> None:
        with self._mu:
            self._tracks.pop(handle, None)

    def durations(self, handle: int, registered: float, now: float, start: float,
                  end: float) -> list[float] | None:
        """Seconds in each state (by code) within [start, end] ∩ [registered, now], wall
        seconds; None when the window lies outside what is kept."""
        lo, hi = max(start, registered), min(end, now)
        if hi <= lo:
            return None
        with self._mu:
            track = self._tracks.get(handle)
            if track is None:
                return [hi - lo, 0.0, 0.0, 0.0]   # never left HEALTHY
            changes = list(track.changes)
            state, t = track.base_state, track.base_t
            out = [0.0, 0.0, 0.0, 0.0]
            if not track.complete and lo < t:
                # The window starts among folded changes: known only from registration on.
                if lo > registered or hi < t:
                    return None
                out = list(track.folded)
        for w, new in changes:
            _add(out, state, t, w, lo, hi)
            state, t = new, max(t, w)
        _add(out, state, t, max(hi, t), lo, hi)
        return out


def _add(out: list[float], state: int, a: float, b: float, lo: float, hi: float) -> None:
    span = min(b, hi) - max(a, lo)
    if span > 0:
        out[state] += span


def uptime_percent(durations: list[float] | None) -> float | None:
    """Share of the monitored time spent up, in percent (None when unknown)."""
    if durations is None:
        return None
    total = sum(durations)
    if total <= 0:
        return None
    return 100.0 * sum(durations[c] for c in UP_STATES) / total


def durations_by_name(durations: list[float]) -> dict[str, float]:
    return {state.value: durations[i] for i, state in enumerate(STATES)}


def _wall(name: str, value: Any, default: float) -> float:
    """A window edge: a datetime or Unix seconds (None: `default`)."""
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a datetime or Unix seconds, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


class Uptime:
    """Per-agent and fleet-wide uptime over a window (composed into HeartbeatMonitor)."""

    __slots__ = ("_batch", "_engine", "_log")

    def __init__(self, engine: Engine, batch: Batch, log: StateLog) -> None:
        self._engine = engine
        self._batch = batch
        self._log = log

    def _window(self, agent_id: Any, start: Any, end: Any
                ) -> tuple[int, float, float, float, float] | None:
        lo = _wall("start", start, -math.inf)
        hi = _wall("end", end, math.inf)
        if hi < lo:
            raise ValueError(f"end ({hi}) is before start ({lo})")
        info = self._engine.info(agent_id)
        if info is None:
            return None
        handle = int(self._engine.handles([agent_id])[0])
        return handle, info[4], self._engine.now()[1], lo, hi

    def state_durations(self, agent_id: Any, start: Any = None, end: Any = None
                        ) -> dict[str, float]:
        """See HeartbeatMonitor.get_state_durations."""
        check_agent_id(agent_id)
        window = self._window(agent_id, start, end)
        if window is None:
            raise ValueError(f"Agent {agent_id} not being monitored")
        got = self._log.durations(*window)
        return durations_by_name(got if got is not None else [math.nan] * 4)

    def uptime_percentage(self, agent_id: Any, start: Any, end: Any) -> float | None:
        """See HeartbeatMonitor.get_uptime_percentage."""
        check_agent_id(agent_id)
        window = self._window(agent_id, start, end)
        return None if window is None else uptime_percent(self._log.durations(*window))

    def uptime(self, agent_ids: Any = None, start: Any = None, end: Any = None
               ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """See HeartbeatMonitor.uptime."""
        if _wall("end", end, math.inf) < _wall("start", start, -math.inf):
            raise ValueError(f"end ({end}) is before start ({start})")
        handles = self._batch.all_or(agent_ids)
        out = np.full(len(handles), 100.0)
        ids = self._engine.ids_of(handles)
        tracked = self._log.tracked()
        for i, (h, agent_id) in enumerate(zip(handles.tolist(), ids)):
            if agent_id is None:
                out[i] = math.nan
            elif h in tracked:
                got = self.uptime_percentage(agent_id, start, end)
                out[i] = math.nan if got is None else got
        return out
