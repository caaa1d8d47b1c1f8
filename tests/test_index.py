"""The id index (the compiled engine's own open-addressing table, src/_index.pxi; a dict in
the pure engine) against a dict model: random registrations and stops of ids whose hashes
collide on purpose, so that probes run long, the table grows and deletions shift entries
back. Every id must stay findable, in registration order, with a stable handle."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moai_flow_fast import HeartbeatMonitor, VirtualClock


class Collide:
    """An id equal by value whose hash puts it in one of `buckets` runs (ints included:
    hash(Collide(n, b)) == hash(n % b))."""

    __slots__ = ("buckets", "n")

    def __init__(self, n: int, buckets: int) -> None:
        self.n, self.buckets = n, buckets

    def __hash__(self) -> int:
        return hash(self.n % self.buckets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collide) and other.n == self.n

    def __repr__(self) -> str:
        return f"Collide({self.n})"


def _id(kind: int, n: int, buckets: int) -> object:
    # Equal ids are made afresh each time (never the registered object): lookups compare.
    if kind == 0:
        return f"agent-{n}"
    if kind == 1:
        return n
    return Collide(n, buckets)


ops = st.lists(st.tuples(st.sampled_from(["start", "stop", "beat"]), st.integers(0, 2),
                         st.integers(0, 300)), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, buckets=st.sampled_from([1, 3, 64]))
def test_index_matches_a_dict(engine, ops, buckets):
    clock = VirtualClock(start=1000.0)
    m = HeartbeatMonitor(interval_ms=60_000, history_size=2, engine=engine, clock=clock)
    model: dict[object, int] = {}          # id -> handle, in registration order
    try:
        for op, kind, n in ops:
            agent_id = _id(kind, n, buckets)
            if op == "start":
                assert m.start_monitoring(agent_id) == (agent_id not in model)
                if agent_id not in model:
                    model[agent_id] = int(m.handles([agent_id])[0])
            elif op == "stop":
                assert m.stop_monitoring(agent_id) == (agent_id in model)
                model.pop(agent_id, None)
            else:
                assert m.record_heartbeat(agent_id) == (agent_id in model)
        assert len(m.monitoring_agents) == len(model)
        assert list(m.monitoring_agents) == list(model)
        probe = list(model) + [_id(k, n, buckets) for k in range(3) for n in range(301, 305)]
        expected = [model.get(x, -1) for x in probe]
        assert m.handles(probe).tolist() == expected
        colliding = [x for x in model if isinstance(x, Collide)]
        fresh = [Collide(x.n, buckets) for x in colliding]        # equal, not identical
        assert m.handles(fresh).tolist() == [model[x] for x in colliding]
        assert all((x in m.monitoring_agents) for x in model)
        assert m.agent_ids(np.array(list(model.values()), dtype=np.int64)) == list(model)
    finally:
        m.shutdown()


def test_many_ids_grow_and_shrink(engine):
    """Growth far past the first table, then every other id stopped (entries shifted back
    across whole runs) and re-registered: every lookup still answers."""
    n = 200_000 if engine == "compiled" else 20_000
    m = HeartbeatMonitor(interval_ms=60_000, history_size=1, engine=engine,
                         clock=VirtualClock(start=1000.0))
    try:
        ids = [f"w{i}" for i in range(n)]
        m.start_monitoring_many(ids)
        h = m.handles(ids)
        assert (h >= 0).all() and len(set(h.tolist())) == n
        for agent_id in ids[::2]:
            assert m.stop_monitoring(agent_id)
        left = m.handles(ids)
        assert (left[::2] == -1).all() and (left[1::2] == h[1::2]).all()
        m.start_monitoring_many(ids[::2])
        again = m.handles(ids)
        assert (again >= 0).all() and (again[1::2] == h[1::2]).all()
        assert list(m.monitoring_agents) == ids[1::2] + ids[::2]
        assert m.record_heartbeats(ids).all()
    finally:
        m.shutdown()


class Fickle:
    """Equal (to an equal Fickle) only on the first comparison it is asked for."""

    asked = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        Fickle.asked += 1
        return isinstance(other, Fickle) and other.n == self.n and Fickle.asked == 1


def test_stop_removes_the_entry_it_found_even_if_eq_changes_its_mind(engine):
    m = HeartbeatMonitor(interval_ms=1000, engine=engine, clock=VirtualClock(start=1000.0))
    try:
        assert m.start_monitoring(Fickle(1))
        Fickle.asked = 0
        e = m._engine           # the engine's own stop: one lookup, then the removal
        assert e.stop(Fickle(1))                      # found by its one "equal" answer
        assert len(e) == 0 and e.ids() == []
        assert len(m.monitoring_agents) == 0 and list(m.monitoring_agents) == []

        class Same:                                  # hashes like the stopped id
            def __hash__(self) -> int:
                return hash(1)

            def __eq__(self, other: object) -> bool:
                return False

        assert Same() not in m.monitoring_agents     # no entry left behind
        assert m.start_monitoring("x") and list(m.monitoring_agents) == ["x"]
        assert Same() not in m.monitoring_agents
    finally:
        m.shutdown()


def test_start_many_with_an_id_whose_eq_changes_its_mind_registers_nothing_broken(engine):
    m = HeartbeatMonitor(interval_ms=1000, engine=engine, clock=VirtualClock(start=1000.0))
    try:
        first = Fickle(7)
        assert m.start_monitoring(first)
        Fickle.asked = 1                              # every comparison from now: unequal
        try:
            m.start_monitoring_many(["a", Fickle(7), "b"])
        except ValueError:
            assert list(m.monitoring_agents) == [first]       # all or nothing
        else:                                         # the pure engine: a new, distinct id
            assert len(m.monitoring_agents) == 4
        assert m.record_heartbeat(first)
        assert len(m.handles(list(m.monitoring_agents))) == len(m.monitoring_agents)
    finally:
        m.shutdown()


@pytest.mark.compiled       # the compiled engine's own constructor split
def test_an_engine_made_without_init_answers_queries():
    from moai_flow_fast.core import _engine_c

    e = _engine_c.Engine.__new__(_engine_c.Engine)
    assert "x" not in e and len(e) == 0
