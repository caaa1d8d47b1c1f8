"""moai-flow-fast: heartbeat failure detection for very large agent swarms.

A drop-in replacement for MoAI-Flow's ``HeartbeatMonitor`` on a compiled timer wheel.
"""

from ._clock import Clock, SystemClock, VirtualClock
from ._engine import COMPILED
from ._monitor import HeartbeatMonitor
from ._state import HealthState, health_state

__all__ = [
    "COMPILED",
    "Clock",
    "HealthState",
    "HeartbeatMonitor",
    "SystemClock",
    "VirtualClock",
    "__version__",
    "health_state",
]

__version__ = "0.1.0"
