# History ring memory of the compiled engine (included by _engine_c.pyx). A large swarm's
# rings come from arenas in huge pages: a batch over 10**6 agents writes one line in each
# of 10**6 rings (800 MB), and with 4 KiB pages nearly every one of those writes would
# also miss the TLB.

cdef extern from *:
    """
    static int moai_fill_buffer(Py_buffer* v, PyObject* o, void* p, Py_ssize_t n, int flags) {
        PyObject* old = v->obj;      /* Cython's placeholder reference (None) */
        int r = PyBuffer_FillInfo(v, o, p, n, 0, flags);
        if (r == 0) Py_XDECREF(old);
        return r;
    }
    """
    int moai_fill_buffer(Py_buffer* v, object o, void* p, Py_ssize_t n, int flags) except -1

cdef enum:
    ARENA_FROM = 2         # ring chunks of an engine before it takes them from arenas
    ARENA_CHUNKS = 64      # ring chunks per arena, at least, unless that passes:
    ARENA_MAX = 67108864   # 64 MiB of address space per arena (or one chunk, if larger)


@cython.final
cdef class _RingArena:
    """Room for ARENA_CHUNKS ring chunks or more (fewer past ARENA_MAX) in 2 MiB-aligned
    memory advised as huge pages: whole huge pages, as many chunks as fit in them.

    The numpy arrays over its chunks keep it alive (their base is a buffer of it), so a
    history view outlives the engine safely. tracemalloc sees each chunk when it is
    handed out: the room not yet used is address space, not memory."""

    cdef char* _base
    cdef Py_ssize_t _chunk_bytes
    cdef Py_ssize_t _size
    cdef int _used
    cdef int _room

    def __cinit__(self, Py_ssize_t chunk_bytes):
        cdef void* p = NULL
        cdef Py_ssize_t want = chunk_bytes * ARENA_CHUNKS
        if want > ARENA_MAX:
            # Long histories: a few chunks per arena, so that a swarm of a few agents does
            # not reserve gigabytes of address space.
            want = chunk_bytes if chunk_bytes > ARENA_MAX else ARENA_MAX
        # (x + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1) rounds x up to whole huge pages.
        self._size = (want + HUGE_PAGE - 1) & ~(<Py_ssize_t>HUGE_PAGE - 1)
        if posix_memalign(&p, HUGE_PAGE, <size_t>self._size) != 0:
            raise MemoryError()
        madvise(p, <size_t>self._size, MADV_HUGEPAGE)
        self._base = <char*>p
        self._chunk_bytes = chunk_bytes
        self._used = 0
        self._room = <int>(self._size // chunk_bytes)

    def __dealloc__(self):
        cdef int k
        if self._base == NULL:
            return
        for k in range(self._used):
            PyTraceMalloc_Untrack(TRACE_DOMAIN, <uintptr_t>(self._base + k * self._chunk_bytes))
        free(self._base)

    def __getbuffer__(self, Py_buffer* buf, int flags):
        # The whole arena as writable bytes (numpy's frombuffer views its chunks).
        moai_fill_buffer(buf, self, self._base, self._size, flags)

    def __releasebuffer__(self, Py_buffer* buf):
        # Nothing to release; its presence makes numpy hold the export as a memoryview.
        pass

    cdef inline bint full(self) noexcept:
        return self._used == self._room

    cdef object take(self, Py_ssize_t rows, Py_ssize_t hsize):
        # The next chunk (not full: the caller checked), as a (rows, hsize) float64 array.
        chunk = np.frombuffer(self, dtype=np.float64, count=rows * hsize,
                              offset=self._used * self._chunk_bytes).reshape(rows, hsize)
        PyTraceMalloc_Track(TRACE_DOMAIN, <uintptr_t>(self._base + self._used * self._chunk_bytes),
                            <size_t>self._chunk_bytes)
        self._used += 1
        return chunk
