# Batch and analytics half of the compiled Engine (included by _engine_c.pyx): handles,
# batch registration and heartbeats, history arrays, interval statistics, snapshots.

@cython.final
cdef class Engine(_Views):
    """Agent table + timer wheel + rings. Every method is safe from any thread."""


    @cython.final
    cdef inline int32_t _live(self, int64_t h) noexcept nogil:
        # The slot of a live handle, or -1: negative, a slot outside the table (the low 32
        # bits are compared as a 64-bit number, never as a possibly negative int32), a free
        # slot, or another generation (stopped, or the slot reused).
        cdef int64_t slot
        if h < 0:
            return -1
        slot = h & SLOT_MASK
        if slot >= self._high or not (self._agents[slot].flags & F_ACTIVE):
            return -1
        if self._agents[slot].gen != <uint32_t>(h >> 32):
            return -1
        return <int32_t>slot

    @cython.final
    cdef inline int64_t _handle(self, int32_t s) noexcept:
        # slot | generation << 32
        return <int64_t>(<uint64_t>s | (<uint64_t>self._agents[s].gen << 32))

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
                        pairs[2 * n] = self._agents[s].seq
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
        cdef Py_ssize_t n = len(agent_ids)
        # A copy: the ids' __eq__ may run, and could change the caller's list meanwhile.
        cdef list items = list(agent_ids)
        if len(items) != n:
            raise ValueError(f"{name} changed size while it was read")
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] o = out
        cdef Py_ssize_t i, pos
        cdef Py_hash_t h
        for i in range(n):
            if i + INDEX_AHEAD < n:
                # The entry of an id a few places on, while this one is looked up: its
                # miss overlaps. Only for ids whose hash runs no user code (and is cached).
                nxt = items[i + INDEX_AHEAD]
                if type(nxt) is str or type(nxt) is int:
                    index_prefetch(&self._ix, hash(nxt))
            agent_id = items[i]
            try:
                h = hash(agent_id)
            except TypeError:
                raise TypeError(f"{name}[{i}] must be hashable, "
                                f"got {type(agent_id).__name__}") from None
            pos = index_find(&self._ix, agent_id, h)
            o[i] = -1 if pos < 0 else self._handle(self._ix.table[pos].slot)
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
        """Register many agents at one instant; bool mask of those newly registered. All or
        nothing: if an id's __hash__ or __eq__ raises, no agent of the call is registered."""
        cdef Py_ssize_t i, k, n
        cdef int64_t now
        cdef double wall
        cdef int32_t s
        cdef Py_hash_t h
        ids = list(agent_ids)
        n = len(ids)
        if interval_ns.shape[0] != n or thresholds.shape[0] != n:
            raise ValueError("interval_ns and thresholds need one value per agent id")
        out = np.zeros(n, dtype=np.bool_)
        cdef unsigned char[::1] o = out.view(np.uint8)
        self._lock()
        try:
            now = self._now_mono()
            wall = self._now_wall()
            # 1. Lookups only (the ids' __hash__/__eq__ may raise: nothing has changed yet):
            # which ids are new, first occurrence, and which replace a stopped history.
            seen = {}
            fresh = []
            for i in range(n):
                agent_id = ids[i]
                if self._slot_of(agent_id) >= 0 or agent_id in seen:
                    continue
                seen[agent_id] = i
                fresh.append(i)
            stopped = None
            removed = 0
            if self._stopped:
                restarted = [i for i in fresh if ids[i] in self._stopped]
                if restarted:
                    # Popped from a copy, swapped in at the commit.
                    stopped = dict(self._stopped)
                    for i in restarted:
                        removed += len(stopped.pop(ids[i])[0])
            # 2. Claims: each index insert is undone, newest first, if a later one raises.
            claims = []
            try:
                for i in fresh:
                    from_free = self._nfree > 0
                    s = self._claim(ids[i], interval_ns[i], thresholds[i], now, wall, &h)
                    if s < 0:
                        # Phase 1 found it new, the claim found it monitored: an __eq__
                        # that changes its mind. Refused, as an id that raised would be.
                        raise ValueError(f"agent_ids[{i}] compares inconsistently "
                                         f"(its __eq__ changed its answer)")
                    claims.append((s, from_free, h))
            except BaseException:
                for s, from_free, h in reversed(claims):
                    self._unclaim(s, from_free, h)
                raise
            # 3. Commit: no user code from here on.
            if stopped is not None:
                self._stopped = stopped
                self._stopped_total -= removed
            for k in range(len(fresh)):
                i = fresh[k]
                self._activate(claims[k][0], ids[i], start_clock, now)
                o[i] = 1
        finally:
            self._unlock()
        self._after()
        return out

    cdef Py_ssize_t _beat_run(self, const int64_t* handles, const double* w, unsigned char* o,
                              Py_ssize_t i, Py_ssize_t n, int64_t now, double wall,
                              int* queued) noexcept nogil:
        # Heartbeats i.. of a batch, without the GIL. Stops at a slot that keeps metadata
        # (its ring position must be cleared with the GIL) and returns its index, else n.
        # The tables move only when a registration grows them, which takes the lock: they
        # are read again after each _yield_lock.
        cdef Agent* agents = self._agents
        cdef Hot* hot = self._hot
        cdef int64_t high = self._high
        cdef int32_t s
        cdef int64_t mono, p, beats = 0
        cdef double t
        cdef Py_ssize_t k = 0
        cdef int32_t pos
        cdef double* ring
        while i < n:
            if i + RECORD_AHEAD < n:
                p = handles[i + RECORD_AHEAD] & SLOT_MASK
                if p < high:
                    __builtin_prefetch(&agents[p])
                    __builtin_prefetch(&hot[p])
            if i + RING_AHEAD < n:
                # The record came in RECORD_AHEAD - RING_AHEAD heartbeats ago: its head says
                # which ring line this heartbeat writes (and which one it reads).
                p = handles[i + RING_AHEAD] & SLOT_MASK
                if p < high:
                    pos = agents[p].head
                    ring = self._ring(<int32_t>p)
                    __builtin_prefetch(ring + pos, 1)
                    __builtin_prefetch(ring + (pos - 1 if pos > 0 else self._hsize - 1))
            s = self._live(handles[i])
            if s >= 0:
                if w == NULL and now - hot[s].mono < hot[s].fast:
                    # _beat's healthy branch, less what fast guarantees: the flags are set,
                    # there is no metadata and _sync would store the same fast.
                    self._ring_beat(s, now, wall)
                    hot[s].mono = now
                    agents[s].last_wall = wall
                    beats += 1
                    o[i] = 1
                elif agents[s].flags & F_META:
                    self.heartbeats += beats
                    return i
                elif w == NULL:
                    queued[0] |= self._beat(s, now, wall, now)
                    o[i] = 1
                else:
                    t = w[i] if w[i] < wall else wall
                    mono = trunc_before(now, wall - t)
                    if not ((agents[s].flags & F_HB) and mono < hot[s].mono):
                        queued[0] |= self._beat(s, mono, t, now)
                        o[i] = 1
            i += 1
            k += 1
            if k == YIELD_EVERY:
                k = 0
                self.heartbeats += beats      # counted before another thread may look
                beats = 0
                if moai_load(&self._urgent):
                    self._yield_lock()
                    # Others held the lock meanwhile: a registration may have grown the tables.
                    agents = self._agents
                    hot = self._hot
                    high = self._high
        self.heartbeats += beats
        return n

    def record_many(self, const int64_t[::1] handles, walls):
        """Heartbeats in input order, as record_heartbeat in a loop would record them: now
        (walls None), or at the given Unix seconds (a time in the future counts as now; one
        before the agent's last heartbeat is rejected). Bool mask of those recorded. A large
        batch runs without the GIL; any lets a waiting wheel thread take the lock every few
        thousand heartbeats."""
        cdef Py_ssize_t i = 0, n = handles.shape[0]
        cdef int32_t s
        cdef int64_t now, mono
        cdef double wall, t
        cdef bint given = walls is not None
        cdef const double[::1] w
        cdef const double* wp = NULL
        cdef int queued = 0
        out = np.zeros(n, dtype=np.bool_)
        if n == 0:
            return out
        cdef unsigned char[::1] o = out.view(np.uint8)
        if given:
            w = walls
            if w.shape[0] != n:
                raise ValueError(f"walls has {w.shape[0]} values for {n} handles")
            wp = &w[0]
        self._lock()
        try:
            now = self._now_mono()
            wall = self._now_wall()
            while i < n:
                if n >= NOGIL_BATCH:
                    with nogil:
                        i = self._beat_run(&handles[0], wp, &o[0], i, n, now, wall, &queued)
                else:
                    # A smaller batch keeps the GIL: taking it back can cost a switch
                    # interval when another thread is busy in Python.
                    i = self._beat_run(&handles[0], wp, &o[0], i, n, now, wall, &queued)
                if i < n:
                    # A slot that keeps metadata: clear its ring position, then beat it.
                    s = self._live(handles[i])
                    mono, t = now, wall
                    if given:
                        t = w[i] if w[i] < wall else wall
                        mono = trunc_before(now, wall - t)
                    if not (given and (self._agents[s].flags & F_HB)
                            and mono < self._hot[s].mono):
                        self._store_meta(s, self._agents[s].head, None)
                        queued |= self._beat(s, mono, t, now)
                        o[i] = 1
                    i += 1
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

    cdef Py_ssize_t _copy_rows(self, const int64_t[::1] handles, Py_ssize_t* i, Py_ssize_t rows,
                               double[:, ::1] bv, int32_t[::1] hv, int32_t[::1] cv,
                               int64_t[::1] wv, unsigned char[::1] fv, double* raw,
                               double lo, double hi) noexcept nogil:
        # Rings of live handles from i[0] on into bv, at most `rows`; returns how many. A
        # ring with step markers is written rebased instead (fv 1, see _step_row).
        cdef Py_ssize_t m = 0, n = handles.shape[0]
        cdef int32_t s
        while i[0] < n and m < rows:
            s = self._live(handles[i[0]])
            if s >= 0:
                if self._agents[s].marks >= 0 and self._agents[s].flags & F_HIST:
                    cv[m] = self._step_row(s, &bv[m, 0], raw, lo, hi)
                    hv[m] = cv[m] if cv[m] < self._hsize else 0
                    fv[m] = 1
                else:
                    memcpy(&bv[m, 0], self._ring(s), self._hsize * sizeof(double))
                    hv[m] = self._agents[s].head
                    cv[m] = self._agents[s].count if self._agents[s].flags & F_HIST else 0
                    fv[m] = 0
                wv[m] = i[0]
                m += 1
            i[0] += 1
        return m

    @cython.final
    cdef Py_ssize_t _step_row(self, int32_t s, double* dst, double* raw, double lo,
                              double hi) noexcept nogil:
        # Slot s's records oldest first into dst, rebased by its markers; for a finite time
        # range only those whose raw wall-clock time is in it (the kernel then runs on them
        # with no range: core/_steps.py run_kernel). Returns how many.
        cdef Py_ssize_t n = self._copy_ring(s, raw), j, k = 0
        memcpy(dst, raw, n * sizeof(double))
        self._step_rebase(s, dst)
        if lo == -INFINITY and hi == INFINITY:
            return n
        for j in range(n):
            if raw[j] >= lo and raw[j] <= hi:
                dst[k] = dst[j]
                k += 1
        return k

    def interval_stats(self, const int64_t[::1] handles, double lo, double hi, kernel):
        """Per-agent interval statistics (kernel columns), rows in handle order; handles
        that are not live give count 0 and NaN. The rings are copied a block (about 4 MiB)
        at a time under the engine lock, and the kernel (which may start threads) runs on
        the copy with the lock released: no lock of the engine is ever held across a call
        that can wait on another lock. Each agent's row is consistent; the blocks are taken
        one after the other."""
        cdef Py_ssize_t i = 0, n = handles.shape[0], m, rows
        cdef bint release
        out = np.full((n, 9), np.nan)
        out[:, 0] = 0.0
        if n == 0:
            return out
        rows = max(1, min(n, (1 << 19) // self._hsize))
        buf = np.empty((rows, self._hsize), dtype=np.float64)
        heads = np.empty(rows, dtype=np.int32)
        counts = np.empty(rows, dtype=np.int32)
        where = np.empty(rows, dtype=np.int64)
        fixed = np.empty(rows, dtype=np.bool_)
        scratch = np.empty(self._hsize, dtype=np.float64)
        cdef double[:, ::1] bv = buf
        cdef int32_t[::1] hv = heads, cv = counts
        cdef int64_t[::1] wv = where
        cdef unsigned char[::1] fv = fixed.view(np.uint8)
        cdef double* raw = _data(scratch)
        # Small copies keep the GIL (taking it back can cost a switch interval).
        release = rows * self._hsize >= 1 << 16
        while i < n:
            m = 0
            self._lock()
            try:
                if release:
                    with nogil:
                        m = self._copy_rows(handles, &i, rows, bv, hv, cv, wv, fv, raw, lo, hi)
                else:
                    m = self._copy_rows(handles, &i, rows, bv, hv, cv, wv, fv, raw, lo, hi)
            finally:
                self._unlock()
            if m:
                part = np.empty((m, 9))
                run_kernel(kernel, buf[:m], heads[:m], counts[:m], fixed[:m], lo, hi, part)
                out[where[:m]] = part
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
                        pairs[2 * n] = self._agents[s].seq
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
                    sv[i] = state_of(a, self._hot[s].mono, now)
                    ev[i] = now - self._hot[s].mono if a.flags & F_CLOCK else -1
                    # Mean, then variance about it: two passes over at most H values.
                    k = self._copy_ring(s, buf) if a.flags & F_HIST else 0
                    if a.marks >= 0 and k:
                        self._step_rebase(s, buf)   # monotonic intervals
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
