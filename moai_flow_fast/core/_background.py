"""The monitor's two daemon threads: the wheel (sleeps until the next bucket is due) and
the dispatcher (runs callbacks, so a slow one never delays detection)."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ._alerts import AlertDispatcher
from ._logs import logger

__all__ = ["Background"]


THREAD_NAME = "HeartbeatMonitor-Daemon"
DISPATCH_NAME = "HeartbeatMonitor-Dispatch"
SHUTDOWN_TIMEOUT_S = 5.0   # shutdown()'s default deadline for delivering what was found
_STUCK_S = 1.0             # past it, how long a callback that is still running may take


class Background:
    """Owns the threads. They hold the engine and only a weak reference to the dispatcher
    (which holds the user's callbacks, which may hold the monitor), so a monitor dropped
    without `shutdown()` is collected and its finalizer stops the threads."""

    def __init__(self, engine: Any, dispatcher: AlertDispatcher,
                 shutdown_event: threading.Event) -> None:
        self.engine = engine
        self._dispatcher = weakref.ref(dispatcher)
        self.shutdown_event = shutdown_event
        self.wheel_wake = threading.Event()
        self.dispatch_wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.dispatch_thread: threading.Thread | None = None
        self.wheel_errors = 0

    def drain(self) -> None:
        dispatcher = self._dispatcher()
        if dispatcher is not None:
            dispatcher.drain()

    def start(self) -> threading.Thread:
        self.shutdown_event.clear()
        self.engine.wake = self.wheel_wake.set
        self.engine.notify = self.dispatch_wake.set
        if self.dispatch_thread is None or not self.dispatch_thread.is_alive():
            self.dispatch_thread = threading.Thread(target=self._dispatch_loop,
                                                    name=DISPATCH_NAME, daemon=True)
            self.dispatch_thread.start()
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._wheel_loop, name=THREAD_NAME, daemon=True)
            self.thread.start()
        return self.thread

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Stop the wheel, then deliver everything found before: by the dispatcher thread,
        or in the caller when there is none. Past `timeout` seconds, what is still queued
        is not delivered: returns how many transitions that was (0: all delivered), counts
        them in the dispatcher's `undelivered` and logs one line. No thread is left running
        (except one inside a callback that has not returned `_STUCK_S` after the deadline,
        which then stops at the callback's return)."""
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        thread = self.dispatch_thread
        dispatcher = self._dispatcher()
        if dispatcher is not None and thread is not me:
            dispatcher.deadline = deadline
        self.shutdown_event.set()
        self.engine.wake = None
        self.engine.notify = self.drain   # no thread: dispatch in the caller
        self.wheel_wake.set()
        if self.thread is not None and self.thread is not me and self.thread.is_alive():
            self.thread.join(max(0.0, deadline - time.monotonic()))
        self.dispatch_wake.set()
        if thread is not None and thread is not me and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():        # inside a callback past the deadline
                thread.join(_STUCK_S)
        if dispatcher is None:
            return 0
        if thread is me:
            # shutdown() from a callback: the dispatcher thread delivers the rest (before
            # the deadline) when the callback returns, then stops.
            return 0
        if thread is None or not thread.is_alive():
            dispatcher.drain()           # what is left, in the caller, before the deadline
            left = dispatcher.abandon()
        else:
            left = dispatcher.backlog    # still inside a callback: it stops on return
            dispatcher.undelivered += left
        dispatcher.deadline = None
        if left:
            logger.warning("Shutdown: %d transitions found before it were not delivered "
                           "within its %.1f s deadline", left, timeout)
        return left

    def _wheel_loop(self) -> None:
        engine, wake, stop = self.engine, self.wheel_wake, self.shutdown_event
        while not stop.is_set():
            wake.clear()
            timeout: float | None = None
            try:
                if engine.advance():
                    self.dispatch_wake.set()
                due = engine.next_deadline_ns()
                if due is not None:
                    timeout = max(0.0, (due - engine.now()[0]) / 1e9)
            except Exception:  # the wheel must outlive any single failure
                self.wheel_errors += 1
                logger.exception("Heartbeat wheel advance failed")
                timeout = 0.1
            wake.wait(timeout)

    def _dispatch_loop(self) -> None:
        wake, stop = self.dispatch_wake, self.shutdown_event
        while True:
            dispatcher = self._dispatcher()
            # A held-back storm summary is logged when its second is up.
            timeout = None if dispatcher is None else dispatcher.summary_due_in()
            del dispatcher
            wake.wait(timeout)
            wake.clear()
            dispatcher = self._dispatcher()
            if dispatcher is None:
                return
            try:
                dispatcher.drain()
            except Exception:
                logger.exception("Alert dispatch failed")
            del dispatcher
            if stop.is_set():
                return
