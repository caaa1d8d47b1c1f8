# cython: language_level=3
# Shared C types of the compiled engine: the per-agent record, the timer wheel and
# the transition events that the wheel hands back to Python.

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

# Health state codes; they index HealthState members in severity order.
cdef enum:
    ST_HEALTHY = 0
    ST_DEGRADED = 1
    ST_CRITICAL = 2
    ST_FAILED = 3

# Agent flag bits.
cdef enum:
    F_ACTIVE = 1    # slot holds a monitored agent
    F_CLOCK = 2     # last_mono is meaningful: a heartbeat was seen or the clock started at registration
    F_HB = 4        # at least one heartbeat recorded (last_heartbeat != 0 in monitoring_agents)
    F_HIST = 8      # the agent has a history entry (removed by `del heartbeat_history[id]`)
    F_META = 16     # a metadata list exists for this slot

# Event kinds.
cdef enum:
    EV_CROSSING = 0
    EV_RECOVERY = 1

# Wheel geometry: 7 levels of 64 slots cover 2**42 ticks (about 1,390 years at 10 ms).
cdef enum:
    WHEEL_BITS = 6
    WHEEL_SLOTS = 64
    WHEEL_LEVELS = 7
    WHEEL_BUCKETS = 448   # WHEEL_LEVELS * WHEEL_SLOTS

# The id index: open addressing with linear probing and backward-shift deletion (no
# tombstones). An entry holds the slot itself, so a lookup that finds its key reads one
# entry (a dict would read its index, its entry and an int object).
ctypedef struct IndexEntry:
    Py_hash_t hash         # the key's hash (compared before the key, as a dict does)
    void* key              # PyObject*, borrowed (see _index.pxi); NULL: empty
    int32_t slot
    int32_t _pad

ctypedef struct Index:
    IndexEntry* table
    Py_ssize_t mask        # capacity - 1 (a power of two)
    Py_ssize_t used
    uint64_t version       # bumped by every change: a lookup that ran user code restarts


# The per-agent record is split by temperature. A live heartbeat on the fast path reads
# and writes only the 16-byte Hot record (four per cache line: 16 MB at 10**6 agents,
# which stays in the last-level cache) and appends to the staging log; everything else is
# the cold Agent record, which the slow path, the wheel and the queries touch.
ctypedef struct Hot:
    int64_t mono           # monotonic ns of the last heartbeat (or of registration)
    int64_t fast           # interval_ns while a live heartbeat may take the fast path, else
                           # INT64_MIN (see _Core._sync: HEALTHY, armed, no metadata, ...)

ctypedef struct Agent:
    int64_t interval_ns
    int64_t when           # tick of the armed deadline
    double last_wall       # Unix seconds of the last heartbeat, 0.0 before the first
    int64_t ring_mono      # monotonic ns of the newest history record (count > 0)
    int64_t seq            # registration sequence, the tie-break of the report order
    int32_t head           # next write position in the history ring
    int32_t count          # records held in the history ring
    int32_t threshold
    uint32_t gen           # bumped when the slot is freed, so stale handles never match
    int32_t marks          # block of wall-clock step markers (core/_steps.py), -1 for none
    int16_t bucket         # level * 64 + slot, -1 when no deadline is armed
    int8_t reported        # the state last reported (monitoring_agents' last_state)
    uint8_t flags

# A fast-path heartbeat waiting to be written into its ring (the staging log): the log
# is written sequentially, and scattered into the rings, with prefetch, before anything
# reads a ring or a cold record field it defers (head, count, last_wall, markers).
ctypedef struct Staged:
    int64_t mono
    double wall
    int64_t slot

# Each bucket is WHEEL_LANES intrusive doubly linked lists (an agent goes to lane
# slot & 31), so walking a bucket follows 32 independent chains whose cache misses
# overlap, instead of one chain that waits on every miss (32 lanes took 17% off the wheel's
# CPU at 10**6 agents against 8). The links live apart from the Agent records, next and
# prev side by side in one int32 array: links[2s] and links[2s + 1].
cdef enum:
    WHEEL_LANES = 32
    WHEEL_HEADS = 14336   # WHEEL_BUCKETS * WHEEL_LANES (56 KiB)

ctypedef struct Wheel:
    int32_t* links                    # -1 terminated
    int64_t elapsed                   # every tick <= elapsed has been processed
    uint64_t occupied[WHEEL_LEVELS]   # bit s set <=> bucket (level, s) is non-empty
    int32_t heads[WHEEL_HEADS]        # bucket b, lane j: heads[b * WHEEL_LANES + j]
    int32_t lanes[WHEEL_BUCKETS]      # entries per bucket, to clear the bit when it empties
    int64_t armed                     # number of pending deadlines

# Mirrored field for field by EVENT_DTYPE in moai_flow_fast/_events.py (checked at import).
ctypedef struct Event:
    int64_t deadline       # ns; crossing: threshold time, recovery: when the agent left HEALTHY
    int64_t seq            # registration sequence, the tie-break of the report order
    int64_t now            # ns at detection
    int64_t last_mono      # ns of the heartbeat the crossing is measured from
    int64_t handle         # slot | generation << 32
    double last_wall
    int32_t slot
    int8_t prev
    int8_t new
    int8_t kind
    int8_t _pad


# Monotonic instants (last heartbeats) are clamped to +-2**62 ns (146 years): with
# intervals x thresholds at most 2**61 ns and clocks at most 2**61 ns, every deadline and
# elapsed time below then stays inside int64. moai_flow_fast/core/_engine_py.py clamps alike.
cdef extern from *:
    """
    #define MOAI_MONO_MAX ((int64_t)1 << 62)
    #define MOAI_MONO_MIN (-((int64_t)1 << 62))
    """
    int64_t MONO_MAX "MOAI_MONO_MAX"
    int64_t MONO_MIN "MOAI_MONO_MIN"

cdef extern from "<math.h>" nogil:
    double rint(double)
    double fabs(double)

# Wall-clock step markers (moai_flow_fast/core/_steps.py, which the engine checks these
# against at import): per agent, STEP_MARKS (ring position, correction) pairs.
cdef enum:
    STEP_MARKS = 4

# Step markers are rare (a wall-clock step in an agent's history window), so they live in
# a pool of blocks that only agents with markers hold.
ctypedef struct MarkBlock:
    double corr[STEP_MARKS]     # corrections (s)
    int32_t pos[STEP_MARKS]     # and the ring positions of the records after each step
    int32_t n                   # live markers; the block is freed when this drops to 0
    int32_t next_free           # free list link while the block is unused

cdef extern from *:
    """
    #define MOAI_STEP_TOLERANCE_S 1e-3
    #define MOAI_SLEW_RATE 5e-4
    #define MOAI_DBL_MAX 1.7976931348623157e308
    """
    double STEP_TOLERANCE_S "MOAI_STEP_TOLERANCE_S"
    double SLEW_RATE "MOAI_SLEW_RATE"
    double DBL_MAX_ "MOAI_DBL_MAX"

cdef extern from *:
    bint __builtin_sub_overflow(int64_t, int64_t, int64_t*) nogil


cdef inline int64_t clamp_mono(int64_t v) noexcept nogil:
    return MONO_MIN if v < MONO_MIN else (MONO_MAX if v > MONO_MAX else v)


cdef inline int64_t mono_before(int64_t now, double seconds) noexcept nogil:
    # now - round(seconds * 1e9), clamped: the monotonic instant `seconds` before now, as
    # the pure engine computes it with Python integers (round half to even, like rint).
    cdef double ns = seconds * 1e9
    cdef int64_t r, out
    if not (ns > -9.2e18 and ns < 9.2e18):       # also NaN: out of range either way
        return MONO_MIN if ns > 0 else MONO_MAX
    r = <int64_t>rint(ns)
    if __builtin_sub_overflow(now, r, &out):
        return MONO_MIN if r > 0 else MONO_MAX
    return clamp_mono(out)


cdef inline int64_t trunc_before(int64_t now, double seconds) noexcept nogil:
    # As mono_before, with the ns truncated toward zero (the pure engine's int()).
    cdef double ns = seconds * 1e9
    cdef int64_t r, out
    if not (ns > -9.2e18 and ns < 9.2e18):
        return MONO_MIN if ns > 0 else MONO_MAX
    r = <int64_t>ns
    if __builtin_sub_overflow(now, r, &out):
        return MONO_MIN if r > 0 else MONO_MAX
    return clamp_mono(out)



cdef inline double step_correction(double wall, double prev_wall, int64_t mono,
                                   int64_t ring_mono) noexcept nogil:
    # The change of the agent's offset (wall - monotonic) across a new interval, in s, or
    # 0.0 when it is within the tolerance (see core/_steps.py `correction`: the same
    # operations in the same order, so both engines store the same markers).
    cdef int64_t dm
    cdef double dms, corr
    if __builtin_sub_overflow(mono, ring_mono, &dm):
        return 0.0
    dms = dm * 1e-9
    corr = (wall - prev_wall) - dms
    if fabs(corr) > STEP_TOLERANCE_S + SLEW_RATE * fabs(dms) and fabs(corr) <= DBL_MAX_:
        return corr
    return 0.0


cdef inline int64_t ceil_div(int64_t a, int64_t b) noexcept nogil:
    # C division truncates toward zero, which is a floor for a >= 0 and a ceiling for a < 0.
    if a >= 0:
        return (a + b - 1) // b
    return -((-a) // b)


cdef inline int64_t crossing_mult(int reported, int32_t threshold) noexcept nogil:
    # Next threshold, in intervals, from the state last reported: DEGRADED at 1 I,
    # CRITICAL (or FAILED when T <= 2) at 2 I, FAILED at T I.
    if reported == ST_HEALTHY:
        return 1
    if reported == ST_DEGRADED:
        return 2
    return threshold


cdef inline int8_t crossing_next(int reported, int32_t threshold) noexcept nogil:
    if reported == ST_HEALTHY:
        return ST_DEGRADED
    if reported == ST_DEGRADED and threshold > 2:
        return ST_CRITICAL
    return ST_FAILED


cdef inline int state_code(int64_t e, int64_t interval, int32_t threshold) noexcept nogil:
    # The state function (core/_rules.py) on integer nanoseconds, so its edges are exact.
    if e < interval:
        return ST_HEALTHY
    if e < 2 * interval:
        return ST_DEGRADED
    if e < threshold * interval:
        return ST_CRITICAL
    return ST_FAILED


cdef inline int state_of(Agent* a, int64_t mono, int64_t now) noexcept nogil:
    # `mono` is the agent's Hot.mono.
    if not (a.flags & F_CLOCK):
        return ST_HEALTHY
    return state_code(now - mono, a.interval_ns, a.threshold)
