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
    /* Wires b .. b+15 of V (those below n; +inf above) sorted in registers: the 63
       comparators of moai_sort16 on vectors (the first four levels of Batcher's network). */
    #define MOAI_ZX(a, b) { __m512d x_ = a; a = _mm512_min_pd(x_, b); b = _mm512_max_pd(b, x_); }
    #define MOAI_ZL(i) (b + (i) < n ? _mm512_loadu_pd(V + 8 * (b + (i))) : inf)
    #define MOAI_ZS(i, v) if (b + (i) < n) _mm512_storeu_pd(V + 8 * (b + (i)), v)
    MOAI_LANES static void moai_block16(double* V, Py_ssize_t n, Py_ssize_t b) {
        __m512d inf = _mm512_set1_pd(__builtin_inf());
        __m512d v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15;
        v0 = MOAI_ZL(0); v1 = MOAI_ZL(1); v2 = MOAI_ZL(2); v3 = MOAI_ZL(3);
        v4 = MOAI_ZL(4); v5 = MOAI_ZL(5); v6 = MOAI_ZL(6); v7 = MOAI_ZL(7);
        v8 = MOAI_ZL(8); v9 = MOAI_ZL(9); v10 = MOAI_ZL(10); v11 = MOAI_ZL(11);
        v12 = MOAI_ZL(12); v13 = MOAI_ZL(13); v14 = MOAI_ZL(14); v15 = MOAI_ZL(15);
        MOAI_ZX(v0, v1) MOAI_ZX(v2, v3) MOAI_ZX(v0, v2) MOAI_ZX(v1, v3) MOAI_ZX(v1, v2)
        MOAI_ZX(v4, v5) MOAI_ZX(v6, v7) MOAI_ZX(v4, v6) MOAI_ZX(v5, v7) MOAI_ZX(v5, v6)
        MOAI_ZX(v0, v4) MOAI_ZX(v2, v6) MOAI_ZX(v2, v4) MOAI_ZX(v1, v5) MOAI_ZX(v3, v7)
        MOAI_ZX(v3, v5) MOAI_ZX(v1, v2) MOAI_ZX(v3, v4) MOAI_ZX(v5, v6) MOAI_ZX(v8, v9)
        MOAI_ZX(v10, v11) MOAI_ZX(v8, v10) MOAI_ZX(v9, v11) MOAI_ZX(v9, v10)
        MOAI_ZX(v12, v13) MOAI_ZX(v14, v15) MOAI_ZX(v12, v14) MOAI_ZX(v13, v15)
        MOAI_ZX(v13, v14) MOAI_ZX(v8, v12) MOAI_ZX(v10, v14) MOAI_ZX(v10, v12)
        MOAI_ZX(v9, v13) MOAI_ZX(v11, v15) MOAI_ZX(v11, v13) MOAI_ZX(v9, v10)
        MOAI_ZX(v11, v12) MOAI_ZX(v13, v14) MOAI_ZX(v0, v8) MOAI_ZX(v4, v12)
        MOAI_ZX(v4, v8) MOAI_ZX(v2, v10) MOAI_ZX(v6, v14) MOAI_ZX(v6, v10)
        MOAI_ZX(v2, v4) MOAI_ZX(v6, v8) MOAI_ZX(v10, v12) MOAI_ZX(v1, v9)
        MOAI_ZX(v5, v13) MOAI_ZX(v5, v9) MOAI_ZX(v3, v11) MOAI_ZX(v7, v15)
        MOAI_ZX(v7, v11) MOAI_ZX(v3, v5) MOAI_ZX(v7, v9) MOAI_ZX(v11, v13)
        MOAI_ZX(v1, v2) MOAI_ZX(v3, v4) MOAI_ZX(v5, v6) MOAI_ZX(v7, v8)
        MOAI_ZX(v9, v10) MOAI_ZX(v11, v12) MOAI_ZX(v13, v14)
        MOAI_ZS(0, v0); MOAI_ZS(1, v1); MOAI_ZS(2, v2); MOAI_ZS(3, v3);
        MOAI_ZS(4, v4); MOAI_ZS(5, v5); MOAI_ZS(6, v6); MOAI_ZS(7, v7);
        MOAI_ZS(8, v8); MOAI_ZS(9, v9); MOAI_ZS(10, v10); MOAI_ZS(11, v11);
        MOAI_ZS(12, v12); MOAI_ZS(13, v13); MOAI_ZS(14, v14); MOAI_ZS(15, v15);
    }
    /* Rows V[0..n-1] (n >= 1) of eight lanes: total, mean, std, min, max into res[0..40)
       (eight each) as the per-agent path computes them (_min_max's four interleaved
       minima and maxima, combined in its order), then the sorting network in place: the
       16-wire blocks sorted in registers, then the comparators (wire pairs) of the merges:
       a = min(a, b), b = max(b, a), as MOAI_CX. */
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
        for (p = 0; p < n; p += 16)
            moai_block16(V, n, p);
        for (p = 0; p < npairs; p++) {
            double* a = V + 8 * (Py_ssize_t)pairs[2 * p];
            double* b = V + 8 * (Py_ssize_t)pairs[2 * p + 1];
            x = _mm512_loadu_pd(a);
            y = _mm512_loadu_pd(b);
            _mm512_storeu_pd(a, _mm512_min_pd(x, y));
            _mm512_storeu_pd(b, _mm512_max_pd(y, x));
        }
    }
    /* V[8j + l] = R[l * rstride + j] for j < n rounded up to 8 (R's rows hold that many):
       8x8 blocks transposed in registers (unpacks, then 128-bit lane shuffles). */
    MOAI_LANES static void moai_transpose8(const double* R, Py_ssize_t rstride, Py_ssize_t n,
                                           double* V) {
        Py_ssize_t j;
        __m512d r0, r1, r2, r3, r4, r5, r6, r7, t0, t1, t2, t3, t4, t5, t6, t7;
        __m512d u0, u1, u2, u3, u4, u5, u6, u7;
        for (j = 0; j < n; j += 8) {
            const double* p = R + j;
            double* o = V + 8 * j;
            r0 = _mm512_loadu_pd(p); r1 = _mm512_loadu_pd(p + rstride);
            r2 = _mm512_loadu_pd(p + 2 * rstride); r3 = _mm512_loadu_pd(p + 3 * rstride);
            r4 = _mm512_loadu_pd(p + 4 * rstride); r5 = _mm512_loadu_pd(p + 5 * rstride);
            r6 = _mm512_loadu_pd(p + 6 * rstride); r7 = _mm512_loadu_pd(p + 7 * rstride);
            t0 = _mm512_unpacklo_pd(r0, r1); t1 = _mm512_unpackhi_pd(r0, r1);
            t2 = _mm512_unpacklo_pd(r2, r3); t3 = _mm512_unpackhi_pd(r2, r3);
            t4 = _mm512_unpacklo_pd(r4, r5); t5 = _mm512_unpackhi_pd(r4, r5);
            t6 = _mm512_unpacklo_pd(r6, r7); t7 = _mm512_unpackhi_pd(r6, r7);
            u0 = _mm512_shuffle_f64x2(t0, t2, 0x88); u1 = _mm512_shuffle_f64x2(t0, t2, 0xDD);
            u2 = _mm512_shuffle_f64x2(t1, t3, 0x88); u3 = _mm512_shuffle_f64x2(t1, t3, 0xDD);
            u4 = _mm512_shuffle_f64x2(t4, t6, 0x88); u5 = _mm512_shuffle_f64x2(t4, t6, 0xDD);
            u6 = _mm512_shuffle_f64x2(t5, t7, 0x88); u7 = _mm512_shuffle_f64x2(t5, t7, 0xDD);
            _mm512_storeu_pd(o, _mm512_shuffle_f64x2(u0, u4, 0x88));        /* column j */
            _mm512_storeu_pd(o + 8, _mm512_shuffle_f64x2(u2, u6, 0x88));
            _mm512_storeu_pd(o + 16, _mm512_shuffle_f64x2(u1, u5, 0x88));
            _mm512_storeu_pd(o + 24, _mm512_shuffle_f64x2(u3, u7, 0x88));
            _mm512_storeu_pd(o + 32, _mm512_shuffle_f64x2(u0, u4, 0xDD));
            _mm512_storeu_pd(o + 40, _mm512_shuffle_f64x2(u2, u6, 0xDD));
            _mm512_storeu_pd(o + 48, _mm512_shuffle_f64x2(u1, u5, 0xDD));
            _mm512_storeu_pd(o + 56, _mm512_shuffle_f64x2(u3, u7, 0xDD));
        }
    }
    #else
    static void moai_lanes(double* V, Py_ssize_t n, const int32_t* pairs, Py_ssize_t npairs,
                           double* res) {}
    static void moai_transpose8(const double* R, Py_ssize_t rstride, Py_ssize_t n,
                                double* V) {}
    #endif
    """
    void _lanes_c "moai_lanes"(double* V, Py_ssize_t n, const int32_t* pairs, Py_ssize_t npairs,
                               double* res) nogil
    void _transpose8 "moai_transpose8"(const double* R, Py_ssize_t rstride, Py_ssize_t n,
                                       double* V) nogil


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
    """Batcher's odd-even merge sort on the next power of two >= n wires (n >= 16),
    restricted to wires 0..n-1 (the others would hold +inf: a comparator reaching one does
    nothing), without the sorts of the aligned 16-wire blocks (moai_block16 does those)."""
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
        if hi - lo >= 16:
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
                   const LaneNet* net, double* V, double* R, Py_ssize_t stride, double* buf,
                   double* buf2, double[:, ::1] out, Py_ssize_t start) noexcept nogil:
    """Rows of agents i .. i+7 (each with net.n intervals and no time range) through the
    lanes (V: the lanes' vectors, R: eight rows of ``stride`` doubles, stride >= n + 8); an
    agent with a NaN interval is redone by _agent. False, with nothing written, if one of
    them has another number of records."""
    cdef Py_ssize_t H = ring.shape[1], n = net.n, l, k, s, cnt = n + 1
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
    # Each agent's intervals into its row of R, then transposed: interval k of agent l is
    # V[8k + l].
    for l in range(LANES):
        row = &ring[rows[i + l], 0]
        s = heads[i + l] - cnt
        if s < 0:
            s += H
        _direct_intervals(row, H, s, cnt, R + l * stride)
        last[l] = R[l * stride + n - 1]
    _transpose8(R, stride, n, V)
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
