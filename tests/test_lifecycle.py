"""Lifecycle (issue 5, item 7): shutdown while a callback runs, restart after shutdown, a
monitor garbage-collected without shutdown leaks no thread, and a forked child gets a
working monitor (restarted threads) or a clear error -- never a hang."""
from __future__ import annotations

import gc
import os
import signal
import threading
import time
import weakref

import pytest
from hb_model import D, F, H, Recorder

from moai_flow_fast import HeartbeatMonitor, VirtualClock

NAMES = ("HeartbeatMonitor-Daemon", "HeartbeatMonitor-Dispatch")
CHILD_TIMEOUT = 20.0


def _monitor_threads():
    return [t for t in threading.enumerate() if t.name in NAMES and t.is_alive()]


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


# -- shutdown and restart -----------------------------------------------------------------

@pytest.mark.slow
def test_shutdown_while_callback_runs(engine):
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    started, finished = threading.Event(), threading.Event()
    calls = []

    def cb(aid, state, details):
        calls.append((aid, state))
        started.set()
        time.sleep(1.0)
        finished.set()

    m.configure_alerts(degraded_callback=cb, on_failed=False)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    try:
        assert started.wait(3.0)
        t = time.monotonic()
        m.shutdown()
        took = time.monotonic() - t
    finally:
        m.shutdown()
    assert finished.is_set(), "shutdown returned while the callback was still running"
    assert took < 5.5
    assert calls == [("a", D)]
    assert not m.monitoring_thread.is_alive()
    assert not m._background.dispatch_thread.is_alive()
    assert not m.get_monitoring_stats()["monitoring_thread_alive"]
    assert m.get_monitoring_stats()["callback_errors"] == 0
    m.shutdown()                               # again: harmless


@pytest.mark.slow
def test_restart_after_shutdown(engine):
    base = len(_monitor_threads())
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    rec = Recorder().install(m)
    try:
        first = m.monitoring_thread
        assert first.name == "HeartbeatMonitor-Daemon" and first.daemon
        for round_ in range(3):
            m.shutdown()
            assert _wait(lambda: len(_monitor_threads()) == base, 6.0)
            assert not m.get_monitoring_stats()["monitoring_thread_alive"]
            # without threads, nothing is detected on its own
            a = f"agent-{round_}"
            m.start_monitoring(a)
            m.record_heartbeat(a)
            time.sleep(0.25)
            assert rec.events == [] or all(e[1] != a for e in rec.events)
            m._start_background_monitoring()
            assert m.monitoring_thread.is_alive()
            assert m.monitoring_thread.name == "HeartbeatMonitor-Daemon"
            assert m.get_monitoring_stats()["monitoring_thread_alive"]
            assert len(_monitor_threads()) == base + 2
            m._start_background_monitoring()   # already running: no extra threads
            assert len(_monitor_threads()) == base + 2
            # the restarted wheel finds what came due while it was stopped, then more
            assert rec.wait_for(lambda ev, a=a: ("alert", a, F) in {(e[0], e[1], e[2])
                                                                     for e in ev}, 3.0)
            assert [e[2] for e in rec.events if e[1] == a] == [D, F]
        assert m.monitoring_thread is not first
    finally:
        m.shutdown()
    assert _wait(lambda: len(_monitor_threads()) == base, 6.0)


# -- garbage collection ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("cycle", [False, True], ids=["plain", "callback-cycle"])
def test_collected_monitor_leaks_no_thread(engine, cycle):
    gc.collect()
    base = len(_monitor_threads())

    def make():
        m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
        m.start_monitoring("a")
        m.record_heartbeat("a")
        if cycle:   # the callback refers to the monitor: only the cycle collector frees it
            m.configure_alerts(failed_callback=lambda aid, s, d: m.get_monitoring_stats())
        # (in the cycle variant, the previous monitors await the cycle collector)
        assert len(_monitor_threads()) >= base + 2
        return weakref.ref(m)

    refs = [make() for _ in range(3)]
    time.sleep(0.3)                            # deadlines fire, callbacks run
    gc.collect()
    assert _wait(lambda: all(r() is None for r in refs), 1.0), "a monitor was not collected"
    assert _wait(lambda: len(_monitor_threads()) == base, 8.0), \
        f"threads left behind: {[t.name for t in _monitor_threads()]}"


# -- fork --------------------------------------------------------------------------------------

def _run_child(body):
    """Forks; the child runs body() and exits 0 (or 1 with the error on stderr). The parent
    waits at most CHILD_TIMEOUT (polling waitpid), kills a hung child and fails."""
    pid = os.fork()
    if pid == 0:                               # the child
        code = 1
        try:
            body()
            code = 0
        except BaseException as e:
            try:
                os.write(2, f"child failed: {type(e).__name__}: {e}\n".encode())
            except Exception:
                pass
        finally:
            os._exit(code)
    end = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 0, "the child's monitor failed (see stderr)"


def _child_detects(m, agent, timeout=3.0):
    """In the child: the restarted threads detect `agent` going quiet."""
    rec = Recorder().install(m)
    assert m.monitoring_thread is not None and m.monitoring_thread.is_alive(), \
        "no monitoring thread in the child"
    assert m.get_monitoring_stats()["monitoring_thread_alive"]
    m.start_monitoring(agent)
    assert m.record_heartbeat(agent)
    assert rec.wait_for(lambda ev: [(e[1], e[2]) for e in ev if e[1] == agent] ==
                        [(agent, D), (agent, F)], timeout), rec.simple()
    assert m.record_heartbeat("parent-agent")
    m.shutdown()


@pytest.mark.slow
def test_fork_child_gets_restarted_threads(engine):
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    try:
        m.start_monitoring("parent-agent")
        m.record_heartbeat("parent-agent")
        _run_child(lambda: _child_detects(m, "child-agent"))
        # the parent is unaffected
        assert m.monitoring_thread.is_alive()
        assert "child-agent" not in m.monitoring_agents
        assert m.record_heartbeat("parent-agent")
    finally:
        m.shutdown()


@pytest.mark.slow
def test_fork_while_threads_hammer_the_monitor(engine):
    """Four threads record heartbeats (and the wheel fires) while the process forks: the
    child's locks are fresh, so it neither deadlocks nor sees a torn state."""
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    rec = Recorder().install(m)
    ids = [f"h{i}" for i in range(200)]
    m.start_monitoring_many(ids, start_clock=True)
    m.start_monitoring("parent-agent")
    m.record_heartbeat("parent-agent")        # goes quiet: the parent's wheel must fire
    stop = threading.Event()

    def hammer(k):
        i = 0
        while not stop.is_set():
            m.record_heartbeat(ids[(i * 7 + k) % 200])
            if i % 50 == 0:
                m.get_unhealthy_agents()
            i += 1

    threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        for _ in range(3):
            _run_child(lambda: _child_detects(m, "child-agent"))
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        m.shutdown()
    assert not any(t.is_alive() for t in threads)
    assert ("alert", "parent-agent", F) in rec.simple(), "the parent's wheel stopped firing"


@pytest.mark.slow
def test_fork_while_callback_runs(engine):
    """Fork while the dispatcher is inside a callback: the child's dispatcher is not
    stuck 'busy' (its lock and state are fresh) and delivers the child's alerts."""
    m = HeartbeatMonitor(interval_ms=100, failure_threshold=2, engine=engine, tick_ms=1)
    inside = threading.Event()
    release = threading.Event()

    def slow(aid, state, details):
        if aid == "parent-agent":
            inside.set()
            release.wait(5)

    m.configure_alerts(degraded_callback=slow)
    m.start_monitoring("parent-agent")
    m.record_heartbeat("parent-agent")
    try:
        assert inside.wait(3.0)
        _run_child(lambda: _child_detects(m, "child-agent"))
    finally:
        release.set()
        m.shutdown()


def test_fork_virtual_clock_monitor(engine):
    """No threads: the child records heartbeats and gets its alerts from advance()."""
    clock = VirtualClock(start=1000.0)
    m = HeartbeatMonitor(interval_ms=1000, failure_threshold=2, engine=engine, clock=clock)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    def child():
        rec = Recorder().install(m)
        assert m.monitoring_thread is None
        m.start_monitoring("b")
        assert m.record_heartbeat("b")
        m.advance(to=1002.0)
        assert rec.simple() == [("alert", "a", D), ("alert", "b", D),
                                ("alert", "a", F), ("alert", "b", F)]
        assert m.record_heartbeat("a")
        assert m.check_agent_health("a") is H

    _run_child(child)
    assert "b" not in m.monitoring_agents
    assert m.check_agent_health("a") is H
