"""The monitor's analytics part: interval statistics, phi-accrual suspicion, one-instant
snapshots of the whole swarm, and export to pandas (composed into HeartbeatMonitor)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from ..core._batch import Batch, Defaults
from ..core._contract import Engine, Kernel
from ..core._rules import STATES
from ._stats_py import COLUMNS

__all__ = ["STATS_DTYPE", "Fleet", "Snapshot", "kernel_for"]

# One row of interval_stats: the handle, then the kernel's COLUMNS (count first, an integer).
STATS_DTYPE = np.dtype([("handle", np.int64), (COLUMNS[0], np.int64),
                        *((name, np.float64) for name in COLUMNS[1:])])


@dataclass(frozen=True)
class Snapshot:
    """Every monitored agent at one instant, in registration order."""

    ids: list[Any]
    handles: np.ndarray[Any, np.dtype[np.int64]]
    states: np.ndarray[Any, np.dtype[np.int8]]       # 0 healthy .. 3 failed
    elapsed_ms: np.ndarray[Any, np.dtype[np.float64]]  # NaN before an agent's clock starts
    phi: np.ndarray[Any, np.dtype[np.float64]]
    counts: dict[str, int]                           # agents per state
    monotonic: float                                 # the instant, monotonic seconds
    wall: float                                      # the instant, Unix seconds

    def __len__(self) -> int:
        return len(self.ids)


def kernel_for(engine_name: str) -> Kernel:
    """The interval-statistics kernel that goes with an engine."""
    if engine_name == "compiled":
        from ._stats_c import interval_stats as kernel
    else:
        from ._stats_py import interval_stats as kernel
    return kernel


def _time_range(time_range: Any) -> tuple[float, float]:
    if time_range is None:
        return -math.inf, math.inf
    if (not isinstance(time_range, (tuple, list)) or len(time_range) != 2
            or not all(isinstance(t, (datetime, int, float)) and not isinstance(t, bool)
                       for t in time_range)):
        raise TypeError("time_range must be a (start, end) pair of datetimes or Unix seconds")
    lo, hi = (t.timestamp() if isinstance(t, datetime) else float(t) for t in time_range)
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("time_range must not contain NaN")
    return lo, hi


class Fleet:
    """Questions asked of all agents at once, answered in compiled passes."""

    __slots__ = ("_batch", "_defaults", "_engine", "_kernel")

    def __init__(self, engine: Engine, kernel: Kernel, batch: Batch, defaults: Defaults
                 ) -> None:
        self._engine = engine
        self._kernel = kernel
        self._batch = batch
        self._defaults = defaults

    def interval_stats(self, agent_ids: Any = None, *, time_range: Any = None
                       ) -> np.ndarray[Any, Any]:
        """See HeartbeatMonitor.interval_stats."""
        lo, hi = _time_range(time_range)
        handles = self._batch.all_or(agent_ids)
        raw = self._engine.interval_stats(handles, lo, hi, self._kernel)
        out = np.empty(len(handles), dtype=STATS_DTYPE)
        out["handle"] = handles
        out["count"] = raw[:, 0]
        for j, name in enumerate(COLUMNS[1:], start=1):
            out[name] = raw[:, j]
        return out

    def snapshot(self, *, min_std_deviation_ms: float = 100.0,
                 acceptable_heartbeat_pause_ms: float = 0.0,
                 first_heartbeat_estimate_ms: float | None = None) -> Snapshot:
        """See HeartbeatMonitor.snapshot."""
        ids, handles, states, elapsed, count, mean, std, now, wall = self._engine.snapshot()
        elapsed_ms = np.where(elapsed >= 0, elapsed / 1e6, np.nan)
        phis = self._phi_of(elapsed_ms, mean, std, count, min_std_deviation_ms,
                            acceptable_heartbeat_pause_ms, first_heartbeat_estimate_ms)
        tally = np.bincount(states.astype(np.intp), minlength=4)
        counts = {state.value: int(tally[i]) for i, state in enumerate(STATES)}
        return Snapshot(ids, handles, states, elapsed_ms, phis, counts, now / 1e9, wall)

    def phi(self, agent_ids: Any = None, now: float | None = None, *,
            min_std_deviation_ms: float = 100.0, acceptable_heartbeat_pause_ms: float = 0.0,
            first_heartbeat_estimate_ms: float | None = None
            ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """See HeartbeatMonitor.phi."""
        _, handles, _, elapsed, count, mean, std, mono, _ = self._engine.snapshot()
        elapsed_ms = np.where(elapsed >= 0, elapsed / 1e6, np.nan)
        if now is not None:
            if isinstance(now, bool) or not isinstance(now, (int, float)):
                raise TypeError(f"now must be monotonic seconds, got {type(now).__name__}")
            if not math.isfinite(now):
                raise ValueError(f"now must be finite, got {now!r}")
            elapsed_ms = elapsed_ms + (now - mono / 1e9) * 1e3
        phis = self._phi_of(elapsed_ms, mean, std, count, min_std_deviation_ms,
                            acceptable_heartbeat_pause_ms, first_heartbeat_estimate_ms)
        if agent_ids is None:
            return phis
        wanted = self._batch.all_or(agent_ids)
        position = {h: i for i, h in enumerate(handles.tolist())}
        return np.array([phis[position[h]] if h in position else np.nan
                         for h in wanted.tolist()], dtype=np.float64)

    def _phi_of(self, elapsed_ms: Any, mean_s: Any, std_s: Any, count: Any, min_std: float,
                pause: float, first: float | None) -> np.ndarray[Any, np.dtype[np.float64]]:
        from ._phi import phi

        estimate = float(self._defaults.interval_ms) if first is None else first
        return phi(elapsed_ms, mean_s * 1e3, std_s * 1e3, count,
                    min_std_deviation_ms=min_std, acceptable_heartbeat_pause_ms=pause,
                    first_heartbeat_estimate_ms=estimate)

    def to_pandas(self) -> Any:
        """See HeartbeatMonitor.to_pandas."""
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'moai-flow-fast[pandas]'"
                              ) from None
        snap = self.snapshot()
        return pd.DataFrame({
            "handle": snap.handles,
            "state": [STATES[c].value for c in snap.states.tolist()],
            "elapsed_ms": snap.elapsed_ms,
            "phi": snap.phi,
        }, index=pd.Index(snap.ids, name="agent_id"))
