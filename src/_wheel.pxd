# cython: language_level=3
# Hierarchical timer wheel over the Agent table, laid out as tokio's and Linux's wheels:
# 7 levels of 64 buckets, a 64-bit occupancy word per level, intrusive int32 lists.

from libc.stdint cimport int32_t, int64_t, uint64_t

from _common cimport (
    Agent, Wheel, WHEEL_BITS, WHEEL_BUCKETS, WHEEL_HEADS, WHEEL_LANES, WHEEL_LEVELS,
    WHEEL_SLOTS,
)

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil
    int __builtin_clzll(unsigned long long) nogil


cdef inline void wheel_init(Wheel* w, int64_t elapsed) noexcept nogil:
    cdef int i
    w.links = NULL
    w.elapsed = elapsed
    w.armed = 0
    for i in range(WHEEL_LEVELS):
        w.occupied[i] = 0
    for i in range(WHEEL_HEADS):
        w.heads[i] = -1
    for i in range(WHEEL_BUCKETS):
        w.lanes[i] = 0


cdef inline int wheel_level(int64_t elapsed, int64_t when) noexcept nogil:
    # The level is chosen by the highest bit in which `when` differs from `elapsed`;
    # OR-ing 63 puts any difference inside the current 64-tick block on level 0.
    cdef uint64_t masked = (<uint64_t>(elapsed ^ when)) | <uint64_t>(WHEEL_SLOTS - 1)
    cdef uint64_t top = (<uint64_t>1) << (WHEEL_BITS * WHEEL_LEVELS)
    if masked >= top:
        # Past the horizon: park on the top level; the expiry handler re-arms it.
        masked = top - 1
    # 63 - clz is the index of the highest set bit.
    return (63 - __builtin_clzll(masked)) // WHEEL_BITS


cdef inline void wheel_insert(Wheel* w, Agent* agents, int32_t s, int64_t when) noexcept nogil:
    cdef int level = wheel_level(w.elapsed, when)
    cdef int slot = <int>((when >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1))
    cdef int b = level * WHEEL_SLOTS + slot
    # s & (WHEEL_LANES - 1) picks the lane (WHEEL_LANES is a power of two); b * WHEEL_LANES
    # + lane is its head.
    cdef int h = b * WHEEL_LANES + (s & (WHEEL_LANES - 1))
    cdef int32_t head = w.heads[h]
    agents[s].when = when
    agents[s].bucket = <short>b
    w.links[2 * s] = head
    w.links[2 * s + 1] = -1
    if head >= 0:
        w.links[2 * head + 1] = s
    w.heads[h] = s
    w.lanes[b] += 1
    w.occupied[level] |= (<uint64_t>1) << slot
    w.armed += 1


cdef inline void wheel_remove(Wheel* w, Agent* agents, int32_t s) noexcept nogil:
    cdef int b = agents[s].bucket
    cdef int32_t nx, pv
    if b < 0:
        return
    nx = w.links[2 * s]
    pv = w.links[2 * s + 1]
    if pv >= 0:
        w.links[2 * pv] = nx
    else:
        w.heads[b * WHEEL_LANES + (s & (WHEEL_LANES - 1))] = nx
    if nx >= 0:
        w.links[2 * nx + 1] = pv
    w.lanes[b] -= 1
    if w.lanes[b] == 0:
        # b >> 6 is the level, b & 63 the bucket within it.
        w.occupied[b >> WHEEL_BITS] &= ~((<uint64_t>1) << (b & (WHEEL_SLOTS - 1)))
    agents[s].bucket = -1
    w.armed -= 1


cdef inline int wheel_next(Wheel* w, int64_t* start) noexcept nogil:
    # The earliest non-empty bucket and the tick at which it is due (its first tick),
    # or -1 when the wheel is empty. Lower levels always expire before higher ones.
    cdef int level, now_slot, slot
    cdef uint64_t occ, rotated
    cdef int64_t slot_range, level_range, due
    for level in range(WHEEL_LEVELS):
        occ = w.occupied[level]
        if occ == 0:
            continue
        slot_range = (<int64_t>1) << (level * WHEEL_BITS)
        level_range = slot_range << WHEEL_BITS
        now_slot = <int>((w.elapsed >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1))
        # Rotate right so bit 0 is the bucket of `elapsed`: the lowest set bit is then the
        # next occupied bucket in wheel order. `& 63` keeps the left shift defined at 0.
        rotated = (occ >> now_slot) | (occ << ((64 - now_slot) & 63))
        slot = (__builtin_ctzll(rotated) + now_slot) & (WHEEL_SLOTS - 1)
        # Clearing the low bits of elapsed gives the first tick of this level's lap.
        due = (w.elapsed & ~(level_range - 1)) + slot * slot_range
        if due <= w.elapsed:
            due += level_range   # only a parked top-level entry wraps into the next lap
        start[0] = due
        return level * WHEEL_SLOTS + slot
    return -1


cdef inline Py_ssize_t wheel_take(Wheel* w, Agent* agents, int b, int32_t* out
                                  ) noexcept nogil:
    # Detach bucket b into `out` (room for w.lanes[b] entries), walking its lanes in
    # step so that their loads overlap. Entries leave with bucket = -1.
    cdef int32_t cur[WHEEL_LANES]
    cdef int j, live = 0
    cdef Py_ssize_t n = 0
    cdef int32_t s
    for j in range(WHEEL_LANES):
        cur[j] = w.heads[b * WHEEL_LANES + j]
        w.heads[b * WHEEL_LANES + j] = -1
        if cur[j] >= 0:
            live += 1
    while live:
        for j in range(WHEEL_LANES):
            s = cur[j]
            if s >= 0:
                out[n] = s
                n += 1
                cur[j] = w.links[2 * s]
                if cur[j] < 0:
                    live -= 1
    w.armed -= n
    w.lanes[b] = 0
    w.occupied[b >> WHEEL_BITS] &= ~((<uint64_t>1) << (b & (WHEEL_SLOTS - 1)))
    return n
