"""Transition events as both engines hand them over: blocks of ids plus a structured array."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._rules import CROSSING, RECOVERY

__all__ = ["CROSSING", "EVENT_DTYPE", "RECOVERY", "AlertBatch", "batch_from_block"]

# The C `Event` struct of src/_common.pxd, field for field (the compiled engine checks the size).
EVENT_DTYPE = np.dtype([
    ("deadline", np.int64),    # ns: the threshold time (recovery: when the agent left HEALTHY)
    ("seq", np.int64),         # registration sequence
    ("now", np.int64),         # ns at detection
    ("last_mono", np.int64),   # ns of the heartbeat the crossing is measured from
    ("handle", np.int64),
    ("last_wall", np.float64),
    ("slot", np.int32),
    ("prev", np.int8),
    ("new", np.int8),
    ("kind", np.int8),
    ("pad", np.int8),
])


@dataclass(frozen=True)
class AlertBatch:
    """One wheel advance's transitions, as arrays (for swarms where one Python call per
    agent is the bottleneck). States are codes: 0 healthy, 1 degraded, 2 critical, 3 failed;
    `kind` is 0 for a threshold crossing and 1 for a recovery."""

    ids: list[Any]
    handles: np.ndarray[Any, np.dtype[np.int64]]
    previous: np.ndarray[Any, np.dtype[np.int8]]
    current: np.ndarray[Any, np.dtype[np.int8]]
    kind: np.ndarray[Any, np.dtype[np.int8]]
    elapsed_s: np.ndarray[Any, np.dtype[np.float64]]
    deadline_monotonic: np.ndarray[Any, np.dtype[np.float64]]
    detected_monotonic: np.ndarray[Any, np.dtype[np.float64]]

    def __len__(self) -> int:
        return len(self.ids)


def batch_from_block(ids: list[Any], block: np.ndarray[Any, Any]) -> AlertBatch:
    return AlertBatch(
        ids=ids,
        handles=block["handle"].copy(),
        previous=block["prev"].copy(),
        current=block["new"].copy(),
        kind=block["kind"].copy(),
        elapsed_s=(block["now"] - block["last_mono"]) / 1e9,
        deadline_monotonic=block["deadline"] / 1e9,
        detected_monotonic=block["now"] / 1e9,
    )
