# Interval statistics of eight agents at once for _stats_c.pyx (included there), on AVX-512:
# agent l's k-th interval is lane l of vector k, so that every step of the per-agent path
# (numpy's pairwise sums, the min/max scan) is the same operation on all eight lanes, and
# the order statistics come from a sorting network (comparators = vector min and max, no
# branch, no data-dependent control flow), pruned to the ranks the percentiles need.
# Results are the per-agent path's to the bit (same operations, same order, per lane).


cdef extern from *:
    """
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    /* No FMA contraction (AVX-512 implies FMA): numpy rounds the products and the sums. */
    #define MOAI_LANES __attribute__((target("avx512f"), optimize("fp-contract=off")))
    /* numpy's pairwise sum (_pairwise_sum) of rows V[0..n-1], lane-wise. */
    MOAI_LANES static __m512d moai_vsum(const double* V, Py_ssize_t n) {
        Py_ssize_t i, n2;
        __m512d res, r0, r1, r2, r3, r4, r5, r6, r7;
        if (n < 8) {
            res = _mm512_setzero_pd();
            for (i = 0; i < n; i++) res = _mm512_add_pd(res, _mm512_loadu_pd(V + 8 * i));
            return res;
        }
        if (n <= 128) {
            r0 = _mm512_loadu_pd(V); r1 = _mm512_loadu_pd(V + 8);
            r2 = _mm512_loadu_pd(V + 16); r3 = _mm512_loadu_pd(V + 24);
            r4 = _mm512_loadu_pd(V + 32); r5 = _mm512_loadu_pd(V + 40);
            r6 = _mm512_loadu_pd(V + 48); r7 = _mm512_loadu_pd(V + 56);
            for (i = 8; i < (n & ~(Py_ssize_t)7); i += 8) {
                const double* p = V + 8 * i;
                r0 = _mm512_add_pd(r0, _mm512_loadu_pd(p));
                r1 = _mm512_add_pd(r1, _mm512_loadu_pd(p + 8));
                r2 = _mm512_add_pd(r2, _mm512_loadu_pd(p + 16));
                r3 = _mm512_add_pd(r3, _mm512_loadu_pd(p + 24));
                r4 = _mm512_add_pd(r4, _mm512_loadu_pd(p + 32));
                r5 = _mm512_add_pd(r5, _mm512_loadu_pd(p + 40));
                r6 = _mm512_add_pd(r6, _mm512_loadu_pd(p + 48));
                r7 = _mm512_add_pd(r7, _mm512_loadu_pd(p + 56));
            }
            res = _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(r0, r1), _mm512_add_pd(r2, r3)),
                                _mm512_add_pd(_mm512_add_pd(r4, r5), _mm512_add_pd(r6, r7)));
            for (; i < n; i++) res = _mm512_add_pd(res, _mm512_loadu_pd(V + 8 * i));
            return res;
        }
        n2 = n >> 1;
        n2 -= n2 & 7;
        return _mm512_add_pd(moai_vsum(V, n2), moai_vsum(V + 8 * n2, n - n2));
    }
    /* _pairwise_sqdev lane-wise: the pairwise sum of (V[i] - m) * (V[i] - m). */
    #define MOAI_SQ(p) (d_ = _mm512_sub_pd(_mm512_loadu_pd(p), m), _mm512_mul_pd(d_, d_))
    MOAI_LANES static __m512d moai_vsqdev(const double* V, Py_ssize_t n, __m512d m) {
        Py_ssize_t i, n2;
        __m512d res, d_, r0, r1, r2, r3, r4, r5, r6, r7;
        if (n < 8) {
            res = _mm512_setzero_pd();
            for (i = 0; i < n; i++) res = _mm512_add_pd(res, MOAI_SQ(V + 8 * i));
            return res;
        }
        if (n <= 128) {
            r0 = MOAI_SQ(V); r1 = MOAI_SQ(V + 8); r2 = MOAI_SQ(V + 16); r3 = MOAI_SQ(V + 24);
            r4 = MOAI_SQ(V + 32); r5 = MOAI_SQ(V + 40); r6 = MOAI_SQ(V + 48);
            r7 = MOAI_SQ(V + 56);
            for (i = 8; i < (n & ~(Py_ssize_t)7); i += 8) {
                const double* p = V + 8 * i;
                r0 = _mm512_add_pd(r0, MOAI_SQ(p));
                r1 = _mm512_add_pd(r1, MOAI_SQ(p + 8));
                r2 = _mm512_add_pd(r2, MOAI_SQ(p + 16));
                r3 = _mm512_add_pd(r3, MOAI_SQ(p + 24));
                r4 = _mm512_add_pd(r4, MOAI_SQ(p + 32));
                r5 = _mm512_add_pd(r5, MOAI_SQ(p + 40));
                r6 = _mm512_add_pd(r6, MOAI_SQ(p + 48));
                r7 = _mm512_add_pd(r7, MOAI_SQ(p + 56));
            }
            res = _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(r0, r1), _mm512_add_pd(r2, r3)),
                                _mm512_add_pd(_mm512_add_pd(r4, r5), _mm512_add_pd(r6, r7)));
            for (; i < n; i++) res = _mm512_add_pd(res, MOAI_SQ(V + 8 * i));
            return res;
        }
        n2 = n >> 1;
        n2 -= n2 & 7;
        return _mm512_add_pd(moai_vsqdev(V, n2, m), moai_vsqdev(V + 8 * n2, n - n2, m));
    }
    /* Rows V[0..n-1] (n >= 1) of eight lanes: total, mean, std, min, max into res[0..40)
       (eight each) as the per-agent path computes them (_min_max's four interleaved
       minima and maxima, combined in its order), then the comparators (wire pairs) of the
       sorting network applied in place: a = min(a, b), b = max(b, a), as MOAI_CX. */
    MOAI_LANES static void moai_lanes(double* V, Py_ssize_t n, const int32_t* pairs,
                                      Py_ssize_t npairs, double* res) {
        __m512d total = moai_vsum(V, n), nn = _mm512_set1_pd((double)n), mean, t;
        __m512d mn0, mn1, mn2, mn3, mx0, mx1, mx2, mx3, x, y;
        Py_ssize_t j = 0, p;
        mean = _mm512_div_pd(total, nn);
        _mm512_storeu_pd(res, total);
        _mm512_storeu_pd(res + 8, mean);
        _mm512_storeu_pd(res + 16, _mm512_sqrt_pd(_mm512_div_pd(moai_vsqdev(V, n, mean), nn)));
        mn0 = mn1 = mn2 = mn3 = mx0 = mx1 = mx2 = mx3 = _mm512_loadu_pd(V);
        for (; j + 4 <= n; j += 4) {
            t = _mm512_loadu_pd(V + 8 * j); mn0 = _mm512_min_pd(t, mn0); mx0 = _mm512_max_pd(t, mx0);
            t = _mm512_loadu_pd(V + 8 * j + 8); mn1 = _mm512_min_pd(t, mn1); mx1 = _mm512_max_pd(t, mx1);
            t = _mm512_loadu_pd(V + 8 * j + 16); mn2 = _mm512_min_pd(t, mn2); mx2 = _mm512_max_pd(t, mx2);
            t = _mm512_loadu_pd(V + 8 * j + 24); mn3 = _mm512_min_pd(t, mn3); mx3 = _mm512_max_pd(t, mx3);
        }
        for (; j < n; j++) {
            t = _mm512_loadu_pd(V + 8 * j); mn0 = _mm512_min_pd(t, mn0); mx0 = _mm512_max_pd(t, mx0);
        }
        mn0 = _mm512_min_pd(mn1, mn0); mn2 = _mm512_min_pd(mn3, mn2);
        mx0 = _mm512_max_pd(mx1, mx0); mx2 = _mm512_max_pd(mx3, mx2);
        _mm512_storeu_pd(res + 24, _mm512_min_pd(mn2, mn0));
        _mm512_storeu_pd(res + 32, _mm512_max_pd(mx2, mx0));
        for (p = 0; p < npairs; p++) {
            double* a = V + 8 * (Py_ssize_t)pairs[2 * p];
            double* b = V + 8 * (Py_ssize_t)pairs[2 * p + 1];
            x = _mm512_loadu_pd(a);
            y = _mm512_loadu_pd(b);
            _mm512_storeu_pd(a, _mm512_min_pd(x, y));
            _mm512_storeu_pd(b, _mm512_max_pd(y, x));
        }
    }
    #else
    static void moai_lanes(double* V, Py_ssize_t n, const int32_t* pairs, Py_ssize_t npairs,
                           double* res) {}
    #endif
    """
    void _lanes_c "moai_lanes"(double* V, Py_ssize_t n, const int32_t* pairs, Py_ssize_t npairs,
                               double* res) nogil


cdef struct LaneNet:
    const int32_t* pairs        # the network's comparators, wire pairs (a < b), layer by layer
    Py_ssize_t npairs
    Py_ssize_t n             # intervals per agent it sorts (0: no lane path in this call)


cdef enum:
    LANES = 8
    # Agents with this many intervals take the lane path (more: the network's
    # n log^2 n comparators cost more than one agent's O(n) selection).
    LANES_MIN_N = 16
    LANES_MAX_N = 256


def _batcher(Py_ssize_t n):
    """Batcher's odd-even merge sort on the next power of two >= n wires, restricted to
    wires 0..n-1 (the others would hold +inf: a comparator reaching one does nothing)."""
    cdef Py_ssize_t size = 1
    while size < n:
        size *= 2
    pairs = []

    def merge(lo, hi, r):
        step = r * 2
        if step < hi - lo:
            merge(lo, hi, step)
            merge(lo + r, hi, step)
            pairs.extend((i, i + r) for i in range(lo + r, hi - r, step))
        else:
            pairs.append((lo, lo + r))

    def sort(lo, hi):
        if hi - lo >= 1:
            mid = lo + (hi - lo) // 2
            sort(lo, mid)
            sort(mid + 1, hi)
            merge(lo, hi, 1)

    sort(0, size - 1)
    return [(a, b) for a, b in pairs if b < n]


_NETWORKS = {}


def _lane_network(Py_ssize_t n):
    """The comparators (flat int32 wire pairs) that place ranks the percentiles of n
    intervals need (those _agent selects), pruned backwards from them and ordered by layer
    (independent comparators next to each other); cached per n."""
    net = _NETWORKS.get(n)
    if net is not None:
        return net
    wanted = set()
    for q in (50.0, 95.0, 99.0):
        vi = (n - 1) * (q / 100.0)
        if vi < n - 1:
            k = int(vi)
            if 0 < k:
                wanted.add(k)
            if k + 1 < n - 1:
                wanted.add(k + 1)
    live, kept = set(wanted), []
    for a, b in reversed(_batcher(n)):
        if a in live or b in live:
            kept.append((a, b))
            live.update((a, b))
    depth = [0] * n
    layered = []
    for a, b in reversed(kept):
        d = max(depth[a], depth[b]) + 1
        depth[a] = depth[b] = d
        layered.append((d, len(layered), a, b))
    layered.sort()
    net = np.array([w for _, _, a, b in layered for w in (a, b)], dtype=np.int32)
    _NETWORKS[n] = net
    return net


cdef bint _agents8(const double[:, ::1] ring, const int32_t[::1] heads,
                   const int32_t[::1] counts, const int64_t[::1] rows, Py_ssize_t i,
                   const LaneNet* net, double* V, double* buf, double* buf2,
                   double[:, ::1] out, Py_ssize_t start) noexcept nogil:
    """Rows of agents i .. i+7 (each with net.n intervals and no time range) through the
    lanes; an agent with a NaN interval is redone by _agent. False, with nothing written,
    if one of them has another number of records."""
    cdef Py_ssize_t H = ring.shape[1], n = net.n, l, j, k, s, cnt = n + 1
    cdef const double* row
    cdef double res[5 * LANES]
    cdef double last[LANES]
    cdef double vis[3]
    cdef double* o
    cdef double vi, a, b, mn, mx
    cdef int q
    for l in range(LANES):
        if counts[i + l] != cnt:
            return False
    # Transpose: interval k of agent l into V[8k + l].
    for l in range(LANES):
        row = &ring[rows[i + l], 0]
        s = heads[i + l] - cnt
        if s < 0:
            s += H
        _direct_intervals(row, H, s, cnt, buf)
        for j in range(n):
            V[LANES * j + l] = buf[j]
        last[l] = buf[n - 1]
    _lanes_c(V, n, net.pairs, net.npairs, res)
    vis[0] = <double>(n - 1) * (50.0 / 100.0)
    vis[1] = <double>(n - 1) * (95.0 / 100.0)
    vis[2] = <double>(n - 1) * (99.0 / 100.0)
    for l in range(LANES):
        o = &out[start + i + l, 0]
        if res[l] != res[l]:                  # a NaN: the per-agent path decides
            row = &ring[rows[i + l], 0]
            _agent(row, H, heads[i + l], cnt, -INFINITY, INFINITY, True, buf, buf2, o)
            continue
        mn = res[3 * LANES + l]
        mx = res[4 * LANES + l]
        o[0] = <double>n
        o[1] = res[LANES + l]
        o[2] = res[2 * LANES + l]
        o[3] = mn
        o[4] = mx
        for q in range(3):
            vi = vis[q]
            if vi >= <double>(n - 1):
                o[5 + q] = _lerp(mx, mx, vi + 1.0)
            else:
                k = <Py_ssize_t>vi
                a = mn if k == 0 else V[LANES * k + l]
                b = mx if k + 1 == n - 1 else V[LANES * (k + 1) + l]
                o[5 + q] = _lerp(a, b, vi - <double>k)
        o[8] = last[l]
    return True
