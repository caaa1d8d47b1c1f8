"""The core: the HeartbeatMonitor facade, the rules, the engine contract and its two engines.

Everything the documented API needs lives here; the other layers build on it.
"""

from ._clock import Clock, SystemClock, VirtualClock
from ._engine import COMPILED
from ._monitor import HeartbeatMonitor
from ._rules import HealthState, health_state

__all__ = [
    "COMPILED",
    "Clock",
    "HealthState",
    "HeartbeatMonitor",
    "SystemClock",
    "VirtualClock",
    "health_state",
]
