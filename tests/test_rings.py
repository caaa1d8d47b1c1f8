"""History rings past an engine's first chunks come from huge-page arenas (src/_rings.pxi):
histories across chunk and arena boundaries, views that outlive the monitor, and what
tracemalloc sees of an arena."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from moai_flow_fast import HeartbeatMonitor, VirtualClock

HSIZE = 100                       # a ring chunk: 1024 rows of 100 doubles (800 KiB)
ROWS = 1024
PLAIN = 2 * ROWS                  # slots whose rings are plain numpy chunks (ARENA_FROM)
ARENA = 64 * ROWS                 # slots per arena at this history size (50 MiB exactly)
N = PLAIN + ARENA + ROWS + 7      # into the second arena
EDGES = [0, PLAIN - 1, PLAIN, PLAIN + ROWS, PLAIN + ARENA - 1, PLAIN + ARENA, N - 1]


def _ids(n: int) -> list[str]:
    return [f"r-{i}" for i in range(n)]


def test_histories_across_chunks_and_arenas(engine: str) -> None:
    clock = VirtualClock(start=1000.0)
    m = HeartbeatMonitor(clock=clock, engine=engine, background=False, history_size=HSIZE)
    ids = _ids(N)
    assert m.start_monitoring_many(ids, interval_ms=3_600_000).all()
    handles = m.handles(ids)
    beats = []
    for _ in range(3):                       # the batch path (ring writes in place)
        clock.advance(1.5)
        beats.append(clock.time())
        assert m.record_heartbeats(handles).all()
    last = {}
    for i in EDGES:                          # the per-call path (staged, then scattered)
        clock.advance(0.25)
        last[i] = clock.time()
        assert m.record_heartbeat(ids[i])
    for i in EDGES:
        want = [*beats, last[i]]
        np.testing.assert_allclose(m.history_array(ids[i], copy=True), want, rtol=0, atol=1e-6)
    # Every other agent holds just the three batch heartbeats, none another agent's.
    sample = np.random.default_rng(5).choice(N, size=200, replace=False)
    for i in sample:
        if i not in EDGES:
            assert m.history_array(ids[i], copy=True).tolist() == pytest.approx(beats, abs=1e-9)
    m.shutdown()


@pytest.mark.compiled
def test_a_view_of_an_arena_ring_outlives_the_monitor() -> None:
    clock = VirtualClock(start=50.0)
    m = HeartbeatMonitor(clock=clock, engine="compiled", background=False, history_size=HSIZE)
    ids = _ids(PLAIN + 10)
    m.start_monitoring_many(ids, interval_ms=60_000)
    beats = []
    for _ in range(4):
        clock.advance(1.0)
        beats.append(clock.time())
        m.record_heartbeats(ids)
    view = m.history_array(ids[-1], copy=False)          # a ring in the first arena
    assert not view.flags.writeable and not view.flags.owndata
    m.shutdown()
    del m
    gc.collect()
    junk = [np.full(ROWS * HSIZE, 7.0) for _ in range(64)]   # reuse of freed memory shows
    assert view.tolist() == beats
    del junk


@pytest.mark.compiled
def test_tracemalloc_sees_the_chunks_handed_out_not_the_arena() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        m = HeartbeatMonitor(engine="compiled", background=False, history_size=HSIZE)
        m.start_monitoring_many(_ids(PLAIN + ROWS + 1), interval_ms=60_000)
        used, _ = tracemalloc.get_traced_memory()
        # 4 chunks of 800 KiB (2 plain, 2 from the arena) and the tables: far below the
        # arena's 50 MiB of address space.
        assert 4 * ROWS * HSIZE * 8 <= used - base < 8 * 1024 * 1024
        m.shutdown()
        del m
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        assert after - base < 256 * 1024           # every chunk untracked when freed
    finally:
        tracemalloc.stop()


_GROW_UNDER_A_BATCH = """
import threading, time
import numpy as np
from moai_flow_fast.core._engine_c import Engine

for trial in range(3):
    engine = Engine(history_size=4, tick_ms=10, clock=None, states=(0, 1, 2, 3))
    n = 32768                                  # the tables are full: the next start grows them
    ids = [f"a{i}" for i in range(n)]
    hour = 3_600_000_000_000
    engine.start_many(ids, np.full(n, hour, np.int64), np.full(n, 3, np.int32), True)
    handles = np.tile(engine.handles(ids), 40)
    engine.record_many(handles, None)
    batching, stop = threading.Event(), threading.Event()

    def wheel():
        while not stop.is_set():
            engine.advance()

    def register():
        batching.wait()
        time.sleep(0.001)                      # into the first batch, not before it
        for j in range(40_000):
            engine.start(f"n{j}", hour, 3, True)

    threads = [threading.Thread(target=wheel), threading.Thread(target=register)]
    for t in threads:
        t.start()
    batching.set()
    for _ in range(5):
        assert engine.record_many(handles, None).all()
    stop.set()
    for t in threads:
        t.join()
    assert engine.heartbeats == 6 * len(handles), engine.heartbeats
    assert len(engine.ids()) == n + 40_000
print("ok")
"""


@pytest.mark.compiled
def test_a_batch_that_yields_to_a_registration_follows_the_tables_it_grew() -> None:
    # record_many lets a waiting wheel thread (advance) take the lock every 4096
    # heartbeats, and a registration waiting meanwhile can take it too and grow (move)
    # the agent tables under the batch. A batch that kept its table pointers across the
    # yield wrote into freed memory. In a fresh process with a fixed mmap threshold the
    # freed tables are unmapped, so that is a crash, not a silent write.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = subprocess.run([sys.executable, "-c", _GROW_UNDER_A_BATCH], env=env,
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr[-2000:]


@pytest.mark.compiled
def test_an_arena_buffer_export_keeps_no_reference_behind() -> None:
    m = HeartbeatMonitor(engine="compiled", background=False, history_size=HSIZE)
    ids = _ids(PLAIN + 1)
    m.start_monitoring_many(ids, interval_ms=60_000)
    m.record_heartbeats(ids)
    arena = _arena_of(m.history_array(ids[-1], copy=False))
    assert type(arena).__name__ == "_RingArena"
    refs = sys.getrefcount(None), sys.getrefcount(arena)
    for _ in range(1000):
        memoryview(arena).release()
    assert (sys.getrefcount(None), sys.getrefcount(arena)) == refs
    m.shutdown()


def _arena_of(view: np.ndarray) -> object:
    base: object = view
    while not isinstance(base, memoryview):
        base = base.base            # type: ignore[attr-defined]
    return base.obj


@pytest.mark.compiled
@pytest.mark.parametrize("hsize", [2, 7, 100, 1000, 200_000])
def test_an_arena_is_whole_huge_pages_of_whole_chunks_and_stays_bounded(hsize: int) -> None:
    rows = 1024                     # rows per chunk: a power of two, <= 1 MiB of history
    while rows > 1 and 8 * hsize * rows > 1 << 20:
        rows //= 2
    chunk, huge, cap = 8 * hsize * rows, 2 << 20, 64 << 20
    clock = VirtualClock(start=10.0)
    m = HeartbeatMonitor(clock=clock, engine="compiled", background=False, history_size=hsize)
    ids = _ids(2 * rows + 1)        # the first agent past the two plain chunks
    m.start_monitoring_many(ids, interval_ms=60_000)
    clock.advance(1.0)
    m.record_heartbeats(ids)
    view = m.history_array(ids[-1], copy=False)
    assert view.tolist() == [clock.time()]
    size = memoryview(_arena_of(view)).nbytes
    assert size % huge == 0
    assert size <= max(cap, -(-chunk // huge) * huge)      # a few agents reserve little
    assert size // chunk >= min(64, max(1, cap // chunk))   # many chunks where they fit
    m.shutdown()
