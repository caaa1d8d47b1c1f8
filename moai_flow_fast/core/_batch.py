"""The monitor's batch part: handles, batch registration and heartbeats, history arrays.

`Batch` is composed into HeartbeatMonitor (which documents the public methods); it needs
only the engine and the monitor's `Defaults`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ._contract import Engine
from ._logs import UnknownHeartbeats
from ._validate import check_interval_ms, check_whole

__all__ = ["Batch", "Defaults"]

_MAX_UNIX = 2.0 ** 33   # year 2242: far beyond any clock, far inside int64 nanoseconds

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]


def _sequence(name: str, values: Any) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of agent ids or an int64 array of handles, "
                        f"got {type(values).__name__}")
    return cast("Sequence[Any]", values)


def _per_agent(name: str, value: Any, n: int) -> list[Any]:
    """A scalar broadcast to n agents, or a sequence of exactly n values."""
    if value is None or np.ndim(value) == 0:
        return [value] * n
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} agents")
    return values


class Defaults:
    """The monitor's defaults for agents registered without their own settings; shared by
    the facade (whose public attributes read and write it) and its parts."""

    __slots__ = ("failure_threshold", "interval_ms", "start_clock")

    def __init__(self, interval_ms: Any, failure_threshold: Any, start_clock: bool) -> None:
        self.interval_ms = interval_ms
        self.failure_threshold = failure_threshold
        self.start_clock = start_clock


class Batch:
    """Many agents per call: for gateways that receive thousands of heartbeats at once."""

    __slots__ = ("_defaults", "_engine", "_unknown")

    def __init__(self, engine: Engine, defaults: Defaults, unknown: UnknownHeartbeats) -> None:
        self._engine = engine
        self._defaults = defaults
        self._unknown = unknown

    def handles_of(self, ids_or_handles: Any, name: str = "ids_or_handles") -> Int64Array:
        """Handles of ids, or an integer handle array checked for shape."""
        if isinstance(ids_or_handles, np.ndarray):
            kind = ids_or_handles.dtype.kind
            if kind in "iu":
                if ids_or_handles.ndim != 1:
                    raise ValueError(f"{name} must be a 1-D array of handles")
                return np.ascontiguousarray(ids_or_handles, dtype=np.int64)
            if kind in "fcbmM":
                raise TypeError(f"{name} must be agent ids or an integer array of handles, "
                                f"got a {ids_or_handles.dtype} array")
        return self._engine.handles(_sequence(name, ids_or_handles), name)

    def handles(self, agent_ids: Sequence[Any]) -> Int64Array:
        """See HeartbeatMonitor.handles."""
        return self._engine.handles(_sequence("agent_ids", agent_ids), "agent_ids")

    def agent_ids(self, handles: Int64Array) -> list[Any]:
        """See HeartbeatMonitor.agent_ids."""
        return self._engine.ids_of(self.handles_of(handles))

    def start_monitoring_many(self, agent_ids: Sequence[Any], interval_ms: Any = None,
                              failure_threshold: Any = None, *,
                              start_clock: bool | None = None) -> BoolArray:
        """See HeartbeatMonitor.start_monitoring_many."""
        ids = _sequence("agent_ids", agent_ids)
        n = len(ids)
        intervals = _per_agent("interval_ms", interval_ms, n)
        thresholds = _per_agent("failure_threshold", failure_threshold, n)
        if start_clock is None:
            start_clock = self._defaults.start_clock
        elif not isinstance(start_clock, bool):
            raise TypeError(f"start_clock must be a bool or None, got {type(start_clock).__name__}")
        ns = np.empty(n, dtype=np.int64)
        ts = np.empty(n, dtype=np.int32)
        cache: dict[tuple[Any, Any], tuple[int, int]] = {}
        for i, (iv, th) in enumerate(zip(intervals, thresholds)):
            key = (iv, th)
            hit = cache.get(key) if not isinstance(iv, float) or not math.isnan(iv) else None
            if hit is None:
                t = check_whole("failure_threshold",
                                self._defaults.failure_threshold if th is None else th, 1)
                hit = (check_interval_ms(self._defaults.interval_ms if iv is None else iv, t)[1], t)
                cache[key] = hit
            ns[i], ts[i] = hit
        for i, agent_id in enumerate(ids):
            try:
                hash(agent_id)
            except TypeError:
                raise TypeError(f"agent_ids[{i}] must be hashable, "
                                f"got {type(agent_id).__name__}") from None
        return self._engine.start_many(ids, ns, ts, start_clock)

    def record_heartbeats(self, ids_or_handles: Any, timestamps: Any = None) -> BoolArray:
        """See HeartbeatMonitor.record_heartbeats."""
        handles = self.handles_of(ids_or_handles)
        walls = None
        if timestamps is not None:
            try:
                walls = np.ascontiguousarray(timestamps, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError("timestamps must be an array of Unix seconds") from None
            if walls.shape != handles.shape:
                raise ValueError(f"timestamps has shape {walls.shape}, "
                                 f"expected {handles.shape} (one per heartbeat)")
            if not np.isfinite(walls).all():
                raise ValueError("timestamps must be finite (no NaN or infinity)")
            if walls.size and (walls.min() < 0 or walls.max() > _MAX_UNIX):
                raise ValueError(f"timestamps must be Unix seconds between 0 and {_MAX_UNIX:.0f}")
        recorded = self._engine.record_many(handles, walls)
        if not (isinstance(ids_or_handles, np.ndarray) and ids_or_handles.dtype.kind in "iu"):
            # Ids that are not monitored became handle -1: one (rate-limited) log line.
            unknown = np.flatnonzero(handles == -1)
            if unknown.size:
                self._unknown.many(int(unknown.size), ids_or_handles[int(unknown[0])])
        return recorded

    def history_array(self, agent_id: Any, *, copy: bool = False
                      ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """See HeartbeatMonitor.history_array."""
        out = self._engine.history_array(agent_id, copy)
        return np.empty(0) if out is None else out

    def histories(self, agent_ids: Sequence[Any] | None = None, *, layout: str = "padded"
                  ) -> Any:
        """See HeartbeatMonitor.histories."""
        if layout not in ("padded", "flat"):
            raise ValueError(f"layout must be 'padded' or 'flat', got {layout!r}")
        return self._engine.histories(self.all_or(agent_ids), layout == "padded")

    def all_or(self, agent_ids: Any) -> Int64Array:
        """Handles of `agent_ids`, or of every monitored agent in registration order."""
        if agent_ids is None:
            return self._engine.all_handles()
        return self.handles_of(agent_ids, "agent_ids")
