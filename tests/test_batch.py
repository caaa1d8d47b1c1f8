"""Issue 3, batch side: handles, start_monitoring_many, record_heartbeats, history arrays,
the batch alert hook and bad input. Every test runs on both engines (`engine` fixture).

The batch calls are checked against a loop over the scalar API on a *twin* monitor (same
engine, its own VirtualClock moved through the same instants). Instants used by the
equivalence tests lie on a 1/64 s grid, so every monotonic instant and every Unix
timestamp below is exact in float64 and both monitors see identical nanoseconds.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pytest
from hb_model import Recorder, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock
from moai_flow_fast.core._events import AlertBatch
from moai_flow_fast.core._rules import state_code

START = 1000.0
WALL_START = 1_700_000_000.0
START_NS = 1_000_000_000_000
GRID = 15_625_000                       # 1/64 s in ns
SEV = {s: i for i, s in enumerate(HealthState)}
BATCH_FIELDS = ("previous", "current", "kind", "elapsed_s", "deadline_monotonic",
                "detected_monotonic")


def wall_of(mono_ns):
    """The Unix time a VirtualClock(START, WALL_START) shows at monotonic `mono_ns`."""
    return WALL_START + (mono_ns - START_NS) / 1e9


def set_ns(clock, ns):
    clock.set(ns / 1e9)
    assert clock.monotonic_ns() == ns


class BatchLog:
    """Records every AlertBatch handed to a batch_callback."""

    def __init__(self):
        self.calls = []

    def __call__(self, batch):
        assert isinstance(batch, AlertBatch)
        self.calls.append(batch)

    def take(self):
        out, self.calls = self.calls, []
        return out

    @staticmethod
    def flat(batches):
        """All batches concatenated: ids plus each array field (handles excluded, they
        differ between monitors)."""
        out = {"ids": [i for b in batches for i in b.ids]}
        for f in BATCH_FIELDS:
            arrays = [np.asarray(getattr(b, f)) for b in batches]
            out[f] = np.concatenate(arrays).tolist() if arrays else []
        return out


# ----------------------------------------------------------------------------------------
# The twin harness: monitor A takes batch calls, monitor B the equivalent scalar loop.
# ----------------------------------------------------------------------------------------

class Twin:
    def __init__(self, engine, pool, **kw):
        kw.setdefault("interval_ms", 1000)
        kw.setdefault("failure_threshold", 3)
        kw.setdefault("history_size", 6)
        self.pool = list(pool)
        self.ca = VirtualClock(start=START, wall_start=WALL_START)
        self.cb = VirtualClock(start=START, wall_start=WALL_START)
        self.A = HeartbeatMonitor(engine=engine, clock=self.ca, **kw)
        self.B = HeartbeatMonitor(engine=engine, clock=self.cb, **kw)
        # A third monitor, only to have live handles that belong to another monitor.
        self.C = HeartbeatMonitor(engine=engine, clock=VirtualClock(start=START), **kw)
        self.C.start_monitoring_many(self.pool)
        self.foreign = [int(h) for h in self.C.handles(self.pool)]
        self.ra = Recorder().install(self.A, recovery=True)
        self.rb = Recorder().install(self.B, recovery=True)
        self.ba, self.bb = BatchLog(), BatchLog()
        self.A.configure_alerts(batch_callback=self.ba)
        self.B.configure_alerts(batch_callback=self.bb)
        self.now = START_NS
        self.monitored = set()
        self.session = {}          # id -> number of its current (or last) monitoring
        self.handle_info = {}      # handle -> (id, session)
        self.stash = []            # handles seen so far (some become stale)
        self.last = {}             # id -> mono ns of its last heartbeat (current session)
        self.trace = []

    def close(self):
        for m in (self.A, self.B, self.C):
            m.shutdown()

    # -- handles -----------------------------------------------------------------------
    def learn_handles(self, ids):
        hs = self.A.handles(ids)
        assert hs.dtype == np.int64 and hs.shape == (len(ids),)
        for aid, h in zip(ids, hs.tolist()):
            if aid in self.monitored:
                assert h >= 0
                info = (aid, self.session[aid])
                assert self.handle_info.setdefault(h, info) == info, "handle aliased"
                if h not in self.stash:
                    self.stash.append(h)
            else:
                assert h == -1
        return hs

    def target_of(self, h):
        """The id a handle still names, or None (unknown, stale, foreign)."""
        info = self.handle_info.get(h)
        if info is None:
            return None
        aid, sess = info
        if aid in self.monitored and self.session[aid] == sess:
            return aid
        return None

    # -- operations --------------------------------------------------------------------
    def start_many(self, ids, interval_ms, failure_threshold, start_clock):
        self.trace.append(("start_many", ids, interval_ms, failure_threshold, start_clock))
        got = self.A.start_monitoring_many(ids, interval_ms, failure_threshold,
                                           start_clock=start_clock)
        n = len(ids)
        ivs = interval_ms if isinstance(interval_ms, (list, tuple, np.ndarray)) \
            else [interval_ms] * n
        ths = failure_threshold if isinstance(failure_threshold, (list, tuple, np.ndarray)) \
            else [failure_threshold] * n
        exp = []
        for aid, iv, th in zip(ids, ivs, ths):
            iv = None if iv is None else int(iv)
            th = None if th is None else int(th)
            exp.append(self.B.start_monitoring(aid, iv, th, start_clock=start_clock))
            if exp[-1]:
                self.monitored.add(aid)
                self.session[aid] = self.session.get(aid, 0) + 1
                self.last.pop(aid, None)
        assert got.dtype == np.bool_ and got.tolist() == exp, self.trace
        self.learn_handles(list(ids))
        self.check()

    def stop(self, aid):
        self.trace.append(("stop", aid))
        a, b = self.A.stop_monitoring(aid), self.B.stop_monitoring(aid)
        assert a == b, self.trace
        self.monitored.discard(aid)
        self.last.pop(aid, None)
        self.check()

    def beats(self, items, use_handles, entries=None, span=0):
        """items: ids (or, with use_handles, handles). entries: None for 'now', else a
        list of (kind, step) per item: kind "ok" (a past instant, non-decreasing through
        the batch), "future" (after now: counts as now), "stale" (before the agent's last
        heartbeat: rejected)."""
        self.trace.append(("beats", items, use_handles, entries, span))
        t0, t1 = self.now, self.now + span * GRID
        set_ns(self.ca, t1)
        targets = [self.target_of(h) for h in items] if use_handles else list(items)
        stamps = None if entries is None else []
        exp = []
        cursor = t0
        for i, aid in enumerate(targets):
            kind, step = ("now", 0) if entries is None else entries[i]
            live = aid is not None and aid in self.monitored
            if kind == "stale" and not (live and aid in self.last):
                kind = "ok"
            if kind == "now":
                eff = t1
            elif kind == "stale":
                mono = self.last[aid] - GRID * (1 + step)
                stamps.append(wall_of(mono))
                exp.append(False)
                continue
            elif kind == "future":
                cursor = t1
                eff = t1
                stamps.append(wall_of(t1 + GRID * (1 + step)))
            else:
                cursor = min(cursor + step * GRID, t1)
                eff = cursor
                stamps.append(wall_of(eff))
            if aid is None:          # a handle that names nothing: B is not called
                exp.append(False)
                continue
            set_ns(self.cb, eff)
            if kind == "ok" and live and eff < t1:
                # Issue 10: a backdated heartbeat recovers only an agent that is less
                # severe now (at t1) than reported; a live one at eff always does. Where
                # the two differ, this heartbeat is taken at t1 instead (test_replay.py
                # covers the backdated rule itself).
                interval_ns, threshold, *_ = self.B._engine.info(aid)
                reported = max(self.B.monitoring_agents[aid]["last_state"].severity,
                               self.B.check_agent_health(aid).severity)
                if 0 < reported <= state_code(t1 - eff, interval_ns, threshold):
                    cursor = eff = t1
                    stamps[-1] = wall_of(t1)
                    set_ns(self.cb, eff)
            ok = self.B.record_heartbeat(aid)
            assert ok == live, self.trace
            if ok:
                self.last[aid] = eff
            exp.append(ok)
        set_ns(self.cb, t1)
        arg = np.asarray(items, dtype=np.int64) if use_handles else list(items)
        before = len(self.ba.calls)
        got = self.A.record_heartbeats(arg, stamps)
        assert len(self.ba.calls) - before <= 1, "one record_heartbeats call, one block"
        assert got.dtype == np.bool_ and got.tolist() == exp, self.trace
        self.now = t1
        self.check()

    def advance(self, steps):
        self.trace.append(("advance", steps))
        self.now += steps * GRID
        before = len(self.ba.calls)
        na = self.A.advance(to=self.now / 1e9)
        nb = self.B.advance(to=self.now / 1e9)
        assert na == nb, self.trace
        assert len(self.ba.calls) - before == (1 if na else 0)
        self.check()

    # -- comparison ----------------------------------------------------------------------
    def check(self):
        A, B = self.A, self.B
        assert self.ca.monotonic_ns() == self.cb.monotonic_ns() == self.now
        order = list(B.monitoring_agents)
        assert list(A.monitoring_agents) == order, self.trace
        assert set(order) == self.monitored
        assert A.snapshot().ids == order
        assert A.agent_ids(A.interval_stats()["handle"]) == order
        values, offsets = A.histories(layout="flat")
        for i, aid in enumerate(order):
            assert values[offsets[i]:offsets[i + 1]].tolist() == \
                [r["timestamp"] for r in B.get_heartbeat_history(aid)], (aid, self.trace)
        for aid in order:
            assert A.check_agent_health(aid) is B.check_agent_health(aid), (aid, self.trace)
            ra, rb = A.monitoring_agents[aid], B.monitoring_agents[aid]
            for key in ("interval_ms", "failure_threshold", "last_heartbeat", "last_state",
                        "started_at"):
                assert ra[key] == rb[key], (aid, key, self.trace)
        for aid in self.pool:
            ha, hb = A.get_heartbeat_history(aid), B.get_heartbeat_history(aid)
            assert ha == hb, (aid, self.trace)
            assert A.history_array(aid).tolist() == [r["timestamp"] for r in hb]
        sa, sb = A.get_monitoring_stats(), B.get_monitoring_stats()
        assert sa == sb, self.trace
        assert self.ra.events == self.rb.events, self.trace
        assert BatchLog.flat(self.ba.calls) == BatchLog.flat(self.bb.calls), self.trace


POOL = ["a", "b", "c", "d", 7, ("t", 1)]
INTERVALS = [100, 250, 1000, 1500]
THRESHOLDS = [1, 2, 3, 5]


def _random_ops(rng, twin, n_ops):
    for _ in range(n_ops):
        op = rng.choice(["start", "start", "stop", "ids", "ids", "handles", "handles",
                         "ts", "ts", "ts", "advance", "advance", "advance"])
        if op == "start":
            ids = [rng.choice(POOL) for _ in range(rng.randint(0, 6))]
            iv = rng.choice([None, rng.choice(INTERVALS),
                             [rng.choice(INTERVALS) for _ in ids]])
            th = rng.choice([None, rng.choice(THRESHOLDS),
                             np.array([rng.choice(THRESHOLDS) for _ in ids])])
            twin.start_many(ids, iv, th, rng.choice([None, True, False]))
        elif op == "stop":
            twin.stop(rng.choice(POOL))
        elif op == "ids":
            ids = [rng.choice([*POOL, "unknown"]) for _ in range(rng.randint(0, 10))]
            twin.beats(ids, False)
        elif op == "handles":
            twin.learn_handles(POOL)
            pick = twin.stash + twin.foreign + [-1, 1 << 40]
            twin.beats([rng.choice(pick) for _ in range(rng.randint(0, 10))], True)
        elif op == "ts":
            use_h = rng.random() < 0.5
            if use_h:
                twin.learn_handles(POOL)
                items = [rng.choice([*twin.stash, -1]) for _ in range(rng.randint(0, 10))]
            else:
                items = [rng.choice([*POOL, "unknown"]) for _ in range(rng.randint(0, 10))]
            entries = [(rng.choice(["ok", "ok", "ok", "future", "stale"]), rng.randint(0, 40))
                       for _ in items]
            twin.beats(items, use_h, entries, span=rng.randint(0, 200))
        else:
            twin.advance(rng.choice([0, 1, rng.randint(1, 64), rng.randint(64, 640)]))


@pytest.mark.parametrize("seed", range(6))
def test_batch_calls_match_scalar_loop_random(engine, seed):
    """Seeded random sequences of start_monitoring_many / stop / record_heartbeats (ids,
    handles, explicit timestamps) / advance against the scalar loop on a twin."""
    rng = random.Random(seed)
    twin = Twin(engine, POOL, tick_ms=rng.choice([1, 10, 50]),
                start_clock_on_register=rng.random() < 0.3)
    try:
        _random_ops(rng, twin, 120)
        kinds = {e[0] for e in twin.ra.events}
        assert kinds == {"alert", "recovery"}, "the sequence should exercise both"
    finally:
        twin.close()


_start = st.tuples(st.just("start"),
                   st.lists(st.sampled_from(POOL), max_size=5),
                   st.sampled_from([*INTERVALS, None]),
                   st.sampled_from([*THRESHOLDS, None]),
                   st.sampled_from([None, True, False]))
_entries = st.tuples(st.sampled_from(["ok", "ok", "future", "stale"]), st.integers(0, 40))
_ops = st.lists(st.one_of(
    _start,
    st.tuples(st.just("stop"), st.sampled_from(POOL)),
    st.tuples(st.just("ids"), st.lists(st.sampled_from([*POOL, "zz"]), max_size=8)),
    st.tuples(st.just("handles"), st.lists(st.integers(0, 30), max_size=8)),
    st.tuples(st.just("ts"), st.lists(st.tuples(st.sampled_from([*POOL, "zz"]), _entries),
                                      max_size=8), st.integers(0, 200)),
    st.tuples(st.just("advance"), st.sampled_from([0, 1, 3, 32, 64, 100, 130, 200, 400])),
), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=_ops, tick_ms=st.sampled_from([1, 10]))
def test_batch_calls_match_scalar_loop_hypothesis(engine, ops, tick_ms):
    twin = Twin(engine, POOL, tick_ms=tick_ms)
    try:
        for op in ops:
            kind = op[0]
            if kind == "start":
                twin.start_many(list(op[1]), op[2], op[3], op[4])
            elif kind == "stop":
                twin.stop(op[1])
            elif kind == "ids":
                twin.beats(list(op[1]), False)
            elif kind == "handles":
                twin.learn_handles(POOL)
                pick = twin.stash + twin.foreign + [-1]
                twin.beats([pick[i % len(pick)] for i in op[1]], True)
            elif kind == "ts":
                twin.beats([e[0] for e in op[1]], False, [e[1] for e in op[1]], span=op[2])
            else:
                twin.advance(op[1])
    finally:
        twin.close()


# ----------------------------------------------------------------------------------------
# start_monitoring_many
# ----------------------------------------------------------------------------------------

def test_start_monitoring_many_matches_loop_at_scale(engine):
    """500 ids with repeats and pre-registered ones, per-agent intervals and thresholds:
    same mask, registration order, per-agent records and stats; then the same crossings
    (start_clock=True) over several advances."""
    rng = np.random.default_rng(7)
    twin = Twin(engine, [], start_clock_on_register=False)
    try:
        pre = [f"x{i}" for i in range(0, 600, 7)]
        twin.start_many(pre, None, None, None)
        ids = [f"x{i}" for i in rng.integers(0, 600, 500)]
        ivs = rng.choice([100, 250, 1000, 1500], 500)
        ths = rng.choice([1, 2, 3, 5], 500)
        twin.start_many(ids, ivs, ths, True)
        twin.pool = list(twin.monitored)
        stats = twin.A.get_monitoring_stats()
        assert stats["total_agents"] == len(twin.monitored)
        for steps in (3, 7, 20, 64, 100, 200, 400):
            twin.advance(steps)
        assert twin.ra.events, "start_clock=True agents must have crossed thresholds"
    finally:
        twin.close()


def test_start_monitoring_many_one_instant_and_return(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    vclock.advance(1.25)
    mask = m.start_monitoring_many(("a", "b", "a", 3, ("t", 1)), interval_ms=500,
                                   failure_threshold=4)
    assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_
    assert mask.tolist() == [True, True, False, True, True]
    assert list(m.monitoring_agents) == ["a", "b", 3, ("t", 1)]
    started = {m.monitoring_agents[k]["started_at"] for k in m.monitoring_agents}
    assert started == {vclock.time()}
    for k in m.monitoring_agents:
        assert m.monitoring_agents[k]["interval_ms"] == 500
        assert m.monitoring_agents[k]["failure_threshold"] == 4
    assert m.start_monitoring_many([]).tolist() == []
    assert m.start_monitoring_many(["a", "new"]).tolist() == [False, True]
    assert m.monitoring_agents["new"]["interval_ms"] == 1000    # monitor default


# ----------------------------------------------------------------------------------------
# Handles
# ----------------------------------------------------------------------------------------

def test_handles_stable_unknown_and_round_trip(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    ids = ["a", "b", 3, ("t", 1), 2.5]
    m.start_monitoring_many(ids)
    h = m.handles(ids)
    assert h.dtype == np.int64 and (h >= 0).all() and len(set(h.tolist())) == len(ids)
    assert m.agent_ids(h) == ids
    # stable through heartbeats, advances, other registrations and stops
    m.record_heartbeats(h)
    vclock.advance(5)
    m.advance()
    m.start_monitoring_many([f"z{i}" for i in range(3000)])
    m.stop_monitoring("z5")
    assert m.handles(ids).tolist() == h.tolist()
    assert m.handles(["nope", "a", None]).tolist() == [-1, h[0], -1]
    assert m.agent_ids(np.array([-1, h[1], 123456789], dtype=np.int64)) == [None, "b", None]
    assert m.agent_ids(np.array([], dtype=np.int64)) == []
    assert m.handles([]).tolist() == []


class _LyingSequence:
    """A sequence whose len() is not the number of ids it yields."""

    def __init__(self, ids, length):
        self.ids, self.length = ids, length

    def __len__(self):
        return self.length

    def __iter__(self):
        return iter(self.ids)


@pytest.mark.parametrize("length", [0, 2, 5, 50])
def test_ids_whose_len_lies_are_rejected(make_monitor, vclock, length):
    m = make_monitor(interval_ms=1000)
    ids = [f"a{i}" for i in range(4)]
    m.start_monitoring_many(ids)
    before = m.get_monitoring_stats()["total_heartbeats"]
    lying = _LyingSequence(ids, length)
    with pytest.raises(ValueError, match="ids_or_handles changed size while it was read"):
        m.record_heartbeats(lying)
    with pytest.raises(ValueError, match="agent_ids changed size while it was read"):
        m.handles(lying)
    assert m.get_monitoring_stats()["total_heartbeats"] == before   # nothing recorded
    assert m.handles(_LyingSequence(ids, 4)).tolist() == m.handles(ids).tolist()


def test_stale_handle_after_stop_and_restart_is_rejected(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, history_size=10)
    m.start_monitoring_many(["a", "b"])
    old = m.handles(["a", "b"])
    assert m.record_heartbeats(old).tolist() == [True, True]
    m.stop_monitoring("a")
    kept = m.get_heartbeat_history("a")
    assert m.agent_ids(old) == [None, "b"]
    vclock.advance(0.5)
    assert m.record_heartbeats(old).tolist() == [False, True]
    assert m.get_heartbeat_history("a") == kept
    # restart: the id gets a new handle; the old one still names nothing
    assert m.start_monitoring("a")
    new = m.handles(["a"])[0]
    assert new != old[0]
    vclock.advance(0.5)
    before = m.get_heartbeat_history("a")
    assert m.record_heartbeats(np.array([old[0]], dtype=np.int64)).tolist() == [False]
    assert m.get_heartbeat_history("a") == before
    assert m.agent_ids(np.array([old[0], new])) == [None, "a"]
    assert m.record_heartbeats(np.array([new])).tolist() == [True]
    assert len(m.get_heartbeat_history("a")) == len(before) + 1


def test_handles_of_another_monitor_are_rejected(make_monitor, engine):
    m1 = make_monitor(interval_ms=1000)
    m2 = make_monitor(interval_ms=1000, clock=VirtualClock(start=START, wall_start=WALL_START))
    ids = [f"a{i}" for i in range(50)]
    m1.start_monitoring_many(ids)
    m2.start_monitoring_many(ids)
    h2 = m2.handles(ids)
    assert m1.agent_ids(h2) == [None] * 50
    snap = snapshot(m1)
    assert m1.record_heartbeats(h2).tolist() == [False] * 50
    assert snapshot(m1) == snap
    assert m1.histories(h2).shape == (50, 100) and np.isnan(m1.histories(h2)).all()
    assert (m1.interval_stats(h2)["count"] == 0).all()


def test_handle_array_dtypes_accepted(make_monitor):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring_many(["a", "b"])
    h = m.handles(["a", "b"])
    assert m.record_heartbeats(h.astype(np.uint64)).tolist() == [True, True]
    assert m.record_heartbeats(h[::-1][::-1]).tolist() == [True, True]   # non-contiguous ok
    assert m.record_heartbeats(np.array([], dtype=np.int64)).tolist() == []


# ----------------------------------------------------------------------------------------
# record_heartbeats: direct semantics (the twin tests cover the rest)
# ----------------------------------------------------------------------------------------

def test_record_heartbeats_repeats_and_timestamps(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=10)
    m.start_monitoring_many(["a", "b"])
    vclock.advance(10)
    now = vclock.time()
    mask = m.record_heartbeats(["a", "a", "zz", "b", "a"],
                               [now - 4, now - 3, now - 2, now - 1.5, now + 100])
    assert mask.tolist() == [True, True, False, True, True]
    assert [r["timestamp"] for r in m.get_heartbeat_history("a")] == [now - 4, now - 3, now]
    # a future timestamp counts as now
    assert m.check_agent_health("a") is HealthState.HEALTHY
    # b's heartbeat 1.5 s ago puts it in DEGRADED now
    assert m.check_agent_health("b") is HealthState.DEGRADED
    # older than the last heartbeat: rejected; equal: accepted
    mask = m.record_heartbeats(["b", "b", "b"], [now - 1.6, now - 1.5, now - 1.0])
    assert mask.tolist() == [False, True, True]
    assert [r["timestamp"] for r in m.get_heartbeat_history("b")] == \
        [now - 1.5, now - 1.5, now - 1.0]
    # default timestamps: now, all at one instant
    vclock.advance(0.5)
    assert m.record_heartbeats(("a", "b")).tolist() == [True, True]
    assert m.get_heartbeat_history("a")[-1]["timestamp"] == vclock.time()
    assert m.get_heartbeat_history("b")[-1]["timestamp"] == vclock.time()
    # an object array of ids is a sequence of ids
    assert m.record_heartbeats(np.array(["a", "zz"], dtype=object)).tolist() == [True, False]


def test_record_heartbeats_finds_crossings_and_recovers_like_loop(make_monitor, vclock):
    """A heartbeat older than now but after a threshold: the crossings up to it are
    reported (they happened); then a recovery only if the agent is less severe now than
    reported (issue 10: a backdated heartbeat reports only what is true now)."""
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring_many(["a", "b"])
    m.record_heartbeats(["a", "b"])       # at 1000.0
    vclock.advance(5)                     # no advance(): the wheel has not looked
    # a: 2.5 s ago -> CRITICAL now, as reported after the crossings: no recovery
    m.record_heartbeats(["a"], [WALL_START + 2.5])
    assert rec.simple() == [("alert", "a", HealthState.DEGRADED),
                            ("alert", "a", HealthState.CRITICAL)]
    assert [d["elapsed_seconds"] for *_, d in rec.events] == [2.5, 2.5]
    assert m.check_agent_health("a") is HealthState.CRITICAL      # 2.5 s since then
    rec.take()
    # b: 0.5 s ago -> HEALTHY now: D, C, F up to the heartbeat, then the recovery
    m.record_heartbeats(["b"], [WALL_START + 4.5])
    assert rec.simple() == [("alert", "b", HealthState.DEGRADED),
                            ("alert", "b", HealthState.CRITICAL),
                            ("alert", "b", HealthState.FAILED),
                            ("recovery", "b", "failed")]
    details = [e[3] for e in rec.events]
    assert [d["elapsed_seconds"] for d in details] == [4.5] * 4
    assert details[3]["downtime_seconds"] == 3.5
    assert m.check_agent_health("b") is HealthState.HEALTHY


# ----------------------------------------------------------------------------------------
# History arrays
# ----------------------------------------------------------------------------------------

def test_history_array_view_copy_and_wrap(make_monitor, vclock, engine):
    m = make_monitor(interval_ms=1000, history_size=5)
    m.start_monitoring_many(["a", "w"])
    for _ in range(3):
        vclock.advance(0.25)
        m.record_heartbeats(["a"])
    for _ in range(12):
        vclock.advance(0.25)
        m.record_heartbeats(["w"])
    ref_a = [r["timestamp"] for r in m.get_heartbeat_history("a")]
    ref_w = [r["timestamp"] for r in m.get_heartbeat_history("w")]
    assert len(ref_a) == 3 and len(ref_w) == 5

    view = m.history_array("a")
    assert view.dtype == np.float64 and view.tolist() == ref_a
    if view.flags.writeable:
        # Not a view into the monitor: writing to it must not reach the monitor.
        assert engine == "pure", "the compiled engine returns a zero-copy read-only view"
        view[:] = -1.0
        assert [r["timestamp"] for r in m.get_heartbeat_history("a")] == ref_a
    else:
        with pytest.raises(ValueError):
            view[0] = -1.0
        assert view.base is not None                    # a view, not an owner
    if engine == "compiled":
        assert not view.flags.writeable

    copy = m.history_array("a", copy=True)
    assert copy.tolist() == ref_a and copy.flags.writeable
    copy[:] = 0.0
    assert m.history_array("a").tolist() == ref_a

    wrapped = m.history_array("w")                    # ring has wrapped: oldest first
    assert wrapped.tolist() == ref_w
    assert np.all(np.diff(wrapped) > 0)
    assert m.history_array("w", copy=True).tolist() == ref_w

    empty = m.history_array("unknown")
    assert empty.dtype == np.float64 and empty.shape == (0,)
    m.start_monitoring("fresh")
    assert m.history_array("fresh").shape == (0,)
    # a stopped agent's kept history
    m.stop_monitoring("w")
    assert m.history_array("w").tolist() == ref_w


def test_histories_padded_and_flat(make_monitor, vclock):
    rng = random.Random(3)
    m = make_monitor(interval_ms=1000, history_size=7)
    ids = [f"a{i}" for i in range(40)] + [5, ("t", 2)]
    m.start_monitoring_many(ids)
    for _ in range(60):
        vclock.advance(rng.choice([0.1, 0.3, 0.7]))
        m.record_heartbeats(rng.sample(ids, rng.randint(0, len(ids))))
    m.stop_monitoring("a3")
    monitored = list(m.monitoring_agents)
    ref = [[r["timestamp"] for r in m.get_heartbeat_history(k)] for k in monitored]

    padded = m.histories()
    assert padded.shape == (len(monitored), 7) and padded.dtype == np.float64
    for row, r in zip(padded, ref):
        assert row[:len(r)].tolist() == r
        assert np.isnan(row[len(r):]).all()
    values, offsets = m.histories(layout="flat")
    assert offsets.dtype == np.int64 and offsets.tolist()[0] == 0
    assert len(offsets) == len(monitored) + 1
    for i, r in enumerate(ref):
        assert values[offsets[i]:offsets[i + 1]].tolist() == r
    assert len(values) == offsets[-1]

    # explicit ids (and handles) in the given order; unknown / stopped give empty rows
    pick = ["a7", "unknown", ("t", 2), "a3", "a1"]
    want = [[r["timestamp"] for r in m.get_heartbeat_history(k)] if k in monitored else []
            for k in pick]
    padded = m.histories(pick)
    for row, r in zip(padded, want):
        assert row[:len(r)].tolist() == r and np.isnan(row[len(r):]).all()
    values, offsets = m.histories(m.handles(pick), layout="flat")
    assert [values[offsets[i]:offsets[i + 1]].tolist() for i in range(len(pick))] == want
    assert m.histories([]).shape == (0, 7)
    v, o = m.histories([], layout="flat")
    assert v.shape == (0,) and o.tolist() == [0]


def test_histories_after_history_deleted(make_monitor, vclock):
    """`del heartbeat_history[id]` (Part A) empties what the array APIs see too."""
    m = make_monitor(interval_ms=1000, history_size=5)
    m.start_monitoring_many(["a", "b"])
    for _ in range(3):
        vclock.advance(0.5)
        m.record_heartbeats(["a", "b"])
    del m.heartbeat_history["a"]
    assert m.get_heartbeat_history("a") == []
    assert m.history_array("a").shape == (0,)
    padded = m.histories(["a", "b"])
    assert np.isnan(padded[0]).all() and not np.isnan(padded[1, :3]).any()
    _v, o = m.histories(["a", "b"], layout="flat")
    assert o.tolist() == [0, 0, 3]
    assert m.interval_stats(["a"])["count"].tolist() == [0]


# ----------------------------------------------------------------------------------------
# Batch alerts
# ----------------------------------------------------------------------------------------

def _check_batch_matches(batch, events):
    """An AlertBatch against the per-agent callbacks of the same advance/call."""
    assert len(batch) == len(events) == len(batch.handles)
    assert batch.ids == [e[1] for e in events]
    for i, (kind, _aid, state, det) in enumerate(events):
        assert batch.kind[i] == (0 if kind == "alert" else 1)
        assert batch.previous[i] == SEV[HealthState(det["previous_state"])]
        assert batch.current[i] == SEV[state]
        if kind == "alert":
            assert round(float(batch.elapsed_s[i]), 2) == det["elapsed_seconds"]
            assert batch.deadline_monotonic[i] == det["deadline_monotonic"]
            assert batch.detected_monotonic[i] == det["detected_monotonic"]


def test_batch_callback_equals_per_agent_callbacks(make_monitor, vclock):
    rng = random.Random(11)
    m = make_monitor(interval_ms=1000, failure_threshold=4, tick_ms=10)
    rec = Recorder().install(m, recovery=True)
    log = BatchLog()
    m.configure_alerts(batch_callback=log)
    ids = [f"a{i}" for i in range(60)]
    m.start_monitoring_many(ids, interval_ms=[rng.choice([100, 300, 1000]) for _ in ids])
    m.record_heartbeats(ids)
    h = m.handles(ids)
    seen = 0
    for _ in range(80):
        if rng.random() < 0.4:
            vclock.advance(rng.choice([0.05, 0.2, 0.6]))
            n = m.advance()
            batches, events = log.take(), rec.take()
            assert all(e[0] == "alert" for e in events)
            assert len(events) == n
            if n:
                assert len(batches) == 1
                _check_batch_matches(batches[0], events)
                assert (batches[0].kind == 0).all()
                assert m.agent_ids(batches[0].handles) == batches[0].ids
                seen += n
            else:
                assert batches == []
        else:
            pick = h[np.array(rng.sample(range(60), rng.randint(1, 20)))]
            m.record_heartbeats(pick)
            batches, events = log.take(), rec.take()
            assert len(batches) == (1 if events else 0)
            if events:
                _check_batch_matches(batches[0], events)
    assert seen > 50


def test_batch_callback_100k_failing_at_once(make_monitor, vclock):
    """10^5 agents crossing into FAILED in one advance reach the batch callback in one
    call. The bound here is deliberately generous (2 s); the 100 ms figure is measured by
    benchmarks/bench_batch.py."""
    n = 100_000
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=2)
    ids = [f"agent-{i:06d}" for i in range(n)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(m.handles(ids))
    m.configure_alerts(on_degraded=False, on_critical=False, on_failed=False)
    m.advance(to=START + 2.5)                       # all CRITICAL
    assert m.get_monitoring_stats()["health_distribution"]["critical"] == n
    got = []
    m.configure_alerts(batch_callback=lambda b: got.append((time.perf_counter(), b)))
    t0 = time.perf_counter()
    assert m.advance(to=START + 3.0) == n
    assert len(got) == 1
    received, batch = got[0]
    assert received - t0 < 2.0
    assert len(batch) == n and batch.ids == ids
    assert (batch.current == 3).all() and (batch.previous == 2).all() and (batch.kind == 0).all()
    assert np.allclose(batch.elapsed_s, 3.0)


# ----------------------------------------------------------------------------------------
# Bad input: a clear TypeError/ValueError naming the argument, nothing recorded
# ----------------------------------------------------------------------------------------

@pytest.fixture
def populated(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=5)
    m.start_monitoring_many(["a", "b", "gone"])
    m.record_heartbeats(["a", "b", "gone"])
    m.stop_monitoring("gone")
    rec = Recorder().install(m)           # callbacks: no WARNING lines in failure reports
    vclock.advance(1.5)
    m.advance()
    m.record_heartbeats(["b"])
    assert rec.events
    return m


NAN, INF = float("nan"), float("inf")


def _bad_cases():
    now = WALL_START + 1.5
    cases = [
        # start_monitoring_many
        ("start_monitoring_many", ("xy",), {}, TypeError, "agent_ids"),
        ("start_monitoring_many", (5,), {}, TypeError, "agent_ids"),
        ("start_monitoring_many", (None,), {}, TypeError, "agent_ids"),
        ("start_monitoring_many", (["x", ["y"]],), {}, TypeError, "agent_ids"),
        ("start_monitoring_many", (["x", "y"],), {"interval_ms": [1000]}, ValueError,
         "interval_ms"),
        ("start_monitoring_many", (["x", "y"],), {"failure_threshold": [3, 3, 3]},
         ValueError, "failure_threshold"),
        ("start_monitoring_many", (["x", "y"],), {"interval_ms": [1000, NAN]}, ValueError,
         "interval_ms"),
        ("start_monitoring_many", (["x", "y"],), {"interval_ms": [1000, 50]}, ValueError,
         "interval_ms"),
        ("start_monitoring_many", (["x", "y"],), {"interval_ms": "1000"}, TypeError,
         "interval_ms"),
        ("start_monitoring_many", (["x", "y"],), {"failure_threshold": [3, True]}, TypeError,
         "failure_threshold"),
        ("start_monitoring_many", (["x", "y"],), {"failure_threshold": [3, 0]}, ValueError,
         "failure_threshold"),
        ("start_monitoring_many", (["x", "y"],), {"start_clock": 1}, TypeError, "start_clock"),
        # record_heartbeats: ids / handles
        ("record_heartbeats", ("a",), {}, TypeError, "ids_or_handles"),
        ("record_heartbeats", (5,), {}, TypeError, "ids_or_handles"),
        ("record_heartbeats", (None,), {}, TypeError, "ids_or_handles"),
        ("record_heartbeats", (["a", ["b"]],), {}, TypeError, "ids_or_handles"),
        ("record_heartbeats", ("HANDLES_2D",), {}, ValueError, "handles"),
        ("record_heartbeats", ("HANDLES_FLOAT",), {}, TypeError, "ids_or_handles"),
        # record_heartbeats: timestamps
        ("record_heartbeats", (["a", "b"], [now]), {}, ValueError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [now, now, now]), {}, ValueError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [now, NAN]), {}, ValueError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [now, INF]), {}, ValueError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [-INF, now]), {}, ValueError, "timestamps"),
        ("record_heartbeats", (["a", "b"], "ab"), {}, TypeError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [now, "x"]), {}, TypeError, "timestamps"),
        ("record_heartbeats", (["a", "b"], [[now, now]]), {}, ValueError, "timestamps"),
        ("record_heartbeats", ("HANDLES", [now, NAN]), {}, ValueError, "timestamps"),
        # handles / agent_ids / histories / history_array
        ("handles", ("ab",), {}, TypeError, "agent_ids"),
        ("handles", ([["a"]],), {}, TypeError, "agent_ids"),
        ("agent_ids", ("HANDLES_2D",), {}, ValueError, "handles"),
        ("histories", (), {"layout": "grid"}, ValueError, "layout"),
        ("histories", ("ab",), {}, TypeError, "agent_ids"),
        ("history_array", (["a"],), {}, TypeError, "agent_id"),
    ]
    return cases


_BAD = _bad_cases()


@pytest.mark.parametrize("method,args,kwargs,exc,name", _BAD,
                         ids=[f"{c[0]}-{i}-{c[4]}" for i, c in enumerate(_BAD)])
def test_bad_input_raises_and_changes_nothing(populated, method, args, kwargs, exc, name):
    m = populated
    h = m.handles(["a", "b"])
    subst = {"HANDLES": h, "HANDLES_2D": h.reshape(1, 2), "HANDLES_FLOAT": h.astype(float)}
    args = tuple(subst.get(a, a) if isinstance(a, str) else a for a in args)
    before = snapshot(m, ["gone", "x", "y"])
    arrays = m.histories(layout="flat")
    with pytest.raises(exc, match=name):
        getattr(m, method)(*args, **kwargs)
    assert snapshot(m, ["gone", "x", "y"]) == before
    after = m.histories(layout="flat")
    assert all(np.array_equal(x, y) for x, y in zip(arrays, after))
    assert m.handles(["a", "b"]).tolist() == h.tolist()


@pytest.mark.parametrize("age_s", [1e300, 1e12, WALL_START],
                         ids=["1e300s-ago", "1e12s-ago", "unix-epoch"])
def test_very_old_timestamps_leave_the_monitor_working(make_monitor, vclock, age_s):
    """A finite timestamp far in the past (beyond the ~292 years int64 nanoseconds hold,
    or the Unix epoch) is either refused up front (ValueError naming `timestamps`,
    nothing recorded) or recorded/rejected per heartbeat; in every case the monitor
    keeps working: advance, alerts, snapshot, phi and stats."""
    m = make_monitor(interval_ms=1000, failure_threshold=3, history_size=4)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring_many(["a", "b"])
    m.record_heartbeats(["b"])
    before = snapshot(m)
    now = vclock.time()
    try:
        mask = m.record_heartbeats(["b", "a"], [now, now - age_s])
    except ValueError as e:
        assert "timestamps" in str(e)
        assert snapshot(m) == before
        mask = None
    if mask is not None:
        assert mask[0]                    # the valid heartbeat is not lost
    vclock.advance(0.5)
    m.advance()                           # must not raise
    vclock.advance(5)
    m.advance()
    snap = m.snapshot()
    assert snap.states.tolist() == [SEV[m.check_agent_health(k)] for k in snap.ids]
    assert np.isfinite(m.phi()).all() or np.isnan(snap.elapsed_ms).any()
    stats = m.get_monitoring_stats()
    assert sum(stats["health_distribution"].values()) == 2
    assert stats["callback_errors"] == 0
    assert ("alert", "b", HealthState.FAILED) in rec.simple()
