"""Health states and the state function shared by both engines and the facade."""

from __future__ import annotations

from enum import Enum

__all__ = ["HealthState", "health_state"]


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


def health_state(elapsed_ms: float | None, interval_ms: float, failure_threshold: int
                 ) -> HealthState:
    """The state of an agent whose last heartbeat was `elapsed_ms` ago (None: never)."""
    if elapsed_ms is None or elapsed_ms < interval_ms:
        return HealthState.HEALTHY
    if elapsed_ms < 2 * interval_ms:
        return HealthState.DEGRADED
    if elapsed_ms < failure_threshold * interval_ms:
        return HealthState.CRITICAL
    return HealthState.FAILED
