# cython: language_level=3
"""Compiled interval statistics and Akka phi windows over heartbeat history rings
(issue 3, item 5; issue 11, items 2 and 4).

Python twins: ``analytics/_stats_py.py`` (``interval_stats``) and ``analytics/_window_py.py``
(``phi_windows``): same signatures, same semantics, same errors.

``interval_stats(ring, heads, counts, rows, lo, hi, out, start)`` reads, for each selected
agent ``i``, the valid records of ring row ``rows[i]`` oldest first, keeps the timestamps
``t`` with ``lo <= t <= hi``, takes the differences of consecutive kept timestamps (the
intervals) and writes row ``start + i`` of ``out``::

    count, mean, std, min, max, p50, p95, p99, last

with numpy's semantics: ``std`` is the population standard deviation (ddof=0), the
percentiles use numpy's default ``'linear'`` method, ``last`` is the newest interval.
With no interval every column but ``count`` is NaN; an interval that is NaN (from two
``+inf`` timestamps) makes mean, std, min, max and the percentiles NaN, as in numpy.

Per agent: the intervals go into a scratch buffer (straight from the ring when there is
no time range), are summed with numpy's own pairwise summation (so mean and std are
numpy's to the bit on x86-64, where no FMA is contracted), and the order statistics the
three percentiles need are found together by one multi-rank introselect (O(n), no sort;
_stats_select.pxi). On a CPU with AVX-512, agents with full rings and no time range go
eight at a time through vector lanes (_stats_lanes.pxi): the same sums lane-wise and a
sorting network pruned to the wanted ranks, to the same bits. The loop over agents runs
without the GIL, prefetching the next agents' rings; calls of at least ``_MIN_PARALLEL``
records are spread over the CPUs: threads claim chunks of agents from a shared atomic
counter, so a CPU busy with other work takes fewer of them.

``phi_windows`` (same arguments, plus the detector's keywords) replays each ring as
heartbeats into Akka's PhiAccrualFailureDetector (_stats_window.pxi) and writes the
window it ends with.
"""

from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree
from libc.math cimport INFINITY, NAN, sqrt
from libc.stdint cimport int32_t, int64_t

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

cdef Py_ssize_t RANK_END = PY_SSIZE_T_MAX     # padding after the last wanted rank

cdef extern from *:
    void __builtin_prefetch(const void*) nogil

cdef extern from *:
    """
    /* Atomically take `step` agents from the shared counter; returns the first taken. */
    static inline Py_ssize_t moai_stats_claim(Py_ssize_t *next, Py_ssize_t step) {
        return __atomic_fetch_add(next, step, __ATOMIC_RELAXED);
    }
    """
    Py_ssize_t _claim "moai_stats_claim"(Py_ssize_t* next, Py_ssize_t step) nogil

import os
import threading

from moai_flow_fast.analytics._phi import window_params
from moai_flow_fast.analytics._stats_py import COLUMNS, _check  # the twin's, shared
from moai_flow_fast.analytics._window_py import WINDOW_COLUMNS

import numpy as np

__all__ = ["COLUMNS", "WINDOW_COLUMNS", "interval_stats", "phi_windows"]


cdef enum:
    NCOL = 9
    # numpy's pairwise summation: blocks of at most 128 summed with 8 accumulators.
    PW_BLOCKSIZE = 128
    # A selection range of at most this many elements is finished by a sorting network
    # (_small_select); the scratch buffers hold SMALL doubles more than they need.
    SMALL = 16
    # Wanted-rank arrays hold MAXR entries, padded after the last rank with RANK_END.
    MAXR = 8
    # Cache lines of the next agents' rings prefetched while one agent is processed.
    PREFETCH_LINES = 16
    PREFETCH_AHEAD = 2

# Split a call over threads only when it holds at least this many ring records
# (a thread costs ~100 us to start; a record ~5 ns to process). Threads claim agents in
# chunks of about _CHUNK_RECORDS records.
_MIN_PARALLEL = 1 << 18
cdef Py_ssize_t _NOGIL_RECORDS = 1 << 16   # records from which a call releases the GIL
_MAX_THREADS = 8
_CHUNK_RECORDS = 1 << 16



# ---------------------------------------------------------------------------------------
# Sums: numpy's pairwise summation, replicated so that results are numpy's to the bit.
# ---------------------------------------------------------------------------------------

cdef double _pairwise_sum(const double* a, Py_ssize_t n) noexcept nogil:
    """numpy's ``pairwise_sum_DOUBLE`` for a contiguous array."""
    cdef Py_ssize_t i, n2
    cdef double res, r0, r1, r2, r3, r4, r5, r6, r7
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= PW_BLOCKSIZE:
        r0 = a[0]; r1 = a[1]; r2 = a[2]; r3 = a[3]
        r4 = a[4]; r5 = a[5]; r6 = a[6]; r7 = a[7]
        i = 8
        # n - n % 8 == n & ~7 for n >= 0: the largest multiple of 8 not above n.
        while i < (n & ~7):
            r0 += a[i]; r1 += a[i + 1]; r2 += a[i + 2]; r3 += a[i + 3]
            r4 += a[i + 4]; r5 += a[i + 5]; r6 += a[i + 6]; r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n >> 1
    n2 -= n2 & 7          # n2 -= n2 % 8 (n2 >= 0)
    return _pairwise_sum(a, n2) + _pairwise_sum(a + n2, n - n2)


cdef double _pairwise_sqdev(const double* a, Py_ssize_t n, double m) noexcept nogil:
    """``_pairwise_sum`` of ``(a[i] - m) * (a[i] - m)``: numpy's ``var`` numerator
    (numpy stores ``x = a - m`` then ``x * x``; every step rounds to double as here)."""
    cdef Py_ssize_t i, n2
    cdef double res, d, r0, r1, r2, r3, r4, r5, r6, r7
    if n < 8:
        res = 0.0
        for i in range(n):
            d = a[i] - m
            res += d * d
        return res
    if n <= PW_BLOCKSIZE:
        d = a[0] - m; r0 = d * d
        d = a[1] - m; r1 = d * d
        d = a[2] - m; r2 = d * d
        d = a[3] - m; r3 = d * d
        d = a[4] - m; r4 = d * d
        d = a[5] - m; r5 = d * d
        d = a[6] - m; r6 = d * d
        d = a[7] - m; r7 = d * d
        i = 8
        while i < (n & ~7):     # see _pairwise_sum
            d = a[i] - m; r0 += d * d
            d = a[i + 1] - m; r1 += d * d
            d = a[i + 2] - m; r2 += d * d
            d = a[i + 3] - m; r3 += d * d
            d = a[i + 4] - m; r4 += d * d
            d = a[i + 5] - m; r5 += d * d
            d = a[i + 6] - m; r6 += d * d
            d = a[i + 7] - m; r7 += d * d
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            d = a[i] - m
            res += d * d
            i += 1
        return res
    n2 = n >> 1
    n2 -= n2 & 7
    return _pairwise_sqdev(a, n2, m) + _pairwise_sqdev(a + n2, n - n2, m)


include "_stats_select.pxi"


cdef inline double _lerp(double a, double b, double t) noexcept nogil:
    """numpy's ``_lerp``: a + (b-a)*t, or b - (b-a)*(1-t) when t >= 0.5."""
    cdef double d = b - a
    if t >= 0.5:
        return b - d * (1.0 - t)
    return a + d * t


cdef inline double _rank_value(Py_ssize_t k, Py_ssize_t n, double mn, double mx,
                               const Py_ssize_t* ranks, const double* vals,
                               int nr) noexcept nogil:
    cdef int q
    if k == 0:
        return mn
    if k == n - 1:
        return mx
    for q in range(nr):
        if ranks[q] == k:
            return vals[q]
    return NAN                           # not reached


# ---------------------------------------------------------------------------------------
# One agent
# ---------------------------------------------------------------------------------------

cdef inline Py_ssize_t _direct_intervals(const double* row, Py_ssize_t H, Py_ssize_t s,
                                         Py_ssize_t cnt, double* buf) noexcept nogil:
    """Intervals of all cnt records starting at ring position s (no time range): the
    differences straight from the ring, in up to two straight segments. Returns their
    number, max(cnt - 1, 0)."""
    cdef Py_ssize_t j, w = 0, e = s + cnt
    if cnt < 2:
        return 0
    if e <= H:
        for j in range(cnt - 1):
            buf[j] = row[s + j + 1] - row[s + j]
        return cnt - 1
    for j in range(s, H - 1):
        buf[w] = row[j + 1] - row[j]
        w += 1
    buf[w] = row[0] - row[H - 1]          # across the wrap
    w += 1
    for j in range(e - H - 1):
        buf[w + j] = row[j + 1] - row[j]
    return cnt - 1


cdef inline Py_ssize_t _kept_intervals(const double* row, Py_ssize_t H, Py_ssize_t s,
                                       Py_ssize_t cnt, double lo, double hi,
                                       double* buf) noexcept nogil:
    """Intervals between the consecutive records t with lo <= t <= hi (NaN never is).
    Returns their number."""
    cdef Py_ssize_t j, m = 0, e = s + cnt
    cdef double t
    if e > H:
        e = H
    # Keep without a branch: always store, advance only if kept.
    for j in range(s, e):
        t = row[j]
        buf[m] = t
        m += (t >= lo) & (t <= hi)
    for j in range(cnt - (e - s)):
        t = row[j]
        buf[m] = t
        m += (t >= lo) & (t <= hi)
    # Differences in place (buf[j + 1] is read before it is overwritten).
    for j in range(m - 1):
        buf[j] = buf[j + 1] - buf[j]
    return m - 1 if m > 1 else 0


cdef inline void _min_max(const double* a, Py_ssize_t n, double* mn_out,
                          double* mx_out) noexcept nogil:
    """Minimum and maximum of a[0..n-1] (n >= 1, no NaN), four lanes each so that the
    min/max dependency chains overlap."""
    cdef double mn0, mn1, mn2, mn3, mx0, mx1, mx2, mx3, t
    cdef Py_ssize_t j = 0
    mn0 = mn1 = mn2 = mn3 = mx0 = mx1 = mx2 = mx3 = a[0]
    while j + 4 <= n:
        t = a[j]
        mn0 = t if t < mn0 else mn0
        mx0 = t if t > mx0 else mx0
        t = a[j + 1]
        mn1 = t if t < mn1 else mn1
        mx1 = t if t > mx1 else mx1
        t = a[j + 2]
        mn2 = t if t < mn2 else mn2
        mx2 = t if t > mx2 else mx2
        t = a[j + 3]
        mn3 = t if t < mn3 else mn3
        mx3 = t if t > mx3 else mx3
        j += 4
    while j < n:
        t = a[j]
        mn0 = t if t < mn0 else mn0
        mx0 = t if t > mx0 else mx0
        j += 1
    mn0 = mn1 if mn1 < mn0 else mn0
    mn2 = mn3 if mn3 < mn2 else mn2
    mx0 = mx1 if mx1 > mx0 else mx0
    mx2 = mx3 if mx3 > mx2 else mx2
    mn_out[0] = mn2 if mn2 < mn0 else mn0
    mx_out[0] = mx2 if mx2 > mx0 else mx0


cdef inline bint _has_nan(const double* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        if a[j] != a[j]:
            return True
    return False


cdef inline void _nan_row(double* o, Py_ssize_t n, int last) noexcept nogil:
    # Count n, NaN in columns 1 .. last-1.
    cdef int j
    o[0] = <double>n
    for j in range(1, last):
        o[j] = NAN


cdef inline void _agent(const double* row, Py_ssize_t H, Py_ssize_t head, Py_ssize_t cnt,
                        double lo, double hi, bint whole, double* buf, double* buf2,
                        double* o) noexcept nogil:
    """Row o of the output for one agent; ``whole`` if lo == -inf and hi == +inf."""
    cdef Py_ssize_t s, j, n, k
    cdef double mn, mx, total, mean, vi
    cdef int q, nr
    cdef Py_ssize_t ranks[MAXR]
    cdef double vals[MAXR]
    cdef double vis[3]
    # The valid records, oldest first: positions s, s+1, ... (mod H), s = head - cnt mod H.
    s = head - cnt
    if s < 0:
        s += H
    if whole:
        n = _direct_intervals(row, H, s, cnt, buf)
    else:
        n = _kept_intervals(row, H, s, cnt, lo, hi, buf)
    if n == 0:
        _nan_row(o, 0, NCOL)
        return
    total = _pairwise_sum(buf, n)
    if total != total and _has_nan(buf, n):
        # A NaN interval: from a NaN record (which the range test drops, so redo the
        # no-range case with it) or from two +inf records (numpy: NaN statistics).
        if whole:
            n = _kept_intervals(row, H, s, cnt, lo, hi, buf)
            if n == 0:
                _nan_row(o, 0, NCOL)
                return
            total = _pairwise_sum(buf, n)
        if total != total and _has_nan(buf, n):
            _nan_row(o, n, 8)
            o[8] = buf[n - 1]
            return
    o[0] = <double>n
    o[8] = buf[n - 1]                     # the newest interval
    mean = total / <double>n
    o[1] = mean
    o[2] = sqrt(_pairwise_sqdev(buf, n, mean) / <double>n)
    _min_max(buf, n, &mn, &mx)
    o[3] = mn
    o[4] = mx
    # Percentiles, numpy 'linear': virtual index vi = (n-1)*q; a, b the floor(vi)-th and
    # next order statistics; gamma = vi - floor(vi). All wanted ranks (at most 6) are
    # found in one multi-selection; ranks 0 and n-1 are the known min and max.
    vis[0] = <double>(n - 1) * (50.0 / 100.0)
    vis[1] = <double>(n - 1) * (95.0 / 100.0)
    vis[2] = <double>(n - 1) * (99.0 / 100.0)
    nr = 0
    for q in range(3):
        if vis[q] < <double>(n - 1):
            k = <Py_ssize_t>vis[q]           # floor: vi >= 0
            if 0 < k and (nr == 0 or ranks[nr - 1] < k):
                ranks[nr] = k
                nr += 1
            if k + 1 < n - 1 and (nr == 0 or ranks[nr - 1] < k + 1):
                ranks[nr] = k + 1
                nr += 1
    for q in range(nr, MAXR):
        ranks[q] = RANK_END
    if nr > 0:
        _multiselect(buf, buf2, 0, n, ranks, vals, 0, nr, 2 * _bit_length(n))
    for q in range(3):
        vi = vis[q]
        if vi >= <double>(n - 1):
            # numpy takes the last element for both and gamma = vi - (-1).
            o[5 + q] = _lerp(mx, mx, vi + 1.0)
        else:
            k = <Py_ssize_t>vi
            o[5 + q] = _lerp(_rank_value(k, n, mn, mx, ranks, vals, nr),
                             _rank_value(k + 1, n, mn, mx, ranks, vals, nr),
                             vi - <double>k)


include "_stats_window.pxi"
include "_stats_lanes.pxi"


cdef void _run(const double[:, ::1] ring, const int32_t[::1] heads,
               const int32_t[::1] counts, const int64_t[::1] rows, double lo, double hi,
               double[:, ::1] out, Py_ssize_t start, Py_ssize_t i0, Py_ssize_t i1,
               double* buf, Py_ssize_t stride, const WindowParams* w,
               const LaneNet* net) noexcept nogil:
    """Agents i0 .. i1-1: interval statistics (eight at a time through the lanes where
    ``net.n`` is not 0), or Akka windows if ``w`` is not NULL."""
    cdef Py_ssize_t i, j, k, H = ring.shape[1]
    cdef Py_ssize_t lines = (H + 7) >> 3      # 8 doubles per 64-byte cache line
    cdef bint whole = lo == -INFINITY and hi == INFINITY
    cdef bint lanes = w == NULL and net.n != 0 and whole
    cdef const char* p
    if lines > PREFETCH_LINES:
        lines = PREFETCH_LINES
    i = i0
    while i < i1:
        if lanes and i + LANES <= i1:
            # The rings are read once: fetch those of the eight agents after the next eight
            # while these are done (one group ahead is too late for the memory).
            for k in range(i + 2 * LANES, min(i + 3 * LANES, i1)):
                p = <const char*>&ring[rows[k], 0]
                for j in range(lines):
                    __builtin_prefetch(p + 64 * j)
            if _agents8(ring, heads, counts, rows, i, net, buf + 2 * stride,
                        buf + (2 + LANES) * stride, stride, buf, buf + stride, out, start):
                i += LANES
                continue
        # The rings are read once: fetch agent i+AHEAD's while agent i is computed.
        if i + PREFETCH_AHEAD < i1:
            p = <const char*>&ring[rows[i + PREFETCH_AHEAD], 0]
            for j in range(lines):
                __builtin_prefetch(p + 64 * j)
        if w == NULL:
            _agent(&ring[rows[i], 0], H, heads[i], counts[i], lo, hi, whole, buf,
                   buf + stride, &out[start + i, 0])
        else:
            _window_agent(&ring[rows[i], 0], H, heads[i], counts[i], w, buf, stride,
                          &out[start + i, 0])
        i += 1


cdef int _run_claim(const double[:, ::1] ring, const int32_t[::1] heads,
                    const int32_t[::1] counts, const int64_t[::1] rows, double lo, double hi,
                    double[:, ::1] out, Py_ssize_t start, Py_ssize_t* next_agent,
                    Py_ssize_t chunk, const WindowParams* w,
                    const LaneNet* net) noexcept nogil:
    """One worker: allocate scratch buffers, then claim chunks of agents from the shared
    counter until none is left (dynamic scheduling: a worker whose CPU is also busy with
    something else simply claims fewer chunks). Returns -1 if the buffers cannot be
    allocated (the chunks are then left to the other workers)."""
    cdef Py_ssize_t H = ring.shape[1], n = heads.shape[0], i0, i1
    # Two buffers for the statistics (and 2 * LANES for the lanes' vectors and rows), six
    # for the windows (the last: 0, 1, 2, ...); SMALL doubles of slack each (the sorting
    # networks read past a range's end), zeroed so that all is initialised.
    cdef Py_ssize_t stride = H + SMALL, j
    cdef double* buf = <double*>PyMem_RawCalloc((2 + 2 * LANES if w == NULL else 6) * stride,
                                                sizeof(double))
    if buf == NULL:
        return -1
    if w != NULL:
        for j in range(stride):
            buf[5 * stride + j] = <double>j
    while True:
        i0 = _claim(next_agent, chunk)
        if i0 >= n:
            break
        i1 = i0 + chunk if i0 + chunk < n else n
        _run(ring, heads, counts, rows, lo, hi, out, start, i0, i1, buf, stride, w, net)
    PyMem_RawFree(buf)
    return 0


# ---------------------------------------------------------------------------------------
# Python entry point
# ---------------------------------------------------------------------------------------

def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


cdef int _bad_index(const int32_t[::1] heads, const int32_t[::1] counts,
                    const int64_t[::1] rows, Py_ssize_t R, Py_ssize_t H) noexcept nogil:
    """0 if every rows[i] is in [0, R), heads[i] in [0, H) and counts[i] in [0, H];
    else 1, 2 or 3 for the first argument found out of range."""
    cdef Py_ssize_t i, n = heads.shape[0]
    cdef int64_t r
    cdef int32_t h, c
    for i in range(n):
        r = rows[i]
        h = heads[i]
        c = counts[i]
        if r < 0 or r >= R:
            return 1
        if h < 0 or h >= H:
            return 2
        if c < 0 or c > H:
            return 3
    return 0


def _order_statistics(values, ranks, int depth=-1):
    """Test hook: the ``ranks``-th smallest of ``values`` (float64, no NaN) by the
    multi-rank selection, with its depth budget (default 2*log2(n); 0 forces the heap-sort
    fallback)."""
    cdef double[::1] a = np.array(values, dtype=np.float64)
    cdef Py_ssize_t n = a.shape[0]
    wanted = np.unique(np.asarray(ranks, dtype=np.intp))
    cdef int nr = <int>wanted.shape[0]
    if nr > MAXR:
        raise ValueError(f"at most {MAXR} ranks")
    if nr and (wanted[0] < 0 or wanted[nr - 1] >= n):
        raise ValueError(f"ranks must be in [0, {n})")
    if depth < 0:
        depth = 2 * _bit_length(n)
    padded = np.full(MAXR, RANK_END, dtype=np.intp)
    padded[:nr] = wanted
    cdef Py_ssize_t[::1] r = padded
    # Both buffers SMALL doubles longer than the data (the sorting networks read past it).
    cdef double[::1] work = np.zeros(n + SMALL)
    cdef double[::1] scratch = np.zeros(n + SMALL)
    cdef double[::1] vals = np.empty(MAXR)
    work[:n] = a
    if nr:
        _multiselect(&work[0], &scratch[0], 0, n, &r[0], &vals[0], 0, nr, depth)
    return dict(zip(wanted.tolist(), np.asarray(vals)[:nr].tolist()))


def interval_stats(ring, heads, counts, rows, lo, hi, out, start, *, threads=None):
    """Interval statistics of the selected agents' history rings into ``out``.

    ``ring`` float64 (R, H) C-contiguous; ``heads``, ``counts`` int32 (N,); ``rows``
    int64 (N,); ``lo``, ``hi`` the time range (inclusive; -inf/inf for none); ``out``
    float64 (M, 9) C-contiguous, rows ``start .. start+N-1`` are written with
    ``COLUMNS``. Agent ``i``'s valid records are ring row ``rows[i]`` at positions
    ``(heads[i] - counts[i]) mod H .. (heads[i] - 1) mod H``, oldest first.
    Runs without the GIL; large calls are split over the CPUs (at most ``threads`` threads
    if given, an int >= 1).
    """
    _check(ring, heads, counts, rows, lo, hi, out, start)
    _launch(ring, heads, counts, rows, lo, hi, out, start, None, _threads(threads))


def phi_windows(ring, heads, counts, rows, lo, hi, out, start, *, threshold=8.0,
                min_std_deviation_ms=100.0, acceptable_heartbeat_pause_ms=0.0,
                first_heartbeat_estimate_ms=1000.0, threads=None):
    """Akka's phi-accrual window of the selected agents' history rings into ``out``.

    Arguments as for ``interval_stats`` (``lo`` and ``hi`` are accepted for the kernel's
    signature and ignored: the window always reads the whole ring); the keywords as in
    Akka's ``PhiAccrualFailureDetector`` (validated by ``_phi.window_params``). Row
    ``start + i`` of ``out`` gets ``WINDOW_COLUMNS`` (then NaN): the count, mean and
    standard deviation (ms) of the intervals in the window after the agent's newest
    heartbeat, the number of seed intervals still in it, and the number of intervals left
    out (each ended an outage). See ``_window_py`` for the exact semantics.
    Runs without the GIL; large calls are split over the CPUs (at most ``threads``).
    """
    _check(ring, heads, counts, rows, lo, hi, out, start)
    params = window_params(ring.shape[1], threshold, min_std_deviation_ms,
                           acceptable_heartbeat_pause_ms, first_heartbeat_estimate_ms)
    _launch(ring, heads, counts, rows, lo, hi, out, start, params, _threads(threads))


def _threads(threads):
    """The ``threads`` keyword, checked: None (as many as pay) or an int >= 1."""
    if threads is None:
        return _MAX_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


def _launch(ring, heads, counts, rows, lo, hi, out, start, params, int max_threads):
    """Run the kernel (interval statistics if ``params`` is None, else the Akka windows of
    the WindowParams values in ``params``) on checked arguments."""
    cdef WindowParams wp
    cdef const WindowParams* wptr = NULL
    cdef LaneNet net
    cdef const int32_t[::1] pairs
    cdef Py_ssize_t nl = ring.shape[1] - 1
    if params is not None:
        wp.first, wp.pause, wp.min_var, wp.ys, wp.cap = params
        wptr = &wp
    net.n = 0
    if (params is None and _simd and LANES_MIN_N <= nl <= LANES_MAX_N
            and lo == -INFINITY and hi == INFINITY and heads.shape[0] >= LANES):
        pairs = _lane_network(nl)
        net.npairs = pairs.shape[0] // 2
        net.pairs = &pairs[0] if net.npairs else NULL   # (16 wires: the block sort only)
        net.n = nl
    cdef const double[:, ::1] ring_v = ring
    cdef const int32_t[::1] heads_v = heads
    cdef const int32_t[::1] counts_v = counts
    cdef const int64_t[::1] rows_v = rows
    cdef double[:, ::1] out_v = out
    cdef double lo_d = lo, hi_d = hi
    cdef Py_ssize_t st = start, n = heads.shape[0], H = ring.shape[1]
    cdef Py_ssize_t total, R = ring.shape[0]
    cdef int rc = 0
    if n == 0:
        return
    # A small call keeps the GIL: taking it back after releasing can cost a whole switch
    # interval when another thread is busy in Python (issue 10: calls keep their speed
    # while the dispatcher delivers a storm).
    cdef bint release = <Py_ssize_t>n * H >= _NOGIL_RECORDS
    if release:
        with nogil:
            rc = _bad_index(heads_v, counts_v, rows_v, R, H)
    else:
        rc = _bad_index(heads_v, counts_v, rows_v, R, H)
    if rc == 1:
        raise ValueError(f"rows must be in [0, {R}) (ring rows)")
    if rc == 2:
        raise ValueError(f"heads must be in [0, {H}) (ring capacity)")
    if rc == 3:
        raise ValueError(f"counts must be in [0, {H}] (ring capacity)")
    total = n * H
    nthreads = min(_cpus(), _MAX_THREADS, max_threads, max(1, total // _MIN_PARALLEL))
    cdef Py_ssize_t[::1] next_agent = np.zeros(1, dtype=np.intp)
    cdef Py_ssize_t chunk = n
    if nthreads > 1:
        chunk = max(16, _CHUNK_RECORDS // max(H, 1))
    errors = []

    def work():
        cdef int r
        if release:
            with nogil:
                r = _run_claim(ring_v, heads_v, counts_v, rows_v, lo_d, hi_d, out_v, st,
                               &next_agent[0], chunk, wptr, &net)
        else:
            r = _run_claim(ring_v, heads_v, counts_v, rows_v, lo_d, hi_d, out_v, st,
                           &next_agent[0], chunk, wptr, &net)
        if r != 0:
            errors.append(MemoryError())

    workers = []
    try:
        for _ in range(nthreads - 1):
            w = threading.Thread(target=work, name="moai-flow-fast-stats", daemon=True)
            try:
                w.start()
            except RuntimeError:            # cannot start a thread: fewer workers
                break
            workers.append(w)
        work()
    finally:
        for w in workers:
            w.join()
    if len(errors) == len(workers) + 1:     # no worker could allocate its buffers
        raise MemoryError()
