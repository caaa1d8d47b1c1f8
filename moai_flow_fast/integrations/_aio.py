"""asyncio: transitions and recoveries as an async iterator (`monitor.events()`)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, cast

import numpy as np

from ..core._rules import EVENT_KINDS, STATES, HealthState

__all__ = ["EventStream", "TransitionEvent"]

logger = logging.getLogger("moai_flow_fast.aio")

_KINDS = cast(tuple[Literal["crossing"], Literal["recovery"]], EVENT_KINDS)
_WARN_EVERY_S = 1.0   # at most one drop WARNING per stream per this many seconds


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """One threshold crossing (kind "crossing": `previous` -> `current`, one step worse) or
    one recovery (kind "recovery": `current` is HEALTHY).

    `elapsed_s` is the silence when it was detected (detection time minus the heartbeat it
    is measured from); `deadline_monotonic` is when the threshold was due (for a recovery:
    when the agent left HEALTHY) and `detected_monotonic` when the monitor found it, both
    in the monitor clock's monotonic seconds. `handle` identifies this monitoring of the
    agent (see `monitor.handles`)."""

    agent_id: Any
    previous: HealthState
    current: HealthState
    kind: Literal["crossing", "recovery"]
    elapsed_s: float
    deadline_monotonic: float
    detected_monotonic: float
    handle: int


def _events_of(ids: list[Any], block: np.ndarray[Any, Any]) -> list[TransitionEvent]:
    prev = block["prev"].tolist()
    new = block["new"].tolist()
    kind = block["kind"].tolist()
    now = block["now"]
    elapsed = ((now - block["last_mono"]) / 1e9).tolist()
    deadline = (block["deadline"] / 1e9).tolist()
    detected = (now / 1e9).tolist()
    handle = block["handle"].tolist()
    return [TransitionEvent(*row) for row in zip(
        ids, [STATES[p] for p in prev], [STATES[n] for n in new], [_KINDS[k] for k in kind],
        elapsed, deadline, detected, handle, strict=True)]


def _make_listener(ref: weakref.ref[EventStream], loop: asyncio.AbstractEventLoop,
                   maxsize: int) -> Callable[[list[Any], np.ndarray[Any, Any]], None]:
    # Holds the stream weakly, so a stream nobody references (a consumer that left its
    # `async for`) is collected and its finalizer unregisters this listener.
    def listener(ids: list[Any], block: np.ndarray[Any, Any]) -> None:
        stream = ref()
        if stream is None or stream._closed or not len(ids):
            return
        skipped = max(0, len(ids) - maxsize)   # older than the newest maxsize: dropped now
        if skipped:
            ids, block = ids[skipped:], block[skipped:]
        events = _events_of(ids, block)
        try:
            loop.call_soon_threadsafe(stream._push, events, skipped)
        except RuntimeError:   # the loop is closed: nobody can consume any more
            stream._closed = True
            stream._unregister()

    return listener


class EventStream:
    """An async iterator of `TransitionEvent`s for one running event loop.

    Made by `monitor.events(maxsize)` inside a coroutine. The monitor's dispatcher hands
    each block of events to the loop with one `call_soon_threadsafe`; the stream keeps at
    most `maxsize` of them. When the consumer falls behind, the oldest are dropped, counted
    in `dropped`, and a WARNING is logged (at most once per second, with the count).

    End it with `close()` / `await aclose()`, or use it as `async with monitor.events() as
    events:`. A closed stream stops receiving at once and its iteration ends (events still
    queued are discarded). A stream that is no longer referenced unregisters itself."""

    def __init__(self, dispatcher: Any, maxsize: int = 10_000) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("monitor.events() must be called inside a running asyncio "
                               "event loop (from a coroutine)") from None
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a whole number >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self.dropped = 0
        self._queue: deque[TransitionEvent] = deque(maxlen=maxsize)
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._last_warning = -float("inf")
        self._unreported = 0
        self._flush: asyncio.TimerHandle | None = None
        self._dispatcher = dispatcher
        self._listener = _make_listener(weakref.ref(self), self._loop, maxsize)
        self._finalizer = weakref.finalize(self, dispatcher.remove_listener, self._listener)
        dispatcher.add_listener(self._listener)

    # -- consumer side (the loop's thread) ----------------------------------------------------

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> TransitionEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._queue:
                return self._queue.popleft()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the stream (see `close`)."""
        self.close()

    def close(self) -> None:
        """Stop receiving events and end the iteration; harmless when repeated. May be
        called from any thread."""
        self._closed = True
        self._unregister()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake()
        elif not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:   # closed meanwhile
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Events queued and not yet consumed."""
        return len(self._queue)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<EventStream {state} queued={len(self._queue)} maxsize={self.maxsize} "
                f"dropped={self.dropped}>")

    # -- producer side ------------------------------------------------------------------------

    def _unregister(self) -> None:
        self._finalizer()   # removes the listener once; later calls do nothing

    def _push(self, events: list[TransitionEvent], skipped: int) -> None:
        # On the loop's thread: one call per block of events.
        if self._closed:
            return
        lost = skipped + max(0, len(self._queue) + len(events) - self.maxsize)
        self._queue.extend(events)   # the deque's maxlen drops the oldest
        if lost:
            self.dropped += lost
            self._unreported += lost
            self._report_drops()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _report_drops(self) -> None:
        if self._flush is not None:
            return   # a report is already scheduled
        wait = self._last_warning + _WARN_EVERY_S - time.monotonic()
        if wait <= 0:
            self._warn()
        else:
            self._flush = self._loop.call_later(wait, self._warn)

    def _warn(self) -> None:
        self._flush = None
        if not self._unreported or self._closed:
            return
        self._last_warning = time.monotonic()
        logger.warning("Event stream consumer is falling behind: %d oldest events dropped "
                       "(%d in total, maxsize %d)", self._unreported, self.dropped, self.maxsize)
        self._unreported = 0
