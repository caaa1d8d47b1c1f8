"""Turns the engine's transition events into alerts: callbacks (as MoAI-Flow's monitor
makes them), batch callbacks and listeners, or WARNING lines."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from ._events import AlertBatch, batch_from_block
from ._logs import ALERT, RECOVERED, logger
from ._rules import CROSSING, RECOVERY, STATES, HealthState

__all__ = ["AlertDispatcher", "Callback", "Listener"]


Callback = Callable[[Any, HealthState, dict[str, Any]], Any]
Listener = Callable[[list[Any], Any], Any]
_ALERTABLE = (HealthState.DEGRADED, HealthState.CRITICAL, HealthState.FAILED)
_SLICE = 1024


def _iso(wall: float) -> str | None:
    return datetime.fromtimestamp(wall).isoformat() if wall else None


class AlertDispatcher:
    """Runs callbacks outside every lock, one batch at a time, in the order detected.

    Whoever calls `drain` while no other drain is running dispatches everything queued,
    including what callbacks queue meanwhile; a re-entrant or concurrent call returns
    at once and its events are dispatched by the running drain.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.alert_enabled: dict[HealthState, bool] = dict.fromkeys(_ALERTABLE, True)
        self.alert_callbacks: dict[HealthState, Callback | None] = dict.fromkeys(_ALERTABLE)
        self.recovery_enabled = False
        self.recovery_callback: Callback | None = None
        self.batch_callback: Callable[[AlertBatch], Any] | None = None
        self.listeners: tuple[Listener, ...] = ()   # replaced whole, so readers need no lock
        self._listeners_mu = threading.Lock()
        self.callback_loop: asyncio.AbstractEventLoop | None = None
        self.coalesce_above = 0
        self.coalesced = 0
        self.transitions_to = [0, 0, 0, 0]   # dispatched crossings by target state code
        self.alerts = 0
        self.callback_errors = 0
        self._mu = threading.Lock()
        self._busy = False

    def after_fork_child(self) -> None:
        self._mu = threading.Lock()
        self._busy = False

    def drain(self) -> int:
        with self._mu:
            if self._busy:
                return 0
            self._busy = True
        done = 0
        try:
            while True:
                with self._mu:
                    events = self.engine.take_events()
                    if not events:
                        self._busy = False
                        return done
                for ids, block in events:
                    self._deliver_block(ids, block)
                    done += len(ids)
        except BaseException:
            with self._mu:
                self._busy = False
            raise

    def add_listener(self, listener: Listener) -> None:
        """Also hand every block of events to `listener(ids, block)` (asyncio, metrics)."""
        with self._listeners_mu:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_mu:
            self.listeners = tuple(x for x in self.listeners if x is not listener)

    def _deliver_block(self, ids: list[Any], block: Any) -> None:
        crossings = block["new"][block["kind"] == CROSSING]
        for state, n in enumerate(np.bincount(crossings, minlength=4).tolist()):
            self.transitions_to[state] += n
        for listener in self.listeners:
            try:
                listener(ids, block)
            except Exception:
                logger.exception("Alert listener %r raised", listener)
        batch_callback = self.batch_callback
        if batch_callback is not None:
            try:
                batch_callback(batch_from_block(ids, block))
            except Exception:
                self.callback_errors += 1
                logger.exception("Batch alert callback raised")
        if 0 < self.coalesce_above < len(ids):
            # A storm: one grouped notification instead of one call per agent.
            self.coalesced += len(ids)
            logger.warning("%d transitions in one advance coalesced (%d crossings to FAILED)",
                           len(ids), int((crossings == 3).sum()))
            return
        # Rows become Python tuples a slice at a time: a storm of 10**5 transitions never
        # holds them all as objects at once.
        for start in range(0, len(ids), _SLICE):
            rows = block[start:start + _SLICE].tolist()
            for agent_id, row in zip(ids[start:start + _SLICE], rows):
                self._deliver(agent_id, row)

    def _deliver(self, agent_id: Any, row: tuple[Any, ...]) -> None:
        deadline, _, now, last_mono, _, last_wall, _, prev, new, kind, _ = row
        if kind == RECOVERY:
            self._recovered(agent_id, prev, now, last_mono, last_wall, deadline)
            return
        state = STATES[new]
        if not self.alert_enabled.get(state, False):
            return
        details = {
            "previous_state": STATES[prev].value,
            "current_state": state.value,
            "last_heartbeat": _iso(last_wall),
            "elapsed_seconds": round((now - last_mono) / 1e9, 2),
            "deadline_monotonic": deadline / 1e9,
            "detected_monotonic": now / 1e9,
        }
        self.alerts += 1
        callback = self.alert_callbacks.get(state)
        if callback is None:
            logger.warning(ALERT, agent_id, details["previous_state"], state.value,
                           (now - last_mono) / 1e9, (now - deadline) / 1e6)
        else:
            self._call(callback, agent_id, state, details)

    def _recovered(self, agent_id: Any, prev: int, now: int, last_mono: int, wall: float,
                   left_healthy: int) -> None:
        downtime = round(max(now - left_healthy, 0) / 1e9, 3)
        logger.info(RECOVERED, agent_id, STATES[prev].value, downtime)
        callback = self.recovery_callback
        if not self.recovery_enabled or callback is None:
            return
        details = {
            "previous_state": STATES[prev].value,
            "current_state": HealthState.HEALTHY.value,
            "last_heartbeat": _iso(wall),
            "elapsed_seconds": round((now - last_mono) / 1e9, 2),
            "downtime_seconds": downtime,
        }
        self._call(callback, agent_id, HealthState.HEALTHY, details)

    def _call(self, callback: Callback, agent_id: Any, state: HealthState,
              details: dict[str, Any]) -> None:
        try:
            result = callback(agent_id, state, details)
            if inspect.iscoroutine(result):
                self._schedule(result, agent_id, state)
        except Exception:
            self.callback_errors += 1
            logger.exception("Alert callback for agent %s (%s) raised", agent_id, state.value)

    def _schedule(self, coro: Any, agent_id: Any, state: HealthState) -> None:
        # A coroutine callback runs on the event loop given to configure_alerts.
        loop = self.callback_loop
        if loop is None or loop.is_closed():
            coro.close()
            raise RuntimeError("a coroutine callback needs configure_alerts(callback_loop=...)")

        def done(future: Any) -> None:
            if not future.cancelled() and future.exception() is not None:
                self.callback_errors += 1
                logger.error("Alert coroutine for agent %s (%s) raised", agent_id, state.value,
                             exc_info=future.exception())

        asyncio.run_coroutine_threadsafe(coro, loop).add_done_callback(done)
