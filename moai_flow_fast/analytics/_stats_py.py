"""Pure-Python (numpy) twin of the compiled ``_stats_c``: interval statistics over
heartbeat history rings (issue 3, item 5). Same signature, same semantics, same errors.

``interval_stats(ring, heads, counts, rows, lo, hi, out, start)`` reads, for each selected
agent ``i``, the valid records of ring row ``rows[i]`` oldest first, keeps the timestamps
``t`` with ``lo <= t <= hi``, takes the differences of consecutive kept timestamps (the
intervals) and writes row ``start + i`` of ``out`` with ``COLUMNS``: count, mean, std
(population, ddof=0), min, max, p50, p95, p99 (numpy's 'linear' method) and the newest
interval. With no interval every column but ``count`` is NaN; a NaN interval (from two
``+inf`` timestamps) makes mean, std, min, max and the percentiles NaN, as in numpy.

Vectorised over blocks of agents: the rings are unrolled oldest first into a 2-D array,
kept timestamps are moved to the front of their row by a stable sort on "not kept",
differenced, and reduced along the rows (the percentiles from a row-wise sort). Agrees
with the compiled kernel, which is numpy's own arithmetic to the bit, to ~1e-15
relative: sums here run over zero-padded rows, so they round in a different order.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["COLUMNS", "interval_stats"]

COLUMNS = ("count", "mean", "std", "min", "max", "p50", "p95", "p99", "last")

_NCOL = len(COLUMNS)
_QUANTILES = (50 / 100, 95 / 100, 99 / 100)   # as numpy.percentile computes q / 100
_BLOCK_RECORDS = 1 << 20                      # ring records per vectorised block

_F64 = np.dtype(np.float64)
_I32 = np.dtype(np.int32)
_I64 = np.dtype(np.int64)

F64Array = npt.NDArray[np.float64]


def _check_array(a: Any, name: str, dtype: np.dtype[Any], ndim: int) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {a.ndim}-D")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def _check(ring: Any, heads: Any, counts: Any, rows: Any, lo: Any, hi: Any, out: Any,
           start: Any) -> None:
    """The compiled module's argument checks, in the same order, with the same errors."""
    _check_array(ring, "ring", _F64, 2)
    _check_array(heads, "heads", _I32, 1)
    _check_array(counts, "counts", _I32, 1)
    _check_array(rows, "rows", _I64, 1)
    _check_array(out, "out", _F64, 2)
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise TypeError(f"start must be an int, got {type(start).__name__}")
    n, H = heads.shape[0], ring.shape[1]
    if counts.shape[0] != n or rows.shape[0] != n:
        raise ValueError(
            f"heads, counts and rows must have the same length, got "
            f"{n}, {counts.shape[0]} and {rows.shape[0]}")
    if out.shape[1] != _NCOL:
        raise ValueError(f"out must have {_NCOL} columns, got {out.shape[1]}")
    if start < 0 or start + n > out.shape[0]:
        raise ValueError(
            f"start must satisfy 0 <= start and start + {n} <= {out.shape[0]} (out rows), "
            f"got {start}")
    if n > 0 and H == 0:
        raise ValueError("ring must have at least one column")


def _check_indices(heads: npt.NDArray[np.int32], counts: npt.NDArray[np.int32],
                   rows: npt.NDArray[np.int64], R: int, H: int) -> None:
    # Same precedence as the compiled loop: the first agent with any bad index decides,
    # and within an agent rows before heads before counts.
    bad_r = (rows < 0) | (rows >= R)
    bad_h = (heads < 0) | (heads >= H)
    bad_c = (counts < 0) | (counts > H)
    bad = bad_r | bad_h | bad_c
    if not bad.any():
        return
    i = int(np.argmax(bad))
    if bad_r[i]:
        raise ValueError(f"rows must be in [0, {R}) (ring rows)")
    if bad_h[i]:
        raise ValueError(f"heads must be in [0, {H}) (ring capacity)")
    raise ValueError(f"counts must be in [0, {H}] (ring capacity)")


def _block(ring: F64Array, heads: npt.NDArray[np.int32], counts: npt.NDArray[np.int32],
           rows: npt.NDArray[np.int64], lo: float, hi: float, out: F64Array) -> None:
    """Statistics of one block of agents into ``out`` (one row per agent)."""
    H = ring.shape[1]
    j = np.arange(H, dtype=np.int64)
    c = counts.astype(np.int64)
    # Unroll oldest first: position (head - count + j) mod H for j < count.
    pos = (heads.astype(np.int64) - c)[:, None] + j
    pos %= H
    t = ring[rows[:, None], pos]
    keep = (j < c[:, None]) & (t >= lo) & (t <= hi)
    m = keep.sum(axis=1)
    if not (keep == (j < m[:, None])).all():
        # Kept timestamps to the front of each row, in order (stable sort of "not kept").
        order = np.argsort(~keep, axis=1, kind="stable")
        t = np.take_along_axis(t, order, axis=1)
    d = np.diff(t, axis=1)                                     # B x (H - 1)
    n = np.maximum(m - 1, 0)
    valid = j[: H - 1] < n[:, None]
    out[:, 0] = n
    out[:, 1:] = np.nan
    has = n > 0
    if not has.any():
        return
    rows_has = np.nonzero(has)[0]
    d = d[has]
    valid = valid[has]
    nf = n[has].astype(np.float64)
    nh = n[has]
    out[rows_has, 8] = d[np.arange(d.shape[0]), nh - 1]        # the newest interval
    nan_rows = (np.isnan(d) & valid).any(axis=1)
    total = np.where(valid, d, 0.0).sum(axis=1)
    mean = total / nf
    dev = np.where(valid, d - mean[:, None], 0.0)
    std = np.sqrt((dev * dev).sum(axis=1) / nf)
    # Padding sorts after every real interval (+inf ties with real +inf intervals, which
    # is harmless: the first n sorted values are the real multiset either way).
    s = np.sort(np.where(valid, d, np.inf), axis=1)
    ar = np.arange(s.shape[0])
    mn = s[:, 0]
    mx = s[ar, nh - 1]
    stats = np.empty((s.shape[0], 7))
    stats[:, 0] = mean
    stats[:, 1] = std
    stats[:, 2] = mn
    stats[:, 3] = mx
    last_index = (nh - 1).astype(np.float64)
    for col, q in enumerate(_QUANTILES, start=4):
        # numpy 'linear': vi = (n-1)*q, a and b the floor(vi)-th and next order
        # statistics, gamma = vi - floor(vi); vi >= n-1 takes the last element for both
        # with gamma = vi - (-1).
        vi = last_index * q
        above = vi >= last_index
        k = np.floor(vi)
        ki = k.astype(np.int64)
        a = s[ar, np.minimum(ki, nh - 1)]
        b = s[ar, np.minimum(ki + 1, nh - 1)]
        a = np.where(above, mx, a)
        b = np.where(above, mx, b)
        gamma = np.where(above, vi + 1.0, vi - k)
        diff = b - a
        stats[:, col] = np.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)
    stats[nan_rows] = np.nan
    out[rows_has, 1:8] = stats


def _check_threads(threads: Any) -> None:
    """The kernels' ``threads`` keyword: None or an int >= 1 (as the compiled module)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


def interval_stats(ring: F64Array, heads: npt.NDArray[np.int32],
                   counts: npt.NDArray[np.int32], rows: npt.NDArray[np.int64],
                   lo: float, hi: float, out: F64Array, start: int, *,
                   threads: int | None = None) -> None:
    """Interval statistics of the selected agents' history rings into ``out``.

    ``ring`` float64 (R, H) C-contiguous; ``heads``, ``counts`` int32 (N,); ``rows``
    int64 (N,); ``lo``, ``hi`` the time range (inclusive; -inf/inf for none); ``out``
    float64 (M, 9) C-contiguous, rows ``start .. start+N-1`` are written with
    ``COLUMNS``. Agent ``i``'s valid records are ring row ``rows[i]`` at positions
    ``(heads[i] - counts[i]) mod H .. (heads[i] - 1) mod H``, oldest first. ``threads``
    (None or an int >= 1, checked) is the compiled kernel's; numpy here uses one.
    """
    _check(ring, heads, counts, rows, lo, hi, out, start)
    _check_threads(threads)
    n = heads.shape[0]
    if n == 0:
        return
    R, H = ring.shape
    _check_indices(heads, counts, rows, R, H)
    st = operator.index(start)
    lo_f, hi_f = float(lo), float(hi)
    step = max(1, _BLOCK_RECORDS // H)
    # inf - inf (two +inf records) is a NaN interval, as in numpy, but silently.
    with np.errstate(invalid="ignore", over="ignore"):
        for b0 in range(0, n, step):
            b1 = min(n, b0 + step)
            _block(ring, heads[b0:b1], counts[b0:b1], rows[b0:b1], lo_f, hi_f,
                   out[st + b0: st + b1])
