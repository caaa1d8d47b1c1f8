"""The state file: agents, their settings, states, silences and histories, written
atomically (temporary file, fsync, rename, fsync of the directory) and restored at start.

Format: a numpy ``.npz`` archive (no pickles; loaded with ``allow_pickle=False``) with
``version``, ``saved_at`` (Unix s), ``ids`` (UTF-8 bytes of the ids joined by newlines),
``interval_ms``, ``failure_threshold``, ``state`` (0 healthy .. 3 failed), ``elapsed_ms``
(silence at ``saved_at``; NaN before an agent's clock started), ``history`` and
``history_offsets`` (agent i's timestamps are history[offsets[i]:offsets[i + 1]]).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["VERSION", "Restored", "restore", "resume", "save"]

logger = logging.getLogger("moai_flow_fast.service")

VERSION = 1


@dataclass(frozen=True)
class Restored:
    agents: int
    heartbeats: int
    saved_at: float
    downtime_s: float
    ids: list[str]
    states: list[int]                 # at the snapshot
    silences_ms: list[float]          # at the snapshot (NaN: clock not started)


def save(monitor: Any, path: str, settings: dict[str, tuple[float, int]]) -> int:
    """Write the state of every monitored agent to `path` atomically; returns the count.
    `settings` holds the (interval_ms, failure_threshold) of agents that do not use the
    monitor's defaults."""
    snap = monitor.snapshot()
    n = len(snap.ids)
    intervals = np.full(n, float(monitor.default_interval_ms))
    thresholds = np.full(n, int(monitor.default_failure_threshold), dtype=np.int64)
    if settings:
        position = {agent_id: i for i, agent_id in enumerate(snap.ids)} \
            if len(settings) * 8 > n else None
        for agent_id, (interval, threshold) in list(settings.items()):
            i = position.get(agent_id) if position is not None else _index(snap.ids, agent_id)
            if i is not None:
                intervals[i], thresholds[i] = interval, threshold
    values, offsets = monitor.histories(snap.handles, layout="flat")
    blob = "\n".join(snap.ids).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".moai-state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, version=np.array([VERSION]), saved_at=np.array([snap.wall]),
                     ids=np.frombuffer(blob, dtype=np.uint8), interval_ms=intervals,
                     failure_threshold=thresholds, state=snap.states.astype(np.int8),
                     elapsed_ms=snap.elapsed_ms, history=np.asarray(values, dtype=np.float64),
                     history_offsets=np.asarray(offsets, dtype=np.int64))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)   # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    return n


def _index(ids: list[Any], agent_id: Any) -> int | None:
    try:
        return ids.index(agent_id)
    except ValueError:
        return None


def restore(monitor: Any, path: str, settings: dict[str, tuple[float, int]]) -> Restored | None:
    """Register the agents of `path` with their settings and histories (None: no file);
    `resume` then applies the grace, once the service can receive heartbeats.
    Raises ValueError for an unreadable file."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        version = int(arrays["version"][0])
        if version != VERSION:
            raise ValueError(f"state file version {version}, expected {VERSION}")
        blob = arrays["ids"].tobytes().decode("utf-8")
        ids = blob.split("\n") if blob else []
        intervals = arrays["interval_ms"].tolist()
        thresholds = arrays["failure_threshold"].tolist()
        states = arrays["state"]
        elapsed = arrays["elapsed_ms"]
        values = arrays["history"]
        offsets = arrays["history_offsets"]
        saved_at = float(arrays["saved_at"][0])
        if not (len(intervals) == len(thresholds) == len(states) == len(elapsed) == len(ids)
                and len(offsets) == len(ids) + 1):
            raise ValueError("arrays of different lengths")
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"state file {path!r} cannot be restored: {exc}") from None

    # Restored agents start their clocks now: an agent that never sends again is still found.
    monitor.start_monitoring_many(ids, intervals, thresholds, start_clock=True)
    handles = monitor.handles(ids)
    counts = np.diff(offsets)
    if len(values):
        monitor.record_heartbeats(np.repeat(handles, counts), values)
    default = (float(monitor.default_interval_ms), int(monitor.default_failure_threshold))
    for agent_id, interval, threshold in zip(ids, intervals, thresholds):
        if (interval, threshold) != default:
            settings[agent_id] = (interval, threshold)
    return Restored(len(ids), len(values), saved_at, max(time.time() - saved_at, 0.0), ids,
                    states.tolist(), elapsed.tolist())


def resume(monitor: Any, restored: Restored) -> None:
    """The grace: the service's own downtime counts against nobody. Called when the
    service starts receiving heartbeats: an agent that was healthy at the snapshot is
    judged from now (a full timeout to report again; if it does not, it is reported then);
    one that was degraded or worse resumes the silence it had at the snapshot, so it keeps
    its state and is not alerted again."""
    now = time.time()
    agents = monitor.monitoring_agents
    for agent_id, state, silence in zip(restored.ids, restored.states, restored.silences_ms):
        record = agents.get(agent_id)
        if record is None:           # deleted meanwhile
            continue
        if state == 0:
            record["last_heartbeat"] = now
        elif silence == silence:     # not NaN
            record["last_heartbeat"] = now - silence / 1e3
