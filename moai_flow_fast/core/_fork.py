"""fork() safety: every live monitor's engine lock is held across fork(), and the child
gets fresh locks and, where the parent ran them, fresh background threads."""

from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = ["track"]

_MONITORS: weakref.WeakSet[Any] = weakref.WeakSet()


def track(monitor: Any) -> None:
    _MONITORS.add(monitor)


def _before() -> None:
    for monitor in list(_MONITORS):
        monitor._engine.before_fork()


def _after_in_parent() -> None:
    for monitor in list(_MONITORS):
        monitor._engine.after_fork_parent()


def _after_in_child() -> None:
    for monitor in list(_MONITORS):
        # Another thread may have been inside the event's condition at the fork: give the
        # child a fresh lock (the flag is kept), as threading does for its own objects.
        reinit = getattr(monitor.shutdown_event, "_at_fork_reinit", None)
        if reinit is not None:
            reinit()
        monitor._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                        after_in_child=_after_in_child)
