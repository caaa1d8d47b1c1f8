"""The monitor's two daemon threads: the wheel (sleeps until the next bucket is due) and
the dispatcher (runs callbacks, so a slow one never delays detection)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from ._alerts import AlertDispatcher
from ._logs import logger

__all__ = ["Background"]


THREAD_NAME = "HeartbeatMonitor-Daemon"
DISPATCH_NAME = "HeartbeatMonitor-Dispatch"
_JOIN_S = 5.0


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

    def stop(self) -> None:
        """Stop the wheel first, then the dispatcher, then deliver what is left: no
        transition found before shutdown goes undelivered."""
        self.shutdown_event.set()
        self.engine.wake = None
        self.engine.notify = self.drain   # no thread: dispatch in the caller
        me = threading.current_thread()
        self.wheel_wake.set()
        if self.thread is not None and self.thread is not me and self.thread.is_alive():
            self.thread.join(_JOIN_S)
        self.dispatch_wake.set()
        dispatcher = self.dispatch_thread
        if dispatcher is not None and dispatcher is not me:
            if dispatcher.is_alive():
                dispatcher.join(_JOIN_S)
            self.drain()

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
            wake.wait()
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
