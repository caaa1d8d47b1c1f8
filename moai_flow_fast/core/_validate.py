"""Argument checks: a clear TypeError/ValueError naming the argument, before any change."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_agent_id", "check_interval_ms", "check_ms", "check_whole"]

_NS_PER_MS = 1_000_000
_LIMIT_NS = 1 << 61   # interval x threshold must stay far inside int64 nanoseconds


def _real(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return int(value)
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return f


def check_ms(name: str, value: Any, minimum: int, maximum: float = 1e15) -> float | int:
    """A duration in ms, >= minimum (the replaced monitor's message) and <= maximum (about
    31,700 years by default, far inside int64 nanoseconds)."""
    v = _real(name, value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    if v > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")
    return v


def check_whole(name: str, value: Any, minimum: int, maximum: int = (1 << 31) - 1) -> int:
    """A whole number >= minimum (a float with an integral value is accepted)."""
    v = _real(name, value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        v = int(v)
    if v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return v


def check_interval_ms(value: Any, threshold: int) -> tuple[float | int, int]:
    """(interval_ms as given, interval in ns) for a valid interval and threshold."""
    v = check_ms("interval_ms", value, 100)
    ns = v * _NS_PER_MS if isinstance(v, int) else round(v * _NS_PER_MS)
    if ns * max(threshold, 2) > _LIMIT_NS:
        raise ValueError(f"interval_ms x failure_threshold is too large: {value!r} x {threshold}")
    return v, ns


def check_agent_id(agent_id: Any) -> None:
    try:
        hash(agent_id)
    except TypeError:
        raise TypeError(f"agent_id must be hashable, got {type(agent_id).__name__}") from None
