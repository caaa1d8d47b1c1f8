"""Clocks: the system clock (monotonic deadlines, wall-clock history) and a virtual one."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock"]

_NS = 1_000_000_000
_MAX_NS = 1 << 61   # keeps every deadline sum inside int64


@runtime_checkable
class Clock(Protocol):
    """What a monitor reads: monotonic nanoseconds for deadlines, Unix seconds for history."""

    def monotonic_ns(self) -> int: ...

    def time(self) -> float: ...


class SystemClock:
    """The process clocks. A monitor reads them directly in C when given this clock."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


def _finite(name: str, seconds: Any) -> float | int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be finite, got {seconds!r}")
    if abs(seconds) > _MAX_NS / _NS:
        raise ValueError(f"{name} must be within +/-{_MAX_NS // _NS} seconds, got {seconds!r}")
    return seconds


def _seconds_to_ns(name: str, seconds: Any) -> int:
    s = _finite(name, seconds)
    return s * _NS if isinstance(s, int) else round(s * _NS)


class VirtualClock:
    """A clock that moves only when told to: tests, simulations, capacity planning.

    `start` is the initial monotonic reading in seconds; the wall clock reads
    `wall_start` then and moves with it, unless stepped with `step_wall`.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        ns = _seconds_to_ns("start", start)
        if not 0 <= ns <= _MAX_NS:
            raise ValueError(f"start must be between 0 and {_MAX_NS // _NS} seconds, got {start!r}")
        self._wall_offset = float(_finite("wall_start", wall_start)) - ns / _NS
        self._ns = ns
        self._lock = threading.Lock()

    def monotonic_ns(self) -> int:
        return self._ns

    def time(self) -> float:
        return self._wall_offset + self._ns / _NS

    max_seconds = _MAX_NS / _NS

    @property
    def now(self) -> float:
        """The monotonic reading in seconds."""
        return self._ns / _NS

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds` (>= 0)."""
        delta = _seconds_to_ns("seconds", seconds)
        if delta < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            if self._ns + delta > _MAX_NS:
                raise ValueError("seconds moves the clock past its range")
            self._ns += delta

    def set(self, seconds: float) -> None:
        """Move to the monotonic reading `seconds`, which may not be in the past."""
        ns = _seconds_to_ns("seconds", seconds)
        with self._lock:
            if ns < self._ns:
                raise ValueError(
                    f"seconds must be >= the current reading {self.now}, got {seconds!r}")
            if ns > _MAX_NS:
                raise ValueError("seconds moves the clock past its range")
            self._ns = ns

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock only (an NTP or manual change); the monotonic clock is untouched."""
        step = float(_finite("seconds", seconds))
        with self._lock:
            if abs(self._wall_offset + step) > _MAX_NS / _NS:
                raise ValueError("seconds steps the wall clock past its range")
            self._wall_offset += step

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now!r}, wall={self.time()!r})"
