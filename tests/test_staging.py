"""Differential and property tests for the staged live heartbeat path.

The compiled engine may keep plain live heartbeats (record_heartbeat(id), no metadata) in
a small dense "hot" record plus a bounded staging log, and scatter the log into the rings
in bulk: when it fills, and before any other operation reads agent state. The promise is
that nothing observable changes. These tests hold it to that through the public API only
(the HeartbeatMonitor facade and its documented views), so they do not depend on how the
staging is done:

- the same operation sequence runs on a compiled and a pure monitor, each with its own
  VirtualClock, and every observable is compared after every operation (and, inside long
  runs of heartbeats, at random points): return values, states, unhealthy lists, the
  heartbeat history (timestamps and metadata) through every view, the monitoring_agents
  records, handles, interval statistics, phi, snapshots, uptime, the monitoring stats and
  every callback received (per-agent details with their last heartbeat walls, batches);
- the operation mix is dominated by long runs of plain live heartbeats over a few agents
  (longer than a staging log of a few thousand entries, rings of 1 to 100 records that
  wrap many times), interleaved with every other operation kind: clock advances across
  thresholds, wall-clock steps, the wheel, field writes, history deletion, stop/start of
  the same id (slot reuse, stale handles), batches by id, by handle and backdated, and
  metadata heartbeats; the first query after a run is drawn at random, since a query that
  forgets to flush is only caught when it is the first one to look;
- deterministic runs check exact values (round robin of 20,000 heartbeats, wall-clock
  steps inside a run, events after a run, stale handles, metadata), and a thread test
  checks counts and order under concurrent heartbeats and readers.
"""
from __future__ import annotations

import math
import random
import threading
import time
from datetime import datetime

import numpy as np
import pytest
from hb_model import STAT_FIELDS, interval_row, mono_intervals
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HealthState, HeartbeatMonitor, VirtualClock

START, WALL = 1000.0, 1_700_000_000.0
POOL = ["a", "b", "c", 7, ("t", 1)]
NEVER = "never-started"
IDS = [*POOL, NEVER]
STATES = list(HealthState)
INTERVALS = [100, 250, 1000, 5000]
THRESHOLDS = [1, 2, 3, 5]
WALL_STEPS = [3600.0, -3600.0, 2.0, -2.0, 0.25, 86400.0, -37.125]
ALL = "<all>"
REL = 1e-9          # interval statistics and phi: compiled vs pure kernels


# -- comparison ---------------------------------------------------------------------------------

def norm(x):
    """Plain Python values: numpy arrays as lists, structured rows without their handle
    (handles are engine-specific numbers), numpy scalars as Python scalars."""
    if isinstance(x, np.ndarray):
        if x.dtype.names:
            return [[norm(row[f]) for f in x.dtype.names if f != "handle"] for row in x]
        return norm(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (list, tuple)):
        return [norm(v) for v in x]
    if isinstance(x, dict):
        return [(norm(k), norm(v)) for k, v in x.items()]   # order matters too
    return x


def close(a, b, rel, path="$"):
    """a == b, NaN equal to NaN; floats within `rel` (0: exact)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (path, a, b)
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), (path, a, b)
        elif rel:
            assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), (path, a, b)
        else:
            assert a == b, (path, a, b)
        return
    if isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (path, len(a), len(b), a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, rel, f"{path}[{i}]")
        return
    assert type(a) is type(b) and a == b, (path, a, b)


def attempt(fn, *args, **kwargs):
    try:
        return ["ok", fn(*args, **kwargs)]
    except Exception as e:     # the same error, with the same message, on both engines
        return ["raise", type(e).__name__, str(e)]


# -- the two monitors ---------------------------------------------------------------------------

class Side:
    """One monitor (compiled or pure) on its own virtual clock, with every callback kind
    recorded, and a registry of every handle it ever gave (handles are engine-specific
    numbers: they are compared by the order in which they were first seen)."""

    def __init__(self, engine, history_size, tick_ms, scor, guard, limit):
        self.clock = VirtualClock(start=START, wall_start=WALL)
        self.m = HeartbeatMonitor(interval_ms=250, failure_threshold=3,
                                  history_size=history_size, tick_ms=tick_ms,
                                  clock=self.clock, engine=engine,
                                  start_clock_on_register=scor, stall_guard_ms=guard,
                                  max_stopped_histories=limit)
        assert self.m.engine_name == engine
        self.events = []
        self.handles = []
        self.registry = {}

        def alert(aid, state, details):
            self.events.append(("alert", aid, state.value, sorted(details.items())))

        def recovery(aid, state, details):
            self.events.append(("recovery", aid, state.value, sorted(details.items())))

        def batch(b):
            self.events.append(("batch", list(b.ids), [self.index(h) for h in b.handles.tolist()],
                                b.previous.tolist(), b.current.tolist(), b.kind.tolist(),
                                b.elapsed_s.tolist(), b.deadline_monotonic.tolist(),
                                b.detected_monotonic.tolist()))

        self.m.configure_alerts(on_degraded=True, on_critical=True, on_failed=True,
                                degraded_callback=alert, critical_callback=alert,
                                failed_callback=alert, recovery_callback=recovery,
                                batch_callback=batch)

    def index(self, h):
        return self.registry.get(h, "unregistered")

    def register(self):
        """Note the handles of the incarnations now monitored (call after each start)."""
        for h in self.m.handles(POOL).tolist():
            if h >= 0 and h not in self.registry:
                self.registry[h] = len(self.handles)
                self.handles.append(h)

    def handle_array(self, picks):
        out = []
        for p in picks:
            out.append(-1 if p < 0 or not self.handles else self.handles[p % len(self.handles)])
        return np.array(out, dtype=np.int64)

    def take_events(self):
        ev, self.events = self.events, []
        return ev


# The queries: (function of a Side, float tolerance). Every one is read-only.

def _q_history_keys(s):
    hv = s.m.heartbeat_history
    return [list(hv), len(hv), [aid in hv for aid in IDS], sorted(map(repr, hv.keys()))]


def _q_history_len(s):
    return [attempt(lambda a=aid: len(s.m.heartbeat_history[a])) for aid in IDS]


def _q_history_last(s):
    return [attempt(lambda a=aid: s.m.heartbeat_history[a][-1]) for aid in IDS]


def _q_history_seq(s):
    out = []
    for aid in IDS:
        if aid in s.m.heartbeat_history:
            seq = s.m.heartbeat_history[aid]
            out.append([list(seq), seq[0:2], attempt(lambda q=seq: q[0])])
        else:
            out.append(None)
    return out


def _q_get_history(s):
    return [s.m.get_heartbeat_history(aid) for aid in IDS]


def _q_history_range(s):
    now = s.clock.time()
    lo, hi = datetime.fromtimestamp(now - 0.5), datetime.fromtimestamp(now)
    return [s.m.get_heartbeat_history(aid, time_range=(lo, hi)) for aid in IDS]


def _q_history_array(s):
    return [[s.m.history_array(aid), s.m.history_array(aid, copy=True)] for aid in IDS]


def _q_histories(s):
    values, offsets = s.m.histories(layout="flat")
    return [s.m.histories(), values, offsets, s.m.histories(IDS),
            s.m.histories(s.handle_array(range(len(s.handles))))]


def _q_agents(s):
    ma = s.m.monitoring_agents
    return [[(k, dict(v)) for k, v in ma.items()], len(ma), NEVER in ma, list(ma.keys()),
            [attempt(lambda a=aid: ma[a]["last_heartbeat"]) for aid in IDS]]


def _q_health(s):
    return [attempt(s.m.check_agent_health, aid) for aid in IDS]


def _q_unhealthy(s):
    return [s.m.get_unhealthy_agents(state) for state in STATES]


def _q_all_health(s):
    return [s.m.get_all_agents_health(),
            [attempt(s.m.get_agent_health, aid) for aid in IDS]]


def _q_interval_stats(s):
    w = s.clock.time()
    return [s.m.interval_stats(), s.m.interval_stats(IDS),
            s.m.interval_stats(IDS, time_range=(w - 1.0, w)),
            s.m.interval_stats(s.handle_array(range(len(s.handles))))]


def _q_phi(s):
    return [s.m.phi(), s.m.phi(IDS),
            s.m.phi(IDS, min_std_deviation_ms=10.0, acceptable_heartbeat_pause_ms=50.0)]


def _q_snapshot(s):
    snap = s.m.snapshot()
    return [snap.ids, [s.index(h) for h in snap.handles.tolist()], snap.states,
            snap.elapsed_ms, snap.phi, snap.counts, snap.monotonic, snap.wall]


def _q_stats(s):
    st_ = s.m.get_monitoring_stats()
    assert st_.pop("engine") == s.m.engine_name
    # How late an advance found its first due bucket: the wheel's coarser upper levels
    # make buckets due earlier than the pure engine's heap entries (engine-specific).
    # The stall length is measured from that bucket too (the stall count is compared).
    del st_["wheel_lag_ms"], st_["max_wheel_lag_ms"], st_["last_stall_ms"]
    return st_


def _q_handles(s):
    h = s.m.handles(IDS)
    every = s.handle_array(range(len(s.handles)))
    return [(h >= 0).tolist(), [s.index(x) if x >= 0 else -1 for x in h.tolist()],
            s.m.agent_ids(h), s.m.agent_ids(every),
            [s.index(x) for x in s.m.interval_stats()["handle"].tolist()]]


def _q_uptime(s):
    durations = [attempt(s.m.get_state_durations, aid) for aid in IDS]
    return [s.m.uptime(), s.m.uptime(IDS), durations]


QUERIES = {
    "history_keys": (_q_history_keys, 0),
    "history_len": (_q_history_len, 0),
    "history_last": (_q_history_last, 0),
    "history_seq": (_q_history_seq, 0),
    "get_history": (_q_get_history, 0),
    "history_range": (_q_history_range, 0),
    "history_array": (_q_history_array, 0),
    "histories": (_q_histories, 0),
    "agents": (_q_agents, 0),
    "health": (_q_health, 0),
    "unhealthy": (_q_unhealthy, 0),
    "all_health": (_q_all_health, 0),
    "interval_stats": (_q_interval_stats, REL),
    "phi": (_q_phi, REL),
    "snapshot": (_q_snapshot, REL),
    "stats": (_q_stats, 0),
    "handles": (_q_handles, 0),
    "uptime": (_q_uptime, REL),
}
QUERY_NAMES = list(QUERIES)


class Harness:
    """A compiled and a pure monitor driven in lock step; `check` compares everything."""

    def __init__(self, history_size=8, tick_ms=10, scor=False, guard=None, limit=None):
        self.sides = [Side(e, history_size, tick_ms, scor, guard, limit)
                      for e in ("compiled", "pure")]
        self.history_size = history_size
        self.trace = []

    def close(self):
        for s in self.sides:
            s.m.shutdown()

    def where(self):
        return "ops so far (newest last): " + repr(self.trace[-12:])

    def same(self, values, rel=0, what=""):
        a, b = (norm(v) for v in values)
        try:
            close(a, b, rel)
        except AssertionError as e:
            raise AssertionError(f"{what}: compiled and pure differ at {e}\n{self.where()}") \
                from None

    def both(self, fn, rel=0, what=""):
        out = [fn(s) for s in self.sides]
        self.same(out, rel, what)
        return out[0]

    def query(self, name):
        fn, rel = QUERIES[name]
        self.both(fn, rel, name)

    def check(self, first=None):
        self.same([s.take_events() for s in self.sides], 0, "events")
        a, b = self.sides
        assert a.clock.monotonic_ns() == b.clock.monotonic_ns()
        assert a.clock.time() == b.clock.time()
        order = QUERY_NAMES if first is None else \
            [first] + [n for n in QUERY_NAMES if n != first]
        for name in order:
            self.query(name)
        self.same([s.take_events() for s in self.sides], 0, "events after queries")

    # -- operations: each returns what the monitors returned, already compared --------------

    def apply(self, op):
        if op[0] == "burst" and isinstance(op[1], list):
            self.trace.append(("burst", f"<plan of {len(op[1])} actions>"))
        else:
            self.trace.append(op)
        kind = op[0]
        return getattr(self, "op_" + kind)(*op[1:])

    def op_burst(self, plan):
        """A run of heartbeats: the arguments of make_plan, or a plan: a list of ("hb", id),
        ("meta", id, metadata), ("adv", s), ("step", s), ("wheel",), ("probe", query)."""
        if isinstance(plan, tuple):
            plan = make_plan(*plan)
        def run(s):
            rb, m, clock = s.m.record_heartbeat, s.m, s.clock
            got, probes = [], []
            for act in plan:
                k = act[0]
                if k == "hb":
                    got.append(rb(act[1]))
                elif k == "adv":
                    clock.advance(act[1])
                elif k == "meta":
                    got.append(m.record_heartbeat(act[1], act[2]))
                elif k == "step":
                    clock.step_wall(act[1])
                elif k == "wheel":
                    probes.append(("wheel", m.advance()))
                else:
                    fn, _ = QUERIES[act[1]]
                    probes.append((act[1], norm(fn(s))))
            return got, probes

        (got_c, probes_c), (got_p, probes_p) = (run(s) for s in self.sides)
        self.same([got_c, got_p], 0, "burst heartbeats")
        assert [p[0] for p in probes_c] == [p[0] for p in probes_p]
        for (name, vc), (_, vp) in zip(probes_c, probes_p):
            self.same([vc, vp], QUERIES[name][1] if name in QUERIES else 0,
                      f"probe {name} inside the burst")
        return got_c

    def op_beat(self, aid):
        return self.both(lambda s: s.m.record_heartbeat(aid), what="record_heartbeat")

    def op_meta(self, aid, meta):
        return self.both(lambda s: s.m.record_heartbeat(aid, None if meta is None
                                                         else dict(meta)),
                         what="record_heartbeat(metadata)")

    def op_start(self, aid, interval_ms, threshold, start_clock):
        def go(s):
            r = s.m.start_monitoring(aid, interval_ms=interval_ms,
                                     failure_threshold=threshold, start_clock=start_clock)
            s.register()
            return r
        return self.both(go, what="start_monitoring")

    def op_start_many(self, ids, interval_ms):
        def go(s):
            r = s.m.start_monitoring_many(list(ids), interval_ms=interval_ms)
            s.register()
            return r
        return self.both(go, what="start_monitoring_many")

    def op_stop(self, aid):
        return self.both(lambda s: s.m.stop_monitoring(aid), what="stop_monitoring")

    def op_restart(self, aid, interval_ms):
        def go(s):
            r = (s.m.stop_monitoring(aid), s.m.start_monitoring(aid, interval_ms=interval_ms))
            s.register()
            return r
        return self.both(go, what="stop+start")

    def op_clock(self, seconds):
        for s in self.sides:
            s.clock.advance(seconds)

    def op_wheel(self, seconds):
        return self.both(lambda s: s.m.advance(to=s.clock.now + seconds), what="advance")

    def op_step(self, seconds):
        for s in self.sides:
            s.clock.step_wall(seconds)

    def op_batch_ids(self, ids):
        return self.both(lambda s: s.m.record_heartbeats(list(ids)), what="record_heartbeats")

    def op_batch_handles(self, picks):
        return self.both(lambda s: s.m.record_heartbeats(s.handle_array(picks)),
                         what="record_heartbeats(handles)")

    def op_batch_stamped(self, ids, ages, by_handle):
        def go(s):
            now = s.clock.time()
            stamps = [now - age for age in ages]
            target = s.m.handles(list(ids)) if by_handle else list(ids)
            return s.m.record_heartbeats(target, stamps)
        return self.both(go, what="record_heartbeats(timestamps)")

    def op_field(self, aid, field, value):
        def go(s):
            v = value
            if field == "last_heartbeat" and value != 0:
                v = s.clock.time() - value        # an age: seconds before now
            elif field == "started_at":
                v = s.clock.time() - value
            elif field == "last_state":
                v = HealthState(value)

            def write():
                s.m.monitoring_agents[aid][field] = v
            return attempt(write)
        return self.both(go, what=f"monitoring_agents[{aid!r}][{field!r}] = ...")

    def op_del(self, aid):
        def go(s):
            def delete():
                del s.m.heartbeat_history[aid]
            return attempt(delete)
        return self.both(go, what="del heartbeat_history[...]")

    def op_clear(self, aid):
        return self.both(lambda s: s.m.clear_history() if aid == ALL else s.m.clear_history(aid),
                         what="clear_history")

    def op_query(self, name):
        self.query(name)


# -- random operations --------------------------------------------------------------------------

BURST_SIZES = [1, 2, 7, 40, 300, 1500, 4100, 4500, 6000]
DT_KINDS = {             # clock advance before a heartbeat (with probability p_adv)
    "none": [0.0],
    "us": [1e-6, 5e-5],
    "ms": [0.001, 0.002],
    "mixed": [0.0005, 0.004, 0.01, 0.03],
    "slow": [0.02, 0.05, 0.12, 0.3],
}


def make_plan(seed, n, agents, dt_kind, p_adv, n_steps, n_probes, n_wheel, meta_every,
              unknown):
    """The actions of one burst (a deterministic function of its arguments)."""
    rng = random.Random(seed)
    pool = list(agents) or POOL[:1]
    if unknown:
        pool = [*pool, NEVER]
    dts = DT_KINDS[dt_kind]
    extras = {}
    for _ in range(n_steps):
        extras.setdefault(rng.randrange(n), []).append(("step", rng.choice(WALL_STEPS)))
    for _ in range(n_probes):
        extras.setdefault(rng.randrange(n), []).append(("probe", rng.choice(QUERY_NAMES)))
    for _ in range(n_wheel):
        extras.setdefault(rng.randrange(n), []).append(("wheel",))
    plan = []
    for i in range(n):
        plan.extend(extras.get(i, ()))
        if dts[0] and rng.random() < p_adv:
            plan.append(("adv", rng.choice(dts)))
        aid = rng.choice(pool)
        if meta_every and i % meta_every == meta_every - 1:
            plan.append(("meta", aid, {"i": i, "seed": seed}))
        else:
            plan.append(("hb", aid))
    return plan


def gen_op(choice, randint, kinds):
    """One random operation; `choice(seq)` and `randint(lo, hi)` are the randomness."""
    kind = choice(kinds)
    if kind == "burst":
        n = choice(BURST_SIZES)
        agents = tuple(a for a in POOL if choice([True, True, False])) or (choice(POOL),)
        return ("burst", (randint(0, 1 << 30), n, agents, choice(list(DT_KINDS)),
                          choice([0.1, 0.5, 1.0]), choice([0, 0, 0, 1, 2]), choice([0, 0, 1, 3]),
                          choice([0, 0, 0, 1, 2]), choice([0, 0, 0, 0, 1, 3, 50]),
                          choice([False, False, True])))
    if kind == "beat":
        return ("beat", choice(IDS))
    if kind == "meta":
        return ("meta", choice(POOL), choice([{"k": 1}, {}, None, {"x": [1, 2], "y": "z"}]))
    if kind == "start":
        return ("start", choice(POOL), choice(INTERVALS), choice(THRESHOLDS),
                choice([None, True, False]))
    if kind == "start_many":
        return ("start_many", tuple(choice(POOL) for _ in range(randint(1, 4))),
                choice(INTERVALS))
    if kind == "stop":
        return ("stop", choice(POOL))
    if kind == "restart":
        return ("restart", choice(POOL), choice(INTERVALS))
    if kind == "clock":
        return ("clock", choice([0.001, 0.05, 0.1, 0.25, 0.26, 0.6, 1.0, 2.5, 6.0, 30.0]))
    if kind == "wheel":
        return ("wheel", choice([0.0, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 20.0]))
    if kind == "step":
        return ("step", choice(WALL_STEPS))
    if kind == "batch_ids":
        return ("batch_ids", tuple(choice(IDS) for _ in range(randint(0, 12))))
    if kind == "batch_handles":
        return ("batch_handles", tuple(randint(-1, 40) for _ in range(randint(1, 10))))
    if kind == "batch_stamped":
        k = randint(1, 8)
        return ("batch_stamped", tuple(choice(IDS) for _ in range(k)),
                tuple(choice([-1.0, 0.0, 0.001, 0.05, 0.3, 2.0, 100.0]) for _ in range(k)),
                choice([False, True]))
    if kind == "field":
        field = choice(["last_heartbeat", "last_heartbeat", "last_state", "interval_ms",
                        "failure_threshold", "started_at"])
        value = {"last_heartbeat": lambda: choice([0, 0.0, 0.05, 0.3, 3.0, 1000.0]),
                 "last_state": lambda: choice([s.value for s in STATES]),
                 "interval_ms": lambda: choice(INTERVALS),
                 "failure_threshold": lambda: choice(THRESHOLDS),
                 "started_at": lambda: choice([0.0, 10.0])}[field]()
        return ("field", choice(IDS), field, value)
    if kind == "del":
        return ("del", choice(IDS))
    if kind == "clear":
        return ("clear", choice([*POOL, ALL]))
    assert kind == "query"
    return ("query", choice(QUERY_NAMES))


# Plain live heartbeats dominate: most operations are bursts.
KINDS = (["burst"] * 12 + ["beat", "meta", "start", "start_many", "stop", "restart", "clock",
                           "clock", "wheel", "wheel", "step", "batch_ids", "batch_handles",
                           "batch_stamped", "field", "field", "del", "clear", "query"])


def setup_agents(h, choice):
    for aid in POOL[:3]:
        h.apply(("start", aid, choice(INTERVALS), choice(THRESHOLDS), None))
    h.check()


# No shrinking: an example runs thousands of heartbeats, and hypothesis needs many minutes
# to shrink one; a failure reports the operations (Harness.where) and the draws instead.
@pytest.mark.compiled       # compares the two engines: left out of a pure-only run
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), history_size=st.sampled_from([1, 3, 5, 8, 100]),
       tick_ms=st.sampled_from([1, 10, 7]), scor=st.booleans(),
       limit=st.sampled_from([None, 0, 2]))
def test_engines_agree_on_random_runs(data, history_size, tick_ms, scor, limit):
    # No observer-stall guard in the differential runs: both engines hold from the same
    # instant (the wheel's last run), but each tells a stall by its own wheel schedule (a
    # bucket start here, an exact tick in the pure heap), so they can count different
    # stalls (test_stall_guard_with_staged_heartbeats and test_stall.py cover the guard).
    h = Harness(history_size, tick_ms, scor, None, limit)
    try:
        def choice(seq):
            return data.draw(st.sampled_from(list(seq)))

        def randint(lo, hi):
            return data.draw(st.integers(lo, hi))

        setup_agents(h, choice)
        for _ in range(data.draw(st.integers(3, 20), label="operations")):
            h.apply(gen_op(choice, randint, KINDS))
            # Often no check between two operations: the next one then meets whatever
            # the previous burst left staged (each check reads, so it flushes).
            if data.draw(st.booleans(), label="check now"):
                h.check(first=choice(QUERY_NAMES))
        h.check(first=choice(QUERY_NAMES))
    finally:
        h.close()


@pytest.mark.compiled
@pytest.mark.parametrize("history_size,seed", [(3, 1), (8, 2), (100, 3), (5, 4)])
def test_engines_agree_on_long_seeded_runs(history_size, seed):
    """Longer runs (more bursts longer than the staging log, more churn) from a seed."""
    rng = random.Random(seed)
    h = Harness(history_size, rng.choice([1, 7, 10]), bool(seed % 2), None,
                [None, 2][seed // 2 % 2])
    try:
        setup_agents(h, rng.choice)
        for _ in range(90):
            h.apply(gen_op(rng.choice, rng.randint, KINDS))
            if rng.random() < 0.5:
                h.check(first=rng.choice(QUERY_NAMES))
        h.check()
    finally:
        h.close()


@pytest.mark.compiled
@pytest.mark.parametrize("first", QUERY_NAMES)
def test_each_query_first_after_an_overflowing_burst(first):
    """Every query kind is the first to look after 5,000 staged heartbeats (a wrapped ring,
    a wall-clock step and threshold crossings inside the run), and after a deleted history
    got its first heartbeat back."""
    h = Harness(history_size=5, tick_ms=10)
    try:
        h.apply(("start", "a", 100, 3, None))
        h.apply(("start", "b", 250, 2, None))
        h.apply(("start", "c", 1000, 5, True))
        h.apply(("start", 7, 100, 1, None))
        h.check()
        h.apply(("burst", (11, 5000, ("a", "b", 7), "mixed", 0.5, 2, 0, 0, 0, True)))
        h.check(first=first)
        h.apply(("del", "a"))
        h.apply(("clock", 0.01))
        h.apply(("burst", [("hb", "a")]))
        h.check(first=first)
        h.apply(("burst", (12, 4200, ("a", "b"), "ms", 1.0, 0, 0, 0, 0, False)))
        h.apply(("restart", "b", 100))
        h.apply(("burst", (13, 4200, ("b", "c"), "us", 1.0, 1, 0, 0, 0, False)))
        h.check(first=first)
    finally:
        h.close()


AFTER_BURST = {
    "stop": [("stop", "a")],
    "stop_start": [("restart", "a", 250)],
    "stop_other_start": [("stop", "a"), ("start", ("t", 1), 100, 3, None)],
    "del": [("del", "a")],
    "clear": [("clear", "a")],
    "clear_stopped": [("stop", "b"), ("clear", ALL)],
    "last_heartbeat": [("field", "a", "last_heartbeat", 0.3)],
    "last_heartbeat_0": [("field", "a", "last_heartbeat", 0)],
    "last_state": [("field", "b", "last_state", "critical")],
    "interval_ms": [("field", "a", "interval_ms", 1000)],
    "failure_threshold": [("field", "b", "failure_threshold", 1)],
    "batch_ids": [("batch_ids", ("a", "b", NEVER, "a"))],
    "batch_handles": [("batch_handles", (0, 1, 2, 3, -1, 0))],
    "batch_stamped": [("batch_stamped", ("a", "b", "a"), (0.3, 0.0, 0.05), False)],
    "batch_stamped_handles": [("batch_stamped", ("a", 7, "b"), (2.0, 0.001, -1.0), True)],
    "metadata": [("meta", "a", {"k": 1}), ("beat", "a")],
    "wheel": [("wheel", 0.0), ("wheel", 0.3)],
    "step": [("step", -3600.0), ("beat", "a"), ("beat", "b")],
    "start_many": [("start_many", ("a", ("t", 1), "c"), 250)],
    "clock_beat": [("clock", 0.3), ("beat", "b")],
}


@pytest.mark.compiled
@pytest.mark.parametrize("kind", list(AFTER_BURST))
def test_each_operation_right_after_an_overflowing_burst(kind):
    """Every mutation kind meets thousands of staged heartbeats (nothing read them yet),
    then every observable is compared, the history views first."""
    h = Harness(history_size=6, tick_ms=10)
    try:
        h.apply(("start", "a", 100, 3, None))
        h.apply(("start", "b", 250, 2, None))
        h.apply(("start", "c", 1000, 5, True))
        h.apply(("start", 7, 100, 1, None))
        h.apply(("step", 2.0))
        h.apply(("burst", (21, 4500, ("a", "b", 7), "mixed", 0.3, 1, 0, 0, 0, False)))
        for op in AFTER_BURST[kind]:
            h.apply(op)
        h.apply(("clock", 0.001))
        h.apply(("burst", [("hb", "a"), ("hb", "b"), ("hb", "a")]))
        h.check(first="get_history")
        h.apply(("burst", (22, 4200, ("a", "b", "c"), "us", 0.5, 0, 0, 0, 0, False)))
        for op in AFTER_BURST[kind]:
            h.apply(op)
        h.check(first="history_len")
    finally:
        h.close()


# -- deterministic runs with exact expectations (both engines) ---------------------------------

def _walls(m, aid):
    return [r["timestamp"] for r in m.get_heartbeat_history(aid)]


def _stats_row(m, aid, **kw):
    r = m.interval_stats([aid], **kw)[0]
    return {f: r[f] for f in STAT_FIELDS}


def _assert_row(got, want, abs_=1e-12):
    """interval_stats fields against the monotonic reference. Exact up to float rounding
    when the wall times are exact (dyadic steps); otherwise within `abs_` seconds (a Unix
    time near 1.7e9 is a float64 with a resolution of 2.4e-7 s)."""
    for f in STAT_FIELDS:
        g, w = float(got[f]), float(want[f])
        if math.isnan(w):
            assert math.isnan(g), (f, g, w)
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=abs_), (f, g, w)


@pytest.mark.compiled
@pytest.mark.parametrize("history_size", [100, 8])
def test_round_robin_20000_exact(history_size):
    """10 agents, 20,000 live heartbeats round robin, the clock 1 ms further each time, no
    query in between: both engines hold exactly the expected histories and statistics."""
    ids = [f"agent-{i}" for i in range(10)]
    runs = {}
    try:
        for engine in ("compiled", "pure"):
            clock = VirtualClock(start=START, wall_start=WALL)
            m = HeartbeatMonitor(interval_ms=1000, failure_threshold=3,
                                 history_size=history_size, clock=clock, engine=engine)
            m.start_monitoring_many(ids)
            records = {aid: [] for aid in ids}
            rb = m.record_heartbeat
            ok = True
            for k in range(20_000):
                clock.advance(0.001)
                aid = ids[k % 10]
                ok &= rb(aid)
                records[aid].append((clock.monotonic_ns(), clock.time()))
            assert ok
            runs[engine] = (m, records)
        (mc, rec), (mp, rec_p) = runs["compiled"], runs["pure"]
        assert rec == rec_p
        for aid in ids:
            ring = rec[aid][-history_size:]
            want = [w for _, w in ring]
            assert _walls(mc, aid) == want
            assert _walls(mp, aid) == want
            assert mc.history_array(aid).tolist() == want
            assert [r["metadata"] for r in mc.get_heartbeat_history(aid)] == [{}] * history_size
            row = interval_row(mono_intervals(ring))
            assert row["mean"] == pytest.approx(0.01, rel=1e-9)
            _assert_row(_stats_row(mc, aid), row, abs_=1e-6)
            _assert_row(_stats_row(mp, aid), row, abs_=1e-6)
            _assert_row(_stats_row(mc, aid), _stats_row(mp, aid))
        for m in (mc, mp):
            st_ = m.get_monitoring_stats()
            assert st_["heartbeats_recorded"] == 20_000
            assert st_["total_heartbeats"] == 10 * history_size
            assert st_["health_distribution"]["healthy"] == 10
            assert st_["transitions"] == 0
        assert np.array_equal(mc.histories(), mp.histories())
        sc, sp = mc.interval_stats(), mp.interval_stats()
        for f in STAT_FIELDS:
            assert np.allclose(sc[f], sp[f], rtol=1e-12, atol=1e-12, equal_nan=True), f
        assert mc.snapshot().elapsed_ms.tolist() == mp.snapshot().elapsed_ms.tolist()
        assert mc.phi().tolist() == pytest.approx(mp.phi().tolist(), rel=1e-12)
    finally:
        for m, _ in runs.values():
            m.shutdown()


@pytest.mark.parametrize("history_size", [8, 100])
def test_wall_steps_inside_a_long_burst(make_monitor, vclock, history_size):
    """Wall-clock steps in the middle of runs longer than a staging log: the histories keep
    the raw walls, the statistics are the monotonic intervals of the ring, exactly (all
    times are multiples of 1/512 s: exact Unix times in float64)."""
    m = make_monitor(interval_ms=1000, history_size=history_size)
    m.start_monitoring("a")
    m.start_monitoring("b")
    records = {"a": [], "b": []}
    steps = {1000: 3600.0, 4090: -7200.0, 4097: 2.0, 8191: -0.5, 9000 - history_size // 2: 60.0}
    for k in range(9000):
        if k in steps:
            vclock.step_wall(steps[k])
        vclock.advance((1 + k % 7) / 512)
        aid = "a" if k % 3 else "b"
        assert m.record_heartbeat(aid)
        records[aid].append((vclock.monotonic_ns(), vclock.time()))
    for aid in ("a", "b"):
        ring = records[aid][-history_size:]
        _assert_row(_stats_row(m, aid), interval_row(mono_intervals(ring)))
        assert _walls(m, aid) == [w for _, w in ring]
        lo, hi = ring[1][1], ring[-2][1]
        _assert_row(_stats_row(m, aid, time_range=(lo, hi)),
                    interval_row(mono_intervals(ring, lo, hi)))


@pytest.mark.parametrize("history_size", [4, 100])
def test_wheel_events_after_a_burst_carry_the_last_wall(make_monitor, vclock, history_size):
    """After 5,000 staged heartbeats the wheel's crossings report the last heartbeat's wall
    time (even after a later wall-clock step) and elapsed time; a heartbeat recovers."""
    events = []
    m = make_monitor(interval_ms=100, failure_threshold=3, history_size=history_size)
    m.configure_alerts(degraded_callback=lambda a, s, d: events.append((a, s, d)),
                       critical_callback=lambda a, s, d: events.append((a, s, d)),
                       failed_callback=lambda a, s, d: events.append((a, s, d)),
                       recovery_callback=lambda a, s, d: events.append((a, s, d)))
    m.start_monitoring("a")
    m.start_monitoring("b")
    last = {}
    for k in range(5000):
        vclock.advance(0.0005)
        aid = "ab"[k % 2]
        m.record_heartbeat(aid)
        last[aid] = vclock.time()
    assert m.monitoring_agents["b"]["last_heartbeat"] == last["b"]
    vclock.step_wall(-3600.0)
    found = 0
    for _ in range(7):                # a keeps beating (staged); b has gone quiet
        vclock.advance(0.05)
        m.record_heartbeat("a")
        last["a"] = vclock.time()
        found += m.advance()
    assert found == 3
    assert [(a, s) for a, s, _ in events] == [("b", HealthState.DEGRADED),
                                              ("b", HealthState.CRITICAL),
                                              ("b", HealthState.FAILED)]
    for _, _, d in events:
        assert d["last_heartbeat"] == datetime.fromtimestamp(last["b"]).isoformat()
    assert [d["elapsed_seconds"] for _, _, d in events] == [0.1, 0.2, 0.3]
    assert m.get_unhealthy_agents() == ["b"]
    events.clear()
    assert m.advance(to=vclock.now + 0.35) == 3
    assert [(a, s) for a, s, _ in events] == [("a", HealthState.DEGRADED),
                                              ("a", HealthState.CRITICAL),
                                              ("a", HealthState.FAILED)]
    assert events[0][2]["last_heartbeat"] == datetime.fromtimestamp(last["a"]).isoformat()
    assert m.get_unhealthy_agents() == ["a", "b"]
    assert m.check_agent_health("a") is HealthState.FAILED
    assert m.monitoring_agents["a"]["last_heartbeat"] == last["a"]
    events.clear()
    m.record_heartbeat("b")
    assert [(a, s, d["previous_state"]) for a, s, d in events] == [
        ("b", HealthState.HEALTHY, "failed")]
    assert m.get_unhealthy_agents() == ["a"]
    assert len(m.get_heartbeat_history("b")) == history_size


def test_stale_handles_after_slot_reuse(make_monitor, vclock):
    """A stopped agent's handle never matches again: not after its slot is reused by
    another agent, not after the same id is monitored anew, not inside staged runs."""
    m = make_monitor(interval_ms=1000, history_size=8)
    m.start_monitoring_many(["a", "b"])
    old_a, old_b = m.handles(["a", "b"]).tolist()
    for _ in range(4500):
        vclock.advance(0.0001)
        m.record_heartbeat("a")
        m.record_heartbeat("b")
    assert m.stop_monitoring("a")
    assert m.start_monitoring("x")            # may take a's slot
    assert m.start_monitoring("a")            # a new incarnation
    new_x, new_a = m.handles(["x", "a"]).tolist()
    assert len({old_a, old_b, new_x, new_a}) == 4
    stale = np.array([old_a, old_a], dtype=np.int64)
    for k in range(4500):
        vclock.advance(0.0001)
        m.record_heartbeat("x" if k % 2 else "a")
        if k % 1000 == 0:
            assert m.record_heartbeats(stale).tolist() == [False, False]
    assert m.record_heartbeats(stale).tolist() == [False, False]
    assert m.agent_ids(np.array([old_a, old_b, new_x, new_a], dtype=np.int64)) == [
        None, "b", "x", "a"]
    assert m.interval_stats(stale)["count"].tolist() == [0, 0]
    assert np.isnan(m.histories(stale)).all()
    assert len(m.get_heartbeat_history("x")) == 8
    assert len(m.get_heartbeat_history("a")) == 8
    assert m.record_heartbeats(np.array([new_x, old_b, new_a], dtype=np.int64)).tolist() == [
        True, True, True]
    assert m.get_monitoring_stats()["heartbeats_recorded"] == 9000 + 4500 + 3
    assert m.stop_monitoring("b")
    assert m.record_heartbeats(np.array([old_b], dtype=np.int64)).tolist() == [False]
    assert len(m.get_heartbeat_history("b")) == 8      # the stopped history is kept


@pytest.mark.parametrize("history_size", [5, 100])
def test_metadata_among_plain_heartbeats(make_monitor, vclock, history_size):
    """Metadata heartbeats among thousands of plain ones: each record keeps its own metadata
    ({} for plain ones), also when a plain heartbeat overwrites a ring position that held
    metadata; an empty dict is no metadata."""
    m = make_monitor(interval_ms=1000, history_size=history_size)
    m.start_monitoring("a")
    m.start_monitoring("b")
    want = []
    for k in range(6000):
        vclock.advance(0.0001)
        if k % 97 == 5:
            meta = {"k": k}
            m.record_heartbeat("a", meta)
        elif k % 89 == 3:
            meta = {}
            m.record_heartbeat("a", {})
        else:
            meta = {}
            m.record_heartbeat("a")
        m.record_heartbeat("b")
        want.append((vclock.time(), meta))
    got = m.get_heartbeat_history("a")
    assert [(r["timestamp"], r["metadata"]) for r in got] == want[-history_size:]
    assert all(r["metadata"] == {} for r in m.get_heartbeat_history("b"))
    assert m.heartbeat_history["a"][-1]["metadata"] == want[-1][1]


@pytest.mark.parametrize("history_size", [8, 100])
@pytest.mark.parametrize("how", ["del", "clear_history", "restart", "other_id"])
def test_step_markers_end_with_their_history(make_monitor, vclock, history_size, how):
    """A wall-clock step marks an agent's history; once that history is gone (deleted,
    cleared, or the agent stopped and its slot monitored anew, by the same id or another),
    the new records' statistics are their own monotonic intervals at every length."""
    m = make_monitor(interval_ms=1000, history_size=history_size)
    m.start_monitoring("a")
    m.start_monitoring("b")
    for k in range(history_size + history_size // 2):
        if k == history_size // 3 + 1:
            vclock.step_wall(3600.0)
        if k == history_size // 2 + 1:
            vclock.step_wall(-7200.0)
        vclock.advance(0.25)
        m.record_heartbeat("a")
        m.record_heartbeat("b")
    assert _stats_row(m, "a")["max"] == pytest.approx(0.25, rel=1e-9)   # monotonic
    target = "a"
    if how == "del":
        del m.heartbeat_history["a"]
    elif how == "clear_history":
        assert m.clear_history("a") == 1
    else:
        assert m.stop_monitoring("a")
        target = "a" if how == "restart" else "x"
        assert m.start_monitoring(target)
    records = []
    for k in range(2 * history_size + 3):
        vclock.advance(1 / 8 * (1 + k % 3))           # dyadic: exact Unix times
        assert m.record_heartbeat(target)
        m.record_heartbeat("b")
        records.append((vclock.monotonic_ns(), vclock.time()))
        ring = records[-history_size:]
        _assert_row(_stats_row(m, target), interval_row(mono_intervals(ring)))
        assert _walls(m, target) == [w for _, w in ring]


def test_histories_of_agents_without_heartbeats(make_monitor, vclock):
    """An agent with no heartbeat has an empty history (and is a key of heartbeat_history);
    after `del` it has none until its next heartbeat, which shows at once."""
    m = make_monitor(interval_ms=1000, history_size=8)
    m.start_monitoring("a")
    m.start_monitoring("q")
    for _ in range(5000):
        vclock.advance(0.0001)
        m.record_heartbeat("a")
    assert list(m.heartbeat_history) == ["a", "q"]
    assert m.get_heartbeat_history("q") == []
    assert m.monitoring_agents["q"]["last_heartbeat"] == 0
    del m.heartbeat_history["a"]
    assert list(m.heartbeat_history) == ["q"]
    assert "a" not in m.heartbeat_history
    with pytest.raises(KeyError):
        del m.heartbeat_history["a"]
    assert m.get_monitoring_stats()["total_heartbeats"] == 0
    vclock.advance(0.0001)
    assert m.record_heartbeat("a")
    assert "a" in m.heartbeat_history                  # the first look after the heartbeat
    assert list(m.heartbeat_history) == ["a", "q"]
    assert len(m.heartbeat_history["a"]) == 1
    assert m.get_heartbeat_history("a") == [{"timestamp": vclock.time(), "metadata": {}}]
    assert m.interval_stats(["a"])["count"].tolist() == [0]
    for _ in range(3):
        vclock.advance(0.25)
        m.record_heartbeat("a")
    assert m.interval_stats(["a"])["mean"].tolist() == pytest.approx([0.25], rel=1e-9)


def test_stall_guard_with_staged_heartbeats(make_monitor, vclock):
    """The observer-stall guard over staged heartbeats: the process is suspended for 30 s;
    on resuming, thousands of queued heartbeats are recorded before the wheel notices the
    stall. The agents that reported are not convicted; the silent one is, in order."""
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10, stall_guard_ms=2000,
                     stall_grace_ms=5000, history_size=16)
    alerts = []
    m.configure_alerts(degraded_callback=lambda a, s, d: alerts.append((a, s)),
                       critical_callback=lambda a, s, d: alerts.append((a, s)),
                       failed_callback=lambda a, s, d: alerts.append((a, s)),
                       recovery_callback=lambda a, s, d: alerts.append((a, s)))
    alive = ["p", "q", "r"]
    m.start_monitoring_many([*alive, "dead"])
    assert m.record_heartbeats([*alive, "dead"]).all()
    t = START
    for _ in range(4):                      # a healthy second, 1,500 heartbeats a tick
        t += 0.25
        m.advance(to=t)
        for k in range(1500):
            m.record_heartbeat(alive[k % 3])
    vclock.set(START + 30.75)               # suspended: nothing ran for 30 s
    for k in range(6000):                   # the queued heartbeats come first ...
        m.record_heartbeat(alive[k % 3])
    assert m.get_monitoring_stats()["observer_stalls"] == 1
    m.advance()                             # ... then the wheel
    t = vclock.now
    while t < START + 40:
        t += 0.25
        m.advance(to=t)
        for k in range(300):
            m.record_heartbeat(alive[k % 3])
    assert alerts == [("dead", HealthState.DEGRADED), ("dead", HealthState.CRITICAL),
                      ("dead", HealthState.FAILED)]
    assert m.get_monitoring_stats()["observer_stalls"] == 1
    assert m.get_unhealthy_agents() == ["dead"]
    for aid in alive:
        ts = [r["timestamp"] for r in m.get_heartbeat_history(aid)]
        assert len(ts) == 16 and ts[-1] == vclock.time()


# -- threads ------------------------------------------------------------------------------------

def test_threads_record_while_another_reads(engine):
    """Two threads record heartbeats (own agents and shared ones) while a third reads
    histories and statistics: every read is ordered and within bounds, and in the end each
    agent holds exactly min(recorded, history_size) records, in order."""
    H = 64
    m = HeartbeatMonitor(interval_ms=60_000, history_size=H, engine=engine, background=False)
    own = {0: ["p0", "p1", "p2"], 1: ["q0", "q1", "q2"]}
    shared = ["s0", "s1"]
    ids = own[0] + own[1] + shared + ["few"]
    m.start_monitoring_many(ids)
    per_thread = 12_000 if engine == "compiled" else 6_000
    counts = [dict.fromkeys(ids, 0) for _ in range(2)]
    done = threading.Event()
    errors = []
    reads = [0]

    def writer(w):
        try:
            mine = own[w] + shared
            c = counts[w]
            rb = m.record_heartbeat
            for k in range(per_thread):
                aid = mine[k % len(mine)]
                assert rb(aid)
                c[aid] += 1
                if w == 0 and k % 2000 == 0:
                    assert rb("few")
                    c["few"] += 1
                if k % 3000 == 2999:
                    time.sleep(0)
        except BaseException as e:
            errors.append(e)

    def reader():
        try:
            seen = dict.fromkeys(ids, 0)
            last_recorded = 0
            while not done.is_set():
                for aid in ids:
                    ts = [r["timestamp"] for r in m.get_heartbeat_history(aid)]
                    assert len(ts) <= H
                    assert ts == sorted(ts), aid
                    assert len(ts) >= seen[aid], aid
                    seen[aid] = len(ts)
                rows = m.interval_stats(ids)
                assert (rows["count"] <= H - 1).all()
                assert not (rows["min"] < 0).any()
                padded = m.histories(ids)
                for row in padded:
                    kept = row[~np.isnan(row)]
                    assert (np.diff(kept) >= 0).all()
                st_ = m.get_monitoring_stats()
                assert st_["heartbeats_recorded"] >= last_recorded
                last_recorded = st_["heartbeats_recorded"]
                assert st_["total_heartbeats"] <= H * len(ids)
                assert len(m.snapshot()) == len(ids)
                reads[0] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    rt.join(60)
    try:
        assert not errors, errors
        assert reads[0] > 0
        total = 0
        for aid in ids:
            n = counts[0][aid] + counts[1][aid]
            total += n
            ts = [r["timestamp"] for r in m.get_heartbeat_history(aid)]
            assert len(ts) == min(n, H), (aid, len(ts), n)
            assert ts == sorted(ts)
            assert len(m.heartbeat_history[aid]) == min(n, H)
            assert m.interval_stats([aid])["count"].tolist() == [max(min(n, H) - 1, 0)]
        st_ = m.get_monitoring_stats()
        assert st_["heartbeats_recorded"] == total
        assert st_["total_heartbeats"] == sum(
            min(counts[0][a] + counts[1][a], H) for a in ids)
    finally:
        m.shutdown()
