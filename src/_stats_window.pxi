# Akka's phi-accrual window for _stats_c.pyx (included there): one pass per agent over its
# history ring that rebuilds the interval window Akka's PhiAccrualFailureDetector would
# hold after the same heartbeats (see phi_windows in _stats_c.pyx for the semantics).

cdef struct WindowParams:
    double first        # first_heartbeat_estimate_ms: the seeds are first -/+ first / 4
    double pause        # acceptable_heartbeat_pause_ms
    double min_var      # min_std_deviation_ms ** 2
    double ys           # available <=> y = (interval - mean - pause) / std < ys
    Py_ssize_t cap      # window capacity (Akka's max_sample_size): history_size - 1


cdef enum:
    # Intervals judged at once when nothing was rejected lately (see _window_agent).
    LOOK_MAX = 1 << 20


cdef extern from *:
    """
    /* bad[t] = 1.0 unless interval d[t] came while the agent was available (Akka: phi <
       threshold, judged against the window of the accepted values before it) and is
       finite (else 0.0). The window before d[t] holds the last min(k + t, cap) accepted
       values; p1, p2 are prefix sums of the accepted values (minus first) and of their
       squares, nums[i] = i. "phi < threshold" is y < ys with y = e / sigma, e = d - first -
       pause - mean, sigma^2 = max(var, min_var); multiplied through by the window's size w
       (w e, w^2 var) it needs no division and no square root: for ys >= 0, w e < 0 or
       (w e)^2 < ys^2 max(w^2 var, w^2 min_var); for ys < 0, w e < 0 and (w e)^2 > ys^2
       max(...). Two loops (the window filling, then full) with contiguous loads, no
       loop-carried dependency and only double arithmetic and selects (no branch, no mixed
       widths): the compiler vectorizes them. */
    #define MOAI_JUDGE(w, s1, s2) do { \
            double x_ = d[t], we_ = (w) * (x_ - base) - (s1); \
            double nv_ = (w) * (s2) - (s1) * (s1), lim_ = (w) * (w) * min_var; \
            double sq_ = we_ * we_, neg_, fin_, ok_; \
            lim_ = (nv_ > lim_ ? nv_ : lim_) * ys2; \
            neg_ = we_ < 0.0 ? 1.0 : 0.0; \
            fin_ = x_ - x_ == 0.0 ? 1.0 : 0.0;                 /* finite */ \
            ok_ = up ? (neg_ + (sq_ < lim_ ? 1.0 : 0.0)) * fin_ \
                     : neg_ * (sq_ > lim_ ? 1.0 : 0.0) * fin_; \
            bad[t] = ok_ == 0.0 ? 1.0 : 0.0; \
        } while (0)
    static void moai_judge(const double* restrict d, const double* restrict p1,
                           const double* restrict p2, Py_ssize_t k, Py_ssize_t L,
                           Py_ssize_t cap, double base, double min_var, double ys,
                           const double* restrict nums, double* restrict bad) {
        Py_ssize_t t, t1 = cap - k;
        const double ys2 = ys * ys, wc = (double)cap;
        const int up = ys >= 0.0;
        if (t1 < 0) t1 = 0;
        if (t1 > L) t1 = L;
        for (t = 0; t < t1; t++)                    /* a window of k + t values (< cap) */
            MOAI_JUDGE(nums[k + t], p1[k + t], p2[k + t]);
        for (t = t1; t < L; t++)                    /* a full window of cap values */
            MOAI_JUDGE(wc, p1[k + t] - p1[k + t - cap], p2[k + t] - p2[k + t - cap]);
    }
    """
    void _judge_c "moai_judge"(const double* d, const double* p1, const double* p2,
                               Py_ssize_t k, Py_ssize_t L, Py_ssize_t cap, double base,
                               double min_var, double ys, const double* nums,
                               double* bad) nogil


cdef inline void _window_agent(const double* row, Py_ssize_t H, Py_ssize_t head,
                               Py_ssize_t cnt, const WindowParams* w, double* scratch,
                               Py_ssize_t stride, double* o) noexcept nogil:
    """Row o of phi_windows for one agent: count, mean, std (ms) of its final window,
    seeds still in it, intervals left out. ``scratch``: 6 buffers of ``stride`` >= H + 3
    doubles, the sixth holding 0, 1, 2, ..."""
    cdef Py_ssize_t s, j, m, k, L, look, t, nw
    cdef Py_ssize_t skipped = 0
    cdef double* d = scratch                  # intervals, ms
    cdef double* a = scratch + stride         # accepted values - first (seeds, intervals)
    cdef double* p1 = scratch + 2 * stride    # p1[i] = sum of a[0..i-1]
    cdef double* p2 = scratch + 3 * stride    # p2[i] = sum of a[0..i-1] ** 2
    cdef double* bad = scratch + 4 * stride   # 1.0: the interval is left out
    cdef const double* nums = scratch + 5 * stride
    cdef double x, mean, s1, s2
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
        s1 = p1[k]
        s2 = p2[k]
        for t in range(L):                    # (the sums in registers: p1, p2 may alias)
            x = d[j + t] - w.first
            a[k + t] = x
            s1 = s1 + x
            s2 = s2 + x * x
            p1[k + t + 1] = s1
            p2[k + t + 1] = s2
        _judge_c(d + j, p1, p2, k, L, w.cap, w.first + w.pause, w.min_var, w.ys, nums, bad)
        t = 0
        while t < L and bad[t] == 0.0:
            t += 1
        if t == L:
            k += L
            j += L
            if look < LOOK_MAX:
                look *= 2
            continue
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
