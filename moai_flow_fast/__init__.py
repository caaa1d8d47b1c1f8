"""moai-flow-fast: heartbeat failure detection for very large agent swarms.

A drop-in replacement for MoAI-Flow's ``HeartbeatMonitor`` on a compiled timer wheel.
"""

from ._version import __version__
from .core import (
    COMPILED,
    Clock,
    HealthState,
    HeartbeatMonitor,
    SystemClock,
    VirtualClock,
    health_state,
)

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
