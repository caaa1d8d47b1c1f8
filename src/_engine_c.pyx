# cython: language_level=3
"""Compiled engine: the agent table, the hierarchical timer wheel and the history rings.

Python twin: ``moai_flow_fast/_engine_py.py`` (same interface, same semantics).
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from cpython.object cimport Py_EQ, PyObject, PyObject_RichCompareBool
from cpython.ref cimport Py_INCREF
from libc.stdint cimport (
    INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t, uint32_t, uint64_t, uintptr_t,
)
from libc.stdlib cimport qsort
from libc.math cimport INFINITY, NAN, sqrt
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from _common cimport (
    Agent, Event, Hot, Index, IndexEntry, MarkBlock, Staged, Wheel, EV_CROSSING, EV_RECOVERY, F_ACTIVE, F_CLOCK, F_HB, F_HIST,
    F_META, SLEW_RATE, STEP_MARKS, STEP_TOLERANCE_S, ST_CRITICAL, ST_DEGRADED, ST_FAILED,
    ST_HEALTHY, ceil_div, crossing_mult, crossing_next, fabs, mono_before, state_code,
    state_of, step_correction, trunc_before,
)
from _wheel cimport wheel_init, wheel_insert, wheel_next, wheel_remove, wheel_take

import os

import numpy as np

from moai_flow_fast.core import _rules, _steps
from moai_flow_fast.core._events import EVENT_DTYPE
from moai_flow_fast.core._steps import run_kernel

from collections.abc import Mapping

cdef extern from *:
    void __builtin_prefetch(const void*, ...) nogil

cdef extern from "Python.h" nogil:
    ctypedef struct PyASCIIObject:
        Py_hash_t hash
    int PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr)

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)
    void free(void* ptr)

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void*, size_t, int)
    enum: MADV_HUGEPAGE

cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident() nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from *:
    """
    static inline int moai_load(int* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void moai_store(int* p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    int moai_load(int*) nogil
    void moai_store(int*, int) nogil

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t*, void*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_trylock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)

__all__ = ["Engine"]

if EVENT_DTYPE.itemsize != sizeof(Event):
    raise ImportError(f"EVENT_DTYPE ({EVENT_DTYPE.itemsize} bytes) does not match the C "
                      f"Event ({sizeof(Event)} bytes)")


def _schedule(int32_t threshold):
    """The C crossing schedule from HEALTHY: (intervals, state code) per crossing."""
    out = []
    cdef int reported = ST_HEALTHY
    cdef int8_t new
    while reported != ST_FAILED:
        new = crossing_next(reported, threshold)
        out.append((crossing_mult(reported, threshold), new))
        reported = new
    return out


def _state(int64_t elapsed, int64_t interval, int32_t threshold):
    """The C state function for an agent `elapsed` ns after its last heartbeat."""
    cdef Agent a
    memset(&a, 0, sizeof(Agent))
    a.flags = F_CLOCK
    a.interval_ns = interval
    a.threshold = threshold
    return state_of(&a, 0, elapsed)


# The rules live in moai_flow_fast/core/_rules.py; these C copies must say the same.
if ((ST_HEALTHY, ST_DEGRADED, ST_CRITICAL, ST_FAILED, EV_CROSSING, EV_RECOVERY)
        != (_rules.HEALTHY, _rules.DEGRADED, _rules.CRITICAL, _rules.FAILED,
            _rules.CROSSING, _rules.RECOVERY)
        or any(_schedule(t) != _rules.crossing_schedule(t) for t in range(1, 9))
        or any(_state(e, 10, t) != _rules.state_code(e, 10, t)
               for t in range(1, 6) for e in range(0, 61))):
    raise ImportError("src/_common.pxd disagrees with moai_flow_fast/core/_rules.py")
if ((STEP_MARKS, STEP_TOLERANCE_S, SLEW_RATE)
        != (_steps.MARKS, _steps.STEP_TOLERANCE_S, _steps.SLEW_RATE)):
    raise ImportError("src/_common.pxd disagrees with moai_flow_fast/core/_steps.py")

cdef enum:
    CHUNK = 1024           # agent tables grow from this many slots
    RING_CHUNK_BYTES = 1048576   # history rings are allocated about 1 MiB at a time
    PREFETCH = 16          # records prefetched ahead while a bucket is processed
    RECORD_AHEAD = 64      # heartbeats of a batch or stage whose records are prefetched ahead
    STAGE_CAP = 4096       # fast-path heartbeats staged before they are scattered (96 KiB)
    RING_AHEAD = 32        # heartbeats of a batch or stage whose ring line is prefetched ahead
    INDEX_AHEAD = 8        # ids whose index entry handles() prefetches ahead
    YIELD_EVERY = 4096     # heartbeats of a batch between checks for a waiting wheel
    NOGIL_BUCKET = 4096    # an advance releases the GIL from a first bucket this large
    NOGIL_BATCH = 32768    # record_many releases the GIL from this many heartbeats
    EV_KEEP = 65536        # event scratch kept between publications (4 MiB)
    HUGE_PAGE = 2097152    # 2 MiB
    TRACE_DOMAIN = 0x6d6f6169   # tracemalloc domain of the engine's tables ("moai")

# A handle is slot | generation << 32: the low 32 bits are the slot. Generations are 31
# bits, so handles are positive; each engine starts them at a random base, so a handle of
# another monitor matches a live agent here with odds of about 2**-31.
cdef int64_t SLOT_MASK = 0xFFFFFFFF
cdef uint32_t GEN_MASK = 0x7FFFFFFF

# Ticks; a farther deadline is parked and re-armed when it comes up.
cdef int64_t MAX_AHEAD = (<int64_t>1) << 40


cdef int _event_order(const void* x, const void* y) noexcept nogil:
    cdef const Event* a = <const Event*>x
    cdef const Event* b = <const Event*>y
    if a.deadline != b.deadline:
        return -1 if a.deadline < b.deadline else 1
    if a.seq != b.seq:
        return -1 if a.seq < b.seq else 1
    return 0


cdef int _slot_order(const void* x, const void* y) noexcept nogil:
    # Pairs of (seq, slot) sorted by registration sequence.
    cdef const int64_t* a = <const int64_t*>x
    cdef const int64_t* b = <const int64_t*>y
    return -1 if a[0] < b[0] else (1 if a[0] > b[0] else 0)


cdef void* _table_realloc(void* old, size_t old_size, size_t size) noexcept nogil:
    # The two tables the wheel reads in random order (agent records, bucket links) live in
    # 2 MiB-aligned memory advised as huge pages before it is first touched: with 4 KiB
    # pages nearly every record visited at 10**6 agents would also miss the TLB. They are
    # reported to tracemalloc like the rest of the engine's memory.
    cdef void* p = NULL
    cdef size_t align = HUGE_PAGE if size >= HUGE_PAGE else 64
    if posix_memalign(&p, align, size) != 0:
        return NULL
    if size >= HUGE_PAGE:
        # (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1) rounds up to whole huge pages.
        madvise(p, (size + HUGE_PAGE - 1) & ~(<size_t>HUGE_PAGE - 1), MADV_HUGEPAGE)
    if old != NULL:
        memcpy(p, old, old_size)
        _table_free(old)
    PyTraceMalloc_Track(TRACE_DOMAIN, <uintptr_t>p, size)
    return p


cdef void _table_free(void* p) noexcept nogil:
    if p != NULL:
        PyTraceMalloc_Untrack(TRACE_DOMAIN, <uintptr_t>p)
        free(p)


include "_index.pxi"
include "_rings.pxi"


cdef double* _data(object arr) except NULL:
    # The first double of a non-empty C-contiguous float64 array (which keeps it alive).
    cdef double[::1] flat = arr.reshape(-1)
    return &flat[0]


cdef class _Core:
    """Agent table + timer wheel + rings (the per-agent half of Engine)."""

    cdef Agent* _agents
    cdef Hot* _hot
    cdef Staged* _stage          # fast-path heartbeats not yet in their rings, oldest first
    cdef Py_ssize_t _nstaged
    cdef double* _started
    cdef MarkBlock* _marks       # step marker blocks (Agent.marks), a free list threaded
    cdef int32_t _nmarks_cap     # through next_free from _marks_free
    cdef int32_t _marks_free
    cdef int64_t _marks_dropped  # step markers lost for want of memory
    cdef int32_t _free           # freed slots: a stack threaded through their wheel links
    cdef int32_t _nfree          # (links[2s], unused while a slot is free)
    cdef int32_t _high           # slots ever used
    cdef int32_t _cap
    cdef int32_t _hsize
    cdef double** _rings         # one pointer per ring chunk of 2**_chunk_bits agents
    cdef int _chunk_bits
    cdef int32_t _nchunks
    cdef list _chunk_arrays      # keeps the numpy chunks alive
    cdef _RingArena _arena       # where the next chunks come from (_rings.pxi), or None
    cdef Wheel _wheel
    cdef int64_t _tick
    cdef int64_t _next_seq
    cdef int64_t _sleep_tick     # the tick the timing thread sleeps until
    cdef bint _wake_pending
    cdef Event* _ev
    cdef int32_t* _batch         # scratch: the entries of the bucket being processed
    cdef Py_ssize_t _batch_cap
    cdef Py_ssize_t _nev
    cdef Py_ssize_t _evcap
    cdef bint _oom
    cdef pthread_mutex_t _mutex
    cdef unsigned long _owner
    cdef bint _sysclock
    cdef object _clock
    cdef tuple _states
    cdef Index _ix               # agent id -> slot (_index.pxi)
    cdef uint32_t _gen_base
    cdef list _ids               # slot -> agent id
    cdef dict _meta              # slot -> list of metadata per ring position
    cdef dict _stopped           # agent id -> (timestamps, metadata list or None)
    cdef int64_t _stopped_total
    cdef int64_t _stopped_limit          # -1: keep every stopped history
    cdef list _events
    cdef public object notify    # called, outside the lock, when record_heartbeat queued events
    cdef public object unknown   # called, outside the lock, with an id that is not monitored
    cdef public object wake      # called, outside the lock, when a sooner deadline was armed
    cdef readonly int64_t heartbeats     # recorded since the engine started
    cdef readonly int64_t transitions
    cdef readonly int64_t recoveries
    cdef readonly int64_t wheel_ops      # entries the wheel has cascaded or expired
    cdef readonly int64_t active
    cdef readonly int64_t stalls         # observer stalls detected
    cdef readonly int64_t last_stall_ns
    cdef readonly int64_t lag_ns         # how late the last advance processed its first bucket
    cdef readonly int64_t max_lag_ns
    cdef int64_t _guard_ns               # observer-stall guard bound, 0 = off
    cdef int64_t _grace_ns
    cdef int64_t _next_due               # ns when the earliest bucket is due, INT64_MAX if none
    cdef int64_t _hold_from              # deadlines from here on wait for the grace to end
    cdef int64_t _hold_until
    cdef int64_t _last_run               # ns of the previous advance
    cdef int _urgent                     # the wheel thread waits for the lock: let it in first
    cdef bint _fork_locked               # before_fork took the lock (not re-entered)
    cdef int64_t _queue_limit            # transitions kept for the dispatcher, 0 = no limit
    cdef readonly int64_t queued         # transitions published and not yet taken
    cdef readonly int64_t dropped        # transitions dropped at the queue limit

    def __cinit__(self):
        # A plain pthread mutex: about half the cost of a PyThread lock uncontended.
        if pthread_mutex_init(&self._mutex, NULL) != 0:
            raise MemoryError()
        self._stage = <Staged*>PyMem_RawMalloc(STAGE_CAP * sizeof(Staged))
        if self._stage == NULL:
            raise MemoryError()
        self._marks_free = -1
        index_init(&self._ix)            # here: an Engine never holds a NULL index

    def __init__(self, *, int history_size, int tick_ms, clock, tuple states):
        self._hsize = history_size
        # Rows per ring chunk: a power of two, at most 1024, about 1 MiB of history.
        self._chunk_bits = 10
        while self._chunk_bits and (<int64_t>8 * history_size << self._chunk_bits) > RING_CHUNK_BYTES:
            self._chunk_bits -= 1
        self._tick = <int64_t>tick_ms * 1000000
        self._sysclock = clock is None
        self._clock = clock
        self._states = states
        self._ids = []
        self._meta = {}
        self._stopped = {}
        self._events = []
        self._chunk_arrays = []
        self._sleep_tick = INT64_MIN
        self._next_due = INT64_MAX
        self._stopped_limit = -1
        self._hold_from = INT64_MAX
        self._hold_until = INT64_MIN
        self._gen_base = <uint32_t>(int.from_bytes(os.urandom(4), "little") & GEN_MASK)
        self.notify = None
        self.unknown = None
        self.wake = None
        wheel_init(&self._wheel, self._now_mono() // self._tick)
        self._last_run = self._wheel.elapsed * self._tick

    def __dealloc__(self):
        index_free(&self._ix)
        _table_free(self._agents)
        _table_free(self._hot)
        PyMem_RawFree(self._stage)
        PyMem_RawFree(self._started)
        PyMem_RawFree(self._marks)
        PyMem_RawFree(self._rings)
        PyMem_RawFree(self._ev)
        PyMem_RawFree(self._batch)
        _table_free(self._wheel.links)
        pthread_mutex_destroy(&self._mutex)

    # -- locking and clocks ---------------------------------------------------------

    @cython.final
    cdef inline int _lock(self) except -1:
        cdef unsigned long me = PyThread_get_thread_ident()
        if self._owner == me:
            raise RuntimeError("monitor re-entered from inside its own critical section "
                               "(an agent id's __hash__/__eq__ or a finalizer called it)")
        if moai_load(&self._urgent) or pthread_mutex_trylock(&self._mutex) != 0:
            # Wait without the GIL: the holder may be the wheel thread, which needs it back.
            # While the wheel thread waits for the lock, newcomers let it in first: a thread
            # recording heartbeats in a loop would otherwise win the lock back every time.
            with nogil:
                while moai_load(&self._urgent):
                    sched_yield()
                pthread_mutex_lock(&self._mutex)
        self._owner = me
        if self._nstaged:
            # Everything but the fast path itself sees the rings and cold records whole.
            self._scatter()
        return 0

    @cython.final
    cdef inline int _lock_hot(self) except -1:
        # The fast path's lock: as _lock, leaving the staged heartbeats staged.
        cdef unsigned long me = PyThread_get_thread_ident()
        if self._owner == me:
            raise RuntimeError("monitor re-entered from inside its own critical section "
                               "(an agent id's __hash__/__eq__ or a finalizer called it)")
        if moai_load(&self._urgent) or pthread_mutex_trylock(&self._mutex) != 0:
            with nogil:
                while moai_load(&self._urgent):
                    sched_yield()
                pthread_mutex_lock(&self._mutex)
        self._owner = me
        return 0

    @cython.final
    cdef int _lock_urgent(self) except -1:
        # The wheel's lock: ahead of any thread that comes to the lock after it.
        cdef unsigned long me = PyThread_get_thread_ident()
        if self._owner == me:
            raise RuntimeError("monitor re-entered from inside its own critical section "
                               "(an agent id's __hash__/__eq__ or a finalizer called it)")
        if pthread_mutex_trylock(&self._mutex) != 0:
            with nogil:
                moai_store(&self._urgent, 1)
                pthread_mutex_lock(&self._mutex)
                moai_store(&self._urgent, 0)
        self._owner = me
        return 0

    @cython.final
    cdef void _yield_lock(self) noexcept nogil:
        # Inside a long batch, with the lock held: hand it to the waiting wheel, then take it
        # back. Slots stay valid (they are re-checked per handle); no pointer is kept.
        cdef unsigned long me = self._owner
        self._owner = 0
        pthread_mutex_unlock(&self._mutex)
        while moai_load(&self._urgent):
            sched_yield()
        pthread_mutex_lock(&self._mutex)
        self._owner = me

    @cython.final
    cdef inline void _unlock(self) noexcept:
        self._owner = 0
        pthread_mutex_unlock(&self._mutex)

    @cython.final
    cdef inline int64_t _now_mono(self) except? -1:
        cdef timespec ts
        if self._sysclock:
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
        return self._clock.monotonic_ns()

    @cython.final
    cdef inline double _now_wall(self) except? -1.0:
        cdef timespec ts
        if self._sysclock:
            clock_gettime(CLOCK_REALTIME, &ts)
            return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9
        return self._clock.time()

    @cython.final
    cdef inline double* _ring(self, int32_t s) noexcept nogil:
        # s >> bits picks the chunk, s & (2**bits - 1) the row in it.
        return (self._rings[s >> self._chunk_bits]
                + <Py_ssize_t>(s & ((1 << self._chunk_bits) - 1)) * self._hsize)

    @cython.final
    cdef inline int32_t _slot_of(self, object agent_id) except -2:
        # -1 when not monitored. Called with the lock held (or, by the queries that take
        # no lock, holding the GIL: the index restarts a probe that user code disturbed).
        cdef Py_hash_t h
        return self._slot_hash(agent_id, &h)

    @cython.final
    cdef inline int32_t _slot_hash(self, object agent_id, Py_hash_t* h) except -2:
        # _slot_of, also giving the id's hash: the entry is later found again by hash and
        # slot, without running the id's __hash__ or __eq__ a second time.
        cdef Py_ssize_t pos
        cdef IndexEntry* e
        if type(agent_id) is str and (<PyASCIIObject*>agent_id).hash != -1:
            # An exact str caches its hash (-1 until first asked): the same value, no call.
            h[0] = (<PyASCIIObject*>agent_id).hash
        else:
            try:
                h[0] = hash(agent_id)
            except TypeError:
                raise TypeError(f"agent_id must be hashable, got {type(agent_id).__name__}") from None
        # The caller usually passes the very object it registered: when its home entry holds
        # it, that is its entry (keys are unique), found as index_find would, without a call.
        e = &self._ix.table[index_home(&self._ix, h[0])]
        if e.key == <void*>agent_id:
            return e.slot
        pos = index_find(&self._ix, agent_id, h[0])
        return -1 if pos < 0 else self._ix.table[pos].slot

    @cython.final
    cdef inline void _after(self):
        # Hooks run outside the lock: they may re-enter the engine.
        if self._wake_pending:
            self._wake_pending = False
            if self.wake is not None:
                self.wake()

    # -- wheel ----------------------------------------------------------------------

    cdef void _arm(self, int32_t s, int64_t when, int64_t now) noexcept nogil:
        # `now` is the real instant of the arming: the wheel is due to run at the deadline,
        # or at once for a deadline already past (a backdated heartbeat, a field write), so
        # such a deadline never makes the next run look late to the stall guard.
        cdef int64_t run_at
        if when <= self._wheel.elapsed:
            when = self._wheel.elapsed + 1
        elif when - self._wheel.elapsed > MAX_AHEAD:
            when = self._wheel.elapsed + MAX_AHEAD
        wheel_insert(&self._wheel, self._agents, s, when)
        run_at = when * self._tick
        if run_at < now:
            run_at = now
        if run_at < self._next_due:
            self._next_due = run_at
        if when < self._sleep_tick:
            self._sleep_tick = when
            self._wake_pending = True

    cdef void _rearm(self, int32_t s, int64_t now) noexcept nogil:
        # Exact re-arm after a field changed behind the wheel's back.
        cdef Agent* a = &self._agents[s]
        wheel_remove(&self._wheel, self._agents, s)
        if (a.flags & F_CLOCK) and a.reported != ST_FAILED:
            self._arm(s, ceil_div(self._hot[s].mono
                                  + crossing_mult(a.reported, a.threshold) * a.interval_ns,
                                  self._tick), now)
        self._sync(s)

    @cython.final
    cdef inline void _sync(self, int32_t s) noexcept nogil:
        # Hot.fast from the cold record: a live heartbeat may skip the slow path while the
        # agent is HEALTHY with a deadline armed, its clock started, a heartbeat and a
        # history on record and no metadata list (whose ring position it would clear).
        # Whatever changes one of those calls this, or sets fast to INT64_MIN itself.
        cdef Agent* a = &self._agents[s]
        if ((a.flags & (F_ACTIVE | F_CLOCK | F_HB | F_HIST | F_META))
                == (F_ACTIVE | F_CLOCK | F_HB | F_HIST)
                and a.reported == ST_HEALTHY and a.bucket >= 0):
            self._hot[s].fast = a.interval_ns
        else:
            self._hot[s].fast = INT64_MIN

    @cython.final
    cdef inline double _wall_of(self, int32_t s) noexcept nogil:
        # Slot s's last heartbeat wall time, for the wheel (which leaves the stage alone
        # unless it reports something).
        if self._nstaged:
            self._scatter()
        return self._agents[s].last_wall

    cdef void _cross(self, int32_t s, int64_t bound, int64_t at, int64_t now) noexcept nogil:
        # Report, in order, each crossing of slot s due by `bound` (detected at `at`), except
        # those due during an observer stall's grace (the wheel convicts them after it).
        cdef Agent* a = &self._agents[s]
        cdef int64_t d
        cdef int8_t new
        self._hot[s].fast = INT64_MIN     # the caller re-syncs
        while (a.flags & F_CLOCK) and a.reported != ST_FAILED:
            d = self._hot[s].mono + crossing_mult(a.reported, a.threshold) * a.interval_ns
            if d > bound or (now < self._hold_until and d >= self._hold_from):
                return
            new = crossing_next(a.reported, a.threshold)
            self._emit(s, a.reported, new, EV_CROSSING, d, at, self._wall_of(s))
            a.reported = new

    cdef void _settle(self, int32_t s, int64_t t, double wall, int64_t now) noexcept nogil:
        # The agent's last heartbeat becomes t (wall Unix seconds): report only what brings
        # the reported state to the present one, the state of now - t. A recovery (at t)
        # when the present state is less severe; nothing when it is still at least as
        # severe. The crossings of the new silence that are already due (a backdated t) are
        # the wheel's: re-armed in the past, it reports them at its next tick, each once,
        # with their true deadlines, exactly as after a live heartbeat at t.
        cdef Agent* a = &self._agents[s]
        if a.reported != ST_HEALTHY and state_code(now - t, a.interval_ns, a.threshold) < a.reported:
            self._emit(s, a.reported, ST_HEALTHY, EV_RECOVERY, self._hot[s].mono + a.interval_ns,
                       t if t < now else now, wall)
            a.reported = ST_HEALTHY
        self._hot[s].mono = t
        self._hot[s].fast = INT64_MIN     # the caller re-syncs
        a.last_wall = wall
        a.flags |= F_CLOCK | F_HB

    cdef int _emit(self, int32_t s, int prev, int new, int kind, int64_t deadline,
                   int64_t now, double wall) noexcept nogil:
        cdef Event* grown
        cdef Event* e
        cdef Py_ssize_t cap
        if self._nev == self._evcap:
            cap = self._evcap * 2 if self._evcap else 256
            grown = <Event*>PyMem_RawRealloc(self._ev, cap * sizeof(Event))
            if grown == NULL:
                self._oom = True
                return -1
            self._ev = grown
            self._evcap = cap
        e = &self._ev[self._nev]
        self._nev += 1
        e.deadline = deadline
        e.seq = self._agents[s].seq
        e.now = now
        e.last_mono = self._hot[s].mono
        e.last_wall = wall
        e.handle = <int64_t>(<uint64_t>s | (<uint64_t>self._agents[s].gen << 32))
        e.slot = s
        e.prev = <int8_t>prev
        e.new = <int8_t>new
        e.kind = <int8_t>kind
        if kind == EV_CROSSING:
            self.transitions += 1
        else:
            self.recoveries += 1
        return 0

    cdef void _expire(self, int32_t s, int64_t tick, int64_t now) noexcept nogil:
        # Lazy re-arm: the deadline is a lower bound of the next crossing. Look at the
        # last heartbeat and either report every crossing that is due or re-arm.
        cdef Agent* a = &self._agents[s]
        cdef int64_t d
        cdef int8_t new
        while (a.flags & F_CLOCK) and a.reported != ST_FAILED:
            d = self._hot[s].mono + crossing_mult(a.reported, a.threshold) * a.interval_ns
            if ceil_div(d, self._tick) > tick:
                self._arm(s, ceil_div(d, self._tick), now)
                break
            new = crossing_next(a.reported, a.threshold)
            self._emit(s, a.reported, new, EV_CROSSING, d, now, self._wall_of(s))
            a.reported = new
        self._sync(s)

    cdef Py_ssize_t _advance_to(self, int64_t target, int64_t now) noexcept nogil:
        cdef Py_ssize_t start = self._nev
        cdef Py_ssize_t n, i
        cdef int64_t due, d, when
        cdef int b
        cdef int32_t s
        cdef int32_t* batch
        cdef Agent* a
        while True:
            b = wheel_next(&self._wheel, &due)
            if b < 0 or due > target:
                break
            self._wheel.elapsed = due
            # Detach the bucket into a batch, then prefetch each record a few entries
            # ahead of its use: the misses of the batch overlap instead of queueing.
            if self._wheel.lanes[b] > self._batch_cap and self._grow_batch(self._wheel.lanes[b]) < 0:
                break
            n = wheel_take(&self._wheel, self._agents, b, self._batch)
            batch = self._batch
            self.wheel_ops += n
            for i in range(n):
                if i + PREFETCH < n:
                    __builtin_prefetch(&self._agents[batch[i + PREFETCH]])
                    __builtin_prefetch(&self._hot[batch[i + PREFETCH]])
                    __builtin_prefetch(&self._wheel.links[2 * batch[i + PREFETCH]])
                s = batch[i]
                a = &self._agents[s]
                a.bucket = -1
                if a.when > due:
                    # Cascading down a level: re-check the agent now, so one that has
                    # heartbeated since skips straight to its real deadline.
                    d = self._hot[s].mono + crossing_mult(a.reported, a.threshold) * a.interval_ns
                    when = ceil_div(d, self._tick)
                    wheel_insert(&self._wheel, self._agents, s, when if when > a.when else a.when)
                else:
                    self._expire(s, due, now)
        if self._wheel.elapsed < target:
            self._wheel.elapsed = target
        return self._nev - start

    cdef int _grow_batch(self, Py_ssize_t need) noexcept nogil:
        cdef Py_ssize_t cap = self._batch_cap * 2 if self._batch_cap else 1024
        while cap < need:
            cap *= 2
        cdef int32_t* grown = <int32_t*>PyMem_RawRealloc(self._batch, cap * sizeof(int32_t))
        if grown == NULL:
            self._oom = True
            return -1
        self._batch = grown
        self._batch_cap = cap
        return 0

    cdef int _publish(self, Py_ssize_t start) except -1:
        # Hand the events since `start` to Python as one block: the agent ids (looked up
        # with the lock held, while the slots are still theirs) and a structured array.
        cdef Py_ssize_t i, n = self._nev - start
        cdef PyObject* item
        if self._oom:
            self._oom = False
            self._nev = start
            raise MemoryError("no memory for transition events")
        if n == 0:
            return 0
        block = np.empty(n, dtype=EVENT_DTYPE)
        cdef unsigned char[::1] raw = block.view(np.uint8)
        memcpy(&raw[0], &self._ev[start], n * sizeof(Event))
        ids = PyList_New(n)
        for i in range(n):
            item = <PyObject*>PyList_GET_ITEM(self._ids, self._ev[start + i].slot)
            Py_INCREF(<object>item)
            PyList_SET_ITEM(ids, i, <object>item)
        self._events.append((ids, block))
        self._nev = start
        if start == 0 and self._evcap > EV_KEEP:
            # A storm's scratch goes back: memory held follows what is pending, not the
            # largest advance ever seen.
            PyMem_RawFree(self._ev)
            self._ev = NULL
            self._evcap = 0
        self.queued += n
        if self._queue_limit > 0:
            # Bounded memory when the dispatcher cannot keep up (a callback that blocks):
            # the oldest blocks go, counted; the newest is always kept.
            while self.queued > self._queue_limit and len(self._events) > 1:
                n = len(self._events.pop(0)[0])
                self.queued -= n
                self.dropped += n
        return 0

    # -- growth ---------------------------------------------------------------------

    cdef int _grow(self) except -1:
        cdef int32_t cap = self._cap * 2 if self._cap else CHUNK
        cdef Agent* agents = <Agent*>_table_realloc(self._agents, self._cap * sizeof(Agent),
                                                    cap * sizeof(Agent))
        if agents == NULL:
            raise MemoryError()
        self._agents = agents
        cdef Hot* hot = <Hot*>_table_realloc(self._hot, self._cap * sizeof(Hot), cap * sizeof(Hot))
        if hot == NULL:
            raise MemoryError()
        self._hot = hot
        cdef double* started = <double*>PyMem_RawRealloc(self._started, cap * sizeof(double))
        if started == NULL:
            raise MemoryError()
        self._started = started
        cdef int32_t* links = <int32_t*>_table_realloc(self._wheel.links,
                                                       2 * self._cap * sizeof(int32_t),
                                                       2 * cap * sizeof(int32_t))
        if links == NULL:
            raise MemoryError()
        self._wheel.links = links
        cdef int32_t nchunks = (cap >> self._chunk_bits) + 1
        cdef double** rings = <double**>PyMem_RawRealloc(self._rings, nchunks * sizeof(double*))
        if rings == NULL:
            raise MemoryError()
        self._rings = rings
        memset(&self._agents[self._cap], 0, (cap - self._cap) * sizeof(Agent))
        self._ids.extend([None] * (cap - self._cap))
        self._cap = cap
        return 0

    cdef int _add_chunk(self) except -1:
        # Rings come a chunk of agents at a time, when the slots are first used: growth
        # never copies history, and capacity that is not used holds no ring.
        cdef double[:, ::1] view
        cdef Py_ssize_t rows = 1 << self._chunk_bits
        if self._nchunks < ARENA_FROM:
            chunk = np.empty((rows, self._hsize), dtype=np.float64)
        else:
            if self._arena is None or self._arena.full():
                self._arena = _RingArena(rows * self._hsize * <Py_ssize_t>sizeof(double))
            chunk = self._arena.take(rows, self._hsize)
        view = chunk
        self._chunk_arrays.append(chunk)
        self._rings[self._nchunks] = &view[0, 0]
        self._nchunks += 1
        return 0

    # -- registration -----------------------------------------------------------------

    cdef int32_t _claim(self, object agent_id, int64_t interval_ns, int32_t threshold,
                        int64_t now, double wall, Py_hash_t* hash_out) except -2:
        # With the lock held: -1 if already monitored, else a slot prepared and indexed but
        # not yet active (see _activate). The id's __hash__/__eq__ run only in the lookup
        # and the index insert; if either raises, nothing has changed, and the insert is
        # undone by _unclaim without running any user code.
        cdef int32_t s
        cdef uint32_t gen
        cdef Agent* a
        if self._slot_hash(agent_id, hash_out) >= 0:
            return -1
        if self._nfree:
            s = self._free
            gen = self._agents[s].gen
        else:
            if self._high == self._cap:
                self._grow()
            if (self._high >> self._chunk_bits) == self._nchunks:
                self._add_chunk()
            s = self._high
            gen = self._gen_base
        a = &self._agents[s]          # a free slot: no flag set, nothing reads its fields
        a.gen = gen
        a.interval_ns = interval_ns
        a.threshold = threshold
        a.reported = ST_HEALTHY
        a.head = 0
        a.count = 0
        a.marks = -1
        a.ring_mono = 0
        a.last_wall = 0.0
        a.bucket = -1
        self._hot[s].mono = now
        self._hot[s].fast = INT64_MIN
        self._started[s] = wall
        index_insert(&self._ix, agent_id, hash_out[0], s)
        if self._nfree:
            self._free = self._wheel.links[2 * s]
            self._nfree -= 1
        else:
            self._high += 1
        return s

    cdef int _unclaim(self, int32_t s, bint from_free, Py_hash_t h) except -1:
        # Undo a claim (the newest not yet undone): found by its hash and slot, no user code.
        index_delete(&self._ix, index_find_slot(&self._ix, h, s))
        if from_free:
            self._wheel.links[2 * s] = self._free
            self._free = s
            self._nfree += 1
        else:
            self._high -= 1
        return 0

    cdef void _activate(self, int32_t s, object agent_id, bint start_clock, int64_t now):
        # Commit a claimed slot; runs no user code.
        cdef Agent* a = &self._agents[s]
        a.flags = F_ACTIVE | F_HIST
        self._agents[s].seq = self._next_seq
        self._next_seq += 1
        self._ids[s] = agent_id
        self.active += 1
        if start_clock:
            a.flags |= F_CLOCK
            self._arm(s, ceil_div(now + a.interval_ns, self._tick), now)

    def start(self, agent_id, int64_t interval_ns, int32_t threshold, bint start_clock):
        """Register an agent; False if it is already monitored."""
        cdef int32_t s
        cdef int64_t now
        cdef bint from_free
        cdef Py_hash_t h
        self._lock()
        try:
            now = self._now_mono()
            from_free = self._nfree > 0
            s = self._claim(agent_id, interval_ns, threshold, now, self._now_wall(), &h)
            if s < 0:
                return False
            if self._stopped:
                # A history kept from an earlier monitoring is replaced by an empty one.
                try:
                    old = self._stopped.pop(agent_id, None)
                except BaseException:
                    self._unclaim(s, from_free, h)
                    raise
                if old is not None:
                    self._stopped_total -= len(old[0])
            self._activate(s, agent_id, start_clock, now)
        finally:
            self._unlock()
        self._after()
        return True

    def stop(self, agent_id):
        """Stop monitoring; the history is kept. False if the agent was not monitored."""
        cdef int32_t s
        cdef Agent* a
        cdef Py_hash_t h
        self._lock()
        try:
            s = self._slot_hash(agent_id, &h)
            if s < 0:
                return False
            a = &self._agents[s]
            hist = None
            if a.flags & F_HIST:
                ts, order = self._ordered(s)
                meta = self._meta.get(s)
                if meta is not None:
                    meta = [meta[i] for i in order]
                hist = (ts, meta)
                # The one step that can raise (the id's __hash__/__eq__): before any change.
                self._stopped[agent_id] = hist
            # Committed: no user code from here on (the entry is found by hash and slot).
            index_delete(&self._ix, index_find_slot(&self._ix, h, s))
            self._meta.pop(s, None)
            wheel_remove(&self._wheel, self._agents, s)
            if hist is not None:
                self._stopped_total += len(hist[0])
            a.flags = 0
            self._hot[s].fast = INT64_MIN
            self._marks_release(s)
            a.gen = (a.gen + 1) & GEN_MASK
            self._ids[s] = None
            self._wheel.links[2 * s] = self._free
            self._free = s
            self._nfree += 1
            self.active -= 1
            self._trim_stopped(False)
        finally:
            self._unlock()
        return True

    cdef int _trim_stopped(self, bint strict) except -1:
        # Drop the oldest stopped histories beyond the limit (dicts keep insertion order).
        # Popping hashes a stored id again; after a committed stop (not strict) an id that
        # raises just stays until the next trim.
        while 0 <= self._stopped_limit < len(self._stopped):
            oldest = next(iter(self._stopped))
            try:
                old = self._stopped.pop(oldest)
            except BaseException:
                if strict:
                    raise
                return 0
            self._stopped_total -= len(old[0])
        return 0

    def set_stopped_limit(self, int64_t limit):
        """Keep at most `limit` stopped histories (-1: all)."""
        self._lock()
        try:
            self._stopped_limit = limit
            self._trim_stopped(True)
        finally:
            self._unlock()

    def stopped_count(self):
        return len(self._stopped)

    def clear_stopped(self):
        """Drop every stopped agent's history; returns how many."""
        self._lock()
        try:
            n = len(self._stopped)
            self._stopped.clear()
            self._stopped_total = 0
        finally:
            self._unlock()
        return n

    cdef tuple _ordered(self, int32_t s):
        # The ring of slot s, oldest first, and the ring positions in that order.
        cdef Agent* a = &self._agents[s]
        cdef double* ring = self._ring(s)
        cdef Py_ssize_t n = a.count, i, first = (a.head - a.count) % self._hsize
        if first < 0:
            first += self._hsize
        out = np.empty(n, dtype=np.float64)
        cdef double[::1] o = out
        order = []
        for i in range(n):
            o[i] = ring[(first + i) % self._hsize]
            order.append((first + i) % self._hsize)
        return out, order

    # -- wall-clock step markers (core/_steps.py) --------------------------------------

    cdef int32_t _marks_take(self) noexcept nogil:
        # A free marker block (the pool doubles when none is left), or -1 without memory.
        cdef int32_t b, cap
        cdef MarkBlock* grown
        if self._marks_free < 0:
            cap = self._nmarks_cap * 2 if self._nmarks_cap else 64
            grown = <MarkBlock*>PyMem_RawRealloc(self._marks, cap * sizeof(MarkBlock))
            if grown == NULL:
                return -1
            self._marks = grown
            b = cap - 1
            while b >= self._nmarks_cap:
                grown[b].next_free = self._marks_free
                self._marks_free = b
                b -= 1
            self._nmarks_cap = cap
        b = self._marks_free
        self._marks_free = self._marks[b].next_free
        self._marks[b].n = 0
        return b

    @cython.final
    cdef inline void _marks_release(self, int32_t s) noexcept nogil:
        cdef int32_t b = self._agents[s].marks
        if b >= 0:
            self._marks[b].next_free = self._marks_free
            self._marks_free = b
            self._agents[s].marks = -1

    cdef void _step_mark(self, int32_t s, int32_t pos, double corr) noexcept nogil:
        # Two stores into the slot's marker block; when all are live, the smallest
        # correction of the STEP_MARKS + 1 is the one dropped (the older of equal ones kept).
        cdef Agent* a = &self._agents[s]
        cdef MarkBlock* m
        cdef int i, low = 0
        if a.marks < 0:
            a.marks = self._marks_take()
            if a.marks < 0:
                self._marks_dropped += 1
                return
        m = &self._marks[a.marks]
        if m.n < STEP_MARKS:
            m.pos[m.n] = pos
            m.corr[m.n] = corr
            m.n += 1
            return
        for i in range(1, STEP_MARKS):
            if fabs(m.corr[i]) < fabs(m.corr[low]):
                low = i
        if fabs(corr) > fabs(m.corr[low]):
            m.pos[low] = pos
            m.corr[low] = corr

    cdef void _step_purge(self, int32_t s, int32_t pos) noexcept nogil:
        # Forget the markers at ring position pos (the last one takes the freed place).
        cdef MarkBlock* m = &self._marks[self._agents[s].marks]
        cdef int i = 0
        while i < m.n:
            if m.pos[i] == pos:
                m.n -= 1
                m.pos[i] = m.pos[m.n]
                m.corr[i] = m.corr[m.n]
            else:
                i += 1
        if m.n == 0:
            self._marks_release(s)

    cdef void _step_rebase(self, int32_t s, double* buf) noexcept nogil:
        # buf holds slot s's records oldest first: add each live marker's correction to
        # the records before it, so consecutive differences are monotonic intervals.
        cdef Agent* a = &self._agents[s]
        cdef MarkBlock* m
        cdef Py_ssize_t first = a.head - a.count, o, j
        cdef int i
        if a.marks < 0:
            return
        m = &self._marks[a.marks]
        if first < 0:
            first += self._hsize
        for i in range(m.n):
            o = m.pos[i] - first
            if o < 0:
                o += self._hsize
            if 1 <= o < a.count:
                for j in range(o):
                    buf[j] += m.corr[i]

    def steps(self, agent_id):
        """The live step markers of a monitored agent, in stored order: (index in its
        history of the first record after the step, correction in s); [] for none."""
        cdef int32_t s
        cdef Agent* a
        cdef Py_ssize_t first, o
        cdef int i
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s < 0:
                return []
            a = &self._agents[s]
            first = a.head - a.count
            if first < 0:
                first += self._hsize
            out = []
            if a.marks < 0:
                return out
            for i in range(self._marks[a.marks].n):
                o = self._marks[a.marks].pos[i] - first
                if o < 0:
                    o += self._hsize
                out.append((o, self._marks[a.marks].corr[i]))
            return out
        finally:
            self._unlock()

    # -- the hot path -----------------------------------------------------------------

    @cython.final
    cdef inline void _ring_beat(self, int32_t s, int64_t t, double wall) noexcept nogil:
        # The history half of a heartbeat of slot s at t (monotonic ns) and `wall` (Unix s):
        # its ring record and any wall-clock step marker.
        cdef Agent* a = &self._agents[s]
        cdef int32_t pos = a.head
        cdef double* ring = self._ring(s)
        cdef double corr = 0.0
        if a.count > 0:
            if a.marks >= 0 and a.count == self._hsize:
                # The oldest record goes: a marker on the record after it has no interval.
                self._step_purge(s, pos + 1 if pos + 1 < self._hsize else 0)
            if self._hsize > 1:
                # A wall-clock step since the newest record (core/_steps.py): a few
                # arithmetic operations on records already in cache.
                corr = step_correction(wall, ring[pos - 1 if pos > 0 else self._hsize - 1],
                                       t, a.ring_mono)
        ring[pos] = wall
        a.ring_mono = t
        a.head = pos + 1 if pos + 1 < self._hsize else 0
        if a.count < self._hsize:
            a.count += 1
        if corr != 0.0:
            self._step_mark(s, pos, corr)

    cdef void _scatter(self) noexcept nogil:
        # Write the staged heartbeats into their rings and records, oldest first, as
        # _beat would have written them one by one. Each record is prefetched RECORD_AHEAD
        # entries ahead and its ring line RING_AHEAD ahead (the head read then hits the
        # prefetched record: a miss takes about as long as 30 heartbeats that hit),
        # so the misses of the whole stage overlap instead of each stalling a heartbeat.
        cdef Py_ssize_t i, n = self._nstaged
        cdef Staged* g = self._stage
        cdef int32_t s
        cdef int32_t pos
        cdef double* ring
        for i in range(n):
            if i + RECORD_AHEAD < n:
                __builtin_prefetch(&self._agents[g[i + RECORD_AHEAD].slot])
            if i + RING_AHEAD < n:
                s = <int32_t>g[i + RING_AHEAD].slot
                pos = self._agents[s].head
                ring = self._ring(s)
                __builtin_prefetch(ring + pos, 1)
                __builtin_prefetch(ring + (pos - 1 if pos > 0 else self._hsize - 1))
            s = <int32_t>g[i].slot
            self._ring_beat(s, g[i].mono, g[i].wall)
            self._agents[s].last_wall = g[i].wall
        self._nstaged = 0

    cdef int _beat(self, int32_t s, int64_t t, double wall, int64_t now) noexcept nogil:
        # One heartbeat of slot s, with the lock held and nothing staged: recorded at t
        # (monotonic ns, <= now; earlier for a backdated one) and `wall` (Unix s); `now` is
        # the real instant. The caller stores any metadata. Returns 1 when it queued events.
        cdef Agent* a = &self._agents[s]
        cdef Hot* h = &self._hot[s]
        cdef int64_t due
        cdef Py_ssize_t start
        self.heartbeats += 1
        self._ring_beat(s, t, wall)
        if (a.reported == ST_HEALTHY and a.bucket >= 0 and now - t < a.interval_ns
                and not ((a.flags & F_CLOCK) and t - h.mono >= a.interval_ns)):
            # Healthy before and after, nothing due: the armed deadline is a lower bound of
            # the new one (the wheel re-arms lazily).
            h.mono = t
            a.last_wall = wall
            a.flags |= F_CLOCK | F_HB | F_HIST
            self._sync(s)
            return 0
        # Slow path: crossings the wheel has not reached yet, up to the heartbeat (they
        # happened), then what the heartbeat makes true now, then the next deadline.
        start = self._nev
        if self._guard_ns > 0 and (a.flags & F_CLOCK) and now - h.mono >= a.interval_ns:
            self._check_stall(now)
        self._cross(s, t, t, now)
        self._settle(s, t, wall, now)
        a.flags |= F_HIST
        if a.reported == ST_FAILED:
            wheel_remove(&self._wheel, self._agents, s)   # nothing left to detect
        else:
            due = ceil_div(h.mono + crossing_mult(a.reported, a.threshold) * a.interval_ns,
                           self._tick)
            if a.bucket < 0 or a.when > due:
                # A recovery from CRITICAL can leave a FAILED deadline (T * I) pending beyond
                # the new DEGRADED one (I): move it in.
                wheel_remove(&self._wheel, self._agents, s)
                self._arm(s, due, now)
        self._sync(s)
        return 1 if self._nev > start else 0

    def record_heartbeat(self, agent_id, metadata=None):
        """Record a heartbeat now; False (nothing recorded) if the agent is not monitored."""
        cdef int32_t s
        cdef int queued = 0
        cdef int64_t now
        cdef double wall
        cdef bint has_meta = False
        cdef Hot* h
        cdef Staged* g
        if metadata is not None:
            if type(metadata) is not dict and not isinstance(metadata, Mapping):
                raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
            has_meta = bool(metadata)   # user code: before anything changes
        self._lock_hot()
        try:
            s = self._slot_of(agent_id)
            if s >= 0:
                now = self._now_mono()
                wall = self._now_wall()
                h = &self._hot[s]
                if now - h.mono < h.fast and not has_meta:
                    # The fast path (see _sync): the hot record and a sequential append;
                    # the ring and the cold record are written in bulk by _scatter.
                    if self._nstaged == STAGE_CAP:
                        self._scatter()
                    g = &self._stage[self._nstaged]
                    g.mono = now
                    g.wall = wall
                    g.slot = s
                    self._nstaged += 1
                    h.mono = now
                    self.heartbeats += 1
                else:
                    if self._nstaged:
                        self._scatter()
                    if has_meta or (self._agents[s].flags & F_META):
                        self._store_meta(s, self._agents[s].head, metadata if has_meta else None)
                    queued = self._beat(s, now, wall, now)
                    if queued:
                        self._publish(0)
        finally:
            self._unlock()
        if s < 0:
            if self.unknown is not None:   # outside the lock: it may log or call back
                self.unknown(agent_id)
            return False
        if queued and self.notify is not None:
            self.notify()
        if self._wake_pending:
            self._after()
        return True

    cdef int _store_meta(self, int32_t s, int32_t pos, object metadata) except -1:
        lst = self._meta.get(s)
        if lst is None:
            lst = [None] * self._hsize
            self._meta[s] = lst
            self._agents[s].flags |= F_META
            self._hot[s].fast = INT64_MIN
        lst[pos] = metadata
        return 0

    def check_agent_health(self, agent_id):
        """The state function now. ValueError for an unknown agent."""
        cdef int64_t now = self._now_mono()
        cdef int32_t s = self._slot_of(agent_id)
        if s < 0:
            raise ValueError(f"Agent {agent_id} not being monitored")
        if now - self._hot[s].mono < self._hot[s].fast:
            return self._states[ST_HEALTHY]   # fast set: clock started, this interval
        return self._states[state_of(&self._agents[s], self._hot[s].mono, now)]

    # -- the wheel thread ---------------------------------------------------------------

    def advance(self):
        """Process every deadline due by now (clock read under the lock); returns crossings.

        Observer-stall guard: when this call comes more than the guard bound after the
        earliest deadline it should have processed, the monitor itself was stalled (thread
        starved, process suspended, long GC). Then nothing due since that deadline is
        convicted until a grace period has passed, so agents can report first."""
        cdef int64_t now, target, due
        cdef Py_ssize_t start, n = 0
        cdef int b
        self._lock_urgent()
        try:
            now = self._now_mono()
            self._check_stall(now)
            self._last_run = now
            target = now // self._tick
            if now < self._hold_until:
                target = min(target, self._hold_from // self._tick - 1)
            start = self._nev
            b = wheel_next(&self._wheel, &due)
            if b >= 0 and due <= target:
                self.lag_ns = now - due * self._tick
                if self.lag_ns > self.max_lag_ns:
                    self.max_lag_ns = self.lag_ns
            if b >= 0 and due <= target and self._wheel.lanes[b] >= NOGIL_BUCKET:
                # A storm: let other threads run Python meanwhile. A small advance keeps
                # the GIL, since taking it back can cost a whole switch interval.
                with nogil:
                    n = self._advance_to(target, now)
                    if n > 1:
                        qsort(&self._ev[start], n, sizeof(Event), _event_order)
            else:
                n = self._advance_to(target, now)
                if n > 1:
                    qsort(&self._ev[start], n, sizeof(Event), _event_order)
            self._next_due = due * self._tick if wheel_next(&self._wheel, &due) >= 0 else INT64_MAX
            self._publish(start)
        finally:
            self._unlock()
        return n

    def before_fork(self):
        """Hold the lock across fork(), so the child never copies a half-done update. A
        fork from inside the engine's own critical section (an id's __hash__, a finalizer)
        already holds it: the lock is then left to that critical section."""
        self._fork_locked = self._owner != PyThread_get_thread_ident()
        if self._fork_locked:
            self._lock()

    def after_fork_parent(self):
        if self._fork_locked:
            self._fork_locked = False
            self._unlock()

    def after_fork_child(self):
        # The child has one thread; the lock it copied was held by that thread's parent
        # twin, so a fresh one is both correct and free (unless that thread is inside the
        # critical section, which releases it as usual).
        if self._fork_locked:
            self._fork_locked = False
            pthread_mutex_init(&self._mutex, NULL)
            self._owner = 0
        self._urgent = 0
        self.wake = None

    cdef void _check_stall(self, int64_t now) noexcept nogil:
        # Late against both the earliest deadline and the previous run: a wheel that was
        # idle, or that is running in a grace period, is not stalled. Called by advance
        # and by a heartbeat that finds a crossing (after a suspension, queued heartbeats
        # can arrive before the wheel runs).
        if (self._guard_ns > 0 and self._next_due != INT64_MAX and now >= self._hold_until
                and now - max(self._next_due, self._last_run) > self._guard_ns):
            self.stalls += 1
            self.last_stall_ns = now - max(self._next_due, self._last_run)
            # Held: what falls due from the wheel's last run on, or from the start of the
            # previous stall when the wheel never ran after that one's grace. A time both
            # engines share (the next due is a bucket start here, an exact tick there).
            if self._last_run >= self._hold_until:
                self._hold_from = self._last_run
            self._hold_until = now + self._grace_ns

    def set_stall_guard(self, int64_t guard_ns, int64_t grace_ns):
        """Turn the observer-stall guard on (guard_ns > 0) or off (0)."""
        self._guard_ns = guard_ns
        self._grace_ns = grace_ns

    def next_deadline_ns(self):
        """Monotonic ns at which the earliest occupied bucket is due, or None if none;
        a deadline armed sooner from now on triggers the `wake` hook."""
        cdef int64_t due
        cdef int b
        self._lock_hot()    # the wheel alone: the staged heartbeats stay staged
        try:
            b = wheel_next(&self._wheel, &due)
            self._sleep_tick = due if b >= 0 else INT64_MAX
            self._wake_pending = False
        finally:
            self._unlock()
        return due * self._tick if b >= 0 else None

    def take_events(self):
        """Hand over the queued transition events, oldest first."""
        self._lock_hot()    # a list swap: the staged heartbeats (the rings) stay staged
        try:
            events = self._events
            self._events = []
            self.queued = 0
        finally:
            self._unlock()
        return events

    def now(self):
        return self._now_mono(), self._now_wall()

    def set_queue_limit(self, int64_t limit):
        """Keep at most `limit` transitions waiting in take_events' queue (0: no limit):
        past it the oldest blocks are dropped and counted in `dropped`."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._queue_limit = limit


include "_engine_views.pxi"
include "_engine_batch.pxi"
