"""asyncio (issue 6 item 2): `async for event in monitor.events()` and coroutine
callbacks, on real event loops (asyncio.run), with the monitor driven from another
thread (virtual time) or by its own background thread (real time, short intervals)."""
from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings

import pytest

import moai_flow_fast.integrations._aio as aio
from moai_flow_fast import HealthState
from moai_flow_fast.integrations._aio import EventStream, TransitionEvent

H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)
TIMEOUT = 5.0


def stream_listeners(m):
    """The dispatcher's listeners that are event streams (the monitor's own uptime record
    listens too, for its whole life)."""
    return tuple(x for x in m._dispatcher.listeners if x is not m._state_log)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def key(ev):
    return (ev.agent_id, ev.previous, ev.current, ev.kind)


def batch_keys(batches):
    """(agent, previous, current, kind) of every event of recorded AlertBatches."""
    out = []
    for b in batches:
        for agent, p, c, k in zip(b.ids, b.previous.tolist(), b.current.tolist(),
                                  b.kind.tolist(), strict=True):
            out.append((agent, list(HealthState)[p], list(HealthState)[c],
                        ("crossing", "recovery")[k]))
    return out


def failing_cycle(agents):
    """Crossings of agents that all last beat at one instant, in the order reported."""
    return ([(a, H, D, "crossing") for a in agents] + [(a, D, C, "crossing") for a in agents]
            + [(a, C, F, "crossing") for a in agents])


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="moai_flow_fast")
    return caplog


# ---------------------------------------------------------------- delivery and order

def test_virtual_monitor_advanced_from_another_thread(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    for a in "abc":
        m.start_monitoring(a)
    m.record_heartbeats(list("abc"))
    t0 = vclock.now
    handle_a = int(m.handles(["a"])[0])
    producer_threads = set()

    def produce():
        producer_threads.add(threading.get_ident())
        for dt in (1.5, 2.5, 3.5):
            m.advance(to=t0 + dt)
        m.record_heartbeat("b")

    async def main():
        loop_thread = threading.get_ident()
        got = []
        async with m.events() as stream:
            assert isinstance(stream, EventStream)
            thread = threading.Thread(target=produce)
            thread.start()
            async for event in stream:
                assert threading.get_ident() == loop_thread
                got.append(event)
                if len(got) == 10:
                    break
            await asyncio.to_thread(thread.join)
        assert stream.closed and stream.dropped == 0
        assert loop_thread not in producer_threads
        return got

    got = run(main())
    assert [key(e) for e in got] == [*failing_cycle("abc"), ("b", F, H, "recovery")]
    first = got[0]
    assert isinstance(first, TransitionEvent)
    assert first.handle == handle_a
    assert first.deadline_monotonic == pytest.approx(t0 + 1.0)
    assert first.detected_monotonic == pytest.approx(t0 + 1.5)
    assert first.elapsed_s == pytest.approx(1.5)
    failed_a = got[6]
    assert (failed_a.agent_id, failed_a.current) == ("a", F)
    assert failed_a.deadline_monotonic == pytest.approx(t0 + 3.0)
    assert failed_a.detected_monotonic == pytest.approx(t0 + 3.5)
    recovery = got[9]
    assert recovery.detected_monotonic == pytest.approx(t0 + 3.5)
    assert recovery.deadline_monotonic == pytest.approx(t0 + 1.0)   # left HEALTHY
    with pytest.raises(AttributeError):
        first.current = H                                           # frozen


def test_events_match_the_batch_callback(make_monitor, vclock):
    """Many blocks from another thread: the stream sees exactly what the dispatcher
    published, in the same order (the batch callback is fed from the same blocks)."""
    m = make_monitor(interval_ms=1000, failure_threshold=4)
    ids = [f"w{i}" for i in range(40)]
    m.start_monitoring_many(ids)
    batches = []
    m.configure_alerts(batch_callback=batches.append)

    def produce():
        for i, a in enumerate(ids):           # staggered heartbeats: many deadlines
            vclock.advance(0.037)
            m.record_heartbeat(a)
            if i % 7 == 0:
                m.advance()
        for step in range(60):
            m.advance(to=vclock.now + 0.1)
            if step % 10 == 9:
                m.record_heartbeats(ids[::3])

    async def main():
        got = []
        async with m.events() as stream:
            await asyncio.to_thread(produce)
            while len(stream):
                got.append(await anext(stream))
        return got

    got = run(main())
    expected = batch_keys(batches)
    assert len(expected) > 100
    assert [key(e) for e in got] == expected
    assert {e.kind for e in got} == {"crossing", "recovery"}


def test_background_monitor_real_time(make_monitor):
    m = make_monitor(interval_ms=100, failure_threshold=3, clock=None, tick_ms=1)
    assert m.monitoring_thread is not None and m.monitoring_thread.is_alive()

    async def main():
        got = []
        async with m.events(maxsize=100) as stream:
            m.start_monitoring_many(["a", "b"])
            m.record_heartbeats(["a", "b"])            # one instant
            async for event in stream:
                got.append(event)
                if len(got) == 6:
                    m.record_heartbeat("a")
                if len(got) == 7:
                    break
        return got

    got = asyncio.run(asyncio.wait_for(main(), 2.0))   # the run takes about 0.3 s
    assert [key(e) for e in got] == [*failing_cycle("ab"), ("a", F, H, "recovery")]
    for e in got[:6]:
        assert 0 <= e.detected_monotonic - e.deadline_monotonic < 0.5
    assert [e.deadline_monotonic for e in got[:6]] == sorted(e.deadline_monotonic
                                                             for e in got[:6])


# ---------------------------------------------------------------- slow consumers

def test_full_queue_drops_the_oldest_one_block(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    ids = [f"a{i:02d}" for i in range(20)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)

    async def main():
        async with m.events(maxsize=5) as stream:
            await asyncio.to_thread(m.advance, vclock.now + 3.0)   # 60 crossings, one block
            await asyncio.sleep(0)
            assert len(stream) == 5
            got = [await anext(stream) for _ in range(5)]
            return got, stream.dropped

    got, dropped = run(main())
    assert dropped == 55
    assert [key(e) for e in got] == failing_cycle(ids)[-5:]
    warnings_ = [r for r in logs.records if r.levelno == logging.WARNING
                 and r.name == "moai_flow_fast.aio"]
    assert len(warnings_) == 1
    assert "55" in warnings_[0].getMessage()


def test_full_queue_drops_the_oldest_across_blocks(make_monitor, vclock, logs, monkeypatch):
    monkeypatch.setattr(aio, "_WARN_EVERY_S", 0.05)
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    ids = [f"a{i:02d}" for i in range(20)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    t0 = vclock.now

    def aio_warnings():
        return [r.getMessage() for r in logs.records if r.levelno == logging.WARNING
                and r.name == "moai_flow_fast.aio"]

    async def main():
        async with m.events(maxsize=25) as stream:
            await asyncio.to_thread(m.advance, t0 + 1.5)   # 20: fits
            await asyncio.to_thread(m.advance, t0 + 2.5)   # 20 more: 15 oldest dropped
            await asyncio.sleep(0)
            assert (len(stream), stream.dropped) == (25, 15)
            assert len(aio_warnings()) == 1                  # reported at once
            await asyncio.to_thread(m.advance, t0 + 3.5)   # 20 more: 20 dropped
            await asyncio.sleep(0)
            assert stream.dropped == 35
            assert len(aio_warnings()) == 1                  # rate-limited...
            await asyncio.sleep(0.2)
            assert len(aio_warnings()) == 2                  # ...then reported
            got = [await anext(stream) for _ in range(len(stream))]
            return got

    got = run(main())
    assert [key(e) for e in got] == failing_cycle(ids)[-25:]
    first, second = aio_warnings()
    assert "15 oldest" in first and "20 oldest" in second and "35 in total" in second


def test_slow_consumer_keeps_order_and_counts_drops(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    ids = [f"s{i}" for i in range(30)]
    m.start_monitoring_many(ids)
    m.record_heartbeats(ids)
    batches = []
    m.configure_alerts(batch_callback=batches.append)

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        got = []

        def produce():
            for _ in range(15):
                for _ in range(4):
                    m.advance(to=vclock.now + 0.9)
                m.record_heartbeats(ids)
            loop.call_soon_threadsafe(done.set)      # after every push (FIFO)

        async with m.events(maxsize=8) as stream:
            thread = threading.Thread(target=produce)
            thread.start()
            while not (done.is_set() and not len(stream)):
                if len(stream):
                    got.append(await anext(stream))
                await asyncio.sleep(0.0005)          # slow
            await asyncio.to_thread(thread.join)
            return got, stream.dropped

    got, dropped = run(main())
    expected = batch_keys(batches)
    assert dropped > 0
    assert len(got) + dropped == len(expected)
    # What arrives is in order: a subsequence of what was published, ending with the last.
    it = iter(expected)
    assert all(any(k == x for x in it) for k in map(key, got))
    assert key(got[-1]) == expected[-1]


def test_cancelled_wait_loses_nothing(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        async with m.events() as stream:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(anext(stream), 0.01)
            m.advance(to=vclock.now + 1.0)
            return await asyncio.wait_for(anext(stream), 1.0)

    assert key(run(main())) == ("a", H, D, "crossing")


# ---------------------------------------------------------------- closing

def test_close_ends_iteration_and_unregisters(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        stream = m.events()
        assert len(stream_listeners(m)) == 1
        got = []

        async def consume():
            async for event in stream:
                got.append(event)

        task = asyncio.create_task(consume())
        await asyncio.to_thread(m.advance, vclock.now + 1.0)
        while not got:
            await asyncio.sleep(0.001)
        stream.close()
        await task                                    # the loop ended
        assert stream_listeners(m) == ()
        m.advance(to=vclock.now + 2.0)                # nothing more is queued
        await asyncio.sleep(0.01)
        assert len(stream) == 0 and stream.closed
        stream.close()                                # harmless again
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        return got

    assert [key(e) for e in run(main())] == [("a", H, D, "crossing")]


def test_close_from_another_thread(make_monitor):
    m = make_monitor()

    async def main():
        stream = m.events()
        task = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.01)
        await asyncio.to_thread(stream.close)
        with pytest.raises(StopAsyncIteration):
            await task
        assert stream_listeners(m) == ()

    run(main())


def test_aclose_async_with_and_dropping_the_stream(make_monitor):
    m = make_monitor()

    async def main():
        stream = m.events()
        await stream.aclose()
        assert stream.closed and stream_listeners(m) == ()
        async with m.events() as s2:
            assert len(stream_listeners(m)) == 1
        assert s2.closed and stream_listeners(m) == ()
        s3 = m.events()
        assert len(stream_listeners(m)) == 1
        del s3
        gc.collect()
        assert stream_listeners(m) == ()      # an unreferenced stream unregisters

    run(main())


def test_leaving_the_loop_releases_the_stream(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        m.advance(to=vclock.now + 1.0)     # before anyone listens: not delivered
        async for event in m.events():
            return event

    async def consume():
        consumer = asyncio.create_task(main())
        await asyncio.sleep(0.01)
        m.advance(to=vclock.now + 1.0)     # DEGRADED -> CRITICAL
        event = await consumer
        gc.collect()
        assert stream_listeners(m) == ()
        return event

    assert key(run(consume())) == ("a", D, C, "crossing")


def test_loop_closed_with_an_open_stream(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    m.record_heartbeat("a")
    kept = []

    async def main():
        kept.append(m.events())                  # never closed, loop ends

    asyncio.run(main())
    assert len(stream_listeners(m)) == 1
    m.advance(to=vclock.now + 1.0)               # must not raise
    assert stream_listeners(m) == ()
    assert kept[0].closed
    assert m.check_agent_health("a") is D


def test_events_needs_a_running_loop(make_monitor):
    m = make_monitor()
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        m.events()
    assert stream_listeners(m) == ()
    with pytest.raises(ValueError, match="maxsize"):
        m.events(0)


def test_two_streams_each_get_everything(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        async with m.events() as one, m.events(maxsize=1) as two:
            await asyncio.to_thread(m.advance, vclock.now + 3.0)
            await asyncio.sleep(0)
            return [key(e) for e in [await anext(one) for _ in range(3)]], \
                [key(await anext(two))], two.dropped

    got_one, got_two, dropped_two = run(main())
    assert got_one == failing_cycle("a")
    assert got_two == failing_cycle("a")[-1:] and dropped_two == 2


# ---------------------------------------------------------------- coroutine callbacks

def test_coroutine_callbacks_run_on_the_given_loop(make_monitor, vclock):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        finished = asyncio.Event()

        async def on_alert(agent_id, state, details):
            seen.append((agent_id, state, details["current_state"],
                         asyncio.get_running_loop() is loop,
                         threading.get_ident() == loop_thread))
            await asyncio.sleep(0)
            if state is H:
                finished.set()

        loop_thread = threading.get_ident()
        m.configure_alerts(degraded_callback=on_alert, critical_callback=on_alert,
                           failed_callback=on_alert, recovery_callback=on_alert,
                           callback_loop=loop)

        def produce():
            m.advance(to=vclock.now + 3.0)
            m.record_heartbeat("a")

        await asyncio.to_thread(produce)
        await finished.wait()
        return seen

    seen = run(main())
    assert seen == [("a", D, "degraded", True, True), ("a", C, "critical", True, True),
                    ("a", F, "failed", True, True), ("a", H, "healthy", True, True)]
    assert m.get_monitoring_stats()["callback_errors"] == 0


def test_coroutine_callbacks_with_a_background_monitor(make_monitor):
    m = make_monitor(interval_ms=100, failure_threshold=2, clock=None, tick_ms=1)

    async def main():
        failed = asyncio.Event()

        async def on_failed(agent_id, state, details):
            failed.set()

        m.configure_alerts(failed_callback=on_failed, callback_loop=asyncio.get_running_loop())
        m.start_monitoring("a")
        m.record_heartbeat("a")
        await asyncio.wait_for(failed.wait(), 2.0)   # due after 0.2 s

    run(main())


def test_coroutine_callback_errors_are_counted(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000, failure_threshold=3)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def main():
        ran = []

        async def broken(agent_id, state, details):
            ran.append(state)
            await asyncio.sleep(0)
            raise RuntimeError("coroutine bug")

        m.configure_alerts(degraded_callback=broken, failed_callback=broken,
                           callback_loop=asyncio.get_running_loop())
        await asyncio.to_thread(m.advance, vclock.now + 3.0)
        for _ in range(200):
            if m.get_monitoring_stats()["callback_errors"] == 2:
                break
            await asyncio.sleep(0.005)
        return ran

    assert run(main()) == [D, F]
    stats = m.get_monitoring_stats()
    assert stats["callback_errors"] == 2
    assert stats["alerts_raised"] == 3
    errors = [r for r in logs.records if r.levelno == logging.ERROR
              and "coroutine" in r.getMessage().lower()]
    assert len(errors) == 2 and "coroutine bug" in str(errors[0].exc_info[1])


def test_coroutine_callback_without_a_loop_is_an_error(make_monitor, vclock, logs):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def on_degraded(agent_id, state, details):   # pragma: no cover - never runs
        raise AssertionError("must not run")

    m.configure_alerts(degraded_callback=on_degraded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no "never awaited" warning
        m.advance(to=vclock.now + 1.0)
        gc.collect()
    assert m.get_monitoring_stats()["callback_errors"] == 1
    assert any("callback_loop" in str(r.exc_info[1]) for r in logs.records if r.exc_info)


def test_coroutine_callback_with_a_closed_loop_is_an_error(make_monitor, vclock):
    m = make_monitor(interval_ms=1000)
    m.start_monitoring("a")
    m.record_heartbeat("a")

    async def on_degraded(agent_id, state, details):   # pragma: no cover - never runs
        raise AssertionError("must not run")

    loop = asyncio.new_event_loop()
    m.configure_alerts(degraded_callback=on_degraded, callback_loop=loop)
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.advance(to=vclock.now + 1.0)
        gc.collect()
    assert m.get_monitoring_stats()["callback_errors"] == 1
