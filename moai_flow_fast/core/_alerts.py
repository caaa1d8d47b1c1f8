"""Turns the engine's transition events into alerts: callbacks (as MoAI-Flow's monitor
makes them), batch callbacks and listeners, or WARNING lines."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
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
_SLICE = 256             # rows turned into Python tuples at a time
_TIME_SLICE = 0.001      # s of per-agent delivery between looks at the engine's queue
_YIELD_S = 5e-5          # then a pause, so that waiting threads get the GIL at once
_SUMMARY_EVERY = 1.0     # s between two storm-summary log lines, at least
_LISTENER_ROWS = 4096    # rows of a block handed to listeners at a time
DEFAULT_QUEUE_SIZE = 10_000
ENGINE_QUEUE_FACTOR = 64  # the engine keeps at most this many times alert_queue_size


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
        # Per-agent deliveries not made yet: [ids, block, next row] segments, oldest first.
        self.queue_size = DEFAULT_QUEUE_SIZE
        self._pending: deque[list[Any]] = deque()
        self._npending = 0
        self.collapsed = 0          # transitions whose per-agent delivery was collapsed
        self.undelivered = 0        # transitions left undelivered by shutdown's deadline
        self._summary = [0, 0, 0, 0]   # collapsed since the last summary: recoveries, D, C, F
        self._dropped_logged = 0
        self._last_summary = -_SUMMARY_EVERY
        self.deadline: float | None = None   # monotonic s; past it drain stops (shutdown)
        self._pause = _YIELD_S

    def set_queue_size(self, size: int) -> None:
        """Per-agent deliveries waiting at most `size` transitions behind newer ones; the
        engine keeps at most ENGINE_QUEUE_FACTOR x `size` not yet taken."""
        self.queue_size = size
        self.engine.set_queue_limit(ENGINE_QUEUE_FACTOR * size)

    def after_fork_child(self) -> None:
        self._mu = threading.Lock()
        self._listeners_mu = threading.Lock()
        self._busy = False

    @property
    def backlog(self) -> int:
        """Transitions waiting for delivery: per-agent ones and those not taken yet."""
        return self._npending + int(self.engine.queued)

    def drain(self) -> int:
        """Deliver everything queued; returns the per-agent deliveries made. Between time
        slices of deliveries it takes what the engine queued meanwhile (so the batch
        callback and listeners see each block at once) and pauses an instant, so other
        threads get the interpreter; past `deadline` it stops, leaving the rest queued."""
        with self._mu:
            if self._busy:
                return 0
            self._busy = True
        done = 0
        try:
            while True:
                events = self.engine.take_events()
                if events:
                    self._accept(events)
                elif not self._pending:
                    with self._mu:
                        # A drain call that came meanwhile found us busy and left its
                        # events to us: look again before leaving.
                        if self.engine.queued == 0:
                            self._busy = False
                            break
                    continue
                if self._past_deadline():
                    with self._mu:
                        self._busy = False
                    break
                done += self._deliver_some()
                if self._pending and threading.active_count() > 1:
                    self._pause_for_others()
        except BaseException:
            with self._mu:
                self._busy = False
            raise
        self._log_summary(False)
        return done

    def _pause_for_others(self) -> None:
        """Let other threads have the interpreter between two time slices. A pause that
        overran means they wanted it (the GIL came back late): the next pause doubles, up
        to a time slice (half the interpreter for the others); otherwise it halves back."""
        pause = self._pause
        t = time.perf_counter()
        time.sleep(pause)
        late = time.perf_counter() - t > 3 * pause + 1e-4
        self._pause = min(pause * 2, _TIME_SLICE) if late else max(pause / 2, _YIELD_S)

    def _past_deadline(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.monotonic() > deadline

    def abandon(self) -> int:
        """After shutdown's deadline: forget what is still queued; returns how many."""
        with self._mu:
            n = self._npending + sum(len(ids) for ids, _ in self.engine.take_events())
            self._pending.clear()
            self._npending = 0
        self.undelivered += n
        self._log_summary(True)
        return n

    def summary_due_in(self) -> float | None:
        """Seconds until a held-back storm summary may be logged, None if none is held."""
        if not any(self._summary) and self.engine.dropped == self._dropped_logged:
            return None
        return max(0.0, self._last_summary + _SUMMARY_EVERY - time.monotonic())

    def _accept(self, events: list[Any]) -> None:
        had_backlog = self._npending > 0
        for ids, block in events:
            if self._deliver_block(ids, block) and len(ids):
                ids, block = self._per_agent_rows(ids, block)
                if len(ids):
                    self._pending.append([ids, block, 0])
                    self._npending += len(ids)
        if had_backlog and self._npending > self.queue_size:
            self._collapse(self._npending - self.queue_size)

    def _per_agent_rows(self, ids: list[Any], block: Any) -> tuple[list[Any], Any]:
        """The rows that have a per-agent delivery to make: crossings whose alert is
        disabled (when detected) have none, so a storm that only a batch callback or a
        listener wants costs nothing per agent."""
        enabled = [self.alert_enabled.get(state, False) for state in _ALERTABLE]
        if all(enabled):
            return ids, block
        keep = block["kind"] == RECOVERY
        for code, on in enumerate(enabled, start=1):
            if on:
                keep |= block["new"] == code
        rows = np.flatnonzero(keep)
        if len(rows) == len(ids):
            return ids, block
        return [ids[i] for i in rows.tolist()], block[rows]

    def _collapse(self, excess: int) -> None:
        """The oldest `excess` per-agent deliveries become a storm summary (counted, logged
        at most once a second): newer transitions wait behind at most `queue_size`."""
        self.collapsed += excess
        self._npending -= excess
        while excess:
            seg = self._pending[0]
            ids, block, pos = seg
            k = min(len(ids) - pos, excess)
            part = block[pos:pos + k]
            recovered = part["kind"] == RECOVERY
            self._summary[0] += int(recovered.sum())
            for code, n in enumerate(np.bincount(part["new"][~recovered], minlength=4)
                                     .tolist()[1:], start=1):
                self._summary[code] += n
            excess -= k
            if pos + k == len(ids):
                self._pending.popleft()
            elif pos + k > 4096:
                # Free what is behind: keep only the rows still to deliver.
                self._pending[0] = [ids[pos + k:], block[pos + k:].copy(), 0]
            else:
                seg[2] = pos + k
        self._log_summary(False)

    def _log_summary(self, force: bool) -> None:
        dropped = int(self.engine.dropped) - self._dropped_logged
        if not any(self._summary) and not dropped:
            return
        now = time.monotonic()
        if not force and now - self._last_summary < _SUMMARY_EVERY:
            return
        r, d, c, f = self._summary
        logger.warning("Alert storm: %d transitions collapsed into this summary (%d degraded, "
                       "%d critical, %d failed, %d recovered; per-agent callbacks skipped, "
                       "batch callback and listeners got them all; alert_queue_size=%d); "
                       "%d dropped by the engine's full queue",
                       r + d + c + f, d, c, f, r, self.queue_size, dropped)
        self._summary = [0, 0, 0, 0]
        self._dropped_logged += dropped
        self._last_summary = now

    def _deliver_some(self) -> int:
        """Per-agent deliveries, oldest first, for about one time slice."""
        t0 = time.perf_counter()
        done = 0
        while self._pending:
            seg = self._pending[0]
            ids, block, pos = seg
            end = min(pos + _SLICE, len(ids))
            rows = block[pos:end].tolist()
            for k, row in enumerate(rows):
                seg[2] = pos + k + 1      # taken before the call: a re-entrant drain skips it
                self._npending -= 1
                self._deliver(ids[pos + k], row)
                done += 1
                if (k & 15) == 15 and (self.engine.queued or self._past_deadline()
                                       or time.perf_counter() - t0 > _TIME_SLICE):
                    break
            if seg[2] == len(ids) and self._pending and self._pending[0] is seg:
                self._pending.popleft()
            if (self.engine.queued or self._past_deadline()
                    or time.perf_counter() - t0 > _TIME_SLICE):
                break   # newer blocks first go to the batch callback and listeners
        return done

    def add_listener(self, listener: Listener) -> None:
        """Also hand every block of events to `listener(ids, block)` (asyncio, metrics)."""
        with self._listeners_mu:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_mu:
            self.listeners = tuple(x for x in self.listeners if x is not listener)

    def _deliver_block(self, ids: list[Any], block: Any) -> bool:
        """Counts, listeners and the batch callback; True when the block's per-agent
        deliveries are to be queued (False: coalesced)."""
        crossings = block["new"][block["kind"] == CROSSING]
        for state, n in enumerate(np.bincount(crossings, minlength=4).tolist()):
            self.transitions_to[state] += n
        listeners = self.listeners
        for start in range(0, len(ids), _LISTENER_ROWS) if listeners else ():
            # A storm goes to listeners a slice at a time, with pauses between, so that
            # Python listeners share the interpreter with other threads.
            if start and threading.active_count() > 1:
                self._pause_for_others()
            part_ids, part = ids[start:start + _LISTENER_ROWS], block[start:start + _LISTENER_ROWS]
            for listener in listeners:
                try:
                    listener(part_ids, part)
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
            return False
        return True

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
