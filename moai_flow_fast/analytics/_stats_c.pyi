"""Type stub of the compiled interval-statistics kernels (src/_stats_c.pyx); the pure twins
are _stats_py (interval_stats) and _window_py (phi_windows)."""

from typing import Any

import numpy as np

__all__ = ["COLUMNS", "WINDOW_COLUMNS", "interval_stats", "phi_windows"]

COLUMNS: tuple[str, ...]
WINDOW_COLUMNS: tuple[str, ...]
_MIN_PARALLEL: int
_MAX_THREADS: int
_CHUNK_RECORDS: int

def _cpus() -> int: ...
def _order_statistics(values: Any, ranks: Any, depth: int = ...) -> dict[int, float]: ...
def _set_simd(on: bool) -> bool: ...
def interval_stats(
    ring: np.ndarray[Any, np.dtype[np.float64]],
    heads: np.ndarray[Any, np.dtype[np.int32]],
    counts: np.ndarray[Any, np.dtype[np.int32]],
    rows: np.ndarray[Any, np.dtype[np.int64]],
    lo: float,
    hi: float,
    out: np.ndarray[Any, np.dtype[np.float64]],
    start: int,
    *,
    threads: int | None = ...,
) -> None: ...
def phi_windows(
    ring: np.ndarray[Any, np.dtype[np.float64]],
    heads: np.ndarray[Any, np.dtype[np.int32]],
    counts: np.ndarray[Any, np.dtype[np.int32]],
    rows: np.ndarray[Any, np.dtype[np.int64]],
    lo: float,
    hi: float,
    out: np.ndarray[Any, np.dtype[np.float64]],
    start: int,
    *,
    threshold: float = ...,
    min_std_deviation_ms: float = ...,
    acceptable_heartbeat_pause_ms: float = ...,
    first_heartbeat_estimate_ms: float = ...,
    threads: int | None = ...,
) -> None: ...
