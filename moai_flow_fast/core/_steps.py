"""Wall-clock step markers: interval statistics in monotonic time over wall-clock rings.

A history ring holds each heartbeat's Unix wall-clock time only (8 bytes a record: the
Part A views return those timestamps unchanged). Interval statistics, phi and the
snapshot's interval columns must not see wall-clock steps, so each agent also keeps a few
*step markers*. At every heartbeat the engine compares the wall-clock time elapsed since
the newest record of the ring with the monotonic time elapsed since it (the engine keeps
that record's monotonic instant, ``ring_mono``):

    correction = (wall - previous_wall) - (mono - ring_mono) * 1e-9      (seconds)

is the change of the agent's offset (wall minus monotonic) across the new interval. When
it is larger than ``STEP_TOLERANCE_S + SLEW_RATE * monotonic interval``, a marker
(ring position of the new record, correction) is stored. Interval passes then read each
ring oldest first and add every live marker's correction to the records before it, which
re-expresses the older records in the wall clock of the newest one: each difference of
consecutive values is the monotonic interval (up to float64 rounding of Unix seconds,
about 2.4e-7 s today, the resolution intervals always had).

The tolerance: on Linux CLOCK_MONOTONIC is slewed with CLOCK_REALTIME, so the offset only
changes on steps (``clock_settime``, leap seconds); the noise of a measured offset is the
quantisation of Unix seconds in a double (~2.4e-7 s) and the gap between the two clock
reads (nanoseconds, a preemption aside). Where the monotonic clock is not slewed, NTP
slews the wall clock by at most 500 ppm. 1 ms plus 500 ppm of the interval is far above
the noise and the slew, and far below any step worth correcting; a change below it stays
in its interval (an error of at most 1 ms + 0.05 %). A backdated heartbeat (explicit
timestamp) is placed at ``now_mono - (now_wall - timestamp)``: it carries the current
offset and creates no marker. A correction that is not finite (an infinite record) is
never stored.

``MARKS`` markers per agent (dense side arrays in the compiled engine: 12 bytes each). A
marker dies when the record before it leaves the ring. When a new step finds all markers
live, the smallest correction (by magnitude) of the MARKS + 1 is dropped -- the oldest of
equal ones is kept --, so the interval that crossed it falls back to wall-clock time: the
error left is the smallest step of the window. Markers are not kept in stopped histories
nor in state files (restored records are replayed in the current wall clock).

Both engines run this algorithm step for step (same arithmetic, same order), so they
agree; the compiled engine checks its constants against these at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MARKS", "SLEW_RATE", "STEP_TOLERANCE_S", "correction", "rebase", "rebased_row",
           "run_kernel"]

MARKS = 4
STEP_TOLERANCE_S = 1e-3
SLEW_RATE = 5e-4

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def correction(wall: float, prev_wall: float, mono: int, ring_mono: int) -> float:
    """The marker correction of a new record (wall, mono) after the newest record
    (prev_wall, ring_mono), or 0.0 when it makes no marker: as the compiled engine's
    step_correction, operation for operation."""
    dm = mono - ring_mono
    if not _I64_MIN <= dm <= _I64_MAX:
        return 0.0      # int64 overflow in the compiled engine: no marker there either
    dms = dm * 1e-9
    corr = (wall - prev_wall) - dms
    tol = STEP_TOLERANCE_S + SLEW_RATE * abs(dms)
    if abs(corr) > tol and math.isfinite(corr):
        return corr
    return 0.0


def rebase(row: np.ndarray[Any, np.dtype[np.float64]], n: int, first: int, size: int,
           marks: list[list[Any]]) -> None:
    """Add each live marker's correction to the records before it, in place: `row` holds
    the n records of a ring of `size` oldest first, the oldest at ring position `first`;
    markers in their stored order (the compiled step_rebase adds in the same order)."""
    for pos, corr in marks:
        o = pos - first
        if o < 0:
            o += size
        if 1 <= o < n:
            row[:o] += corr


def rebased_row(raw: np.ndarray[Any, np.dtype[np.float64]], first: int, size: int,
                marks: list[list[Any]], lo: float, hi: float
                ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A ring's records (`raw`, oldest first, the oldest at position `first`) rebased by
    its markers; for a finite time range only those whose raw wall-clock time is in it
    (as the kernel would keep them), in order (the compiled step_row does the same)."""
    row: np.ndarray[Any, np.dtype[np.float64]] = raw.copy()
    rebase(row, len(raw), first, size, marks)
    if lo == -math.inf and hi == math.inf:
        return row
    kept: np.ndarray[Any, np.dtype[np.float64]] = row[(raw >= lo) & (raw <= hi)]
    return kept


def run_kernel(kernel: Callable[..., None], ring: np.ndarray[Any, np.dtype[np.float64]],
               heads: np.ndarray[Any, np.dtype[np.int32]],
               counts: np.ndarray[Any, np.dtype[np.int32]],
               fixed: np.ndarray[Any, np.dtype[np.bool_]], lo: float, hi: float,
               out: np.ndarray[Any, np.dtype[np.float64]]) -> None:
    """The kernel over the m rows of `ring` into `out` (m x 9). Rows flagged `fixed` were
    rebased by their markers, and, for a finite time range, already filtered on their raw
    wall-clock times and compacted: they are run once more, with no range (the rebased
    values are no wall-clock times to filter). Rows without markers: one pass, as ever."""
    m = len(heads)
    order = np.arange(m, dtype=np.int64)
    if not fixed.any() or (lo == -math.inf and hi == math.inf):
        kernel(ring, heads, counts, order, lo, hi, out, 0)
        return
    sel = np.flatnonzero(fixed).astype(np.int64)
    plain = counts.copy()
    plain[sel] = 0                      # their rows come from the second pass
    kernel(ring, heads, plain, order, lo, hi, out, 0)
    part = np.empty((len(sel), out.shape[1]))
    kernel(ring, np.ascontiguousarray(heads[sel]), np.ascontiguousarray(counts[sel]), sel,
           -math.inf, math.inf, part, 0)
    out[sel] = part
