"""The HeartbeatMonitor facade: MoAI-Flow's documented API over a compiled or pure engine."""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ..analytics._fleet import Fleet, Snapshot, kernel_for
from ..analytics._uptime import StateLog, Uptime
from ._alerts import DEFAULT_QUEUE_SIZE, AlertDispatcher, Callback
from ._background import SHUTDOWN_TIMEOUT_S, Background
from ._batch import Batch, BoolArray, Defaults, Int64Array
from ._clock import Clock, SystemClock, VirtualClock
from ._engine import engine_class, engine_name
from ._events import AlertBatch
from ._fork import track
from ._logs import ALREADY_MONITORED, NOT_MONITORED, STARTED, STOPPED, UnknownHeartbeats, logger
from ._rules import STATES, HealthState
from ._validate import check_agent_id, check_ms, check_whole
from ._validate import check_interval_ms as _check_interval
from ._views import AgentsView, HistoryView, records

__all__ = ["HeartbeatMonitor"]

_NS = 1_000_000_000
_STATE_VALUES = tuple(state.value for state in STATES)
MAX_HISTORY_SIZE = 1_000_000     # records per agent (the CLI uses this limit too)
_ALL: Any = object()


def _stop_background(background: Background) -> None:
    background.stop()


class HeartbeatMonitor:
    """Watches agents' heartbeats and reports, to the tick, when each goes quiet.

    The positional arguments and every documented method behave as MoAI-Flow's
    `HeartbeatMonitor`; the keyword-only arguments are additions:

    - `tick_ms`: timer-wheel resolution; a crossing is reported at most one tick late.
    - `clock`: a `VirtualClock` (or any `Clock`) for virtual time; None = system clocks.
    - `background`: run the wheel and dispatcher threads (default: only with system clocks).
      Without them, `advance()` drives time and callbacks run in the calling thread.
    - `engine`: "auto", "compiled", "pure" or an engine class.
    - `start_clock_on_register`: start an agent's clock when it is registered, so an agent
      that dies before its first heartbeat is detected (the replaced monitor waits for one).
    - `stall_guard_ms`: the observer-stall guard. When the monitor runs later than this
      after a deadline (its thread starved, the process suspended, a long GC), it convicts
      nobody for what came due during the stall until `stall_grace_ms` (default: the same)
      has passed, so agents can report first. Default: 2000 ms with the system clock and
      background threads, off (0) otherwise.
    - `max_stopped_histories`: keep the histories of at most this many stopped agents
      (oldest dropped first); None keeps them all, as the replaced monitor does. See
      `clear_history`.
    - `alert_queue_size`: the bound of the queue between the engine and the per-agent
      callbacks (default 10,000 transitions). When newer transitions arrive behind a
      larger backlog, the oldest per-agent deliveries collapse into a storm summary (one
      WARNING a second at most; counted in `alerts_collapsed`): states stay exact, and the
      batch callback and listeners still get every transition as arrays. The engine keeps
      at most 64 x this many transitions for a dispatcher that cannot take them (a
      callback that blocks); beyond that the oldest are dropped (`alerts_dropped`).
    """

    def __init__(
        self,
        interval_ms: int = 5000,
        failure_threshold: int = 3,
        history_size: int = 100,
        check_interval_ms: int = 1000,
        *,
        tick_ms: int = 10,
        clock: Clock | None = None,
        background: bool | None = None,
        engine: Any = "auto",
        start_clock_on_register: bool = False,
        stall_guard_ms: float | None = None,
        stall_grace_ms: float | None = None,
        max_stopped_histories: int | None = None,
        alert_queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        interval = check_ms("interval_ms", interval_ms, 100)
        threshold = check_whole("failure_threshold", failure_threshold, 1)
        history = check_whole("history_size", history_size, 1, MAX_HISTORY_SIZE)
        check_ms("check_interval_ms", check_interval_ms, 100)
        _check_interval(interval, threshold)
        tick = check_whole("tick_ms", tick_ms, 1, 60_000)
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError("clock must have monotonic_ns() and time() methods, "
                            f"got {type(clock).__name__}")
        if background is not None and not isinstance(background, bool):
            raise TypeError(f"background must be a bool or None, got {type(background).__name__}")
        if not isinstance(start_clock_on_register, bool):
            raise TypeError("start_clock_on_register must be a bool, "
                            f"got {type(start_clock_on_register).__name__}")
        cls = engine_class(engine)
        system = clock is None or type(clock) is SystemClock
        run_background = system if background is None else background
        guard = (2000 if system and run_background else 0) if stall_guard_ms is None \
            else check_ms("stall_guard_ms", stall_guard_ms, 0, 1e12)
        grace = guard if stall_grace_ms is None \
            else check_ms("stall_grace_ms", stall_grace_ms, 0, 1e12)
        if max_stopped_histories is not None:
            max_stopped_histories = check_whole("max_stopped_histories", max_stopped_histories, 0,
                                                1 << 62)
        queue_size = check_whole("alert_queue_size", alert_queue_size, 1, 1 << 40)

        self._defaults = Defaults(interval_ms, failure_threshold, start_clock_on_register)
        self.history_size = history_size
        self.check_interval_ms = check_interval_ms
        self.tick_ms = tick
        self.clock: Clock = SystemClock() if clock is None else clock
        self.engine_name = engine_name(cls)
        self.stall_guard_ms = guard
        self.stall_grace_ms = grace
        self._engine = cls(history_size=history, tick_ms=tick,
                           clock=None if system else clock, states=STATES)
        self._engine.set_stall_guard(round(guard * 1e6), round(grace * 1e6))
        self._engine.set_stopped_limit(-1 if max_stopped_histories is None
                                       else max_stopped_histories)
        self._unknown = UnknownHeartbeats()
        self._batch = Batch(self._engine, self._defaults, self._unknown)
        self._fleet = Fleet(self._engine, kernel_for(self.engine_name), self._batch,
                            self._defaults)
        self._state_log = StateLog(self._engine)
        self._uptime = Uptime(self._engine, self._batch, self._state_log)
        self._dispatcher = AlertDispatcher(self._engine)
        self._dispatcher.set_queue_size(queue_size)
        self.alert_queue_size = queue_size
        self._dispatcher.add_listener(self._state_log)
        self.monitoring_agents = AgentsView(self._engine)
        self.heartbeat_history = HistoryView(self._engine)
        self.alert_enabled = self._dispatcher.alert_enabled
        self.alert_callbacks = self._dispatcher.alert_callbacks
        self.shutdown_event = threading.Event()
        self._background = Background(self._engine, self._dispatcher, self.shutdown_event)
        self._engine.notify = self._background.drain   # no thread yet: dispatch in the caller
        self._engine.unknown = self._unknown
        self._finalizer = weakref.finalize(self, _stop_background, self._background)
        self.monitoring_thread: threading.Thread | None = None

        # The hot calls go straight to the engine, unless a subclass overrides them.
        if type(self).record_heartbeat is HeartbeatMonitor.record_heartbeat:
            self.record_heartbeat = self._engine.record_heartbeat  # type: ignore[method-assign]
        if type(self).check_agent_health is HeartbeatMonitor.check_agent_health:
            self.check_agent_health = self._engine.check_agent_health  # type: ignore[method-assign]

        track(self)
        if run_background:
            self._start_background_monitoring()

    # -- defaults for agents registered without their own settings -------------------------

    @property
    def default_interval_ms(self) -> Any:
        return self._defaults.interval_ms

    @default_interval_ms.setter
    def default_interval_ms(self, value: Any) -> None:
        self._defaults.interval_ms = value

    @property
    def default_failure_threshold(self) -> Any:
        return self._defaults.failure_threshold

    @default_failure_threshold.setter
    def default_failure_threshold(self, value: Any) -> None:
        self._defaults.failure_threshold = value

    @property
    def start_clock_on_register(self) -> bool:
        return self._defaults.start_clock

    @start_clock_on_register.setter
    def start_clock_on_register(self, value: bool) -> None:
        self._defaults.start_clock = value

    # -- agents ------------------------------------------------------------------------------

    def start_monitoring(self, agent_id: Any, interval_ms: int | None = None,
                         failure_threshold: int | None = None, *,
                         start_clock: bool | None = None) -> bool:
        """Start monitoring `agent_id`; False (and no change) if it is already monitored."""
        check_agent_id(agent_id)
        if interval_ms is None:
            interval_ms = self.default_interval_ms
        threshold = check_whole("failure_threshold", self.default_failure_threshold
                                if failure_threshold is None else failure_threshold, 1)
        _, interval_ns = _check_interval(interval_ms, threshold)
        if start_clock is None:
            start_clock = self.start_clock_on_register
        elif not isinstance(start_clock, bool):
            raise TypeError(f"start_clock must be a bool or None, got {type(start_clock).__name__}")
        if not self._engine.start(agent_id, interval_ns, threshold, start_clock):
            logger.warning(ALREADY_MONITORED, agent_id)
            return False
        logger.info(STARTED, agent_id, interval_ms, threshold)
        return True

    def stop_monitoring(self, agent_id: Any) -> bool:
        """Stop monitoring `agent_id`, keeping its history; False if it was not monitored."""
        check_agent_id(agent_id)
        handle = int(self._engine.handles([agent_id])[0])
        if not self._engine.stop(agent_id):
            logger.warning(NOT_MONITORED, agent_id)
            return False
        self._state_log.forget(handle)
        logger.info(STOPPED, agent_id)
        return True

    def record_heartbeat(self, agent_id: Any, metadata: dict[str, Any] | None = None) -> bool:
        """Record a heartbeat now; False (nothing recorded) if `agent_id` is not monitored."""
        return bool(self._engine.record_heartbeat(agent_id, metadata))

    def check_agent_health(self, agent_id: Any) -> HealthState:
        """The agent's state now. ValueError if it is not monitored."""
        return self._engine.check_agent_health(agent_id)  # type: ignore[no-any-return]

    def get_unhealthy_agents(self, min_state: HealthState = HealthState.DEGRADED) -> list[Any]:
        """Monitored agents at least as severe as `min_state`, in registration order."""
        if not isinstance(min_state, HealthState):
            raise TypeError(f"min_state must be a HealthState, got {type(min_state).__name__}")
        return self._engine.unhealthy(min_state.severity)

    def get_heartbeat_history(self, agent_id: Any,
                              time_range: tuple[datetime, datetime] | None = None
                              ) -> list[dict[str, Any]]:
        """The agent's records, oldest first, optionally with start <= timestamp <= end."""
        check_agent_id(agent_id)
        lo = hi = None
        if time_range is not None:
            if (not isinstance(time_range, (tuple, list)) or len(time_range) != 2
                    or not all(isinstance(t, datetime) for t in time_range)):
                raise TypeError("time_range must be a (start, end) pair of datetime objects")
            lo, hi = time_range[0].timestamp(), time_range[1].timestamp()
        return records(self._engine.history(agent_id), lo, hi)

    # -- many agents per call (core/_batch.py) ------------------------------------------------

    def handles(self, agent_ids: Sequence[Any]) -> Int64Array:
        """Stable int64 handles of `agent_ids` (-1 where an id is not monitored). A handle
        names one monitoring of one agent: after a stop it never matches again, even when
        the id is monitored anew."""
        return self._batch.handles(agent_ids)

    def agent_ids(self, handles: Int64Array) -> list[Any]:
        """The ids of `handles` (None where a handle is not live)."""
        return self._batch.agent_ids(handles)

    def start_monitoring_many(self, agent_ids: Sequence[Any], interval_ms: Any = None,
                              failure_threshold: Any = None, *,
                              start_clock: bool | None = None) -> BoolArray:
        """Register many agents at one instant, with a common or per-agent interval and
        threshold. Every argument is checked before any agent is registered. Returns a
        mask: True where the agent was newly registered (False: already monitored)."""
        return self._batch.start_monitoring_many(agent_ids, interval_ms, failure_threshold,
                                                 start_clock=start_clock)

    def record_heartbeats(self, ids_or_handles: Any, timestamps: Any = None) -> BoolArray:
        """Record heartbeats in input order, exactly as `record_heartbeat` in a loop would
        (an id may repeat; recoveries and alerts included). `ids_or_handles` is a sequence
        of ids, or an integer numpy array of handles (faster). `timestamps` (Unix seconds,
        one per heartbeat) default to now; one in the future counts as now, one older than
        the agent's last heartbeat is rejected. Returns a mask of the heartbeats recorded:
        False for unknown or stopped agents and rejected timestamps."""
        return self._batch.record_heartbeats(ids_or_handles, timestamps)

    def history_array(self, agent_id: Any, *, copy: bool = False
                      ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """One agent's heartbeat timestamps, oldest first (empty when it has none). Without
        `copy`, a ring that has not wrapped is returned as a read-only view of the monitor's
        memory, valid until the agent's next heartbeat."""
        return self._batch.history_array(agent_id, copy=copy)

    def histories(self, agent_ids: Sequence[Any] | None = None, *, layout: str = "padded"
                  ) -> Any:
        """Timestamps of many agents (all monitored ones by default, in registration
        order), oldest first: `layout="padded"` gives an (n, history_size) array padded
        with NaN; `layout="flat"` gives (values, offsets), agent i's records being
        values[offsets[i]:offsets[i + 1]]."""
        return self._batch.histories(agent_ids, layout=layout)

    # -- the whole swarm at once (analytics/_fleet.py) ----------------------------------------

    def interval_stats(self, agent_ids: Any = None, *, time_range: Any = None
                       ) -> np.ndarray[Any, Any]:
        """Heartbeat interval statistics (seconds) per agent, in one compiled pass: a
        structured array with fields handle, count, mean, std (population), min, max, p50,
        p95, p99 (numpy's linear percentiles) and last, one row per agent (all monitored
        agents in registration order by default). `time_range` = (start, end) as datetimes
        or Unix seconds keeps the heartbeats with start <= timestamp <= end. Intervals are
        monotonic: a wall-clock step changes none (core/_steps.py). Agents with no
        interval (or not monitored) have count 0 and NaN elsewhere."""
        return self._fleet.interval_stats(agent_ids, time_range=time_range)

    def snapshot(self, *, min_std_deviation_ms: float = 100.0,
                 acceptable_heartbeat_pause_ms: float = 0.0,
                 first_heartbeat_estimate_ms: float | None = None,
                 threshold: float = 8.0) -> Snapshot:
        """Ids, state codes, ms since the last heartbeat and phi of every monitored agent,
        all at one instant (taken under the engine's lock), plus the counts per state.
        Phi parameters as in `phi` (the windows are read just after that instant)."""
        return self._fleet.snapshot(min_std_deviation_ms=min_std_deviation_ms,
                                    acceptable_heartbeat_pause_ms=acceptable_heartbeat_pause_ms,
                                    first_heartbeat_estimate_ms=first_heartbeat_estimate_ms,
                                    threshold=threshold)

    def phi(self, agent_ids: Any = None, now: float | None = None, *,
            min_std_deviation_ms: float = 100.0, acceptable_heartbeat_pause_ms: float = 0.0,
            first_heartbeat_estimate_ms: float | None = None, threshold: float = 8.0
            ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Phi-accrual suspicion per agent (Hayashibara et al. 2004), as Akka's
        PhiAccrualFailureDetector computes it from the agent's heartbeat history: 1 means
        about a 10% chance the silence is normal, 3 about 0.1%. As in Akka, the window
        starts with two seed intervals from `first_heartbeat_estimate_ms` (default: the
        monitor's default interval), holds the newest history_size - 1 intervals, and leaves
        out each interval that ended an outage (the agent's phi had reached `threshold`).
        `now` is a monotonic time in seconds (default: the clock's now); agents in
        registration order by default, or as given (NaN for ids not monitored). Where it
        differs from Akka: analytics/_window_py.py and _phi.py."""
        return self._fleet.phi(agent_ids, now, min_std_deviation_ms=min_std_deviation_ms,
                               acceptable_heartbeat_pause_ms=acceptable_heartbeat_pause_ms,
                               first_heartbeat_estimate_ms=first_heartbeat_estimate_ms,
                               threshold=threshold)

    def to_pandas(self) -> Any:
        """The snapshot as a pandas DataFrame indexed by agent id (needs the `pandas` extra:
        pip install 'moai-flow-fast[pandas]')."""
        return self._fleet.to_pandas()

    # -- health reports: states and uptime (analytics/_uptime.py) ----------------------------

    def get_agent_health(self, agent_id: Any) -> str:
        """The agent's state now, as its string value ("healthy", ...). ValueError if it is
        not monitored."""
        return str(self.check_agent_health(agent_id).value)

    def get_all_agents_health(self) -> dict[Any, str]:
        """Every monitored agent's state now, as string values, in registration order (all
        at one instant)."""
        ids, _, states, *_ = self._engine.snapshot()
        return dict(zip(ids, (_STATE_VALUES[c] for c in states.tolist())))

    def get_state_durations(self, agent_id: Any, start: Any = None, end: Any = None
                            ) -> dict[str, float]:
        """Seconds the agent spent in each state within the window [start, end] (datetimes
        or Unix seconds; default: since registration, until now), counting only the time
        it was monitored. A crossing counts from its threshold deadline, a recovery from
        the heartbeat that ended it. NaN for every state when the window lies outside what
        is kept (see `get_uptime_percentage`). ValueError if the agent is not monitored."""
        return self._uptime.state_durations(agent_id, start, end)

    def get_uptime_percentage(self, agent_id: Any, start: Any, end: Any) -> float | None:
        """The share (0.0-100.0) of the monitored part of [start, end] (datetimes or Unix
        seconds) that the agent spent up: HEALTHY or DEGRADED (down: CRITICAL or FAILED).
        None when the agent is not monitored, when the window does not overlap its
        monitoring, or when it starts before the oldest state change kept for it (the last
        256 changes per agent, with running totals since registration)."""
        return self._uptime.uptime_percentage(agent_id, start, end)

    def uptime(self, agent_ids: Any = None, start: Any = None, end: Any = None
               ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """`get_uptime_percentage` for many agents (all monitored ones by default, in
        registration order) as a float64 array, NaN where unknown; an agent that never
        left HEALTHY is 100.0 without further work."""
        return self._uptime.uptime(agent_ids, start, end)

    # -- alerts ------------------------------------------------------------------------------

    def configure_alerts(
        self,
        on_degraded: bool | None = None,
        on_critical: bool | None = None,
        on_failed: bool | None = None,
        degraded_callback: Callback | None = None,
        critical_callback: Callback | None = None,
        failed_callback: Callback | None = None,
        *,
        on_recovery: bool | None = None,
        recovery_callback: Callback | None = None,
        batch_callback: Callable[[AlertBatch], Any] | None = None,
        coalesce_above: int | None = None,
        callback_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Enable or disable alerts and set callbacks; None leaves a setting unchanged.
        A recovery callback (keyword-only) also enables recovery alerts. A batch callback
        receives each advance's transitions (crossings and recoveries) as one `AlertBatch`
        of arrays, beside the per-agent callbacks. `coalesce_above=N` (storm coalescing)
        skips the per-agent callbacks and WARNING lines of any advance with more than N
        transitions, logging one summary instead (the batch callback still gets them all);
        0 turns it off. A callback may be a coroutine function: its coroutines run on
        `callback_loop`, a running asyncio event loop."""
        flags = {"on_degraded": on_degraded, "on_critical": on_critical,
                 "on_failed": on_failed, "on_recovery": on_recovery}
        for name, flag in flags.items():
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool or None, got {type(flag).__name__}")
        callbacks = {"degraded_callback": degraded_callback,
                     "critical_callback": critical_callback,
                     "failed_callback": failed_callback,
                     "recovery_callback": recovery_callback,
                     "batch_callback": batch_callback}
        for name, cb in callbacks.items():
            if cb is not None and not callable(cb):
                raise TypeError(f"{name} must be callable, got {type(cb).__name__}")
        if callback_loop is not None and not isinstance(callback_loop, asyncio.AbstractEventLoop):
            raise TypeError("callback_loop must be an asyncio event loop, "
                            f"got {type(callback_loop).__name__}")
        if coalesce_above is not None:
            coalesce_above = check_whole("coalesce_above", coalesce_above, 0, 1 << 62)
        states = (HealthState.DEGRADED, HealthState.CRITICAL, HealthState.FAILED)
        for state, flag, cb in zip(states, (on_degraded, on_critical, on_failed),
                                   (degraded_callback, critical_callback, failed_callback)):
            if flag is not None:
                self.alert_enabled[state] = flag
            if cb is not None:
                self.alert_callbacks[state] = cb
        if recovery_callback is not None:
            self._dispatcher.recovery_callback = recovery_callback
            self._dispatcher.recovery_enabled = True
        if on_recovery is not None:
            self._dispatcher.recovery_enabled = on_recovery
        if callback_loop is not None:
            self._dispatcher.callback_loop = callback_loop
        if coalesce_above is not None:
            self._dispatcher.coalesce_above = coalesce_above
        if batch_callback is not None:
            self._dispatcher.batch_callback = batch_callback

    # -- stats and lifecycle ------------------------------------------------------------------

    def get_monitoring_stats(self) -> dict[str, Any]:
        """The replaced monitor's counts, plus this monitor's own."""
        agents, c, records_held = self._engine.counts()
        thread = self.monitoring_thread
        return {
            "total_agents": agents,
            "health_distribution": {"healthy": c[0], "degraded": c[1], "critical": c[2],
                                    "failed": c[3]},
            "total_heartbeats": records_held,
            "heartbeats_recorded": self._engine.heartbeats,
            "monitoring_thread_alive": thread is not None and thread.is_alive(),
            "engine": self.engine_name,
            "tick_ms": self.tick_ms,
            "transitions": self._engine.transitions,
            "recoveries": self._engine.recoveries,
            "transitions_to": {state.value: n for state, n in
                               zip(STATES, self._dispatcher.transitions_to)},
            "alerts_raised": self._dispatcher.alerts,
            "alerts_coalesced": self._dispatcher.coalesced,
            "alerts_collapsed": self._dispatcher.collapsed,
            "alerts_dropped": self._engine.dropped,
            "alerts_undelivered": self._dispatcher.undelivered,
            "alert_backlog": self._dispatcher.backlog,
            "callback_errors": self._dispatcher.callback_errors,
            "pending_deadlines": self._engine.pending_deadlines(),
            "observer_stalls": self._engine.stalls,
            "last_stall_ms": self._engine.last_stall_ns / 1e6,
            "wheel_lag_ms": self._engine.lag_ns / 1e6,
            "max_wheel_lag_ms": self._engine.max_lag_ns / 1e6,
            "stopped_histories": self._engine.stopped_count(),
            "unknown_heartbeats": self._unknown.total,
        }

    def clear_history(self, agent_id: Any = _ALL) -> int:
        """Drop kept histories: of every stopped agent (no argument), or of one agent
        (monitored or stopped). Returns the number of histories dropped."""
        if agent_id is _ALL:
            return int(self._engine.clear_stopped())
        check_agent_id(agent_id)
        return int(bool(self._engine.drop_history(agent_id)))

    def advance(self, to: float | None = None) -> int:
        """Process every deadline due by the clock's now (first set to `to`, monotonic
        seconds, with a VirtualClock). Without background threads, the alerts found are
        dispatched before this returns. Returns the number of threshold crossings."""
        if to is not None:
            if not isinstance(self.clock, VirtualClock):
                raise TypeError("advance(to=...) needs a VirtualClock; pass clock=VirtualClock()")
            if isinstance(to, bool) or not isinstance(to, (int, float)):
                raise TypeError(f"to must be monotonic seconds, got {type(to).__name__}")
            if not math.isfinite(to) or not self.clock.now <= to <= self.clock.max_seconds:
                raise ValueError(f"to must be between the clock's now ({self.clock.now}) and "
                                 f"{self.clock.max_seconds}, got {to!r}")
            self.clock.set(to)
        found = int(self._engine.advance())
        if self.monitoring_thread is not None and self.monitoring_thread.is_alive():
            self._background.dispatch_wake.set()
        else:
            self._dispatcher.drain()
        return found

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Stop the background threads and deliver every transition found before the call,
        within `timeout` seconds (default 5). Returns how many could not be delivered by
        then (0: all were); they are also counted in `alerts_undelivered` and logged in one
        WARNING line. Leaves no thread running; harmless when repeated."""
        timeout = check_ms("timeout", timeout, 0, 1e9)
        return self._background.stop(float(timeout))

    def _start_background_monitoring(self) -> None:
        """Start the background threads if they are not running."""
        self.monitoring_thread = self._background.start()

    def events(self, maxsize: int = 10_000) -> Any:
        """An async iterator of transitions and recoveries for the running event loop:
        `async for event in monitor.events(): ...`. The queue holds at most `maxsize`
        events; when the consumer falls behind, the oldest are dropped and counted
        (`stream.dropped`). Close it with `stream.close()` / `await stream.aclose()`, or
        use `async with monitor.events() as stream:`."""
        from ..integrations._aio import EventStream

        return EventStream(self._dispatcher, check_whole("maxsize", maxsize, 1, 1 << 40))

    def _after_fork_in_child(self) -> None:
        self._engine.after_fork_child()
        self._dispatcher.after_fork_child()
        was_running = self.monitoring_thread is not None and not self.shutdown_event.is_set()
        self._background = Background(self._engine, self._dispatcher, self.shutdown_event)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop_background, self._background)
        self._engine.notify = self._background.drain
        self.monitoring_thread = None
        if was_running:
            self._start_background_monitoring()

    def __repr__(self) -> str:
        return (f"HeartbeatMonitor(agents={len(self._engine)}, engine={self.engine_name!r}, "
                f"interval_ms={self.default_interval_ms}, tick_ms={self.tick_ms})")
