"""Analytics over the whole swarm: interval statistics, phi-accrual suspicion, snapshots.

Compiled kernels (``_stats_c``) with a pure twin (``_stats_py``); the monitor exposes them.
"""

from ._fleet import STATS_DTYPE, Snapshot
from ._phi import phi

__all__ = ["STATS_DTYPE", "Snapshot", "phi"]
