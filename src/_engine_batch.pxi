# Batch and analytics half of the compiled Engine (included by _engine_c.pyx): handles,
# batch registration and heartbeats, history arrays, interval statistics, snapshots.

_POOL = None


def _stats_pool():
    # One pool for the process: the statistics kernel releases the GIL, so ring chunks
    # are computed on every CPU.
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0))),
                                   thread_name_prefix="moai-flow-fast-stats")
    return _POOL


def _forget_pool():
    # A forked child has none of the pool's threads: start a new pool when needed.
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


@cython.final
cdef class Engine(_Views):
    """Agent table + timer wheel + rings. Every method is safe from any thread."""


    @cython.final
    cdef inline int32_t _live(self, int64_t h) noexcept nogil:
        # The slot of a live handle, or -1 (unknown, stopped, or from a reused slot).
        cdef int32_t s
        if h < 0:
            return -1
        s = <int32_t>(h & SLOT_MASK)
        if s >= self._high or not (self._agents[s].flags & F_ACTIVE):
            return -1
        if self._agents[s].gen != <uint32_t>(h >> 32):
            return -1
        return s

    def all_handles(self):
        """Handles of every monitored agent, in registration order."""
        cdef Py_ssize_t n = 0, i
        cdef int32_t s
        cdef bint unsorted = False
        cdef int64_t* pairs
        cdef int64_t[::1] hv
        self._lock()
        try:
            pairs = <int64_t*>PyMem_RawMalloc((self.active + 1) * 2 * sizeof(int64_t))
            if pairs == NULL:
                raise MemoryError()
            try:
                for s in range(self._high):
                    if self._agents[s].flags & F_ACTIVE:
                        pairs[2 * n] = self._seq[s]
                        pairs[2 * n + 1] = s
                        if n and pairs[2 * n] < pairs[2 * n - 2]:
                            unsorted = True
                        n += 1
                if unsorted:
                    qsort(pairs, n, 2 * sizeof(int64_t), _slot_order)
                out = np.empty(n, dtype=np.int64)
                hv = out
                for i in range(n):
                    s = <int32_t>pairs[2 * i + 1]
                    hv[i] = <int64_t>(<uint64_t>s | (<uint64_t>self._agents[s].gen << 32))
            finally:
                PyMem_RawFree(pairs)
        finally:
            self._unlock()
        return out

    def handles(self, agent_ids, str name="agent_ids"):
        """int64 handles of `agent_ids`, -1 where an id is not monitored."""
        out = np.empty(len(agent_ids), dtype=np.int64)
        cdef int64_t[::1] o = out
        cdef Py_ssize_t i = 0
        get = self._index.get
        for agent_id in agent_ids:
            try:
                h = get(agent_id)
            except TypeError:
                raise TypeError(f"{name}[{i}] must be hashable, "
                                f"got {type(agent_id).__name__}") from None
            o[i] = -1 if h is None else <int64_t>h
            i += 1
        return out

    def ids_of(self, const int64_t[::1] handles):
        """The ids of `handles`, None where a handle is not live."""
        cdef Py_ssize_t i
        cdef int32_t s
        out = []
        self._lock()
        try:
            for i in range(handles.shape[0]):
                s = self._live(handles[i])
                out.append(None if s < 0 else self._ids[s])
        finally:
            self._unlock()
        return out

    def start_many(self, agent_ids, const int64_t[::1] interval_ns,
                   const int32_t[::1] thresholds, bint start_clock):
        """Register many agents at one instant; bool mask of those newly registered."""
        cdef Py_ssize_t i = 0
        cdef int64_t now
        cdef double wall
        out = np.zeros(len(agent_ids), dtype=np.bool_)
        cdef unsigned char[::1] o = out.view(np.uint8)
        self._lock()
        try:
            now = self._now_mono()
            wall = self._now_wall()
            for agent_id in agent_ids:
                o[i] = self._register(agent_id, interval_ns[i], thresholds[i], start_clock,
                                      now, wall) >= 0
                i += 1
        finally:
            self._unlock()
        self._after()
        return out

    def record_many(self, const int64_t[::1] handles, walls):
        """Heartbeats in input order, as record_heartbeat in a loop would record them: now
        (walls None), or at the given Unix seconds (a time in the future counts as now; one
        before the agent's last heartbeat is rejected). Bool mask of those recorded."""
        cdef Py_ssize_t i, n = handles.shape[0]
        cdef int32_t s
        cdef int64_t now, mono
        cdef double wall, t
        cdef bint given = walls is not None
        cdef const double[::1] w
        cdef int queued = 0
        out = np.zeros(n, dtype=np.bool_)
        cdef unsigned char[::1] o = out.view(np.uint8)
        if given:
            w = walls
        self._lock()
        try:
            now = self._now_mono()
            wall = self._now_wall()
            for i in range(n):
                if i + PREFETCH < n and 0 <= (handles[i + PREFETCH] & SLOT_MASK) < self._high:
                    __builtin_prefetch(&self._agents[handles[i + PREFETCH] & SLOT_MASK])
                s = self._live(handles[i])
                if s < 0:
                    continue
                if not given:
                    queued |= self._beat(s, now, wall, None)
                else:
                    t = w[i] if w[i] < wall else wall
                    mono = now - <int64_t>((wall - t) * 1e9)
                    if (self._agents[s].flags & F_HB) and mono < self._agents[s].last_mono:
                        continue
                    queued |= self._beat(s, mono, t, None)
                o[i] = 1
            if queued:
                self._publish(0)
        finally:
            self._unlock()
        if queued and self.notify is not None:
            self.notify()
        if self._wake_pending:
            self._after()
        return out

    @cython.final
    cdef inline Py_ssize_t _copy_ring(self, int32_t s, double* dst) noexcept nogil:
        # Slot s's records, oldest first, into dst; returns how many.
        cdef Agent* a = &self._agents[s]
        cdef double* ring = self._ring(s)
        cdef Py_ssize_t n = a.count, first = a.head - a.count
        if first < 0:
            first += self._hsize
        if first + n <= self._hsize:
            memcpy(dst, ring + first, n * sizeof(double))
        else:
            memcpy(dst, ring + first, (self._hsize - first) * sizeof(double))
            memcpy(dst + self._hsize - first, ring, (n - self._hsize + first) * sizeof(double))
        return n

    def history_array(self, agent_id, bint copy):
        """One agent's timestamps, oldest first, or None when it has no history. Without
        `copy`, an unwrapped ring comes back as a read-only view (valid until the ring is
        next written)."""
        cdef int32_t s
        cdef Agent* a
        cdef Py_ssize_t first
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s < 0:
                old = self._stopped.get(agent_id)
                return None if old is None else old[0].copy()
            a = &self._agents[s]
            if not (a.flags & F_HIST):
                return None
            first = a.head - a.count
            if not copy and first >= 0:
                view = self._chunk_arrays[s >> self._chunk_bits][
                    s & ((1 << self._chunk_bits) - 1), first:a.head]
                view.flags.writeable = False
                return view
            out = np.empty(a.count, dtype=np.float64)
            if a.count:
                self._copy_ring(s, _data(out))
            return out
        finally:
            self._unlock()

    def histories(self, const int64_t[::1] handles, bint padded):
        """Timestamps of many agents: a NaN-padded (n, history_size) array, or a flat
        array with n + 1 offsets. Handles that are not live give empty rows."""
        cdef Py_ssize_t i, n = handles.shape[0], total = 0
        cdef int32_t s
        cdef double* base
        cdef int64_t[::1] off
        self._lock()
        try:
            if padded:
                out = np.full((n, self._hsize), np.nan)
                if n:
                    base = _data(out)
                    for i in range(n):
                        s = self._live(handles[i])
                        if s >= 0:
                            self._copy_ring(s, base + i * self._hsize)
                return out
            offsets = np.zeros(n + 1, dtype=np.int64)
            off = offsets
            for i in range(n):
                s = self._live(handles[i])
                total += self._agents[s].count if s >= 0 else 0
                off[i + 1] = total
            values = np.empty(total, dtype=np.float64)
            if total:
                base = _data(values)
                for i in range(n):
                    s = self._live(handles[i])
                    if s >= 0:
                        self._copy_ring(s, base + off[i])
            return values, offsets
        finally:
            self._unlock()

    def interval_stats(self, const int64_t[::1] handles, double lo, double hi, kernel):
        """Per-agent interval statistics (kernel columns), rows in handle order; handles
        that are not live give count 0 and NaN. The kernel runs once per ring chunk, the
        chunks spread over the CPUs (it releases the GIL), all under the engine lock."""
        cdef Py_ssize_t i, n = handles.shape[0], m = 0
        cdef int32_t s
        cdef bint ordered = True
        cdef int64_t prev = -1
        out = np.full((n, 9), np.nan)
        out[:, 0] = 0.0
        where = np.empty(n, dtype=np.int64)
        slots = np.empty(n, dtype=np.int64)
        heads = np.empty(n, dtype=np.int32)
        counts = np.empty(n, dtype=np.int32)
        cdef int64_t[::1] wv = where, sv = slots
        cdef int32_t[::1] hv = heads, cv = counts
        self._lock()
        try:
            for i in range(n):
                s = self._live(handles[i])
                if s < 0:
                    continue
                wv[m] = i
                sv[m] = s
                hv[m] = self._agents[s].head
                cv[m] = self._agents[s].count if self._agents[s].flags & F_HIST else 0
                if s < prev:
                    ordered = False
                prev = s
                m += 1
            if m == 0:
                return out
            where, slots, heads, counts = where[:m], slots[:m], heads[:m], counts[:m]
            if not ordered:
                # Group by chunk: agents of one chunk must be contiguous for one call.
                order = np.argsort(slots, kind="stable")
                where, slots, heads, counts = where[order], slots[order], heads[order], counts[order]
            rows = slots & ((1 << self._chunk_bits) - 1)
            chunk_of = slots >> self._chunk_bits
            cuts = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1).tolist(), m]
            part = out if (m == n and ordered) else np.empty((m, 9))
            chunks = self._chunk_arrays
            starts = cuts[:-1]
            chunk_ids = chunk_of[starts].tolist()

            def one(int j):
                a, b = cuts[j], cuts[j + 1]
                kernel(chunks[chunk_ids[j]], heads[a:b], counts[a:b], rows[a:b], lo, hi,
                       part, a)

            if len(starts) > 1 and m * self._hsize >= 1 << 18:
                list(_stats_pool().map(one, range(len(starts))))
            else:
                for j in range(len(starts)):
                    one(j)
            if part is not out:
                out[where] = part
        finally:
            self._unlock()
        return out

    def snapshot(self):
        """Every monitored agent at one instant, in registration order: (ids, handles,
        state codes, elapsed ns (-1 before the clock starts), interval count, mean and std
        of intervals (seconds), now_mono, now_wall)."""
        cdef Py_ssize_t n = 0, i, j, k, c
        cdef int64_t now
        cdef double wall, mean, var, x
        cdef int32_t s
        cdef Agent* a
        cdef int64_t* pairs
        cdef bint unsorted = False
        cdef double* buf
        cdef PyObject* item
        cdef int64_t[::1] hv, ev, cv
        cdef int8_t[::1] sv
        cdef double[::1] mv, dv
        self._lock()
        try:
            now = self._now_mono()
            wall = self._now_wall()
            pairs = <int64_t*>PyMem_RawMalloc((self.active + 1) * 2 * sizeof(int64_t))
            buf = <double*>PyMem_RawMalloc((self._hsize + 1) * sizeof(double))
            if pairs == NULL or buf == NULL:
                PyMem_RawFree(pairs)
                PyMem_RawFree(buf)
                raise MemoryError()
            try:
                for s in range(self._high):
                    if self._agents[s].flags & F_ACTIVE:
                        pairs[2 * n] = self._seq[s]
                        pairs[2 * n + 1] = s
                        if n and pairs[2 * n] < pairs[2 * n - 2]:
                            unsorted = True
                        n += 1
                if unsorted:
                    qsort(pairs, n, 2 * sizeof(int64_t), _slot_order)
                handles = np.empty(n, dtype=np.int64)
                states = np.empty(n, dtype=np.int8)
                elapsed = np.empty(n, dtype=np.int64)
                count = np.empty(n, dtype=np.int64)
                means = np.empty(n, dtype=np.float64)
                stds = np.empty(n, dtype=np.float64)
                hv = handles
                sv = states
                ev = elapsed
                cv = count
                mv = means
                dv = stds
                ids = PyList_New(n)
                for i in range(n):
                    s = <int32_t>pairs[2 * i + 1]
                    a = &self._agents[s]
                    item = <PyObject*>PyList_GET_ITEM(self._ids, s)
                    Py_INCREF(<object>item)
                    PyList_SET_ITEM(ids, i, <object>item)
                    hv[i] = <int64_t>(<uint64_t>s | (<uint64_t>a.gen << 32))
                    sv[i] = state_of(a, now)
                    ev[i] = now - a.last_mono if a.flags & F_CLOCK else -1
                    # Mean, then variance about it: two passes over at most H values.
                    k = self._copy_ring(s, buf) if a.flags & F_HIST else 0
                    c = k - 1 if k > 1 else 0
                    mean = var = NAN
                    if c:
                        mean = (buf[k - 1] - buf[0]) / c
                        var = 0.0
                        for j in range(1, k):
                            x = buf[j] - buf[j - 1] - mean
                            var += x * x
                        var /= c
                    cv[i] = c
                    mv[i] = mean
                    dv[i] = sqrt(var)
            finally:
                PyMem_RawFree(pairs)
                PyMem_RawFree(buf)
        finally:
            self._unlock()
        return ids, handles, states, elapsed, count, means, stds, now, wall
