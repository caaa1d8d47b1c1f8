"""Type stub of the compiled interval-statistics kernel (src/_stats_c.pyx); the pure twin is
_stats_py."""

from typing import Any

import numpy as np

__all__ = ["COLUMNS", "interval_stats"]

COLUMNS: tuple[str, ...]
_MIN_PARALLEL: int
_MAX_THREADS: int
_CHUNK_RECORDS: int

def _cpus() -> int: ...
def _order_statistics(values: Any, ranks: Any, depth: int = ...) -> dict[int, float]: ...
def interval_stats(
    ring: np.ndarray[Any, np.dtype[np.float64]],
    heads: np.ndarray[Any, np.dtype[np.int32]],
    counts: np.ndarray[Any, np.dtype[np.int32]],
    rows: np.ndarray[Any, np.dtype[np.int64]],
    lo: float,
    hi: float,
    out: np.ndarray[Any, np.dtype[np.float64]],
    start: int,
) -> None: ...
