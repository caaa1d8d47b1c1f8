"""Pure-Python engine: the interface and semantics of the compiled ``_engine_c``.

A binary heap stands in for the timer wheel; deadlines fire at the same ticks, so both
engines report the same transitions in the same order.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import _steps
from ._events import EVENT_DTYPE
from ._rules import (
    CRITICAL,
    CROSSING,
    DEGRADED,
    FAILED,
    HEALTHY,
    RECOVERY,
    crossing_mult,
    crossing_next,
    state_code,
)

__all__ = ["Engine"]

_H, _D, _C, _F = HEALTHY, DEGRADED, CRITICAL, FAILED
_CROSSING, _RECOVERY = CROSSING, RECOVERY
_MAX_AHEAD = 1 << 40
_NEVER = (1 << 63) - 1
_ROWS_PER_ARRAY = 4096

Block = tuple[list[Any], "np.ndarray[Any, Any]"]
History = tuple["np.ndarray[Any, np.dtype[np.float64]]", "list[Any] | None"]


# Monotonic instants are clamped to +-2**62 ns, as the compiled engine does (it saturates
# where int64 would overflow): both engines then agree on any time, however far.
_MONO_MAX = 1 << 62
_MONO_MIN = -(1 << 62)
_BATCH_YIELD = 1024   # heartbeats of a batch between chances for the wheel to take the lock


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _clamp(mono: int) -> int:
    return _MONO_MIN if mono < _MONO_MIN else (_MONO_MAX if mono > _MONO_MAX else mono)


def _before(now: int, seconds: float, exact: bool) -> int:
    """The monotonic instant `seconds` before `now`, clamped: ns rounded half to even
    (`exact`) or truncated, like the compiled engine's mono_before / trunc_before."""
    ns = seconds * 1e9
    if not -9.2e18 < ns < 9.2e18:
        return _MONO_MIN if ns > 0 else _MONO_MAX
    return _clamp(now - (round(ns) if exact else int(ns)))


class _Agent:
    __slots__ = ("clock", "handle", "hb", "head", "hist", "interval_ns", "key", "last_mono",
                 "last_wall", "marks", "reported", "ring", "ring_mono", "seq", "started",
                 "threshold", "token", "when")

    def __init__(self, key: Any, interval_ns: int, threshold: int, now: int, wall: float,
                 seq: int, history_size: int, handle_base: int) -> None:
        self.key = key
        self.handle = handle_base + seq   # unique for the engine's life: never aliases
        self.interval_ns = interval_ns
        self.threshold = threshold
        self.last_mono = now
        self.last_wall = 0.0
        self.clock = False
        self.hb = False
        self.hist = True
        self.reported = _H
        self.seq = seq
        self.started = wall
        self.ring: deque[tuple[float, Any]] = deque(maxlen=history_size)
        # Wall-clock step markers (see _steps): [ring position, correction s], the ring
        # positions counted as the compiled engine's (head: the next write position).
        self.head = 0
        self.ring_mono = 0
        self.marks: list[list[Any]] = []
        self.when: int | None = None   # armed tick
        self.token = 0                 # heap entries with another token are stale

    def state(self, now: int) -> int:
        if not self.clock:
            return _H
        return state_code(now - self.last_mono, self.interval_ns, self.threshold)

    def crossing_deadline(self) -> int:
        return self.last_mono + crossing_mult(self.reported, self.threshold) * self.interval_ns


class Engine:
    """Agent table + deadline heap + deques. Every method is safe from any thread."""

    def __init__(self, *, history_size: int, tick_ms: int, clock: Any, states: tuple[Any, ...]
                 ) -> None:
        self._hsize = history_size
        self._tick = tick_ms * 1_000_000
        self._clock = clock
        self._states = states
        self._lock = threading.RLock()
        self._agents: dict[Any, _Agent] = {}
        self._by_handle: dict[int, _Agent] = {}
        # Random per engine, so another monitor's handles are (almost surely) not live here.
        self._handle_base = int.from_bytes(os.urandom(4), "little") << 24
        self._stopped: dict[Any, History] = {}
        self._stopped_total = 0
        self._stopped_limit = -1
        self._heap: list[tuple[int, int, _Agent]] = []
        self._armed = 0
        self._events: list[Block] = []
        self._pending_ids: list[Any] = []
        self._pending: list[tuple[Any, ...]] = []
        self._pending_arrays: list[np.ndarray[Any, Any]] = []
        self._next_seq = 0
        self._next_token = 0
        self._sleep_tick = -(1 << 63)
        self._wake_pending = False
        self.notify: Callable[[], Any] | None = None
        self.unknown: Callable[[Any], Any] | None = None
        self.wake: Callable[[], Any] | None = None
        self.heartbeats = 0
        self.transitions = 0
        self.recoveries = 0
        self.stalls = 0
        self.wheel_ops = 0   # live deadlines taken off the heap (the wheel's expiries)
        self.last_stall_ns = 0
        self.lag_ns = 0
        self.max_lag_ns = 0
        self._guard_ns = 0
        self._grace_ns = 0
        self._hold_from = _NEVER
        self._hold_until = -_NEVER
        self._next_due = _NEVER     # when the wheel is due to run next (see _arm)
        self._queue_limit = 0
        self.queued = 0             # transitions published and not yet taken
        self.dropped = 0            # transitions dropped at the queue limit
        self._fork_locked = False
        self._elapsed = self._now_mono() // self._tick
        self._last_run = self._elapsed * self._tick

    # -- clocks and arming ----------------------------------------------------------------

    def _now_mono(self) -> int:
        return time.monotonic_ns() if self._clock is None else int(self._clock.monotonic_ns())

    def _now_wall(self) -> float:
        return time.time() if self._clock is None else float(self._clock.time())

    def _lookup(self, agent_id: Any) -> _Agent | None:
        try:
            return self._agents.get(agent_id)
        except TypeError:
            raise TypeError(
                f"agent_id must be hashable, got {type(agent_id).__name__}") from None

    def _disarm(self, a: _Agent) -> None:
        if a.when is not None:
            a.when = None
            a.token = -1
            self._armed -= 1

    def _arm(self, a: _Agent, when: int, now: int) -> None:
        # `now` is the real instant of the arming: the wheel is due at the deadline, or at
        # once for one already past, which never makes its next run look like a stall.
        self._disarm(a)
        when = max(when, self._elapsed + 1)
        when = min(when, self._elapsed + _MAX_AHEAD)
        self._next_token += 1
        a.when, a.token = when, self._next_token
        self._armed += 1
        heapq.heappush(self._heap, (when, a.token, a))
        self._next_due = min(self._next_due, max(when * self._tick, now))
        if when < self._sleep_tick:
            self._sleep_tick = when
            self._wake_pending = True

    def _rearm(self, a: _Agent, now: int) -> None:
        self._disarm(a)
        if a.clock and a.reported != _F:
            self._arm(a, _ceil_div(a.crossing_deadline(), self._tick), now)

    def _cross(self, a: _Agent, bound: int, at: int, now: int) -> None:
        """Each crossing due by `bound`, in order, detected at `at`; not those due in an
        observer stall's grace (the wheel convicts them after it)."""
        while a.clock and a.reported != _F:
            d = a.crossing_deadline()
            if d > bound or (now < self._hold_until and d >= self._hold_from):
                return
            new = crossing_next(a.reported, a.threshold)
            self._emit(a, a.reported, new, _CROSSING, d, at, a.last_wall)
            a.reported = new

    def _settle(self, a: _Agent, t: int, wall: float, now: int) -> None:
        """The last heartbeat becomes t: a recovery only when the present state (of now - t)
        is less severe than the reported one; the wheel reports the crossings already due
        at its next tick (see the compiled engine's _settle)."""
        if a.reported != _H and state_code(now - t, a.interval_ns, a.threshold) < a.reported:
            self._emit(a, a.reported, _H, _RECOVERY, a.last_mono + a.interval_ns, min(t, now),
                       wall)
            a.reported = _H
        a.last_mono, a.last_wall = t, wall
        a.clock = a.hb = True

    def _emit(self, a: _Agent, prev: int, new: int, kind: int, deadline: int, now: int,
              wall: float) -> None:
        self._pending_ids.append(a.key)
        rows = self._pending
        rows.append((deadline, a.seq, now, a.last_mono, a.handle, wall, -1, prev, new, kind, 0))
        if len(rows) == _ROWS_PER_ARRAY:
            # Rows go to numpy a few thousand at a time: a storm never holds them all as
            # Python tuples.
            self._pending_arrays.append(np.array(rows, dtype=EVENT_DTYPE))
            rows.clear()
        if kind == _CROSSING:
            self.transitions += 1
        else:
            self.recoveries += 1

    def _publish(self, sort: bool) -> int:
        ids = self._pending_ids
        if not ids:
            return 0
        block = np.concatenate([*self._pending_arrays, np.array(self._pending, dtype=EVENT_DTYPE)])
        if sort:
            order = np.lexsort((block["seq"], block["deadline"]))   # by deadline, then seq
            block = block[order]
            ids = [ids[i] for i in order.tolist()]
        self._events.append((ids, block))
        self._pending_ids, self._pending, self._pending_arrays = [], [], []
        self.queued += len(ids)
        if self._queue_limit > 0:
            while self.queued > self._queue_limit and len(self._events) > 1:
                n = len(self._events.pop(0)[0])
                self.queued -= n
                self.dropped += n
        return len(ids)

    def _after(self) -> None:
        if self._wake_pending:
            self._wake_pending = False
            if self.wake is not None:
                self.wake()

    # -- registration ---------------------------------------------------------------------

    def _claim(self, agent_id: Any, interval_ns: int, threshold: int, now: int, wall: float,
               seq: int) -> _Agent | None:
        """None if already monitored, else a new agent, indexed (the insert appends, so
        popitem undoes it without running the id's __hash__/__eq__) but not yet active."""
        if self._lookup(agent_id) is not None:
            return None
        a = _Agent(agent_id, interval_ns, threshold, now, wall, seq, self._hsize,
                   self._handle_base)
        self._agents[agent_id] = a
        return a

    def _activate(self, a: _Agent, start_clock: bool, now: int) -> None:
        """Commit a claimed agent; runs no user code."""
        self._next_seq = max(self._next_seq, a.seq + 1)
        self._by_handle[a.handle] = a
        if start_clock:
            a.clock = True
            self._arm(a, _ceil_div(now + a.interval_ns, self._tick), now)

    def start(self, agent_id: Any, interval_ns: int, threshold: int, start_clock: bool) -> bool:
        with self._lock:
            now, wall = self._now_mono(), self._now_wall()
            a = self._claim(agent_id, interval_ns, threshold, now, wall, self._next_seq)
            if a is None:
                return False
            if self._stopped:
                try:
                    old = self._stopped.pop(agent_id, None)
                except BaseException:
                    self._agents.popitem()
                    raise
                if old is not None:
                    self._stopped_total -= len(old[0])
            self._activate(a, start_clock, now)
        self._after()
        return True

    def stop(self, agent_id: Any) -> bool:
        with self._lock:
            a = self._lookup(agent_id)
            if a is None:
                return False
            hist = self._ordered(a) if a.hist else None
            if hist is not None:
                self._stopped[agent_id] = hist   # a monitored id has none: this appends
            try:
                # The stored key, found by identity: the id's __eq__ does not run again
                # (the compiled engine removes the entry it found, by hash and slot).
                del self._agents[a.key]
            except BaseException:       # its __hash__ raised: nothing changes
                if hist is not None:
                    self._stopped.popitem()
                raise
            del self._by_handle[a.handle]
            self._disarm(a)
            if hist is not None:
                self._stopped_total += len(hist[0])
            self._trim_stopped(strict=False)
            return True

    def _trim_stopped(self, strict: bool = True) -> None:
        while 0 <= self._stopped_limit < len(self._stopped):
            oldest = next(iter(self._stopped))
            try:
                old = self._stopped.pop(oldest)
            except BaseException:
                if strict:
                    raise
                return   # an id that raises stays until the next trim
            self._stopped_total -= len(old[0])

    def set_stopped_limit(self, limit: int) -> None:
        with self._lock:
            self._stopped_limit = limit
            self._trim_stopped()

    def stopped_count(self) -> int:
        return len(self._stopped)

    def clear_stopped(self) -> int:
        with self._lock:
            n = len(self._stopped)
            self._stopped.clear()
            self._stopped_total = 0
            return n

    @staticmethod
    def _ordered(a: _Agent) -> History:
        ts = np.array([r[0] for r in a.ring], dtype=np.float64)
        meta = [r[1] for r in a.ring]
        return ts, (meta if any(m is not None for m in meta) else None)

    # -- the hot path -----------------------------------------------------------------------

    def _step(self, a: _Agent, t: int, wall: float) -> None:
        """The step markers of a new record, before it is appended (the compiled _beat)."""
        size, pos, marks = self._hsize, a.head, a.marks
        count = len(a.ring)
        if count == 0:
            return
        if marks and count == size:
            # The oldest record goes: a marker on the record after it has no interval.
            gone = pos + 1 if pos + 1 < size else 0
            i = 0
            while i < len(marks):
                if marks[i][0] == gone:
                    marks[i] = marks[-1]
                    marks.pop()
                else:
                    i += 1
        if size < 2:
            return
        corr = _steps.correction(wall, a.ring[-1][0], t, a.ring_mono)
        if corr == 0.0:
            return
        if len(marks) < _steps.MARKS:
            marks.append([pos, corr])
            return
        low = 0
        for i in range(1, _steps.MARKS):
            if abs(marks[i][1]) < abs(marks[low][1]):
                low = i
        if abs(corr) > abs(marks[low][1]):
            marks[low] = [pos, corr]

    def _first(self, a: _Agent) -> int:
        """The ring position of the oldest record (the compiled engine's head - count)."""
        first = a.head - len(a.ring)
        return first + self._hsize if first < 0 else first

    def _beat(self, a: _Agent, t: int, wall: float, now: int, metadata: Any) -> None:
        """One heartbeat recorded at t (<= now, earlier when backdated); `now` is real."""
        self.heartbeats += 1
        self._step(a, t, wall)
        a.ring.append((wall, metadata))
        a.ring_mono = t
        a.head = a.head + 1 if a.head + 1 < self._hsize else 0
        if self._guard_ns > 0 and a.clock and now - a.last_mono >= a.interval_ns:
            self._check_stall(now)
        self._cross(a, t, t, now)      # crossings due before the heartbeat: they happened
        self._settle(a, t, wall, now)
        a.hist = True
        if a.reported == _F:
            self._disarm(a)             # nothing left to detect
            return
        due = _ceil_div(a.crossing_deadline(), self._tick)
        if a.when is None or a.when > due:
            self._arm(a, due, now)

    def record_heartbeat(self, agent_id: Any, metadata: Mapping[Any, Any] | None = None) -> bool:
        has_meta = False
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TypeError(
                    f"metadata must be a mapping or None, got {type(metadata).__name__}")
            has_meta = bool(metadata)   # user code: before anything changes
        with self._lock:
            a = self._lookup(agent_id)
            if a is not None:
                now = self._now_mono()
                self._beat(a, now, self._now_wall(), now, metadata if has_meta else None)
                queued = self._publish(sort=False) > 0
        if a is None:
            if self.unknown is not None:   # outside the lock: it may log or call back
                self.unknown(agent_id)
            return False
        if queued and self.notify is not None:
            self.notify()
        self._after()
        return True

    def check_agent_health(self, agent_id: Any) -> Any:
        now = self._now_mono()
        a = self._lookup(agent_id)
        if a is None:
            raise ValueError(f"Agent {agent_id} not being monitored")
        return self._states[a.state(now)]

    # -- the wheel thread ---------------------------------------------------------------------

    def before_fork(self) -> None:
        # Re-entrant: a fork from inside the engine's own critical section works too.
        self._lock.acquire()

    def after_fork_parent(self) -> None:
        self._lock.release()

    def after_fork_child(self) -> None:
        # The child's one thread is the one that acquired the lock before the fork (an
        # RLock remembers it): release that acquisition, keep any it was already inside.
        self._lock.release()
        self.wake = None

    def _check_stall(self, now: int) -> None:
        due = self._next_due
        if (self._guard_ns > 0 and due != _NEVER and now >= self._hold_until
                and now - max(due, self._last_run) > self._guard_ns):
            self.stalls += 1
            self.last_stall_ns = now - max(due, self._last_run)
            # Held: what falls due from the wheel's last run on, or from the start of the
            # previous stall when the wheel never ran after that one's grace.
            if self._last_run >= self._hold_until:
                self._hold_from = self._last_run
            self._hold_until = now + self._grace_ns

    def set_stall_guard(self, guard_ns: int, grace_ns: int) -> None:
        self._guard_ns, self._grace_ns = guard_ns, grace_ns

    def _due_ns(self) -> int:
        heap = self._heap
        while heap and heap[0][1] != heap[0][2].token:
            heapq.heappop(heap)
        return heap[0][0] * self._tick if heap else _NEVER

    def advance(self) -> int:
        with self._lock:
            now = self._now_mono()
            due = self._due_ns()
            self._check_stall(now)
            self._last_run = now
            target = now // self._tick
            if now < self._hold_until:
                target = min(target, self._hold_from // self._tick - 1)
            if due <= target * self._tick:
                self.lag_ns = now - due
                self.max_lag_ns = max(self.max_lag_ns, self.lag_ns)
            heap = self._heap
            while heap and heap[0][0] <= target:
                when, token, a = heapq.heappop(heap)
                if token != a.token:
                    continue   # stale: the agent was re-armed or stopped since
                self.wheel_ops += 1
                self._elapsed = max(self._elapsed, when)
                a.when = None
                self._armed -= 1
                while a.clock and a.reported != _F:
                    d = a.crossing_deadline()
                    if _ceil_div(d, self._tick) > when:
                        self._arm(a, _ceil_div(d, self._tick), now)
                        break
                    new = crossing_next(a.reported, a.threshold)
                    self._emit(a, a.reported, new, _CROSSING, d, now, a.last_wall)
                    a.reported = new
            self._elapsed = max(self._elapsed, target)
            self._next_due = self._due_ns()
            return self._publish(sort=True)

    def next_deadline_ns(self) -> int | None:
        with self._lock:
            heap = self._heap
            while heap and heap[0][1] != heap[0][2].token:
                heapq.heappop(heap)
            self._sleep_tick = heap[0][0] if heap else (1 << 63) - 1
            self._wake_pending = False
            return heap[0][0] * self._tick if heap else None

    def take_events(self) -> list[Block]:
        with self._lock:
            events, self._events = self._events, []
            self.queued = 0
        return events

    def now(self) -> tuple[int, float]:
        return self._now_mono(), self._now_wall()

    def set_queue_limit(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._queue_limit = limit

    # -- snapshots --------------------------------------------------------------------------

    def unhealthy(self, min_code: int) -> list[Any]:
        with self._lock:
            now = self._now_mono()
            return [k for k, a in self._agents.items() if a.state(now) >= min_code]

    def counts(self) -> tuple[int, list[int], int]:
        with self._lock:
            now = self._now_mono()
            c = [0, 0, 0, 0]
            records = self._stopped_total
            for a in self._agents.values():
                c[a.state(now)] += 1
                if a.hist:
                    records += len(a.ring)
            return len(self._agents), c, records

    def pending_deadlines(self) -> int:
        return self._armed

    @property
    def active(self) -> int:
        return len(self._agents)

    # -- per-agent views ----------------------------------------------------------------------

    def ids(self) -> list[Any]:
        return list(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: Any) -> bool:
        return agent_id in self._agents

    def info(self, agent_id: Any) -> tuple[int, int, float, int, float] | None:
        with self._lock:
            a = self._lookup(agent_id)
            if a is None:
                return None
            return (a.interval_ns, a.threshold, a.last_wall if a.hb else 0, a.reported,
                    a.started)

    def set_field(self, agent_id: Any, field: str, value: Any) -> None:
        with self._lock:
            a = self._lookup(agent_id)
            if a is None:
                raise KeyError(agent_id)
            now = self._now_mono()
            if field == "last_heartbeat":
                if value:
                    wall = self._now_wall()
                    self._settle(a, _before(now, wall - value, True), value, now)
                else:
                    a.last_wall = 0.0
                    a.clock = a.hb = False
            elif field == "last_state":
                a.reported = value
            elif field == "interval_ns":
                a.interval_ns = value
            elif field == "failure_threshold":
                a.threshold = value
            elif field == "started_at":
                a.started = value
            else:
                raise KeyError(field)
            self._rearm(a, now)
            queued = self._publish(sort=False) > 0
        if queued and self.notify is not None:
            self.notify()
        self._after()

    # -- history ------------------------------------------------------------------------------

    def history_ids(self) -> list[Any]:
        with self._lock:
            return [k for k, a in self._agents.items() if a.hist] + list(self._stopped)

    def history(self, agent_id: Any) -> History | None:
        with self._lock:
            a = self._lookup(agent_id)
            if a is None:
                return self._stopped.get(agent_id)
            return self._ordered(a) if a.hist else None

    def history_len(self, agent_id: Any) -> int:
        with self._lock:
            a = self._lookup(agent_id)
            if a is not None:
                return len(a.ring) if a.hist else -1
            old = self._stopped.get(agent_id)
            return -1 if old is None else len(old[0])

    def drop_history(self, agent_id: Any) -> bool:
        with self._lock:
            a = self._lookup(agent_id)
            if a is not None:
                if not a.hist:
                    return False
                a.ring.clear()
                a.head = 0
                a.marks = []
                a.hist = False
                return True
            old = self._stopped.pop(agent_id, None)
            if old is None:
                return False
            self._stopped_total -= len(old[0])
            return True

    # -- batch and analytics -------------------------------------------------------------------

    def all_handles(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        with self._lock:
            return np.array([a.handle for a in self._agents.values()], dtype=np.int64)

    def handles(self, agent_ids: Any, name: str = "agent_ids"
                ) -> np.ndarray[Any, np.dtype[np.int64]]:
        n = len(agent_ids)
        out = np.empty(n, dtype=np.int64)
        i = 0
        for agent_id in agent_ids:
            if i == n:
                raise ValueError(f"{name} changed size while it was read")
            try:
                a = self._agents.get(agent_id)
            except TypeError:
                raise TypeError(f"{name}[{i}] must be hashable, "
                                f"got {type(agent_id).__name__}") from None
            out[i] = -1 if a is None else a.handle
            i += 1
        if i != n:
            raise ValueError(f"{name} changed size while it was read")
        return out

    def ids_of(self, handles: Any) -> list[Any]:
        with self._lock:
            by = self._by_handle
            return [None if (a := by.get(h)) is None else a.key for h in handles.tolist()]

    def start_many(self, agent_ids: Any, interval_ns: Any, thresholds: Any, start_clock: bool
                   ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """All or nothing, as the compiled engine: lookups first, then claims undone newest
        first if one raises, then a commit that runs no user code."""
        ids = list(agent_ids)
        n = len(ids)
        if len(interval_ns) != n or len(thresholds) != n:
            raise ValueError("interval_ns and thresholds need one value per agent id")
        out = np.zeros(n, dtype=np.bool_)
        ns_list, t_list = interval_ns.tolist(), thresholds.tolist()
        with self._lock:
            now, wall = self._now_mono(), self._now_wall()
            seen: dict[Any, int] = {}
            fresh = []
            for i, agent_id in enumerate(ids):
                if self._lookup(agent_id) is not None or agent_id in seen:
                    continue
                seen[agent_id] = i
                fresh.append(i)
            stopped = None
            removed = 0
            if self._stopped:
                restarted = [i for i in fresh if ids[i] in self._stopped]
                if restarted:
                    stopped = dict(self._stopped)
                    for i in restarted:
                        removed += len(stopped.pop(ids[i])[0])
            claims: list[_Agent] = []
            try:
                for k, i in enumerate(fresh):
                    a = self._claim(ids[i], ns_list[i], t_list[i], now, wall, self._next_seq + k)
                    assert a is not None
                    claims.append(a)
            except BaseException:
                for _ in claims:
                    self._agents.popitem()
                raise
            if stopped is not None:
                self._stopped = stopped
                self._stopped_total -= removed
            for i, a in zip(fresh, claims):
                self._activate(a, start_clock, now)
                out[i] = True
        self._after()
        return out

    def record_many(self, handles: Any, walls: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
        n = len(handles)
        out = np.zeros(n, dtype=np.bool_)
        if walls is not None and len(walls) != n:
            raise ValueError(f"walls has {len(walls)} values for {n} handles")
        with self._lock:
            now, wall = self._now_mono(), self._now_wall()
            by = self._by_handle
            stamps = [None] * n if walls is None else walls.tolist()
            for i, (h, t) in enumerate(zip(handles.tolist(), stamps)):
                if i and i % _BATCH_YIELD == 0:
                    # A chance for the wheel thread to take the lock inside a long batch:
                    # the pause drops the GIL, which a thread waiting for the lock needs.
                    self._lock.release()
                    time.sleep(0)
                    self._lock.acquire()
                a = by.get(h)
                if a is None:
                    continue
                if t is None:
                    self._beat(a, now, wall, now, None)
                else:
                    t = t if t < wall else wall
                    mono = _before(now, wall - t, False)
                    if a.hb and mono < a.last_mono:
                        continue
                    self._beat(a, mono, t, now, None)
                out[i] = True
            queued = self._publish(sort=False) > 0
        if queued and self.notify is not None:
            self.notify()
        self._after()
        return out

    def steps(self, agent_id: Any) -> list[tuple[int, float]]:
        with self._lock:
            a = self._lookup(agent_id)
            if a is None:
                return []
            first = self._first(a)
            return [(pos - first + (self._hsize if pos < first else 0), corr)
                    for pos, corr in a.marks]

    def history_array(self, agent_id: Any, copy: bool) -> np.ndarray[Any, Any] | None:
        hist = self.history(agent_id)
        return None if hist is None else hist[0].copy()

    def histories(self, handles: Any, padded: bool) -> Any:
        with self._lock:
            rings = [self._by_handle.get(h) for h in handles.tolist()]
            stamps = [[r[0] for r in a.ring] if a is not None and a.hist else [] for a in rings]
        if padded:
            out = np.full((len(stamps), self._hsize), np.nan)
            for i, ts in enumerate(stamps):
                out[i, :len(ts)] = ts
            return out
        offsets = np.zeros(len(stamps) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(ts) for ts in stamps])
        values = np.array([t for ts in stamps for t in ts], dtype=np.float64)
        return values, offsets

    def interval_stats(self, handles: Any, lo: float, hi: float, kernel: Any) -> Any:
        n = len(handles)
        ring = np.zeros((n, self._hsize))
        heads = np.zeros(n, dtype=np.int32)
        counts = np.zeros(n, dtype=np.int32)
        fixed = np.zeros(n, dtype=np.bool_)
        with self._lock:
            for i, h in enumerate(handles.tolist()):
                a = self._by_handle.get(h)
                if a is not None and a.hist:
                    raw = np.array([r[0] for r in a.ring], dtype=np.float64)
                    if a.marks:
                        # Rebased (and filtered on the raw times): see _steps.run_kernel.
                        raw = _steps.rebased_row(raw, self._first(a), self._hsize, a.marks,
                                                 lo, hi)
                        fixed[i] = True
                    k = len(raw)
                    ring[i, :k] = raw
                    heads[i], counts[i] = k % self._hsize, k
        out = np.empty((n, 9))
        _steps.run_kernel(kernel, ring, heads, counts, fixed, lo, hi, out)
        return out

    def snapshot(self) -> tuple[Any, ...]:
        with self._lock:
            now, wall = self._now_mono(), self._now_wall()
            agents = list(self._agents.values())
            n = len(agents)
            handles = np.array([a.handle for a in agents], dtype=np.int64)
            states = np.array([a.state(now) for a in agents], dtype=np.int8)
            elapsed = np.array([now - a.last_mono if a.clock else -1 for a in agents],
                               dtype=np.int64)
            count = np.zeros(n, dtype=np.int64)
            means = np.full(n, np.nan)
            stds = np.full(n, np.nan)
            for i, a in enumerate(agents):
                if a.hist and len(a.ring) > 1:
                    ts = np.array([r[0] for r in a.ring], dtype=np.float64)
                    if a.marks:
                        _steps.rebase(ts, len(ts), self._first(a), self._hsize, a.marks)
                    iv = np.diff(ts)
                    count[i] = len(iv)
                    means[i] = (ts[-1] - ts[0]) / len(iv)
                    stds[i] = np.sqrt(np.mean((iv - means[i]) ** 2))
            return [a.key for a in agents], handles, states, elapsed, count, means, stds, now, wall
