"""Test helpers: a brute-force reference model of the monitor (the contract's
"exact model"), a thread-safe callback recorder and a monitor snapshot.

Everything here is written from the contract (/tmp/contract.md) and
SEMANTICS.md, never from the package code.
"""
from __future__ import annotations

import threading
from itertools import pairwise

from moai_flow_fast import HealthState

NS = 1_000_000_000
MS = 1_000_000

H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)
SEVERITY = {H: 0, D: 1, C: 2, F: 3}


def state_of(elapsed_ns, interval_ns, threshold):
    """The Part A state function, in integer nanoseconds."""
    if elapsed_ns is None or elapsed_ns < interval_ns:
        return H
    if elapsed_ns < 2 * interval_ns:
        return D
    if elapsed_ns < threshold * interval_ns:
        return C
    return F


def ceil_div(a, b):
    return -((-a) // b)


class ModelAgent:
    __slots__ = (
        "aid",
        "clock_started",
        "interval_ns",
        "last",
        "reg",
        "reported",
        "seq",
        "threshold",
    )

    def __init__(self, aid, interval_ms, threshold, reg, clock_started, seq):
        self.aid = aid
        self.interval_ns = interval_ms * MS
        self.threshold = threshold
        self.last = None          # ns of the last heartbeat, None before the first
        self.reg = reg            # ns of registration
        self.clock_started = clock_started
        self.reported = H
        self.seq = seq

    def base(self):
        """The instant the agent's silence is measured from (None: no clock)."""
        if self.last is not None:
            return self.last
        if self.clock_started:
            return self.reg
        return None

    def state(self, now):
        b = self.base()
        return state_of(None if b is None else now - b, self.interval_ns, self.threshold)

    def next_crossing(self):
        """(deadline_ns, new_state) of the next crossing from the reported state."""
        b = self.base()
        if b is None:
            return None
        i = self.interval_ns
        if self.reported is H:
            return b + i, D
        if self.reported is D:
            return b + 2 * i, (C if self.threshold > 2 else F)
        if self.reported is C:
            return b + self.threshold * i, F
        return None


class Model:
    """Brute-force model. Events:
    ("alert", agent_id, new_state, previous_state, deadline_ns, detect_ns, base_ns)
    ("recovery", agent_id, previous_state, heartbeat_ns, old_base_ns)
    """

    def __init__(self, tick_ms, start_clock_on_register=False):
        self.tick_ns = tick_ms * MS
        self.start_clock_on_register = start_clock_on_register
        self.agents = {}     # insertion order == registration order
        self._seq = 0

    # -- operations -----------------------------------------------------
    def start(self, aid, interval_ms, threshold, now, start_clock=None):
        if aid in self.agents:
            return False
        sc = self.start_clock_on_register if start_clock is None else start_clock
        self.agents[aid] = ModelAgent(aid, interval_ms, threshold, now, sc, self._seq)
        self._seq += 1
        return True

    def stop(self, aid):
        if aid not in self.agents:
            return False
        del self.agents[aid]
        return True

    def heartbeat(self, aid, h):
        """Returns (accepted, events)."""
        a = self.agents.get(aid)
        if a is None:
            return False, []
        events = []
        while True:
            nc = a.next_crossing()
            if nc is None or nc[0] > h:
                break
            d, new = nc
            events.append(("alert", aid, new, a.reported, d, h, a.base()))
            a.reported = new
        if a.reported is not H:
            events.append(("recovery", aid, a.reported, h, a.base()))
            a.reported = H
        a.last = h
        return True, events

    def advance(self, now):
        tick_now = now // self.tick_ns
        found = []
        for a in self.agents.values():
            while True:
                nc = a.next_crossing()
                if nc is None or ceil_div(nc[0], self.tick_ns) > tick_now:
                    break
                d, new = nc
                found.append((d, a.seq, ("alert", a.aid, new, a.reported, d, now, a.base())))
                a.reported = new
        found.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in found]

    # -- queries ----------------------------------------------------------
    def state(self, aid, now):
        return self.agents[aid].state(now)

    def pending(self):
        """All (deadline, agent) pairs of the next crossings."""
        out = []
        for a in self.agents.values():
            nc = a.next_crossing()
            if nc is not None:
                out.append((nc[0], a.aid))
        return out


class Recorder:
    """Thread-safe recorder of callbacks: events are
    ("alert", agent_id, state, details) and ("recovery", agent_id, state, details)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.cond = threading.Condition(self.lock)

    def _add(self, kind, aid, state, details):
        with self.cond:
            self.events.append((kind, aid, state, dict(details)))
            self.cond.notify_all()

    def alert(self, aid, state, details):
        self._add("alert", aid, state, details)

    def recovery(self, aid, state, details):
        self._add("recovery", aid, state, details)

    def install(self, monitor, recovery=False):
        kw = dict(on_degraded=True, on_critical=True, on_failed=True,
                  degraded_callback=self.alert, critical_callback=self.alert,
                  failed_callback=self.alert)
        if recovery:
            kw.update(on_recovery=True, recovery_callback=self.recovery)
        monitor.configure_alerts(**kw)
        return self

    def simple(self):
        """[(kind, agent, state)] for alerts, [(kind, agent, previous_state)] for recoveries."""
        with self.lock:
            out = []
            for kind, aid, state, det in self.events:
                if kind == "alert":
                    out.append(("alert", aid, state))
                else:
                    out.append(("recovery", aid, det.get("previous_state")))
            return out

    def take(self):
        with self.lock:
            ev, self.events = self.events, []
            return ev

    def wait_for(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.events), timeout)


AGENT_KEYS = ("interval_ms", "failure_threshold", "last_heartbeat", "last_state", "started_at")


def snapshot(monitor, ids=()):
    """Everything observable about a monitor (used to show a rejected call changed nothing)."""
    agents = []
    for k, v in monitor.monitoring_agents.items():
        agents.append((k, {f: v[f] for f in AGENT_KEYS}))
    hist_ids = list(ids) + [k for k, _ in agents]
    return {
        "agents": agents,
        "histories": {repr(k): monitor.get_heartbeat_history(k) for k in hist_ids},
        "history_keys": sorted(repr(k) for k in monitor.heartbeat_history.keys()),
        "states": {repr(k): monitor.check_agent_health(k) for k, _ in agents},
        "unhealthy": list(monitor.get_unhealthy_agents(HealthState.HEALTHY)),
        # unknown_heartbeats counts rejected heartbeats by design: it is what they change.
        "stats": {k: v for k, v in monitor.get_monitoring_stats().items()
                  if k != "unknown_heartbeats"},
    }


# -- monotonic intervals (issue 11, item 1) ---------------------------------------------------
STAT_FIELDS = ("count", "mean", "std", "min", "max", "p50", "p95", "p99", "last")


def mono_intervals(records, lo=float("-inf"), hi=float("inf")):
    """The intervals (s) the contract promises for a history of `records`, (mono_ns, wall)
    oldest first: the monotonic differences of consecutive records among those whose
    wall-clock timestamp is in [lo, hi] -- whatever the wall clock did in between."""
    kept = [mono for mono, wall in records if lo <= wall <= hi]
    return [(b - a) / NS for a, b in pairwise(kept)]


def interval_row(intervals):
    """interval_stats' fields for these intervals (numpy's definitions; NaN when none)."""
    import numpy as np

    nan = float("nan")
    if not intervals:
        return dict(zip(STAT_FIELDS, [0] + [nan] * 8))
    iv = np.asarray(intervals, dtype=np.float64)
    p50, p95, p99 = np.percentile(iv, [50, 95, 99])
    return {"count": len(iv), "mean": iv.mean(), "std": iv.std(), "min": iv.min(),
            "max": iv.max(), "p50": p50, "p95": p95, "p99": p99, "last": iv[-1]}
