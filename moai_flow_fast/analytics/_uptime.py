"""Time in state and uptime per agent, from the transitions the engine reports.

Fed by the alert dispatcher (every block of crossings and recoveries, whatever the alert
settings), so it works alike on both engines. An agent is *up* while HEALTHY or DEGRADED
and *down* while CRITICAL or FAILED. Each change is placed at its true time: a crossing at
its threshold deadline, a recovery at the heartbeat that ended the silence. Only agents
that ever left HEALTHY hold a record: a bounded list of their last state changes."""

from __future__ import annotations

import math
import threading
from array import array
from datetime import datetime
from typing import Any

import numpy as np

from ..core._batch import Batch
from ..core._contract import Engine
from ..core._rules import CROSSING, HEALTHY, STATES
from ..core._validate import check_agent_id

__all__ = ["UP_STATES", "StateLog", "Uptime"]

UP_STATES = frozenset({0, 1})   # state codes counted as up: HEALTHY, DEGRADED


# A record is one flat array('d') per agent: arrays hold no Python objects, so a storm of
# 10**5 first-time transitions adds no work for the cyclic GC. Layout: the state and wall
# time the kept changes start from (NaN: the registration), 1.0 while nothing was folded,
# the seconds per state folded in from changes pushed out, then one (wall, code) pair per
# kept change, oldest first.
_BASE_STATE, _BASE_T, _COMPLETE, _FOLDED, _HEAD = 0, 1, 2, 3, 7
_EMPTY = array("d", [HEALTHY, math.nan, 1.0, 0.0, 0.0, 0.0, 0.0])
# A change of an agent with no heartbeat yet (its clock started at registration) has no
# wall time of its own: its code carries this flag and its time is seconds since registration.
_SINCE_REGISTRATION = 4


class StateLog:
    """Bounded per-agent records of reported state changes (a dispatcher listener).

    `size` changes are kept per agent, with running time-in-state totals of older ones: a
    window from registration on is always answered; one that starts before the oldest
    kept change of an agent with folded changes is not (None)."""

    def __init__(self, engine: Engine, size: int = 256) -> None:
        self._engine = engine
        self._cap = _HEAD + 2 * size
        self._tracks: dict[int, array[float]] = {}
        self._mu = threading.Lock()

    def __call__(self, ids: list[Any], block: Any) -> None:
        """Takes one block of events (the dispatcher's listener signature)."""
        kind = block["kind"]
        mono = np.where(kind == CROSSING, block["deadline"], block["last_mono"])
        since = (mono - block["last_mono"]) / 1e9
        last_wall = block["last_wall"]
        rel = last_wall == 0.0
        walls = np.where(rel, since, last_wall + since).tolist()
        codes = (block["new"] + np.where(rel, _SINCE_REGISTRATION, 0)).tolist()
        cap = self._cap
        with self._mu:
            tracks = self._tracks
            for agent_id, handle, w, code in zip(ids, block["handle"].tolist(), walls, codes):
                track = tracks.get(handle)
                if track is None:
                    track = tracks[handle] = array("d", _EMPTY)
                elif len(track) >= cap:
                    info = self._engine.info(agent_id)   # rare: once per `size` changes
                    if info is None:
                        continue   # stopped since: its record is forgotten anyway
                    _fold(track, info[4])
                track.append(w)
                track.append(code)

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
            track = array("d", track)
        state = int(track[_BASE_STATE])
        t = registered if math.isnan(track[_BASE_T]) else track[_BASE_T]
        out = [0.0, 0.0, 0.0, 0.0]
        if not track[_COMPLETE] and lo < t:
            # The window starts among folded changes: known only from registration on.
            if lo > registered or hi < t:
                return None
            out = list(track[_FOLDED:_HEAD])
        for i in range(_HEAD, len(track), 2):
            w, code = track[i], int(track[i + 1])
            if code >= _SINCE_REGISTRATION:
                w, code = registered + w, code - _SINCE_REGISTRATION
            _add(out, state, t, w, lo, hi)
            state, t = code, max(t, w)
        _add(out, state, t, max(hi, t), lo, hi)
        return out


def _fold(track: array[float], registered: float) -> None:
    """Folds the oldest kept change into the totals."""
    if math.isnan(track[_BASE_T]):
        # First fold: from now on every time is a wall time (relative ones only ever come
        # first, before the agent's first heartbeat).
        track[_BASE_T] = registered
        for i in range(_HEAD, len(track), 2):
            if track[i + 1] >= _SINCE_REGISTRATION:
                track[i] += registered
                track[i + 1] -= _SINCE_REGISTRATION
    w, code = track[_HEAD], track[_HEAD + 1]
    track[_FOLDED + int(track[_BASE_STATE])] += max(w - track[_BASE_T], 0.0)
    track[_BASE_STATE], track[_BASE_T], track[_COMPLETE] = code, max(w, track[_BASE_T]), 0.0
    del track[_HEAD:_HEAD + 2]


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
