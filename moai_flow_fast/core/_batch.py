"""Batch side of HeartbeatMonitor: handles, batch registration and heartbeats, history arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validate import check_interval_ms, check_whole

__all__ = ["BatchMixin"]

_MAX_UNIX = 2.0 ** 33   # year 2242: far beyond any clock, far inside int64 nanoseconds

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]


def _sequence(name: str, values: Any) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of agent ids or an int64 array of handles, "
                        f"got {type(values).__name__}")
    return values  # type: ignore[no-any-return]


def _per_agent(name: str, value: Any, n: int) -> list[Any]:
    """A scalar broadcast to n agents, or a sequence of exactly n values."""
    if value is None or np.ndim(value) == 0:
        return [value] * n
    values = list(np.asarray(value, dtype=object).ravel())
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} agents")
    return values


class BatchMixin:
    """Many agents per call: for gateways that receive thousands of heartbeats at once."""

    _engine: Any
    default_interval_ms: Any
    default_failure_threshold: Any
    start_clock_on_register: bool

    def _handles_of(self, ids_or_handles: Any, name: str = "ids_or_handles") -> Int64Array:
        if isinstance(ids_or_handles, np.ndarray):
            kind = ids_or_handles.dtype.kind
            if kind in "iu":
                if ids_or_handles.ndim != 1:
                    raise ValueError(f"{name} must be a 1-D array of handles")
                return np.ascontiguousarray(ids_or_handles, dtype=np.int64)
            if kind in "fcbmM":
                raise TypeError(f"{name} must be agent ids or an integer array of handles, "
                                f"got a {ids_or_handles.dtype} array")
        return self._engine.handles(_sequence(name, ids_or_handles), name)  # type: ignore[no-any-return]

    def handles(self, agent_ids: Sequence[Any]) -> Int64Array:
        """Stable int64 handles of `agent_ids` (-1 where an id is not monitored). A handle
        names one monitoring of one agent: after a stop it never matches again, even when
        the id is monitored anew."""
        return self._engine.handles(_sequence("agent_ids", agent_ids), "agent_ids")  # type: ignore[no-any-return]

    def agent_ids(self, handles: Int64Array) -> list[Any]:
        """The ids of `handles` (None where a handle is not live)."""
        return self._engine.ids_of(self._handles_of(handles))  # type: ignore[no-any-return]

    def start_monitoring_many(self, agent_ids: Sequence[Any], interval_ms: Any = None,
                              failure_threshold: Any = None, *,
                              start_clock: bool | None = None) -> BoolArray:
        """Register many agents at one instant, with a common or per-agent interval and
        threshold. Every argument is checked before any agent is registered. Returns a
        mask: True where the agent was newly registered (False: already monitored)."""
        ids = _sequence("agent_ids", agent_ids)
        n = len(ids)
        intervals = _per_agent("interval_ms", interval_ms, n)
        thresholds = _per_agent("failure_threshold", failure_threshold, n)
        if start_clock is None:
            start_clock = self.start_clock_on_register
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
                                self.default_failure_threshold if th is None else th, 1)
                hit = (check_interval_ms(self.default_interval_ms if iv is None else iv, t)[1], t)
                cache[key] = hit
            ns[i], ts[i] = hit
        for i, agent_id in enumerate(ids):
            try:
                hash(agent_id)
            except TypeError:
                raise TypeError(f"agent_ids[{i}] must be hashable, "
                                f"got {type(agent_id).__name__}") from None
        return self._engine.start_many(ids, ns, ts, start_clock)  # type: ignore[no-any-return]

    def record_heartbeats(self, ids_or_handles: Any, timestamps: Any = None) -> BoolArray:
        """Record heartbeats in input order, exactly as `record_heartbeat` in a loop would
        (an id may repeat; recoveries and alerts included). `ids_or_handles` is a sequence
        of ids, or an integer numpy array of handles (faster). `timestamps` (Unix seconds,
        one per heartbeat) default to now; one in the future counts as now, one older than
        the agent's last heartbeat is rejected. Returns a mask of the heartbeats recorded:
        False for unknown or stopped agents and rejected timestamps."""
        handles = self._handles_of(ids_or_handles)
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
        return self._engine.record_many(handles, walls)  # type: ignore[no-any-return]

    def history_array(self, agent_id: Any, *, copy: bool = False
                      ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """One agent's heartbeat timestamps, oldest first (empty when it has none). Without
        `copy`, a ring that has not wrapped is returned as a read-only view of the monitor's
        memory, valid until the agent's next heartbeat."""
        out = self._engine.history_array(agent_id, copy)
        return np.empty(0) if out is None else out

    def histories(self, agent_ids: Sequence[Any] | None = None, *, layout: str = "padded"
                  ) -> Any:
        """Timestamps of many agents (all monitored ones by default, in registration
        order), oldest first: `layout="padded"` gives an (n, history_size) array padded
        with NaN; `layout="flat"` gives (values, offsets), agent i's records being
        values[offsets[i]:offsets[i + 1]]."""
        if layout not in ("padded", "flat"):
            raise ValueError(f"layout must be 'padded' or 'flat', got {layout!r}")
        return self._engine.histories(self._all_or(agent_ids), layout == "padded")

    def _all_or(self, agent_ids: Any) -> Int64Array:
        """Handles of `agent_ids`, or of every monitored agent in registration order."""
        if agent_ids is None:
            return self._engine.all_handles()  # type: ignore[no-any-return]
        return self._handles_of(agent_ids, "agent_ids")
