"""The monitor's two daemon threads: the wheel (sleeps until the next bucket is due) and
the dispatcher (runs callbacks, so a slow one never delays detection)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._alerts import AlertDispatcher

__all__ = ["Background"]

logger = logging.getLogger("moai_flow_fast.monitor")

THREAD_NAME = "HeartbeatMonitor-Daemon"
DISPATCH_NAME = "HeartbeatMonitor-Dispatch"
_JOIN_S = 5.0


class Background:
    """Owns the threads. Holds no reference to the monitor, so a dropped monitor is collected."""

    def __init__(self, engine: Any, dispatcher: AlertDispatcher,
                 shutdown_event: threading.Event) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.shutdown_event = shutdown_event
        self.wheel_wake = threading.Event()
        self.dispatch_wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.dispatch_thread: threading.Thread | None = None
        self.wheel_errors = 0

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
        self.shutdown_event.set()
        self.engine.wake = None
        self.engine.notify = self.dispatcher.drain   # no thread: dispatch in the caller
        self.wheel_wake.set()
        self.dispatch_wake.set()
        me = threading.current_thread()
        for thread in (self.thread, self.dispatch_thread):
            if thread is not None and thread is not me and thread.is_alive():
                thread.join(_JOIN_S)

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
            try:
                self.dispatcher.drain()
            except Exception:
                logger.exception("Alert dispatch failed")
            if stop.is_set():
                return
