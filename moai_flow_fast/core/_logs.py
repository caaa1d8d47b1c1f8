"""The monitor's log lines, in one place: the replaced monitor's texts and levels (what log
scrapers and alert rules match), with this monitor's extra detail at the end.

Everything goes to the logger ``moai_flow_fast.monitor``. Lines that hostile or broken
input can trigger at any rate (heartbeats from unmonitored agents) are rate-limited: at
most `BURST` a second, then one summary line a second saying how many were suppressed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = [
    "ALERT",
    "ALREADY_MONITORED",
    "BURST",
    "NOT_MONITORED",
    "RECOVERED",
    "STARTED",
    "STOPPED",
    "UNKNOWN_HEARTBEAT",
    "UnknownHeartbeats",
    "logger",
]

logger = logging.getLogger("moai_flow_fast.monitor")

# The replaced monitor's texts (its f-strings as %-formats: nothing is formatted unless the
# line is emitted).
ALREADY_MONITORED = "Agent %s already being monitored"            # WARNING
STARTED = "Started monitoring agent %s (interval=%sms, threshold=%s)"  # INFO
NOT_MONITORED = "Agent %s not being monitored"                   # WARNING, stop of an unknown id
STOPPED = "Stopped monitoring agent %s"                          # INFO
UNKNOWN_HEARTBEAT = "Heartbeat from unmonitored agent %s"        # WARNING
# The alert WARNING, when no callback is set; this monitor adds how late it was found.
ALERT = "Agent %s health: %s → %s (elapsed: %.1fs); detected %.1f ms after the deadline"
RECOVERED = "Agent %s recovered: %s → healthy (down %.3fs)"      # INFO

BURST = 20   # lines a second before suppression starts


class UnknownHeartbeats:
    """Logs heartbeats from unmonitored agents as the replaced monitor did, at most `BURST`
    lines a second; the rest are counted and summed up once a second. Thread-safe."""

    __slots__ = ("_lock", "_logged", "_suppressed", "_window", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = 0.0
        self._logged = 0
        self._suppressed = 0
        self.total = 0   # heartbeats from unmonitored agents, logged or not

    def __call__(self, agent_id: Any) -> None:
        self.many(1, agent_id)

    def many(self, n: int, example: Any) -> None:
        """`n` heartbeats from unmonitored agents, `example` being one of their ids."""
        if n <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self.total += n
            summary = 0
            if now - self._window >= 1.0:
                summary, self._suppressed = self._suppressed, 0
                self._window, self._logged = now, 0
            emit = self._logged < BURST
            if emit:
                self._logged += 1
                self._suppressed += n - 1
            else:
                self._suppressed += n
        if summary:
            logger.warning("%d more heartbeats from unmonitored agents in the last second "
                           "(not logged one by one)", summary)
        if emit:
            if n == 1:
                logger.warning(UNKNOWN_HEARTBEAT, example)
            else:
                logger.warning(UNKNOWN_HEARTBEAT + " (and %d more in this batch)", example,
                               n - 1)
