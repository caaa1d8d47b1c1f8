# Akka's phi-accrual window for _stats_c.pyx (included there): one pass per agent over its
# history ring that rebuilds the interval window Akka's PhiAccrualFailureDetector would
# hold after the same heartbeats (see phi_windows in _stats_c.pyx for the semantics).

cdef struct WindowParams:
    double first        # first_heartbeat_estimate_ms: the seeds are first -/+ first / 4
    double pause        # acceptable_heartbeat_pause_ms
    double min_var      # min_std_deviation_ms ** 2
    double ys           # available <=> y = (interval - mean - pause) / std < ys
    double ys2          # ys * ys
    Py_ssize_t cap      # window capacity (Akka's max_sample_size): history_size - 1


cdef enum:
    # Intervals judged at once when nothing was rejected lately (see _window_agent).
    LOOK_MAX = 1 << 20


cdef inline unsigned char _bad(double x, double e, double lim, bint up) noexcept nogil:
    """1 unless e < ys * sigma (lim = ys^2 * sigma^2, up = ys >= 0; no square root, no
    division) and the interval x is finite. Bitwise operators, no branch: vectorizable."""
    cdef bint neg = e < 0.0
    cdef bint ok = (neg & (up | (e * e > lim))) | ((not neg) & up & (e * e < lim))
    return not (ok & (x > -INFINITY) & (x < INFINITY))


cdef inline void _judge(const double* d, const double* p1, const double* p2,
                        Py_ssize_t k, Py_ssize_t L, const WindowParams* w,
                        unsigned char* bad) noexcept nogil:
    """bad[t] = 1 if interval d[t] would end an outage (Akka: phi >= threshold at that
    heartbeat) or is not finite, judged against the window a[max(0, k+t-cap) .. k+t) of the
    accepted values; p1, p2: prefix sums of the accepted values (shifted by first) and of
    their squares. Two loops with contiguous loads (the window still filling, then full) and
    no loop-carried dependency."""
    cdef Py_ssize_t t, t1, idx, cap = w.cap
    cdef double n, s1, s2, mu, var
    cdef double base = w.pause, min_var = w.min_var, ys2 = w.ys2
    cdef bint up = w.ys >= 0.0
    t1 = cap - k
    if t1 < 0:
        t1 = 0
    if t1 > L:
        t1 = L
    for t in range(t1):                       # a window of k + t values (< cap)
        idx = k + t
        n = <double>idx
        mu = p1[idx] / n
        var = p2[idx] / n - mu * mu
        bad[t] = _bad(d[t], d[t] - w.first - base - mu,
                      ys2 * (var if var > min_var else min_var), up)
    n = <double>cap
    for t in range(t1, L):                    # a full window of cap values
        idx = k + t
        s1 = p1[idx] - p1[idx - cap]
        s2 = p2[idx] - p2[idx - cap]
        mu = s1 / n
        var = s2 / n - mu * mu
        bad[t] = _bad(d[t], d[t] - w.first - base - mu,
                      ys2 * (var if var > min_var else min_var), up)


cdef inline void _window_agent(const double* row, Py_ssize_t H, Py_ssize_t head,
                               Py_ssize_t cnt, const WindowParams* w, double* scratch,
                               Py_ssize_t stride, double* o) noexcept nogil:
    """Row o of phi_windows for one agent: count, mean, std (ms) of its final window,
    seeds still in it, intervals left out. ``scratch``: 5 buffers of ``stride`` >= H + 3
    doubles."""
    cdef Py_ssize_t s, j, m, k, L, look, t, nw
    cdef Py_ssize_t skipped = 0
    cdef double* d = scratch                  # intervals, ms
    cdef double* a = scratch + stride         # accepted values - first (seeds, intervals)
    cdef double* p1 = scratch + 2 * stride    # p1[i] = sum of a[0..i-1]
    cdef double* p2 = scratch + 3 * stride    # p2[i] = sum of a[0..i-1] ** 2
    cdef unsigned char* bad = <unsigned char*>(scratch + 4 * stride)
    cdef const unsigned char* hit
    cdef double x, mean
    if cnt == 0:
        _nan_row(o, 0, NCOL)
        return
    s = head - cnt
    if s < 0:
        s += H
    m = _direct_intervals(row, H, s, cnt, d)
    for j in range(m):
        d[j] *= 1000.0
    # The first heartbeat: Akka's two seed intervals, first -/+ first / 4 (kept shifted by
    # first, so that the sums stay small and exact for intervals near the estimate).
    a[0] = -0.25 * w.first
    a[1] = 0.25 * w.first
    p1[0] = 0.0
    p2[0] = 0.0
    p1[1] = a[0]
    p2[1] = a[0] * a[0]
    p1[2] = a[0] + a[1]
    p2[2] = p2[1] + a[1] * a[1]
    k = 2
    j = 0
    look = LOOK_MAX
    # Speculate that the next `look` intervals are all accepted: append them, judge them all
    # at once, keep those before the first rejected one and drop that one. After a rejection
    # the look-ahead restarts at 2 and doubles after each clean chunk, so an agent whose every
    # interval ends an outage costs about twice a one-by-one pass, and a healthy one a single
    # vectorized pass.
    while j < m:
        L = m - j
        if L > look:
            L = look
        for t in range(L):
            x = d[j + t] - w.first
            a[k + t] = x
            p1[k + t + 1] = p1[k + t] + x
            p2[k + t + 1] = p2[k + t] + x * x
        _judge(d + j, p1, p2, k, L, w, bad)
        hit = <const unsigned char*>memchr(bad, 1, L)
        if hit == NULL:
            k += L
            j += L
            if look < LOOK_MAX:
                look *= 2
            continue
        t = hit - bad
        k += t                                # a[k] (the rejected one) is overwritten next
        j += t + 1
        skipped += 1
        look = 2
    nw = k if k < w.cap else w.cap
    mean = _pairwise_sum(a + k - nw, nw) / <double>nw
    o[0] = <double>nw
    o[1] = w.first + mean
    o[2] = sqrt(_pairwise_sqdev(a + k - nw, nw, mean) / <double>nw)
    o[3] = <double>(2 - (k - nw) if k - nw < 2 else 0)
    o[4] = <double>skipped
    for j in range(5, NCOL):
        o[j] = NAN
