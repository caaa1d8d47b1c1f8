"""Stateful property test (issue 5, item 8): a hypothesis RuleBasedStateMachine over the
whole public API -- start/stop (one and many), record_heartbeat(s) by id and by handle,
advance, configure_alerts (flags, recovery, coalescing), check, get_unhealthy_agents,
histories, stats, clear_history and wall-clock steps -- run against the compiled and the
pure engine and checked against the model of tests/hb_model.py after every step: return
values, states, every callback (per-agent and batch, with details), histories (raw wall
clock), stats and interval statistics (monotonic intervals, hb_model.mono_intervals)."""
from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime

import numpy as np
import pytest
from hb_model import MS, NS, SEVERITY, STAT_FIELDS, Model, Recorder, interval_row, mono_intervals
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

START, WALL = 1000.0, 1_700_000_000.0
TICK_MS = 10
HSIZE = 4
STATES = list(HealthState)
IDS = st.sampled_from(["a", "b", "c", "d", 7, ("t", 1)])
INTERVALS = st.sampled_from([100, 250, 1000])
THRESHOLDS = st.sampled_from([1, 2, 3, 5])
DT = st.sampled_from([0.0, 0.004, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0])


def _wall_of(mono_ns):
    return WALL + (mono_ns - round(START * NS)) / NS


class MonitorMachine(RuleBasedStateMachine):
    engine = "compiled"

    @initialize(limit=st.sampled_from([None, 0, 2]), scor=st.booleans())
    def setup(self, limit, scor):
        self.clock = VirtualClock(start=START, wall_start=WALL)
        self.m = HeartbeatMonitor(interval_ms=250, failure_threshold=3, history_size=HSIZE,
                                  tick_ms=TICK_MS, clock=self.clock, engine=self.engine,
                                  start_clock_on_register=scor,
                                  max_stopped_histories=limit)
        self.model = Model(TICK_MS, start_clock_on_register=scor)
        self.limit = limit
        self.rec = Recorder().install(self.m, recovery=True)
        self.batches = []
        self.m.configure_alerts(batch_callback=self.batches.append)
        self.enabled = {s: True for s in STATES[1:]}
        self.recovery_on = True
        self.coalesce = 0
        self.live_hist = {}            # id -> deque of (wall, metadata) | None (dropped)
        self.live_mono = {}            # id -> deque of the same records' monotonic ns | None
        self.wall_at = {}              # (id, monotonic ns of a heartbeat) -> its wall time
        self.stopped = OrderedDict()   # id -> list of (wall, metadata)
        self.handle_of = {}            # id -> the handle of its latest incarnation
        self.expect_alerts = 0
        self.expect_coalesced = 0
        self.to_state = [0, 0, 0, 0]

    def teardown(self):
        if hasattr(self, "m"):
            self.m.shutdown()

    # -- helpers --------------------------------------------------------------------------
    def now(self):
        return self.clock.monotonic_ns()

    def _expect_delivery(self, events):
        """Compare one published block (the events of one call) with what was delivered."""
        batches = self.batches[:]
        self.batches.clear()
        got_cb = self.rec.take()
        if not events:
            assert batches == [] and got_cb == []
            return
        assert len(batches) == 1, [len(b) for b in batches]
        b = batches[0]
        rows = list(zip(b.ids, b.kind.tolist(), b.previous.tolist(), b.current.tolist(),
                        [round(x * NS) for x in b.deadline_monotonic],
                        [round(x * NS) for x in b.detected_monotonic]))
        want = []
        for e in events:
            if e[0] == "alert":
                _, aid, new, prev, d, det, base = e
                want.append((aid, 0, SEVERITY[prev], SEVERITY[new], d, det))
            else:
                _, aid, prev, h, old_base = e
                iv = self.model.agents[aid].interval_ns
                want.append((aid, 1, SEVERITY[prev], 0, old_base + iv, h))
        assert rows == want
        coalesced = 0 < self.coalesce < len(events)
        if coalesced:
            self.expect_coalesced += len(events)
        expect_cb = []
        for e in events:
            if e[0] == "alert":
                self.to_state[SEVERITY[e[2]]] += 1
            if coalesced:
                continue
            if e[0] == "alert":
                _, aid, new, prev, d, det, base = e
                if not self.enabled[new]:
                    continue
                self.expect_alerts += 1
                reg = self.model.agents[aid].reg
                expect_cb.append(("alert", aid, new, {
                    "previous_state": prev.value, "current_state": new.value,
                    "elapsed_seconds": round((det - base) / NS, 2),
                    # measured from a heartbeat: its wall time; from the registration
                    # (no heartbeat yet): None -- ambiguous when both coincide: unchecked
                    "last_heartbeat": (datetime.fromtimestamp(self.wall_at.get(
                                           (aid, base), _wall_of(base))).isoformat()
                                       if base != reg else None)}))
            elif self.recovery_on:
                _, aid, prev, h, old_base = e
                iv = self.model.agents[aid].interval_ns
                expect_cb.append(("recovery", aid, HealthState.HEALTHY, {
                    "previous_state": prev.value, "current_state": "healthy",
                    "elapsed_seconds": round((h - old_base) / NS, 2),
                    "downtime_seconds": round(max(h - (old_base + iv), 0) / NS, 3)}))
        got = [(k, aid, s, {f: d[f] for f in want_d})
               for (k, aid, s, d), (_, _, _, want_d) in zip(got_cb, expect_cb)]
        assert len(got_cb) == len(expect_cb), (got_cb, expect_cb)
        for g, w in zip(got, expect_cb):
            gk, gaid, gs, gd = g
            wk, waid, ws, wd = w
            assert (gk, gaid, gs) == (wk, waid, ws)
            for f, v in wd.items():
                if f == "last_heartbeat" and v is None:
                    continue        # no heartbeat (clock started at registration): None
                assert gd[f] == v, (f, gd[f], v, g)

    def _beat_model(self, aid, meta):
        """The model's heartbeat; returns (accepted, events) and updates the history model."""
        ok, events = self.model.heartbeat(aid, self.now())
        if ok:
            ring = self.live_hist.get(aid)
            if ring is None:
                ring = self.live_hist[aid] = deque(maxlen=HSIZE)
                self.live_mono[aid] = deque(maxlen=HSIZE)
            ring.append((self.clock.time(), meta or {}))
            self.live_mono[aid].append(self.now())
            self.wall_at[(aid, self.now())] = self.clock.time()
        return ok, events

    def _register_model(self, aid, iv, th, sc):
        new = self.model.start(aid, iv, th, self.now(), sc)
        if new:
            self.live_hist[aid] = deque(maxlen=HSIZE)
            self.live_mono[aid] = deque(maxlen=HSIZE)
            self.stopped.pop(aid, None)
        return new

    # -- rules ----------------------------------------------------------------------------
    @rule(aid=IDS, iv=INTERVALS, th=THRESHOLDS, sc=st.sampled_from([None, True, False]))
    def start(self, aid, iv, th, sc):
        new = self._register_model(aid, iv, th, sc)
        assert self.m.start_monitoring(aid, iv, th, start_clock=sc) is new
        if new:
            self.handle_of[aid] = int(self.m.handles([aid])[0])

    @rule(ids=st.lists(IDS, max_size=4), iv=INTERVALS, th=THRESHOLDS,
          sc=st.sampled_from([None, True, False]))
    def start_many(self, ids, iv, th, sc):
        want = [self._register_model(a, iv, th, sc) for a in ids]
        got = self.m.start_monitoring_many(ids, iv, th, start_clock=sc)
        assert got.tolist() == want
        for a, h in zip(ids, self.m.handles(ids).tolist()):
            if h >= 0:
                self.handle_of[a] = h

    @rule(aid=IDS)
    def stop(self, aid):
        gone = self.model.stop(aid)
        assert self.m.stop_monitoring(aid) is gone
        if gone:
            ring = self.live_hist.pop(aid)
            self.live_mono.pop(aid)
            if ring is not None:
                self.stopped[aid] = list(ring)
                while self.limit is not None and len(self.stopped) > self.limit:
                    self.stopped.popitem(last=False)

    @rule(aid=IDS, meta=st.sampled_from([None, {"n": 1}, {"cpu": 2.5}]))
    def record(self, aid, meta):
        ok, events = self._beat_model(aid, meta)
        assert self.m.record_heartbeat(aid, meta) is ok
        self._expect_delivery(events)

    @rule(ids=st.lists(IDS, max_size=5), by_handle=st.booleans())
    def record_many(self, ids, by_handle):
        want, events = [], []
        for a in ids:
            ok, ev = self._beat_model(a, None)
            want.append(ok)
            events += ev
        if by_handle:
            live = self.m.handles(ids).tolist()
            # a stopped agent's old handle is stale: it must not be accepted
            arg = np.array([h if h >= 0 else self.handle_of.get(a, -1)
                            for a, h in zip(ids, live)], dtype=np.int64)
        else:
            arg = list(ids)
        assert self.m.record_heartbeats(arg).tolist() == want
        self._expect_delivery(events)

    @rule(dt=DT)
    def advance(self, dt):
        self.clock.advance(dt)
        events = self.model.advance(self.now())
        assert self.m.advance() == len(events)
        self._expect_delivery(events)

    @rule(step=st.sampled_from([3600.0, -3600.0, 2.5, -0.7, 86400.0]))
    def step_wall(self, step):
        """An NTP or manual step of the wall clock: deadlines and intervals are monotonic."""
        self.clock.step_wall(step)

    # time moves more often than anything else happens (more crossings per run)
    @rule(dt=DT)
    def advance_more(self, dt):
        self.advance(dt)

    @rule(ids=st.lists(IDS, min_size=1, max_size=3), iv=INTERVALS, th=THRESHOLDS)
    def start_clocked_and_wait(self, ids, iv, th):
        self.start_many(ids, iv, th, True)
        self.advance(iv / 1000 * 2)

    @rule(d=st.sampled_from([None, True, False]), c=st.sampled_from([None, True, False]),
          f=st.sampled_from([None, True, False]), r=st.sampled_from([None, True, False]),
          coalesce=st.sampled_from([None, 0, 1, 2]))
    def configure(self, d, c, f, r, coalesce):
        self.m.configure_alerts(on_degraded=d, on_critical=c, on_failed=f, on_recovery=r,
                                coalesce_above=coalesce)
        for s, flag in zip(STATES[1:], (d, c, f)):
            if flag is not None:
                self.enabled[s] = flag
        if r is not None:
            self.recovery_on = r
        if coalesce is not None:
            self.coalesce = coalesce

    @rule(aid=IDS)
    def check(self, aid):
        if aid in self.model.agents:
            assert self.m.check_agent_health(aid) is self.model.state(aid, self.now())
        else:
            with pytest.raises(ValueError, match="not being monitored"):
                self.m.check_agent_health(aid)

    @rule(s=st.sampled_from(STATES))
    def unhealthy(self, s):
        now = self.now()
        want = [a for a in self.model.agents if SEVERITY[self.model.state(a, now)] >= SEVERITY[s]]
        assert self.m.get_unhealthy_agents(s) == want

    @rule(aid=IDS)
    def history(self, aid):
        if aid in self.live_hist:
            ring = self.live_hist[aid]
            want = [] if ring is None else list(ring)
            present = ring is not None
        elif aid in self.stopped:
            want, present = self.stopped[aid], True
        else:
            want, present = [], False
        got = self.m.get_heartbeat_history(aid)
        assert [(r["timestamp"], r["metadata"]) for r in got] == want
        assert (aid in self.m.heartbeat_history) is present
        assert self.m.history_array(aid, copy=True).tolist() == [t for t, _ in want]
        if want:
            t = want[-1][0]
            window = (datetime.fromtimestamp(t - 0.001), datetime.fromtimestamp(t + 0.001))
            assert [r["timestamp"] for r in self.m.get_heartbeat_history(aid, window)] == [
                x for x, _ in want if t - 0.0015 <= x <= t + 0.0015]

    @rule(aid=st.one_of(st.none(), IDS))
    def clear(self, aid):
        if aid is None:
            n = len(self.stopped)
            self.stopped.clear()
            assert self.m.clear_history() == n
            return
        if aid in self.live_hist:
            dropped = self.live_hist[aid] is not None
            self.live_hist[aid] = None
            self.live_mono[aid] = None
        else:
            dropped = self.stopped.pop(aid, None) is not None
        assert self.m.clear_history(aid) == int(dropped)

    @precondition(lambda self: self.model.agents)
    @rule(data=st.data())
    def arrays(self, data):
        ids = list(self.model.agents)
        padded = self.m.histories()
        assert padded.shape == (len(ids), HSIZE)
        for i, a in enumerate(ids):
            ring = self.live_hist[a]
            ts = [] if ring is None else [t for t, _ in ring]
            row = padded[i]
            assert row[:len(ts)].tolist() == ts and np.isnan(row[len(ts):]).all()
        stats = self.m.interval_stats()
        for i, a in enumerate(ids):
            ring = self.live_hist[a]
            n = 0 if ring is None else len(ring)
            assert stats["count"][i] == max(n - 1, 0)
            # monotonic intervals, whatever the wall clock did (HSIZE - 1 <= MARKS steps)
            monos = [] if ring is None else list(self.live_mono[a])
            want = interval_row(mono_intervals(
                [(t, w) for t, (w, _) in zip(monos, [] if ring is None else ring)]))
            for f in STAT_FIELDS:
                g, w = float(stats[f][i]), float(want[f])
                assert (np.isnan(g) and np.isnan(w)) or g == pytest.approx(w, abs=1e-6), (
                    f, g, w)
        snap = self.m.snapshot()
        now = self.now()
        assert snap.ids == ids
        assert [STATES[c] for c in snap.states.tolist()] == [
            self.model.state(a, now) for a in ids]

    # -- checked after every step -----------------------------------------------------------
    @invariant()
    def agree(self):
        if not hasattr(self, "m"):
            return
        now = self.now()
        m, model = self.m, self.model
        assert list(m.monitoring_agents) == list(model.agents)
        for a, ag in model.agents.items():
            rec = m.monitoring_agents[a]
            assert rec["last_state"] is ag.reported
            assert rec["interval_ms"] == ag.interval_ns // MS
            assert rec["failure_threshold"] == ag.threshold
        s = m.get_monitoring_stats()
        assert s["total_agents"] == len(model.agents)
        dist = {st_.value: 0 for st_ in STATES}
        for a in model.agents:
            dist[model.state(a, now).value] += 1
        assert s["health_distribution"] == dist
        held = sum(len(r) for r in self.live_hist.values() if r is not None)
        held += sum(len(h) for h in self.stopped.values())
        assert s["total_heartbeats"] == held
        assert s["stopped_histories"] == len(self.stopped)
        assert s["pending_deadlines"] == len(model.pending())
        assert s["alerts_raised"] == self.expect_alerts
        assert s["alerts_coalesced"] == self.expect_coalesced
        assert list(s["transitions_to"].values()) == self.to_state
        assert s["transitions"] == sum(self.to_state)
        assert s["callback_errors"] == 0
        keys = [a for a, r in self.live_hist.items() if r is not None] + list(self.stopped)
        assert sorted(map(repr, m.heartbeat_history)) == sorted(map(repr, keys))


@pytest.mark.slow
def test_stateful_against_model(engine):
    machine = type(f"MonitorMachine_{engine}", (MonitorMachine,), {"engine": engine})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=80, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much]))
