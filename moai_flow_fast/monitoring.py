"""The replaced package's import path: ``from moai_flow_fast.monitoring import ...``."""

from .core import HealthState, HeartbeatMonitor

__all__ = ["HealthState", "HeartbeatMonitor"]
