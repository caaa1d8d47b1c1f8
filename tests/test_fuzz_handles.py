"""Issue 10, item 5: no handle crashes the process. Every batch API (facade and engine) is
fuzzed with hypothesis over the whole int64 range, handles near live ones (other slot,
other generation, bit 31 of the slot set) and dtype / shape / contiguity / read-only
variants, on both engines. A handle that is not live reads as "not monitored" everywhere.
CI also runs this file against the debug build (MOAI_FLOW_FAST_CYTHON_DEBUG=1)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HeartbeatMonitor, VirtualClock

INT64 = st.integers(-(2 ** 63), 2 ** 63 - 1)
# Handles that crashed the compiled engine (issue 10): bit 31 of the low 32 bits set.
BIT31 = [2 ** 31, 2 ** 31 + 5, (1 << 32) | 2 ** 31, -(2 ** 31), 2 ** 32 - 1, -1, -(2 ** 63),
         2 ** 63 - 1, 0]
IDS = [f"a{i}" for i in range(6)]
FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _monitor(engine):
    clock = VirtualClock(start=1000.0, wall_start=1_700_000_000.0)
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, history_size=4,
                         engine=engine, clock=clock)
    m.start_monitoring_many(IDS)
    m.stop_monitoring("a2")                      # a stale handle and a free slot
    m.start_monitoring("a2")                     # the slot reused with a new generation
    for k in range(3):
        clock.advance(0.5)
        m.record_heartbeats(IDS[: 3 + k])
    return m, clock


def _near(live: list[int]) -> st.SearchStrategy[int]:
    """Handles one bit or one generation away from a live one, and slot-range edges."""
    def vary(h: int, bit: int, delta: int) -> int:
        v = (h ^ (1 << bit)) + delta
        return ((v + 2 ** 63) % 2 ** 64) - 2 ** 63      # wrap into int64
    return st.builds(vary, st.sampled_from(live), st.integers(0, 63), st.integers(-3, 3))


def _handles(m):
    live = m.handles(IDS).tolist()
    return st.lists(st.one_of(INT64, st.sampled_from(BIT31), st.sampled_from(live),
                              _near(live)), max_size=24)


def _check_all(m, clock, hs: list[int]) -> None:
    """Every handle API on `hs`: non-live handles read as absent, live ones as their agent."""
    live = dict(zip(m.handles(IDS).tolist(), IDS))
    arr = np.array(hs, dtype=np.int64)
    want_ids = [live.get(h) for h in hs]
    assert m.agent_ids(arr) == want_ids
    assert m._engine.ids_of(arr) == want_ids
    before = {a: len(m.get_heartbeat_history(a)) for a in IDS}
    mask = m.record_heartbeats(arr)
    assert mask.tolist() == [h in live for h in hs]
    beats = {a: want_ids.count(a) for a in IDS}
    assert {a: len(m.get_heartbeat_history(a)) for a in IDS} == \
        {a: min(4, before[a] + beats[a]) for a in IDS}
    stamps = np.full(len(hs), clock.time() - 0.25)
    m.record_heartbeats(arr, stamps)             # backdated: accepted or rejected, no crash
    padded = m.histories(arr)
    assert padded.shape == (len(hs), 4)
    values, offsets = m.histories(arr, layout="flat")
    assert offsets.shape == (len(hs) + 1,) and offsets[-1] == len(values)
    for i, h in enumerate(hs):
        if h not in live:
            assert np.isnan(padded[i]).all() and offsets[i + 1] == offsets[i]
        else:
            ref = [r["timestamp"] for r in m.get_heartbeat_history(live[h])]
            assert values[offsets[i]:offsets[i + 1]].tolist() == ref
    stats = m.interval_stats(arr)
    assert stats["handle"].tolist() == hs
    for i, h in enumerate(hs):
        if h not in live:
            assert stats["count"][i] == 0 and math.isnan(stats["mean"][i])
    phis = m.phi(arr)
    assert phis.shape == (len(hs),)
    assert all(math.isnan(p) for p, h in zip(phis.tolist(), hs) if h not in live)
    # The engine's own entry points validate too (services call them directly).
    eng = m._engine
    assert eng.record_many(arr, None).tolist() == [h in live for h in hs]
    assert eng.histories(arr, True).shape == (len(hs), 4)
    raw = eng.interval_stats(arr, -math.inf, math.inf, m._fleet._kernel)
    assert raw.shape == (len(hs), 9)
    counts = m.get_monitoring_stats()
    assert counts["total_agents"] == len(IDS)


@FUZZ
@given(data=st.data())
def test_fuzz_int64_handles_every_api(engine, data):
    m, clock = _monitor(engine)
    try:
        _check_all(m, clock, data.draw(_handles(m)))
    finally:
        m.shutdown()


@pytest.mark.parametrize("h", BIT31)
def test_bit31_handles_are_not_live(engine, h):
    m, clock = _monitor(engine)
    try:
        _check_all(m, clock, [h, h, *m.handles(IDS[:2]).tolist()])
    finally:
        m.shutdown()


DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", ">i8",
          "<i4", ">u8"]


@FUZZ
@given(data=st.data(), dtype=st.sampled_from(DTYPES), step=st.sampled_from([1, 2, 3, -1]),
       readonly=st.booleans())
def test_fuzz_dtype_shape_contiguity_readonly(engine, data, dtype, step, readonly):
    m, _clock = _monitor(engine)
    try:
        info = np.iinfo(np.dtype(dtype))
        raw = data.draw(st.lists(st.integers(int(info.min), int(info.max)), max_size=20))
        live = m.handles(IDS).tolist()
        base = np.array(raw, dtype=dtype)
        if step != 1 and len(base):
            base = np.repeat(base, abs(step))[::step]   # a strided (non-contiguous) view
        if readonly:
            base.flags.writeable = False
        as_int64 = base.astype(np.int64).tolist()     # the facade's documented conversion
        assert m.agent_ids(base) == [None if h not in live else IDS[live.index(h)]
                                     for h in as_int64]
        assert m.record_heartbeats(base).tolist() == [h in live for h in as_int64]
        assert m.histories(base).shape == (len(as_int64), 4)
        assert len(m.interval_stats(base)) == len(as_int64)
        assert len(m.phi(base)) == len(as_int64)
    finally:
        m.shutdown()


@pytest.mark.parametrize("bad", [np.zeros((2, 2), dtype=np.int64), np.zeros((), dtype=np.int64),
                                 np.zeros((1, 3), dtype=np.uint32)])
def test_handle_arrays_of_wrong_shape_are_rejected(engine, bad):
    m, _ = _monitor(engine)
    try:
        for call in (m.agent_ids, m.record_heartbeats, m.histories, m.interval_stats, m.phi):
            with pytest.raises(ValueError, match="1-D"):
                call(bad)
    finally:
        m.shutdown()


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros(3, dtype=np.complex128),
                                 np.zeros(3, dtype=bool), np.zeros(3, dtype="M8[s]")])
def test_handle_arrays_of_wrong_dtype_are_rejected(engine, bad):
    m, _ = _monitor(engine)
    try:
        for call in (m.agent_ids, m.record_heartbeats, m.histories, m.interval_stats, m.phi):
            with pytest.raises(TypeError):
                call(bad)
    finally:
        m.shutdown()


def test_engine_entry_points_reject_out_of_range_without_crash(engine):
    """Direct engine calls with handles whose slot exceeds the table, negative ones and
    every generation: nothing is recorded, nothing crashes."""
    m, _ = _monitor(engine)
    try:
        eng = m._engine
        live = set(m.handles(IDS).tolist())
        slots = np.arange(-70, 70, dtype=np.int64)
        cand = np.concatenate([slots, slots | (1 << 31), (slots & 0xFFFFFFFF) | (7 << 32),
                               np.array(sorted(live), dtype=np.int64) + (1 << 32)])
        cand = np.array([h for h in cand.tolist() if h not in live], dtype=np.int64)
        before = eng.heartbeats
        assert not eng.record_many(cand, None).any()
        assert not eng.record_many(cand, np.zeros(len(cand))).any()
        assert eng.heartbeats == before
        assert eng.ids_of(cand) == [None] * len(cand)
        assert np.isnan(eng.histories(cand, True)).all()
        vals, offs = eng.histories(cand, False)
        assert len(vals) == 0 and not offs.any()
    finally:
        m.shutdown()
