"""Differential tests: random sequences of start/stop/heartbeat/advance run on a
compiled monitor, a pure monitor and the brute-force model of the contract
(hb_model.Model). States of all agents after every step and the full sequence of
reported callbacks (crossings and recoveries) must be identical."""
from __future__ import annotations

import random

import pytest
from hb_model import MS, NS, Model, Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moai_flow_fast.core._engine_c  # the compiled engine must be built
import moai_flow_fast.core._engine_py  # noqa: F401
from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

START = 1000.0
WALL = 1_700_000_000.0
POOL = ["a", "b", "c"]
INTERVALS = [100, 150, 200, 300, 500, 700, 1000, 1234, 2000, 65_500]


class Harness:
    """One model + one monitor per engine, driven in lock step."""

    def __init__(self, tick_ms, start_clock_on_register):
        self.model = Model(tick_ms, start_clock_on_register)
        self.sides = []
        for engine in ("compiled", "pure"):
            clock = VirtualClock(start=START, wall_start=WALL)
            m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3, history_size=10,
                                 engine=engine, clock=clock, tick_ms=tick_ms,
                                 start_clock_on_register=start_clock_on_register)
            assert m.engine_name == engine
            rec = Recorder().install(m, recovery=True)
            self.sides.append((engine, m, clock, rec))
        self.now = int(START) * NS
        self.trace = []
        self.hist = {}        # id -> expected history timestamps (wall seconds)

    def close(self):
        for _, m, _, _ in self.sides:
            m.shutdown()

    # ---- operations
    def start(self, aid, interval_ms, threshold, start_clock):
        kw = {} if start_clock is None else {"start_clock": start_clock}
        self.trace.append(("start", aid, interval_ms, threshold, start_clock))
        exp = self.model.start(aid, interval_ms, threshold, self.now, start_clock)
        if exp:
            self.hist[aid] = []
        for engine, m, _, _ in self.sides:
            got = m.start_monitoring(aid, interval_ms=interval_ms, failure_threshold=threshold,
                                     **kw)
            assert got is exp, (engine, self.trace)
        self.check([])

    def stop(self, aid):
        self.trace.append(("stop", aid))
        exp = self.model.stop(aid)
        for engine, m, _, _ in self.sides:
            assert m.stop_monitoring(aid) is exp, (engine, self.trace)
        self.check([])

    def heartbeat(self, aid):
        self.trace.append(("hb", aid))
        ok, events = self.model.heartbeat(aid, self.now)
        if ok:
            self.hist[aid] = (self.hist[aid] + [WALL + (self.now - int(START) * NS) / 1e9])[-10:]
        for engine, m, _, _ in self.sides:
            assert m.record_heartbeat(aid) is ok, (engine, self.trace)
        self.check(events)

    def advance(self, target_ns):
        target_ns = max(target_ns, self.now)
        self.trace.append(("advance", target_ns - self.now))
        nows = []
        counts = []
        for _, m, clock, _ in self.sides:
            counts.append(m.advance(to=target_ns / 1e9))
            nows.append(clock.monotonic_ns())
        assert nows[0] == nows[1], nows
        assert abs(nows[0] - target_ns) <= 2
        self.now = nows[0]
        events = self.model.advance(self.now)
        for (engine, _, _, _), n in zip(self.sides, counts):
            assert n == len(events), (engine, n, events, self.trace)
        self.check(events)

    # ---- comparison
    def check(self, events):
        exp = []
        for ev in events:
            if ev[0] == "alert":
                _, aid, new, prev, _d, detect, base = ev
                exp.append(("alert", aid, new, prev.value, (detect - base) / 1e9))
            else:
                _, aid, prev, h, old_base = ev
                exp.append(("recovery", aid, HealthState.HEALTHY, prev.value, (h - old_base) / 1e9))
        for engine, m, clock, rec in self.sides:
            got = []
            for kind, aid, stt, det in rec.take():
                got.append((kind, aid, stt, det["previous_state"], det["elapsed_seconds"]))
            assert [g[:4] for g in got] == [e[:4] for e in exp], (engine, self.trace)
            for g, e in zip(got, exp):
                if g[4] is not None or e[4] is not None:
                    assert abs(g[4] - e[4]) <= 0.0051, (engine, g, e, self.trace)
            assert clock.monotonic_ns() == self.now
            monitored = list(self.model.agents)
            assert list(m.monitoring_agents) == monitored, (engine, self.trace)
            assert m.get_unhealthy_agents(HealthState.HEALTHY) == monitored
            for aid, a in self.model.agents.items():
                assert m.check_agent_health(aid) is a.state(self.now), (engine, aid, self.trace)
                assert m.monitoring_agents[aid]["last_state"] is a.reported, (
                    engine, aid, self.trace)
            for aid, walls in self.hist.items():
                ts = [r["timestamp"] for r in m.get_heartbeat_history(aid)]
                assert ts == pytest.approx(walls, abs=1e-5), (engine, aid, self.trace)
            dist = {"healthy": 0, "degraded": 0, "critical": 0, "failed": 0}
            for a in self.model.agents.values():
                dist[a.state(self.now).value] += 1
            assert m.get_monitoring_stats()["health_distribution"] == dist

    # ---- interesting instants
    def deadline_targets(self):
        """Pending crossing deadlines, the instants around them and the tick
        boundaries that report them; also every threshold instant of every agent."""
        tick = self.model.tick_ns
        out = set()
        for d, _ in self.model.pending():
            b = -(-d // tick) * tick
            out.update([d - 1, d, d + 1, b - 1, b, b + tick])
        for a in self.model.agents.values():
            base = a.base()
            if base is not None:
                for k in (1, 2, a.threshold):
                    out.add(base + k * a.interval_ns)
        return sorted(t for t in out if t >= self.now)

    def next_deadline_targets(self):
        """Only the earliest pending deadline (and its tick boundary)."""
        pend = self.model.pending()
        if not pend:
            return []
        d = min(pend)[0]
        tick = self.model.tick_ns
        b = -(-d // tick) * tick
        return [t for t in (d - 1, d, b, b - 1) if t >= self.now]


ADVANCE_KINDS = ["small", "small", "ms", "tick", "deadline", "deadline", "next", "next",
                 "large", "zero"]


def _advance_target(h, kind, draw_int, draw_choice):
    tick = h.model.tick_ns
    if kind == "zero":
        return h.now
    if kind == "small":
        if draw_choice([True, False]):
            return h.now + draw_int(0, 8) * 50 * MS
        return h.now + draw_int(0, 400) * MS + draw_choice([0, 0, 1, 3, 500_000])
    if kind == "ms":
        return h.now + draw_int(1, 20) * MS
    if kind == "tick":
        b = -(-h.now // tick) * tick
        return b + draw_int(0, 3) * tick + draw_choice([0, 0, -1, 1])
    if kind == "large":
        return h.now + draw_int(1, 200) * 100 * MS
    targets = h.next_deadline_targets() if kind == "next" else h.deadline_targets()
    if not targets:
        return h.now + draw_int(0, 3000) * MS
    return draw_choice(targets)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), tick_ms=st.sampled_from([1, 10, 7]), scor=st.booleans())
def test_differential_hypothesis(data, tick_ms, scor):
    h = Harness(tick_ms, scor)
    try:
        n_steps = data.draw(st.integers(8, 60), label="steps")
        for _ in range(n_steps):
            kind = data.draw(st.sampled_from(
                ["start", "start", "stop", "hb", "hb", "hb", "advance", "advance", "advance",
                 "advance"]))
            if kind == "start":
                h.start(data.draw(st.sampled_from(POOL)), data.draw(st.sampled_from(INTERVALS)),
                        data.draw(st.sampled_from([1, 2, 3, 4, 5, 3, 4, 5])),
                        data.draw(st.sampled_from([None, None, True, False])))
            elif kind == "stop":
                h.stop(data.draw(st.sampled_from(POOL)))
            elif kind == "hb":
                h.heartbeat(data.draw(st.sampled_from(POOL)))
            else:
                ak = data.draw(st.sampled_from(ADVANCE_KINDS))
                target = _advance_target(
                    h, ak, lambda lo, hi: data.draw(st.integers(lo, hi)),
                    lambda seq: data.draw(st.sampled_from(seq)))
                h.advance(target)
    finally:
        h.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("tick_ms", [1, 10, 7])
def test_differential_seeded_long(seed, tick_ms):
    """Longer seeded runs with more agents, intervals up to days and steps up to
    days (exercises the upper wheel levels and cascades)."""
    rng = random.Random(seed * 100 + tick_ms)
    h = Harness(tick_ms, start_clock_on_register=bool(seed % 2))
    pool = [f"agent-{i}" for i in range(12)]
    intervals = [*INTERVALS, 60_000, 3_600_000, 86_400_000]
    try:
        for _ in range(600):
            r = rng.random()
            if r < 0.12:
                h.start(rng.choice(pool), rng.choice(intervals), rng.randint(1, 5),
                        rng.choice([None, True, False]))
            elif r < 0.18:
                h.stop(rng.choice(pool))
            elif r < 0.5:
                h.heartbeat(rng.choice(pool))
            else:
                kind = rng.choice([*ADVANCE_KINDS, "huge"])
                if kind == "huge":
                    target = h.now + rng.randint(1, 3 * 86_400) * NS + rng.randint(0, 999) * MS
                else:
                    target = _advance_target(h, kind, rng.randint, rng.choice)
                h.advance(target)
    finally:
        h.close()


@pytest.mark.parametrize("engine", ["compiled", "pure"])
def test_many_agents_each_crossing_once(engine):
    """Part B 1 at scale: 5,000 agents, random intervals, advanced in irregular steps:
    every agent reports D, (C), F exactly once, in deadline order."""
    rng = random.Random(7)
    clock = VirtualClock(start=START, wall_start=WALL)
    m = HeartbeatMonitor(engine=engine, clock=clock, tick_ms=10)
    rec = Recorder().install(m)
    model = Model(10)
    try:
        for i in range(5000):
            aid = f"n{i}"
            iv = rng.choice([100, 150, 1234, 5000, 30_000])
            t = rng.randint(1, 5)
            m.start_monitoring(aid, interval_ms=iv, failure_threshold=t)
            model.start(aid, iv, t, clock.monotonic_ns())
            m.record_heartbeat(aid)
            model.heartbeat(aid, clock.monotonic_ns())
            if i % 500 == 499:
                clock.advance(0.0137)
        total = 0
        expected = []
        while clock.now < START + 200:
            m.advance(to=clock.now + rng.choice([0.003, 0.05, 0.7, 3.1, 17.0]))
            expected.extend(model.advance(clock.monotonic_ns()))
            got = rec.take()
            assert [(e[1], e[2]) for e in got] == [(e[1], e[2]) for e in expected[total:]]
            total = len(expected)
        assert all(m.monitoring_agents[a]["last_state"] is HealthState.FAILED for a in model.agents)
        assert m.get_monitoring_stats()["transitions"] == total
    finally:
        m.shutdown()
