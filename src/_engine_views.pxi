# The per-agent views of the compiled engine (included by _engine_c.pyx): snapshots
# of states, the monitoring_agents records and their write-through, histories.


cdef class _Views(_Core):
    """The queries and views of the documented API over the agent table."""

    # -- snapshots ------------------------------------------------------------------------

    def unhealthy(self, int min_code):
        """Ids whose current state code is >= min_code, in registration order."""
        return self._select(min_code, 0)

    cdef list _select(self, int min_code, int need):
        # Monitored ids with every flag of `need` and a state code >= min_code, in
        # registration order: one critical section, so no id is seen half stopped.
        cdef int64_t now
        cdef int32_t s
        cdef Py_ssize_t n = 0, i
        cdef int64_t* pairs
        cdef bint unsorted = False
        cdef PyObject* item
        self._lock()
        try:
            now = self._now_mono()
            pairs = <int64_t*>PyMem_RawMalloc((self.active + 1) * 2 * sizeof(int64_t))
            if pairs == NULL:
                raise MemoryError()
            with nogil:
                for s in range(self._high):
                    if ((self._agents[s].flags & (F_ACTIVE | need)) == (F_ACTIVE | need)
                            and (min_code == 0 or state_of(&self._agents[s], self._hot[s].mono, now) >= min_code)):
                        pairs[2 * n] = self._agents[s].seq
                        pairs[2 * n + 1] = s
                        if n and pairs[2 * n] < pairs[2 * n - 2]:
                            unsorted = True
                        n += 1
                # Slots are in registration order until a freed slot is reused.
                if unsorted:
                    qsort(pairs, n, 2 * sizeof(int64_t), _slot_order)
            try:
                out = PyList_New(n)
                for i in range(n):
                    item = <PyObject*>PyList_GET_ITEM(self._ids, pairs[2 * i + 1])
                    Py_INCREF(<object>item)
                    PyList_SET_ITEM(out, i, <object>item)
            finally:
                PyMem_RawFree(pairs)
        finally:
            self._unlock()
        return out

    def counts(self):
        """(agents, [healthy, degraded, critical, failed], records held in all histories)."""
        cdef int64_t now
        cdef int32_t s
        cdef int64_t c[4]
        cdef int64_t records = 0
        memset(c, 0, sizeof(c))
        self._lock()
        try:
            now = self._now_mono()
            with nogil:
                for s in range(self._high):
                    if self._agents[s].flags & F_ACTIVE:
                        c[state_of(&self._agents[s], self._hot[s].mono, now)] += 1
                        if self._agents[s].flags & F_HIST:
                            records += self._agents[s].count
            records += self._stopped_total
        finally:
            self._unlock()
        return self.active, [c[0], c[1], c[2], c[3]], records

    def pending_deadlines(self):
        return self._wheel.armed

    # -- per-agent views ------------------------------------------------------------------

    def ids(self):
        """Monitored ids in registration order."""
        return self._select(0, 0)

    def __len__(self):
        return self._ix.used

    def __contains__(self, agent_id):
        return self._slot_of(agent_id) >= 0

    def info(self, agent_id):
        """(interval_ns, threshold, last_wall, reported, started_wall) or None."""
        cdef int32_t s
        cdef Agent* a
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s < 0:
                return None
            a = &self._agents[s]
            return (a.interval_ns, a.threshold, a.last_wall if a.flags & F_HB else 0,
                    a.reported, self._started[s])
        finally:
            self._unlock()

    def set_field(self, agent_id, str field, value):
        """Write-through for the Part A record: moves the wheel entry to match. A
        last_heartbeat write reports what it makes true now, as a backdated heartbeat
        does (see _settle); the monotonic instant saturates far from int64's limits."""
        cdef int32_t s
        cdef Agent* a
        cdef int64_t now
        cdef double wall
        cdef Py_ssize_t start = self._nev
        cdef bint queued = False
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s < 0:
                raise KeyError(agent_id)
            a = &self._agents[s]
            now = self._now_mono()
            if field == "last_heartbeat":
                if value:
                    wall = self._now_wall()
                    self._settle(s, mono_before(now, wall - <double>value), <double>value, now)
                else:
                    a.last_wall = 0.0
                    a.flags &= ~(F_CLOCK | F_HB)
                    self._hot[s].fast = INT64_MIN
            elif field == "last_state":
                a.reported = value
            elif field == "interval_ns":
                a.interval_ns = value
            elif field == "failure_threshold":
                a.threshold = value
            elif field == "started_at":
                self._started[s] = value
            else:
                raise KeyError(field)
            self._rearm(s, now)
            queued = self._nev > start
            if queued:
                self._publish(start)
        finally:
            self._unlock()
        if queued and self.notify is not None:
            self.notify()
        self._after()

    # -- history --------------------------------------------------------------------------

    def history_ids(self):
        """Ids that have a history: monitored ones first (registration order), then stopped."""
        out = self._select(0, F_HIST)
        out.extend(self._stopped)
        return out

    def history(self, agent_id):
        """(timestamps oldest first, metadata list or None), or None when there is none."""
        cdef int32_t s
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s < 0:
                return self._stopped.get(agent_id)
            if not (self._agents[s].flags & F_HIST):
                return None
            ts, order = self._ordered(s)
            meta = self._meta.get(s)
            return ts, (None if meta is None else [meta[i] for i in order])
        finally:
            self._unlock()

    def history_len(self, agent_id):
        """Records held for agent_id, or -1 when it has no history."""
        cdef int32_t s
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s >= 0:
                return self._agents[s].count if self._agents[s].flags & F_HIST else -1
            old = self._stopped.get(agent_id)
            return -1 if old is None else len(old[0])
        finally:
            self._unlock()

    def drop_history(self, agent_id):
        """Forget an agent's history; False when it had none."""
        cdef int32_t s
        self._lock()
        try:
            s = self._slot_of(agent_id)
            if s >= 0:
                if not (self._agents[s].flags & F_HIST):
                    return False
                self._agents[s].count = 0
                self._agents[s].head = 0
                self._marks_release(s)
                self._agents[s].flags &= ~(F_HIST | F_META)
                self._hot[s].fast = INT64_MIN
                self._meta.pop(s, None)
                return True
            old = self._stopped.pop(agent_id, None)
            if old is None:
                return False
            self._stopped_total -= len(old[0])
            return True
        finally:
            self._unlock()
