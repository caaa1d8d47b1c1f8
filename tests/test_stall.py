"""Observer-stall guard (issue 5, item 2; SEMANTICS.md Part B 6), in virtual time.

When the monitor itself ran late (thread starved, process suspended, long GC) by more
than `stall_guard_ms`, it convicts nobody for the deadlines that fell in the stall until
`stall_grace_ms` after it noticed; agents that report in the grace are spared, agents that
do not are convicted after it, every crossing in order. Guard: off by default with a
VirtualClock, 2000 ms with the system clock and background threads.
"""
from __future__ import annotations

import sys
import time

import pytest
from hb_model import C, D, F, H, Recorder

from moai_flow_fast import HealthState, HeartbeatMonitor

T0 = 1000.0          # the vclock fixture's start
ALIVE = [f"alive-{i}" for i in range(10)]


def _monitor(make_monitor, **kw):
    kw.setdefault("stall_guard_ms", 2000)
    kw.setdefault("stall_grace_ms", 5000)
    m = make_monitor(interval_ms=1000, failure_threshold=3, tick_ms=10, **kw)
    rec = Recorder().install(m, recovery=True)
    return m, rec


def _alerts(rec, agent=None):
    return [(a, s) for kind, a, s in rec.simple() if kind == "alert" and a != "ignore"
            and (agent is None or a == agent)]


def _beat_all(m, ids):
    for a in ids:
        assert m.record_heartbeat(a)


def _setup(m, vclock, extra=("dead",)):
    for a in ALIVE + list(extra):
        m.start_monitoring(a)
    _beat_all(m, ALIVE + list(extra))          # everyone at T0
    for k in range(1, 4):                      # a healthy second, driven every 0.25 s
        m.advance(to=T0 + 0.25 * k)
        _beat_all(m, ALIVE)
    # the last advance and heartbeats were at T0 + 0.75; "dead" is silent since T0


def test_stall_spares_agents_that_report_within_grace(make_monitor, vclock):
    m, rec = _monitor(make_monitor)
    _setup(m, vclock)
    assert rec.events == []

    # a 30 s stall: the next advance runs 30 s late
    n = m.advance(to=T0 + 30.75)
    assert n == 0, "a stall convicted someone on the spot"
    assert rec.events == []
    st = m.get_monitoring_stats()
    assert st["observer_stalls"] == 1
    # late by: now - max(earliest due deadline (T0 + 1, dead's), previous advance) =
    # 29 750 ms; the compiled wheel measures from its bucket's due time, which may be up
    # to one level-1 bucket (64 ticks) earlier
    assert 29_000 <= st["last_stall_ms"] <= 29_750 + 640, st["last_stall_ms"]
    for a in [*ALIVE, "dead"]:
        assert m.monitoring_agents[a]["last_state"] is H

    # the alive agents report within the grace (5 s), then keep reporting
    t = T0 + 30.75
    while t < T0 + 40:
        t += 0.25
        m.advance(to=t)
        _beat_all(m, ALIVE)
    assert _alerts(rec) == [("dead", D), ("dead", C), ("dead", F)]
    assert [e for e in rec.simple() if e[0] == "recovery"] == []
    for a in ALIVE:
        assert m.monitoring_agents[a]["last_state"] is H
        assert m.check_agent_health(a) is H
    assert m.get_unhealthy_agents(D) == ["dead"]
    assert m.monitoring_agents["dead"]["last_state"] is F
    st = m.get_monitoring_stats()
    assert st["observer_stalls"] == 1, "regular advances after the stall counted as stalls"
    assert st["transitions"] == 3 and st["recoveries"] == 0


def test_dead_agent_convicted_after_grace_in_order(make_monitor, vclock):
    """Convicted by the first advance at or after the grace's end, all crossings in
    order, with their true deadlines; nothing during the grace."""
    m, rec = _monitor(make_monitor)
    batches = []
    m.configure_alerts(batch_callback=batches.append)
    _setup(m, vclock, extra=("dead", "dead2"))
    m.start_monitoring("late")
    m.record_heartbeat("late")                 # at T0 + 0.75
    m.advance(to=T0 + 30.75)                   # the stall; grace until T0 + 35.75
    detected = T0 + 30.75
    t = detected
    while t < detected + 5.0 - 0.25:
        t += 0.25
        assert m.advance(to=t) == 0, f"convicted during the grace at {t}"
        _beat_all(m, ALIVE)
    assert rec.events == []
    batches.clear()
    n = m.advance(to=detected + 5.0)
    assert n == 9
    got = [(e[1], e[2], e[3]["deadline_monotonic"], e[3]["detected_monotonic"])
           for e in rec.events]
    # sorted by (deadline, registration order): dead, dead2 at T0 + 1, late at T0 + 1.75 ...
    assert [(a, s) for a, s, *_ in got] == [
        ("dead", D), ("dead2", D), ("late", D), ("dead", C), ("dead2", C), ("late", C),
        ("dead", F), ("dead2", F), ("late", F)]
    deadlines = {(a, s): d for a, s, d, _ in got}
    for a, base in (("dead", T0), ("dead2", T0), ("late", T0 + 0.75)):
        for k, s in enumerate((D, C, F), start=1):
            assert deadlines[(a, s)] == pytest.approx(base + k, abs=1e-6)
    assert all(det == pytest.approx(detected + 5.0) for *_, det in got)
    assert len(batches) == 1 and list(batches[0].current) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # "late" reports after the grace: it was convicted, and now recovers
    m.record_heartbeat("late")
    assert rec.simple()[-1] == ("recovery", "late", "failed")


def test_agent_degraded_before_stall_recovers_without_further_crossings(make_monitor, vclock):
    """A crossing that was due before the stall began is reported; those due in the stall
    are held, and a heartbeat in the grace ends the episode with a recovery."""
    m, rec = _monitor(make_monitor)
    m.start_monitoring("x")
    m.record_heartbeat("x")                    # T0
    for k in range(1, 7):                      # regular advances to T0 + 1.5
        m.advance(to=T0 + 0.25 * k)
    assert _alerts(rec) == [("x", D)]
    m.advance(to=T0 + 31.5)                    # stall: CRITICAL (T0 + 2) and FAILED held
    assert _alerts(rec) == [("x", D)]
    m.advance(to=T0 + 32.0)
    assert m.record_heartbeat("x")             # in the grace
    assert rec.simple() == [("alert", "x", D), ("recovery", "x", "degraded")]
    for k in range(1, 33):                     # regular traffic past the grace
        m.advance(to=T0 + 32.0 + 0.25 * k)
        m.record_heartbeat("x")
    assert rec.simple() == [("alert", "x", D), ("recovery", "x", "degraded")]
    assert m.get_monitoring_stats()["observer_stalls"] == 1


def test_batch_heartbeats_in_grace_spare_agents(make_monitor, vclock):
    m, rec = _monitor(make_monitor)
    _setup(m, vclock)
    m.advance(to=T0 + 30.75)
    handles = m.handles(ALIVE)
    t = T0 + 30.75
    while t < T0 + 40:
        t += 0.5
        m.advance(to=t)
        if int(t * 2) % 2:
            assert m.record_heartbeats(handles).all()
        else:
            assert m.record_heartbeats(ALIVE).all()
    assert _alerts(rec) == [("dead", D), ("dead", C), ("dead", F)]


def test_heartbeat_first_after_stall_is_not_convicted(make_monitor, vclock):
    """The process was suspended for 30 s; when it resumes, the agents' queued heartbeats
    can be recorded before the wheel's next advance notices the stall. Those agents
    reported: no DEGRADED/CRITICAL/FAILED for the stall the monitor caused."""
    m, rec = _monitor(make_monitor)
    _setup(m, vclock)
    vclock.set(T0 + 30.75)                     # suspended: nothing ran for 30 s
    _beat_all(m, ALIVE)                        # the heartbeats are processed first ...
    m.advance()                                # ... then the wheel runs
    t = vclock.now
    while t < T0 + 40:
        t += 0.25
        m.advance(to=t)
        _beat_all(m, ALIVE)
    false = [(a, s) for a, s in _alerts(rec) if a != "dead"]
    assert false == [], f"agents that reported were convicted for the observer's stall: " \
        f"{false[:6]} ... ({len(false)} alerts)"
    assert _alerts(rec, "dead") == [("dead", D), ("dead", C), ("dead", F)]
    assert m.get_monitoring_stats()["observer_stalls"] == 1


def test_stall_counted_again_after_grace(make_monitor, vclock):
    m, rec = _monitor(make_monitor, stall_grace_ms=1000)
    _setup(m, vclock, extra=())
    t = T0 + 0.75
    for stall in (1, 2):
        t += 10.0
        m.advance(to=t)                        # a stall
        assert m.get_monitoring_stats()["observer_stalls"] == stall
        for _ in range(12):                    # 3 s of regular traffic
            t += 0.25
            _beat_all(m, ALIVE)
            m.advance(to=t)
    assert rec.events == []


def test_backdated_heartbeat_in_the_stall_is_held_the_same_on_both_engines(make_monitor,
                                                                           vclock):
    """A heartbeat backdated into the stall re-arms a deadline that falls inside it: held
    until the grace has passed, whatever bucket the wheel keeps it in (both engines hold
    from the wheel's last run, not from their own idea of the next due)."""
    m = make_monitor(interval_ms=250, failure_threshold=3, tick_ms=1, stall_guard_ms=300,
                     start_clock_on_register=True)
    rec = Recorder().install(m, recovery=True)
    m.start_monitoring("a")                    # clock from T0, first deadline T0 + 0.25
    m.advance(to=T0 + 5.0)                     # 5 s late: a stall, grace until T0 + 5.3
    assert m.get_monitoring_stats()["observer_stalls"] == 1
    assert m.record_heartbeats(["a"], [vclock.time() - 0.3]) == 1   # sent at T0 + 4.7
    m.monitoring_agents["a"]["failure_threshold"] = 2
    m.advance(to=T0 + 5.25)                    # still in the grace: nothing convicted
    assert rec.events == []
    vclock.advance(6.0)                        # a second stall before the wheel runs again
    assert m.record_heartbeat("a")             # the grace never ran out on the wheel
    assert m.get_monitoring_stats()["observer_stalls"] == 2
    assert rec.events == []
    assert m.check_agent_health("a") == HealthState.HEALTHY


def test_deadline_due_before_the_stall_is_convicted(make_monitor, vclock):
    """Only what fell due during the stall is held: a crossing the wheel should have
    reported at its last on-time run is reported at once."""
    m, rec = _monitor(make_monitor, stall_grace_ms=5000)
    _setup(m, vclock)                          # "dead" silent since T0, last run T0 + 0.75
    m.advance(to=T0 + 1.0)                     # on time: "dead" DEGRADED at T0 + 1
    assert _alerts(rec) == [("dead", D)]
    m.advance(to=T0 + 30.0)                    # a stall from T0 + 1 on
    assert m.get_monitoring_stats()["observer_stalls"] == 1
    assert _alerts(rec) == [("dead", D)]       # CRITICAL (T0 + 2) fell in the stall: held
    t = T0 + 30.0
    while t < T0 + 35.0 - 0.25:                # the grace, with the wheel running
        t += 0.25
        m.advance(to=t)
        _beat_all(m, ALIVE)
    assert _alerts(rec) == [("dead", D)]
    m.advance(to=T0 + 35.0)                    # the grace is over: convicted, in order
    assert _alerts(rec) == [("dead", D), ("dead", C), ("dead", F)]
    assert m.get_monitoring_stats()["observer_stalls"] == 1


def test_no_stall_for_idle_wheel(make_monitor, vclock):
    """Long gaps between advances are not stalls when nothing was due."""
    m, rec = _monitor(make_monitor)
    m.advance(to=T0 + 3600)                    # empty monitor
    m.start_monitoring("quiet")                # no heartbeat yet: no clock, nothing armed
    m.advance(to=T0 + 7200)
    m.start_monitoring("slow", interval_ms=600_000)
    m.record_heartbeat("slow")
    for k in range(1, 9):                      # one advance a minute, deadline 10 min away
        m.advance(to=T0 + 7200 + 60 * k)
        m.record_heartbeat("slow")
    st = m.get_monitoring_stats()
    assert st["observer_stalls"] == 0 and st["last_stall_ms"] == 0
    assert rec.events == []


def test_no_stall_for_regular_small_advances(make_monitor, vclock):
    """Advances every 0.5 s (< the 2 s guard) for 2 minutes while agents die: no stall,
    and every death is reported on time (not held)."""
    m, rec = _monitor(make_monitor)
    ids = [f"a{i}" for i in range(20)]
    for a in ids:
        m.start_monitoring(a)
    t = T0
    for step in range(240):
        t += 0.5
        m.advance(to=t)
        for i, a in enumerate(ids):
            if step < 6 * i:                   # agent i dies after 3 i seconds
                m.record_heartbeat(a)
    st = m.get_monitoring_stats()
    assert st["observer_stalls"] == 0
    alerts = [e for e in rec.events if e[0] == "alert"]
    assert len(alerts) == 3 * (len(ids) - 1)   # a0 never heartbeated: no clock
    for _, _, _, det in alerts:
        assert 0 <= det["detected_monotonic"] - det["deadline_monotonic"] <= 0.5 + 1e-9


def test_guard_just_under_bound_is_not_a_stall(make_monitor, vclock):
    m, rec = _monitor(make_monitor)
    m.start_monitoring("x")
    m.record_heartbeat("x")
    m.advance(to=T0 + 0.5)
    m.advance(to=T0 + 2.9)                     # 1.9 s after the due deadline (T0 + 1)
    assert m.get_monitoring_stats()["observer_stalls"] == 0
    assert _alerts(rec) == [("x", D), ("x", C)]


def test_guard_off_by_default_with_virtual_clock(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    assert m.stall_guard_ms == 0
    rec = Recorder().install(m)
    for a in ("a", "b"):
        m.start_monitoring(a)
        m.record_heartbeat(a)
    m.advance(to=T0 + 0.5)
    m.advance(to=T0 + 30.5)                    # convicted on the spot: the guard is off
    assert _alerts(rec) == [("a", D), ("b", D), ("a", C), ("b", C), ("a", F), ("b", F)]
    assert m.get_monitoring_stats()["observer_stalls"] == 0


def test_guard_defaults(engine, vclock):
    sysmon = HeartbeatMonitor(engine=engine)
    try:
        assert sysmon.stall_guard_ms == 2000 and sysmon.stall_grace_ms == 2000
    finally:
        sysmon.shutdown()
    nobg = HeartbeatMonitor(engine=engine, background=False)
    assert nobg.stall_guard_ms == 0
    off = HeartbeatMonitor(engine=engine, stall_guard_ms=0)
    try:
        assert off.stall_guard_ms == 0
    finally:
        off.shutdown()
    own = HeartbeatMonitor(engine=engine, clock=vclock, stall_guard_ms=3000)
    assert own.stall_guard_ms == 3000 and own.stall_grace_ms == 3000


def test_grace_defaults_to_guard(make_monitor, vclock):
    m, rec = _monitor(make_monitor, stall_guard_ms=3000, stall_grace_ms=None)
    assert m.stall_grace_ms == 3000
    _setup(m, vclock)
    m.advance(to=T0 + 30.75)
    t = T0 + 30.75
    while t < T0 + 33.5:
        t += 0.25
        m.advance(to=t)
        _beat_all(m, ALIVE)
    assert rec.events == []
    m.advance(to=T0 + 33.75)                   # detection + 3 s
    assert _alerts(rec) == [("dead", D), ("dead", C), ("dead", F)]


@pytest.mark.slow
def test_real_clock_gil_starvation(engine):
    """System clock: the main thread hogs the GIL for 0.6 s (switch interval 2 s), so the
    wheel thread is starved; then agents report. Only the silent agent is convicted."""
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=3, engine=engine, tick_ms=1,
                         stall_guard_ms=200, stall_grace_ms=600)
    try:
        rec = Recorder().install(m, recovery=True)
        for a in ("alive", "dead"):
            m.start_monitoring(a)
            m.record_heartbeat(a)
        time.sleep(0.03)
        m.record_heartbeat("alive")
        old = sys.getswitchinterval()
        sys.setswitchinterval(2.0)
        try:
            t = time.monotonic()
            while time.monotonic() - t < 0.6:
                pass
            m.record_heartbeat("alive")
        finally:
            sys.setswitchinterval(old)
        # "alive" keeps reporting until "dead" is convicted (after the 0.6 s grace)
        end = time.monotonic() + 3.0
        while time.monotonic() < end and len([e for e in rec.simple() if e[1] == "dead"]) < 3:
            m.record_heartbeat("alive")
            time.sleep(0.03)
        m.record_heartbeat("alive")
        assert m.get_monitoring_stats()["observer_stalls"] >= 1
        assert [s for k, a, s in rec.simple() if a == "dead"] == [D, C, F]
        assert [e for e in rec.simple() if e[1] == "alive"] == [], \
            "an agent that reported was convicted for the observer's stall"
        assert m.check_agent_health("alive") is HealthState.HEALTHY
    finally:
        m.shutdown()
