# The agent id index of the compiled engine (Index in _common.pxd; included by
# _engine_c.pyx): id -> slot. Lookups run the ids' __hash__ and __eq__ as a dict does;
# nothing else here runs user code. Keys are borrowed: the engine's slot -> id list owns
# them (and the cyclic GC sees that list), from before an insert to after the delete.

cdef enum:
    INDEX_MIN = 16          # entries in a new index (a power of two)


cdef int index_init(Index* ix) except -1:
    ix.table = <IndexEntry*>_table_realloc(NULL, 0, INDEX_MIN * sizeof(IndexEntry))
    if ix.table == NULL:
        raise MemoryError()
    memset(ix.table, 0, INDEX_MIN * sizeof(IndexEntry))
    ix.mask = INDEX_MIN - 1
    ix.used = 0
    ix.version = 0
    return 0


cdef void index_free(Index* ix) noexcept:
    if ix.table == NULL:
        return
    _table_free(ix.table)
    ix.table = NULL


cdef inline Py_ssize_t index_home(Index* ix, Py_hash_t h) noexcept nogil:
    # The low bits of the hash pick the first entry probed (mask = capacity - 1).
    return <Py_ssize_t>(<size_t>h & <size_t>ix.mask)


cdef inline Py_ssize_t _index_empty(IndexEntry* t, Py_ssize_t mask, Py_hash_t h) noexcept nogil:
    # The first empty entry from h's home in table t (there is one: at most 2/3 full).
    cdef Py_ssize_t i = <Py_ssize_t>(<size_t>h & <size_t>mask)
    while t[i].key != NULL:
        i = (i + 1) & mask
    return i


cdef Py_ssize_t index_find(Index* ix, object key, Py_hash_t h) except -2:
    # The position of key's entry, or -1. When a key's __eq__ changed the index (another
    # thread, while it let the GIL go), the probe starts again, as a dict's does.
    cdef Py_ssize_t i
    cdef IndexEntry* e
    cdef uint64_t version
    cdef object stored
    cdef int eq
    while True:
        i = index_home(ix, h)
        while True:
            e = &ix.table[i]
            if e.key == NULL:
                return -1
            if e.key == <void*>key:
                return i
            if e.hash == h:
                version = ix.version
                stored = <object>e.key      # our own reference while __eq__ runs
                eq = PyObject_RichCompareBool(stored, key, Py_EQ)
                if ix.version != version:
                    break
                if eq:
                    return i
            i = (i + 1) & ix.mask


cdef Py_ssize_t index_find_slot(Index* ix, Py_hash_t h, int32_t slot) noexcept nogil:
    # The position of slot's entry, found by its hash without comparing keys, or -1.
    cdef Py_ssize_t i = index_home(ix, h)
    while ix.table[i].key != NULL:
        if ix.table[i].slot == slot:
            return i
        i = (i + 1) & ix.mask
    return -1


cdef int index_grow(Index* ix) except -1:
    cdef Py_ssize_t cap = (ix.mask + 1) * 2
    cdef Py_ssize_t nmask = cap - 1
    cdef Py_ssize_t i
    cdef IndexEntry* t = <IndexEntry*>_table_realloc(NULL, 0, cap * sizeof(IndexEntry))
    if t == NULL:
        raise MemoryError()
    memset(t, 0, cap * sizeof(IndexEntry))
    for i in range(ix.mask + 1):
        if ix.table[i].key != NULL:
            t[_index_empty(t, nmask, ix.table[i].hash)] = ix.table[i]
    _table_free(ix.table)
    ix.table = t
    ix.mask = nmask
    ix.version += 1
    return 0


cdef int index_insert(Index* ix, object key, Py_hash_t h, int32_t slot) except -1:
    # Add key (not in the index: the caller looked) -> slot. Only MemoryError can stop it,
    # before anything changed. At most two thirds full, as a dict.
    cdef Py_ssize_t i
    if (ix.used + 1) * 3 > (ix.mask + 1) * 2:
        index_grow(ix)
    i = _index_empty(ix.table, ix.mask, h)
    ix.table[i].key = <void*>key
    ix.table[i].hash = h
    ix.table[i].slot = slot
    ix.used += 1
    ix.version += 1
    return 0


cdef void index_delete(Index* ix, Py_ssize_t i) noexcept:
    # Remove the entry at i (nothing for -1). Backward shift: each later entry of the run
    # moves into the hole unless its home lies (cyclically) after the hole, so no probe
    # ever meets a gap before its key and no tombstones are needed.
    cdef Py_ssize_t j = i, home
    if i < 0:
        return
    while True:
        j = (j + 1) & ix.mask
        if ix.table[j].key == NULL:
            break
        home = index_home(ix, ix.table[j].hash)
        # (b - a) & mask is the distance from a forward to b: the hole at i is on the way
        # from j's home to j when it is no nearer to j than the home is.
        if ((j - home) & ix.mask) >= ((j - i) & ix.mask):
            ix.table[i] = ix.table[j]
            i = j
    ix.table[i].key = NULL
    ix.used -= 1
    ix.version += 1


cdef inline void index_prefetch(Index* ix, Py_hash_t h) noexcept nogil:
    __builtin_prefetch(&ix.table[index_home(ix, h)])
