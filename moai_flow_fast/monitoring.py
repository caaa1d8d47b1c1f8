"""The replaced package's import path: ``from moai_flow_fast.monitoring import ...``."""

from ._monitor import HeartbeatMonitor
from ._state import HealthState

__all__ = ["HealthState", "HeartbeatMonitor"]
