# Selection of order statistics for _stats_c.pyx (included there): a multi-rank
# introselect whose partitions are branch-free (and eight elements at a time on AVX-512)
# and whose small ranges are finished by sorting networks.

cdef extern from *:
    """
    /* Sorting networks for at most 8 or 16 doubles (Batcher's odd-even merge sort: 19 and
       63 comparators, no branch). t[0..N) = src[0..m) sorted, padded with +inf; src[m..N)
       is read (it must be allocated) but masked out. On x86-64 a comparator is one
       minsd and one maxsd (SSE2, always present): x < y ? x : y is exactly minsd, which
       compilers do not infer for doubles. NaN never reaches these (see _multiselect). */
    #if defined(__x86_64__)
    #include <emmintrin.h>
    #include <stdint.h>
    #define MOAI_V __m128d
    #define MOAI_CX(a, b) { __m128d x_ = a; a = _mm_min_sd(x_, b); b = _mm_max_sd(b, x_); }
    #define MOAI_D(v) _mm_cvtsd_f64(v)
    static inline __m128d moai_ld(const double* p, int keep) {
        __m128d k = _mm_castsi128_pd(_mm_set1_epi64x(-(int64_t)keep));
        return _mm_or_pd(_mm_and_pd(k, _mm_load_sd(p)),
                         _mm_andnot_pd(k, _mm_set_sd(__builtin_inf())));
    }
    #define MOAI_LD(src, i, m) moai_ld((src) + (i), (i) < (m))
    #else
    #define MOAI_V double
    #define MOAI_CX(a, b) { double x_ = a; a = x_ < b ? x_ : b; b = x_ < b ? b : x_; }
    #define MOAI_D(v) (v)
    #define MOAI_LD(src, i, m) ((i) < (m) ? (src)[i] : __builtin_inf())
    #endif
    static inline void moai_sort8(const double* src, Py_ssize_t m, double* t) {
        MOAI_V v0 = MOAI_LD(src, 0, m), v1 = MOAI_LD(src, 1, m), v2 = MOAI_LD(src, 2, m), v3 = MOAI_LD(src, 3, m);
        MOAI_V v4 = MOAI_LD(src, 4, m), v5 = MOAI_LD(src, 5, m), v6 = MOAI_LD(src, 6, m), v7 = MOAI_LD(src, 7, m);
        MOAI_CX(v0, v1) MOAI_CX(v2, v3) MOAI_CX(v0, v2) MOAI_CX(v1, v3) MOAI_CX(v1, v2)
        MOAI_CX(v4, v5) MOAI_CX(v6, v7) MOAI_CX(v4, v6) MOAI_CX(v5, v7) MOAI_CX(v5, v6)
        MOAI_CX(v0, v4) MOAI_CX(v2, v6) MOAI_CX(v2, v4) MOAI_CX(v1, v5) MOAI_CX(v3, v7)
        MOAI_CX(v3, v5) MOAI_CX(v1, v2) MOAI_CX(v3, v4) MOAI_CX(v5, v6)
        t[0] = MOAI_D(v0); t[1] = MOAI_D(v1); t[2] = MOAI_D(v2); t[3] = MOAI_D(v3);
        t[4] = MOAI_D(v4); t[5] = MOAI_D(v5); t[6] = MOAI_D(v6); t[7] = MOAI_D(v7);
    }
    static inline void moai_sort16(const double* src, Py_ssize_t m, double* t) {
        MOAI_V v0 = MOAI_LD(src, 0, m), v1 = MOAI_LD(src, 1, m), v2 = MOAI_LD(src, 2, m), v3 = MOAI_LD(src, 3, m);
        MOAI_V v4 = MOAI_LD(src, 4, m), v5 = MOAI_LD(src, 5, m), v6 = MOAI_LD(src, 6, m), v7 = MOAI_LD(src, 7, m);
        MOAI_V v8 = MOAI_LD(src, 8, m), v9 = MOAI_LD(src, 9, m), v10 = MOAI_LD(src, 10, m), v11 = MOAI_LD(src, 11, m);
        MOAI_V v12 = MOAI_LD(src, 12, m), v13 = MOAI_LD(src, 13, m), v14 = MOAI_LD(src, 14, m), v15 = MOAI_LD(src, 15, m);
        MOAI_CX(v0, v1) MOAI_CX(v2, v3) MOAI_CX(v0, v2) MOAI_CX(v1, v3) MOAI_CX(v1, v2)
        MOAI_CX(v4, v5) MOAI_CX(v6, v7) MOAI_CX(v4, v6) MOAI_CX(v5, v7) MOAI_CX(v5, v6)
        MOAI_CX(v0, v4) MOAI_CX(v2, v6) MOAI_CX(v2, v4) MOAI_CX(v1, v5) MOAI_CX(v3, v7)
        MOAI_CX(v3, v5) MOAI_CX(v1, v2) MOAI_CX(v3, v4) MOAI_CX(v5, v6) MOAI_CX(v8, v9)
        MOAI_CX(v10, v11) MOAI_CX(v8, v10) MOAI_CX(v9, v11) MOAI_CX(v9, v10)
        MOAI_CX(v12, v13) MOAI_CX(v14, v15) MOAI_CX(v12, v14) MOAI_CX(v13, v15)
        MOAI_CX(v13, v14) MOAI_CX(v8, v12) MOAI_CX(v10, v14) MOAI_CX(v10, v12)
        MOAI_CX(v9, v13) MOAI_CX(v11, v15) MOAI_CX(v11, v13) MOAI_CX(v9, v10)
        MOAI_CX(v11, v12) MOAI_CX(v13, v14) MOAI_CX(v0, v8) MOAI_CX(v4, v12)
        MOAI_CX(v4, v8) MOAI_CX(v2, v10) MOAI_CX(v6, v14) MOAI_CX(v6, v10)
        MOAI_CX(v2, v4) MOAI_CX(v6, v8) MOAI_CX(v10, v12) MOAI_CX(v1, v9)
        MOAI_CX(v5, v13) MOAI_CX(v5, v9) MOAI_CX(v3, v11) MOAI_CX(v7, v15)
        MOAI_CX(v7, v11) MOAI_CX(v3, v5) MOAI_CX(v7, v9) MOAI_CX(v11, v13)
        MOAI_CX(v1, v2) MOAI_CX(v3, v4) MOAI_CX(v5, v6) MOAI_CX(v7, v8)
        MOAI_CX(v9, v10) MOAI_CX(v11, v12) MOAI_CX(v13, v14)
        t[0] = MOAI_D(v0); t[1] = MOAI_D(v1); t[2] = MOAI_D(v2); t[3] = MOAI_D(v3);
        t[4] = MOAI_D(v4); t[5] = MOAI_D(v5); t[6] = MOAI_D(v6); t[7] = MOAI_D(v7);
        t[8] = MOAI_D(v8); t[9] = MOAI_D(v9); t[10] = MOAI_D(v10); t[11] = MOAI_D(v11);
        t[12] = MOAI_D(v12); t[13] = MOAI_D(v13); t[14] = MOAI_D(v14); t[15] = MOAI_D(v15);
    }
    """
    void _sort8 "moai_sort8"(const double* src, Py_ssize_t m, double* t) nogil
    void _sort16 "moai_sort16"(const double* src, Py_ssize_t m, double* t) nogil

cdef extern from *:
    """
    /* _split on AVX-512 (chosen at run time: the build stays portable): per 8 elements, one
       compare gives the mask of those below the pivot, and two compresses store them at
       the left frontier and the others at the right one (masked stores, out of place). */
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    __attribute__((target("avx512f")))
    static Py_ssize_t moai_split8(const double* src, double* dst, Py_ssize_t lo,
                                  Py_ssize_t hi, double p, int le) {
        Py_ssize_t nl = lo, nr = hi, j = lo;
        __m512d vp = _mm512_set1_pd(p), v;
        __mmask8 m, all = 0xFF;
        unsigned k, w;
        while (j < hi) {
            w = hi - j < 8 ? (unsigned)(hi - j) : 8u;
            if (w < 8) {
                all = (__mmask8)((1u << w) - 1u);
                v = _mm512_maskz_loadu_pd(all, src + j);
            } else {
                v = _mm512_loadu_pd(src + j);
            }
            m = (le ? _mm512_cmp_pd_mask(v, vp, _CMP_LE_OQ)
                    : _mm512_cmp_pd_mask(v, vp, _CMP_LT_OQ)) & all;
            k = (unsigned)__builtin_popcount((unsigned)m);
            _mm512_mask_storeu_pd(dst + nl, (__mmask8)((1u << k) - 1u),
                                  _mm512_maskz_compress_pd(m, v));
            nl += k;
            nr -= w - k;
            _mm512_mask_storeu_pd(dst + nr, (__mmask8)((1u << (w - k)) - 1u),
                                  _mm512_maskz_compress_pd((__mmask8)(~m & all), v));
            j += w;
        }
        return nl;
    }
    static int moai_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
    #else
    static Py_ssize_t moai_split8(const double* src, double* dst, Py_ssize_t lo,
                                  Py_ssize_t hi, double p, int le) { return lo; }
    static int moai_has_avx512(void) { return 0; }
    #endif
    """
    Py_ssize_t _split8 "moai_split8"(const double* src, double* dst, Py_ssize_t lo,
                                     Py_ssize_t hi, double p, int le) nogil
    int _has_avx512 "moai_has_avx512"() nogil

# 1 while _split and the lanes (_stats_lanes.pxi) use AVX-512 (the CPU has it; the test hook
# _set_simd can turn it off).
cdef int _simd = _has_avx512()


def _set_simd(bint on):
    """Test hook: use the AVX-512 paths (the partition, the lanes) if ``on`` and the CPU
    has it (else the portable ones); returns whether they were in use before."""
    global _simd
    cdef bint before = _simd != 0
    _simd = 1 if (on and _has_avx512()) else 0
    return before


cdef inline void _small_select(const double* src, Py_ssize_t lo, Py_ssize_t hi,
                               const Py_ssize_t* ranks, double* vals, int ra,
                               int rb) noexcept nogil:
    """vals[q] = the ranks[q]-th smallest of src[lo..hi-1] for ra <= q < rb, for a range of
    at most SMALL (16) elements: one sorting network, whatever the data."""
    cdef double t[16]
    cdef Py_ssize_t m = hi - lo
    cdef int q
    if m <= 8:
        _sort8(src + lo, m, t)
    else:
        _sort16(src + lo, m, t)
    for q in range(ra, rb):
        vals[q] = t[ranks[q] - lo]


cdef inline void _swap(double* a, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef double t = a[i]
    a[i] = a[j]
    a[j] = t


cdef inline void _sift_down(double* a, Py_ssize_t root, Py_ssize_t n) noexcept nogil:
    """Max-heap sift-down in the heap a[0..n-1]."""
    cdef Py_ssize_t child
    cdef double x = a[root]
    while True:
        child = 2 * root + 1
        if child >= n:
            break
        if child + 1 < n and a[child] < a[child + 1]:
            child += 1
        if not (x < a[child]):
            break
        a[root] = a[child]
        root = child
    a[root] = x


cdef inline void _heap_sort(double* a, Py_ssize_t n) noexcept nogil:
    """Sort a[0..n-1]: the introselect fallback, O(n log n) whatever the data."""
    cdef Py_ssize_t i
    i = n // 2 - 1
    while i >= 0:
        _sift_down(a, i, n)
        i -= 1
    i = n - 1
    while i > 0:
        _swap(a, 0, i)
        _sift_down(a, 0, i)
        i -= 1


cdef inline int _bit_length(Py_ssize_t n) noexcept nogil:
    cdef int b = 0
    while n > 0:
        n >>= 1
        b += 1
    return b


cdef inline Py_ssize_t _split_scalar(const double* src, double* dst, Py_ssize_t lo, Py_ssize_t hi,
                              double p, bint le) noexcept nogil:
    """Out-of-place branch-free partition of src[lo..hi-1] into dst[lo..hi-1] around p:
    returns i with dst[lo..i-1] < p <= dst[i..hi-1] (``x <= p`` instead of ``x < p`` if
    ``le``). (The portable version of _split.)

    Each element is stored at both frontiers, the left one ascending from lo and the
    right one descending from hi-1, and only its own side's frontier advances (by the
    0/1 comparison result): no branch to mispredict and, unlike an in-place Lomuto loop,
    no load waiting on the previous iteration's store. After j elements with l of them
    on the left, the right frontier is hi-1-(j-l) = (hi-1-lo-j) + (lo+l): a pointer
    stepping down by one plus the left frontier, so the loop keeps a single counter.
    The frontiers never cross while elements remain, so a store at the wrong frontier
    lands on a slot that is filled later."""
    cdef Py_ssize_t j, nl = lo
    cdef double x
    cdef double* right = dst + hi - 1 - lo     # right frontier = right[nl] (right -= 1 per step)
    if le:
        for j in range(lo, hi):
            x = src[j]
            dst[nl] = x
            right[nl] = x
            right -= 1
            nl += x <= p
    else:
        for j in range(lo, hi):
            x = src[j]
            dst[nl] = x
            right[nl] = x
            right -= 1
            nl += x < p
    return nl


cdef inline Py_ssize_t _split(const double* src, double* dst, Py_ssize_t lo, Py_ssize_t hi,
                              double p, bint le) noexcept nogil:
    """_split_scalar's partition, eight elements per step on a CPU with AVX-512."""
    if _simd:
        return _split8(src, dst, lo, hi, p, le)
    return _split_scalar(src, dst, lo, hi, p, le)


cdef inline double _med3(double x, double y, double z) noexcept nogil:
    """Median of three as max(min(x, y), min(max(x, y), z)): min/max instructions, no
    branch."""
    cdef double lo_ = x if x < y else y
    cdef double hi_ = y if x < y else x
    hi_ = hi_ if hi_ < z else z
    return hi_ if lo_ < hi_ else lo_


cdef inline int _count_below(const Py_ssize_t* ranks, Py_ssize_t i) noexcept nogil:
    """The number of wanted ranks below i, i.e. the index of the first one >= i (ranks
    ascending, MAXR entries padded with RANK_END): a fixed-length sum of 0/1 comparisons
    instead of a search loop whose exit would be mispredicted."""
    cdef int q, c = 0
    for q in range(MAXR):
        c += ranks[q] < i
    return c


cdef void _multiselect(double* src, double* dst, Py_ssize_t lo, Py_ssize_t hi,
                       const Py_ssize_t* ranks, double* vals, int ra, int rb,
                       int depth) noexcept nogil:
    """Order statistics: vals[q] = the ranks[q]-th smallest of the multiset src[lo..hi-1]
    for ra <= q < rb (ranks: MAXR entries, ascending, distinct, padded with RANK_END;
    ranks[ra..rb-1] in [lo, hi), the others outside; no NaN in src). src and dst are
    two scratch buffers over the same positions: a round partitions src[lo..hi-1] into
    dst[lo..hi-1] (so rank r stays at position r in the surviving range) and continues on
    the side(s) holding wanted ranks with the buffers' roles swapped.

    Pivot: Tukey's ninther (64+ elements) or a median of 3. Ranges of at most SMALL
    elements are finished by a sorting network (_small_select; both buffers must be
    readable SMALL elements past hi), and wanted ranks at the very ends (the two smallest
    or largest) by one min/max scan. A partition leaving more than 7/8 of the
    range on the pivot's right (many keys equal to the pivot, e.g. identical intervals)
    is followed by one splitting off the keys equal to it, so duplicates cost O(n);
    after ``depth`` rounds a range is heap-sorted, so the worst case is O(n log n)."""
    cdef Py_ssize_t m, mid, i, j, r
    cdef int q, qa, qb
    cdef double p, x, y, z
    cdef double* tmp
    while ra < rb:
        m = hi - lo
        if m <= SMALL:
            _small_select(src, lo, hi, ranks, vals, ra, rb)
            return
        if depth == 0:
            _heap_sort(src + lo, m)
            for q in range(ra, rb):
                vals[q] = src[ranks[q]]
            return
        if ranks[rb - 1] <= lo + 1:
            # Only the smallest one or two are wanted: one scan keeps the two smallest
            # (b = min(b, max(a, x)) is the new second smallest before a = min(a, x)).
            x = src[lo]
            y = src[lo + 1]
            p = x if x < y else y
            z = y if x < y else x
            for j in range(lo + 2, hi):
                x = src[j]
                y = p if p > x else x
                z = z if z < y else y
                p = p if p < x else x
            for q in range(ra, rb):
                vals[q] = p if ranks[q] == lo else z
            return
        if ranks[ra] >= hi - 2:
            # Only the largest one or two: the mirror image.
            x = src[hi - 1]
            y = src[hi - 2]
            p = x if x > y else y
            z = y if x > y else x
            for j in range(lo, hi - 2):
                x = src[j]
                y = p if p < x else x
                z = z if z > y else y
                p = p if p > x else x
            for q in range(ra, rb):
                vals[q] = p if ranks[q] == hi - 1 else z
            return
        depth -= 1
        if m >= 64:
            # Pivot: Tukey's ninther, the median of the medians of three triples
            # spaced m/8 (m >> 3) apart.
            j = m >> 3
            mid = lo + (m >> 1)
            p = _med3(_med3(src[lo], src[lo + j], src[lo + 2 * j]),
                      _med3(src[mid - j], src[mid], src[mid + j]),
                      _med3(src[hi - 1 - 2 * j], src[hi - 1 - j], src[hi - 1]))
        else:
            # Pivot: the median of the first, middle and last elements.
            p = _med3(src[lo], src[lo + (m >> 1)], src[hi - 1])
        i = _split(src, dst, lo, hi, p, False)      # dst[lo..i-1] < p <= dst[i..hi-1]
        tmp = src
        src = dst
        dst = tmp
        # Wanted ranks below i: ra..qb-1 on the left.
        qb = _count_below(ranks, i)
        if hi - i > m - (m >> 3):
            # Mostly >= p: split off the keys equal to p (they are the ranks i..j-1).
            j = _split(src, dst, i, hi, p, True)    # dst[i..j-1] == p < dst[j..hi-1]
            # (the left part src[lo..i-1] is not copied: it is recursed on in src)
            qa = qb
            qb = _count_below(ranks, j)
            for q in range(qa, qb):
                vals[q] = p
            if qa > ra:
                _multiselect(src, dst, lo, i, ranks, vals, ra, qa, depth)
            ra = qb
            lo = j
            tmp = src
            src = dst
            dst = tmp
            continue
        if qb > ra:
            if qb == rb:                # everything wanted is on the left
                hi = i
                continue
            _multiselect(src, dst, lo, i, ranks, vals, ra, qb, depth)
        ra = qb
        lo = i



