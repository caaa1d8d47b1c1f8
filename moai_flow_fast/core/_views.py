"""The replaced monitor's public attributes as live views over the engine: `monitoring_agents` and
`heartbeat_history`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, overload

from ._rules import STATES, HealthState
from ._validate import check_interval_ms, check_whole

__all__ = ["AgentRecord", "AgentsView", "HistorySequence", "HistoryView", "records"]

_FIELDS = ("interval_ms", "failure_threshold", "last_heartbeat", "last_state", "started_at")
_NS_PER_MS = 1_000_000
_MAX_UNIX = 2.0 ** 33   # year 2242: far beyond any clock, far inside int64 nanoseconds


def _ms(ns: int) -> int | float:
    return ns // _NS_PER_MS if ns % _NS_PER_MS == 0 else ns / _NS_PER_MS


def records(hist: tuple[Any, Any] | None, lo: float | None = None, hi: float | None = None
            ) -> list[dict[str, Any]]:
    """History records as the replaced monitor returns them (dicts), oldest first,
    optionally with lo <= timestamp <= hi."""
    if hist is None:
        return []
    ts, meta = hist
    out = []
    for i, t in enumerate(ts.tolist()):
        if (lo is not None and t < lo) or (hi is not None and t > hi):
            continue
        m = None if meta is None else meta[i]
        out.append({"timestamp": t, "metadata": {} if m is None else m})
    return out


class AgentRecord(MutableMapping[str, Any]):
    """One agent's record in `monitoring_agents`. Reads are live; writes go through to the
    engine."""

    __slots__ = ("_engine", "_id")

    def __init__(self, engine: Any, agent_id: Any) -> None:
        self._engine = engine
        self._id = agent_id

    def _info(self) -> tuple[int, int, float, int, float]:
        info = self._engine.info(self._id)
        if info is None:
            raise KeyError(self._id)
        return info  # type: ignore[no-any-return]

    def __getitem__(self, key: str) -> Any:
        interval_ns, threshold, last, reported, started = self._info()
        if key == "interval_ms":
            return _ms(interval_ns)
        if key == "failure_threshold":
            return threshold
        if key == "last_heartbeat":
            return last
        if key == "last_state":
            return STATES[reported]
        if key == "started_at":
            return started
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        interval_ns, threshold, *_ = self._info()
        if key == "interval_ms":
            self._engine.set_field(self._id, "interval_ns", check_interval_ms(value, threshold)[1])
        elif key == "failure_threshold":
            t = check_whole("failure_threshold", value, 1)
            check_interval_ms(_ms(interval_ns), t)
            self._engine.set_field(self._id, key, t)
        elif key == "last_state":
            if not isinstance(value, HealthState):
                raise TypeError(f"last_state must be a HealthState, got {type(value).__name__}")
            self._engine.set_field(self._id, key, value.severity)
        elif key in ("last_heartbeat", "started_at"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{key} must be Unix seconds, got {type(value).__name__}")
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{key} must be finite, got {value!r}")
            if value < 0 or value > _MAX_UNIX:
                raise ValueError(f"{key} must be Unix seconds between 0 and {_MAX_UNIX:.0f}, "
                                 f"got {value!r}")
            self._engine.set_field(self._id, key, float(value))
        else:
            raise KeyError(key)

    def __delitem__(self, key: str) -> None:
        raise TypeError("an agent record's fields cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def __repr__(self) -> str:
        return repr(dict(self))


class AgentsView(Mapping[Any, AgentRecord]):
    """`monitoring_agents`: monitored ids, in registration order, to their live records."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getitem__(self, agent_id: Any) -> AgentRecord:
        if agent_id not in self._engine:
            raise KeyError(agent_id)
        return AgentRecord(self._engine, agent_id)

    def __contains__(self, agent_id: object) -> bool:
        try:
            return agent_id in self._engine
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Any]:
        return iter(self._engine.ids())

    def __len__(self) -> int:
        return len(self._engine)

    def __repr__(self) -> str:
        return f"AgentsView({len(self)} agents)"


class HistorySequence(Sequence[dict[str, Any]]):
    """One agent's records, oldest first; live like the deque it replaces."""

    __slots__ = ("_engine", "_id")

    def __init__(self, engine: Any, agent_id: Any) -> None:
        self._engine = engine
        self._id = agent_id

    def __len__(self) -> int:
        return max(int(self._engine.history_len(self._id)), 0)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return records(self._engine.history(self._id))[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(records(self._engine.history(self._id)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


class HistoryView(MutableMapping[Any, HistorySequence]):
    """`heartbeat_history`: ids with a history (monitored or stopped) to their records."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getitem__(self, agent_id: Any) -> HistorySequence:
        if self._engine.history_len(agent_id) < 0:
            raise KeyError(agent_id)
        return HistorySequence(self._engine, agent_id)

    def __setitem__(self, agent_id: Any, value: Any) -> None:
        raise TypeError("heartbeat history is written by record_heartbeat only")

    def __delitem__(self, agent_id: Any) -> None:
        if not self._engine.drop_history(agent_id):
            raise KeyError(agent_id)

    def __contains__(self, agent_id: object) -> bool:
        try:
            return bool(self._engine.history_len(agent_id) >= 0)
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Any]:
        return iter(self._engine.history_ids())

    def __len__(self) -> int:
        return len(self._engine.history_ids())

    def __repr__(self) -> str:
        return f"HistoryView({len(self)} agents)"
