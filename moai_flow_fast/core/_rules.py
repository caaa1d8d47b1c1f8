"""The monitor's rules, in one place: health states, the state function, the crossing
schedule and the event kinds. Both engines, the simulator and the capacity planner use them;
the compiled engine checks its C enums and schedule against this table when it is imported."""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CRITICAL",
    "CROSSING",
    "DEGRADED",
    "EVENT_KINDS",
    "FAILED",
    "HEALTHY",
    "RECOVERY",
    "STATES",
    "HealthState",
    "crossing_mult",
    "crossing_next",
    "crossing_schedule",
    "health_state",
    "state_code",
]


class HealthState(Enum):
    """An agent's health, in increasing severity."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """0 for HEALTHY up to 3 for FAILED."""
        return _SEVERITY[self]


_SEVERITY = {state: i for i, state in enumerate(HealthState)}
STATES: tuple[HealthState, ...] = tuple(HealthState)

# State codes (HealthState severities): what the engines store and hand over in events.
HEALTHY, DEGRADED, CRITICAL, FAILED = 0, 1, 2, 3

# Event kinds: a threshold crossing (one step more severe) or a return to HEALTHY.
CROSSING, RECOVERY = 0, 1
EVENT_KINDS: tuple[str, ...] = ("crossing", "recovery")


def state_code(elapsed: int | float, interval: int | float, threshold: int) -> int:
    """The state code after `elapsed` without a heartbeat (any unit, same as `interval`):
    HEALTHY below one interval, DEGRADED below two, CRITICAL below `threshold`, then FAILED.
    Edges are exact: at elapsed == interval the agent is DEGRADED."""
    if elapsed < interval:
        return HEALTHY
    if elapsed < 2 * interval:
        return DEGRADED
    return CRITICAL if elapsed < threshold * interval else FAILED


def health_state(elapsed_ms: float | None, interval_ms: float, failure_threshold: int
                 ) -> HealthState:
    """The state of an agent whose last heartbeat was `elapsed_ms` ago (None: never)."""
    if elapsed_ms is None:
        return HealthState.HEALTHY
    return STATES[state_code(elapsed_ms, interval_ms, failure_threshold)]


def crossing_mult(reported: int, threshold: int) -> int:
    """The next crossing after state `reported`, in intervals since the last heartbeat:
    DEGRADED at 1, CRITICAL (FAILED when threshold <= 2) at 2, FAILED at `threshold`."""
    if reported == HEALTHY:
        return 1
    return 2 if reported == DEGRADED else threshold


def crossing_next(reported: int, threshold: int) -> int:
    """The state code that the next crossing after `reported` reaches."""
    if reported == HEALTHY:
        return DEGRADED
    return CRITICAL if reported == DEGRADED and threshold > 2 else FAILED


def crossing_schedule(threshold: int) -> list[tuple[int, int]]:
    """Every crossing of a silence that starts HEALTHY, in order: (intervals, state code)."""
    out: list[tuple[int, int]] = []
    reported = HEALTHY
    while reported != FAILED:
        out.append((crossing_mult(reported, threshold), crossing_next(reported, threshold)))
        reported = out[-1][1]
    return out
