"""Import path of the replaced package: ``from moai_flow_fast.monitoring import HeartbeatMonitor``."""

from ._monitor import HeartbeatMonitor
from ._state import HealthState

__all__ = ["HealthState", "HeartbeatMonitor"]
