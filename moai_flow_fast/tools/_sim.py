"""A simulated swarm against a real HeartbeatMonitor, with the truth kept on the side.

`Swarm` registers agents, then one scheduler thread (a heap of next-heartbeat times) sends
each agent's heartbeats on its own schedule, and injects failures:

- **normal** agents heartbeat every 0.6-0.9 of their interval (75 % +- 15 %), so a healthy
  agent keeps at least 10 % of its interval in hand and never crosses it;
- **crash**: the agent stops heartbeating for good at a planned time;
- **stall**: once, the agent stays silent long enough to reach DEGRADED, CRITICAL or FAILED
  (the silence ends a quarter to three quarters of an interval past that threshold), then
  resumes;
- **slow starter**: the first heartbeat comes 1.25-2.75 intervals after registration. The
  replaced monitor (MoAI-Flow's) says an agent is HEALTHY until its first heartbeat, so by
  default a late first heartbeat is invisible. The demo registers slow starters with
  ``start_clock=True`` (the opt-in that starts an agent's clock at registration), which
  makes their lateness a failure that must be detected, followed by a recovery. Every
  other agent is registered the MoAI-Flow-compatible default way.
- **flapping**: every 2nd or 3rd gap lasts 1.1-1.5 intervals, so the agent goes DEGRADED
  and recovers over and over.

The truth: each heartbeat's time is bracketed by clock readings taken just before and just
after `record_heartbeat` (in virtual time both are exact), and each agent's threshold
crossings are computed from those brackets (`agent_truth`). `_report.compare` then matches
them against the monitor's alerts.

The heartbeat path is one function, `Swarm.send`, made by `scalar_sender`: the scheduler
hands it every agent due at once, so a batch sender (``record_heartbeats``) can replace it
without touching the scheduler.
"""

from __future__ import annotations

import bisect
import heapq
import random
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core._clock import VirtualClock
from ..core._monitor import HeartbeatMonitor
from ..core._rules import crossing_schedule
from ._report import Alert, Crossing, Report, compare, percentile
from ._screen import REPORT_WIDTH, fit

__all__ = [
    "AgentTruth",
    "Swarm",
    "SwarmConfig",
    "SwarmResult",
    "agent_truth",
    "crossing_mults",
    "scalar_sender",
]

_NS = 1_000_000_000

# Kinds of agent.
NORMAL, CRASH, STALL, SLOW, FLAP = range(5)
KIND_NAMES = {NORMAL: "normal", CRASH: "crash", STALL: "stall", SLOW: "slow", FLAP: "flap"}

# What the silence that ended with a heartbeat was planned to be. A crossing in a silence
# planned as NORMAL means the simulator itself was late: cause "lag".
GAP_NORMAL, GAP_STALL, GAP_SLOW, GAP_FLAP = 0, 1, 2, 3
GAP_CAUSES = {GAP_NORMAL: "lag", GAP_STALL: "stall", GAP_SLOW: "slow", GAP_FLAP: "flap"}

# Heartbeat gap of a healthy agent, as a fraction of its interval.
GAP_MIN, GAP_MAX = 0.6, 0.9
FLAP_MIN, FLAP_MAX = 1.1, 1.5
# Share of the swarm per failure kind.
FRACTIONS = {CRASH: 0.02, STALL: 0.02, SLOW: 0.01, FLAP: 0.01}


# (multiple of the interval, severity) of each crossing from HEALTHY, in order.
crossing_mults = crossing_schedule


@dataclass
class AgentTruth:
    crossings: list[Crossing]
    recoveries: int          # certain recoveries
    ambiguous_recoveries: int


def agent_truth(
    agent: Any,
    interval_ns: int,
    threshold: int,
    beats: Sequence[tuple[int, int, int]],
    *,
    registered: tuple[int, int] | None = None,
    final_cause: str = "end",
    horizon: int,
) -> AgentTruth:
    """Every crossing of one agent, from the heartbeats it really sent.

    `beats` are ``(t0, t1, gap_code)`` in order: the heartbeat's clock reading is somewhere
    in ``[t0, t1]`` (ns) and `gap_code` says what the silence ending with it was planned to
    be (`GAP_CAUSES`). `registered` is the bracket of `start_monitoring` when the agent's
    clock started at registration (None: the default, nothing before the first
    heartbeat).
    The last silence has cause `final_cause` and lasts until `horizon` (ns).

    A crossing at ``m * interval`` after a heartbeat (or registration) at ``s`` happens when
    the next heartbeat comes at or after ``s + m * interval`` (the monitor's rule: crossings
    with deadline <= the heartbeat time are reported), or, with no next heartbeat, when that
    deadline is <= horizon. Uncertain brackets make it ambiguous (see `_report`).
    """
    silences: list[tuple[int, int, int | None, int | None, str]] = []
    starts: list[tuple[int, int]] = []
    if registered is not None:
        starts.append(registered)
    starts.extend((b[0], b[1]) for b in beats)
    for i, (s_lo, s_hi) in enumerate(starts):
        j = i if registered is not None else i + 1   # the heartbeat ending this silence
        if j < len(beats):
            b_lo, b_hi, code = beats[j]
            silences.append((s_lo, s_hi, b_lo, b_hi, GAP_CAUSES.get(code, "lag")))
        else:
            silences.append((s_lo, s_hi, None, None, final_cause))
    crossings: list[Crossing] = []
    recoveries = ambiguous_recoveries = 0
    for s_lo, s_hi, e_lo, e_hi, cause in silences:
        for m, state in crossing_mults(threshold):
            thr = m * interval_ns
            lo, hi = s_lo + thr, s_hi + thr
            if e_lo is None or e_hi is None:
                if lo > horizon:
                    break
                certain = hi <= horizon
            else:
                if e_hi - s_lo < thr:
                    break
                certain = e_lo - s_hi >= thr
            crossings.append(Crossing(agent, state, lo, hi, cause, certain))
            if state == 1 and e_lo is not None:
                if certain:
                    recoveries += 1
                else:
                    ambiguous_recoveries += 1
    return AgentTruth(crossings, recoveries, ambiguous_recoveries)


Sender = Callable[[Sequence[int]], list[tuple[int, int]]]


def scalar_sender(monitor: HeartbeatMonitor, ids: Sequence[Any],
                  clock: Callable[[], int]) -> Sender:
    """The heartbeat path: given the agents (indices into `ids`) due now, sends their
    heartbeats and returns each one's bracket ``(t0, t1)``: clock readings taken just
    before and just after its `record_heartbeat` call.

    A batch sender has the same shape: one ``record_heartbeats`` call for the whole list,
    bracketed once, returns that bracket for every agent.
    """
    record = monitor.record_heartbeat

    def send(idxs: Sequence[int]) -> list[tuple[int, int]]:
        out = []
        for idx in idxs:
            t0 = clock()
            record(ids[idx])
            out.append((t0, clock()))
        return out

    return send


@dataclass
class SwarmConfig:
    agents: int = 10_000
    duration: float = 20.0          # seconds of the run whose crossings must be detected
    seed: int = 1
    intervals: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)   # seconds, picked at random
    threshold: int = 3
    tick_ms: int = 10
    engine: str = "auto"
    grace: float = 1.0              # seconds of heartbeats after the window, then stop

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")
        if not self.intervals or min(self.intervals) < 0.1:
            raise ValueError("intervals must be a non-empty list of seconds >= 0.1")
        if self.threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {self.threshold}")
        if self.grace < 0:
            raise ValueError(f"grace must be >= 0, got {self.grace}")


@dataclass
class SwarmResult:
    config: SwarmConfig
    engine: str
    report: Report
    injected: dict[str, int]
    heartbeats: int
    elapsed: float                  # wall seconds of the run (registration to stop)
    registration_s: float
    monitor_stats: dict[str, Any] = field(default_factory=dict)
    lateness_ms: dict[str, float] = field(default_factory=dict)   # the simulator's own

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "config": {"agents": c.agents, "duration": c.duration, "seed": c.seed,
                       "intervals": list(c.intervals), "threshold": c.threshold,
                       "tick_ms": c.tick_ms, "engine": c.engine, "grace": c.grace},
            "engine": self.engine,
            "injected": self.injected,
            "heartbeats": self.heartbeats,
            "simulator_lateness_ms": self.lateness_ms,
            "monitor": {k: self.monitor_stats.get(k) for k in
                        ("transitions", "alerts_raised", "recoveries", "callback_errors")},
            **self.report.to_dict(),
        }

    def format(self) -> list[str]:
        """The report as lines of at most 80 columns."""
        c = self.config
        inj = ", ".join(f"{n:,} {k}" for k, n in self.injected.items())
        span = c.duration + c.grace
        rate = self.heartbeats / span
        sent = [f"Heartbeats sent: {self.heartbeats:,} ({rate:,.0f}/s)",
                f"registration {self.registration_s * 1e3:.0f} ms"]
        if self.lateness_ms.get("max"):
            sent.append("sent late by p50 {p50:.1f} / p99 {p99:.1f} / max {max:.1f} ms".format(
                **self.lateness_ms))
        lines = fit([f"Swarm: {c.agents:,} agents", f"intervals {_fmt_list(c.intervals)} s",
                     f"threshold {c.threshold}", f"{c.duration:g} s (+{c.grace:g} s grace)",
                     f"seed {c.seed}", f"engine {self.engine}", f"tick {c.tick_ms} ms"],
                    REPORT_WIDTH, sep=", ")
        lines += fit([f"Injected: {inj}"], REPORT_WIDTH)
        lines += fit(sent, REPORT_WIDTH, sep="; ")
        lines.append(f"Truth vs monitor (crossings due in the first {c.duration:g} s):")
        lines += self.report.format()
        st = self.monitor_stats
        if st:
            lines += fit([f"Monitor's own counts: {st.get('transitions', 0):,} crossings",
                          f"{st.get('alerts_raised', 0):,} alerts",
                          f"{st.get('recoveries', 0):,} recoveries",
                          f"{st.get('callback_errors', 0):,} callback errors"],
                         REPORT_WIDTH, sep=", ")
        lines.append("Result: " + ("PASS (every failure detected, no false alarm)"
                                   if self.passed else "FAIL"))
        return lines


def _ms_ns(seconds: float) -> int:
    """Seconds to ns, rounded to a whole millisecond (intervals are registered in ms)."""
    return round(seconds * 1000) * 1_000_000


def _fmt_list(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


class Swarm:
    """Plans a swarm (deterministic from the seed), runs it, and judges the monitor.

    With `clock` (a VirtualClock) the run is in virtual time: no thread, the scheduler moves
    the clock to each heartbeat and each tick boundary. Without, it is real time: the
    monitor runs on the system clock with its background threads.
    """

    def __init__(self, config: SwarmConfig, *, clock: VirtualClock | None = None) -> None:
        self.config = config
        self.virtual = clock is not None
        self.vclock = clock
        n = config.agents
        rng = random.Random(config.seed)
        self.rng = rng
        self.ids = [f"agent-{i:0{len(str(n - 1))}d}" for i in range(n)]
        self.index = {aid: i for i, aid in enumerate(self.ids)}
        self.interval_ns = [_ms_ns(rng.choice(config.intervals)) for _ in range(n)]
        self.kind = [NORMAL] * n
        self.crash_at = [0] * n          # offsets from the start, ns
        self.stall_at = [0] * n
        self.stall_gap = [0] * n
        self.first_gap = [0] * n
        self.flap_every = [0] * n
        self.count = [0] * n
        self.stalled = [False] * n
        self.crashed = [False] * n
        self._plan(rng)
        self.beats: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
        self.registered: list[tuple[int, int] | None] = [None] * n
        self.alerts: list[tuple[Any, int, float, float, int]] = []
        self.recoveries: list[Any] = []
        self.sent = 0
        self.heap: list[tuple[int, int, int]] = []
        self.lateness = array("q")      # ns each heartbeat was sent after its due time
        self.alert_counts = [0, 0, 0, 0]
        self.flaps = 0
        self.monitor: HeartbeatMonitor | None = None
        self.send: Sender | None = None
        self._stop = threading.Event()
        self.start_ns = 0
        self.window_end_ns = 0
        self.stop_ns = 0

    # -- planning -------------------------------------------------------------------------

    def _plan(self, rng: random.Random) -> None:
        c = self.config
        n = c.agents
        mults = crossing_mults(c.threshold)
        f_mult = mults[-1][0]
        d_ns = round(c.duration * _NS)
        counts = {k: round(f * n) for k, f in FRACTIONS.items()}
        if n >= 4:
            counts = {k: max(1, v) for k, v in counts.items()}
        chosen = rng.sample(range(n), min(n, sum(counts.values())))
        pos = 0
        # Prefer intervals whose whole failure fits in the first 80 % of the window.
        fitting = [i for i in c.intervals if (f_mult + 1) * i <= 0.8 * c.duration]
        fit_ns = [_ms_ns(i) for i in (fitting or [min(c.intervals)])]
        for kind in (CRASH, STALL, SLOW, FLAP):
            for idx in chosen[pos:pos + counts[kind]]:
                self.kind[idx] = kind
                if kind in (CRASH, STALL, SLOW):
                    self.interval_ns[idx] = rng.choice(fit_ns)
                iv = self.interval_ns[idx]
                early = round(0.1 * d_ns)
                if kind == CRASH:
                    late = d_ns - round((f_mult + 0.5) * iv)
                    self.crash_at[idx] = rng.randint(early, max(early, late))
                elif kind == STALL:
                    m = rng.choice(mults)[0]
                    self.stall_gap[idx] = round(iv * (m + rng.uniform(0.25, 0.75)))
                    late = d_ns - self.stall_gap[idx] - iv
                    self.stall_at[idx] = rng.randint(early, max(early, late))
                elif kind == SLOW:
                    m = rng.choice([1, 2] if len(mults) > 2 else [1])
                    self.first_gap[idx] = round(iv * (m + rng.uniform(0.25, 0.75)))
                elif kind == FLAP:
                    self.flap_every[idx] = rng.choice((2, 3))
            pos += counts[kind]
        self._crash_times = sorted(self.crash_at[i] for i in range(n) if self.kind[i] == CRASH)
        self._stall_times = sorted(self.stall_at[i] for i in range(n) if self.kind[i] == STALL)
        self.injected = {"crashes": counts[CRASH], "stalls": counts[STALL],
                         "slow starters": counts[SLOW], "flapping": counts[FLAP]}

    # -- set-up -----------------------------------------------------------------------------

    def _now(self) -> int:
        if self.vclock is not None:
            return self.vclock.monotonic_ns()
        return time.monotonic_ns()

    def make_monitor(self) -> HeartbeatMonitor:
        c = self.config
        kwargs: dict[str, Any] = {"tick_ms": c.tick_ms, "engine": c.engine}
        if self.vclock is not None:
            kwargs["clock"] = self.vclock
        # Every agent is registered with its own interval; the default is unused.
        monitor = HeartbeatMonitor(5000, c.threshold, **kwargs)
        cb = self._on_alert
        monitor.configure_alerts(True, True, True, cb, cb, cb, recovery_callback=self._on_recovery)
        return monitor

    def _on_alert(self, agent_id: Any, state: Any, details: dict[str, Any]) -> None:
        severity = state.severity
        self.alerts.append((agent_id, severity, details["deadline_monotonic"],
                            details["detected_monotonic"], self._now()))
        self.alert_counts[severity] += 1

    def _on_recovery(self, agent_id: Any, state: Any, details: dict[str, Any]) -> None:
        self.recoveries.append(agent_id)

    def register(self) -> float:
        """Create the monitor and register every agent; returns the seconds it took."""
        t = time.perf_counter()
        monitor = self.monitor = self.make_monitor()
        now = self._now
        threshold = self.config.threshold
        start = monitor.start_monitoring
        for idx, aid in enumerate(self.ids):
            ms = self.interval_ns[idx] // 1_000_000
            if self.kind[idx] == SLOW:
                t0 = now()
                start(aid, ms, threshold, start_clock=True)
                self.registered[idx] = (t0, now())
            else:
                start(aid, ms, threshold)
        self.send = scalar_sender(monitor, self.ids, now)
        return time.perf_counter() - t

    def _initial_heap(self) -> list[tuple[int, int, int]]:
        rng = self.rng
        heap = []
        for idx in range(self.config.agents):
            reg = self.registered[idx]
            if reg is not None:
                heap.append((reg[1] + self.first_gap[idx], idx, GAP_SLOW))
            else:
                heap.append((self.start_ns + round(self.interval_ns[idx] * rng.uniform(0, GAP_MAX)),
                             idx, GAP_NORMAL))
        heapq.heapify(heap)
        return heap

    def _next(self, idx: int, t0: int) -> tuple[int, int] | None:
        """After a heartbeat sent at t0: (due, gap code) of the next one, or None (crashed)."""
        iv = self.interval_ns[idx]
        kind = self.kind[idx]
        self.count[idx] += 1
        if kind == FLAP and self.count[idx] % self.flap_every[idx] == 0:
            due, code = t0 + round(iv * self.rng.uniform(FLAP_MIN, FLAP_MAX)), GAP_FLAP
            self.flaps += 1
        else:
            due, code = t0 + round(iv * self.rng.uniform(GAP_MIN, GAP_MAX)), GAP_NORMAL
        if kind == STALL and not self.stalled[idx] and due >= self.start_ns + self.stall_at[idx]:
            self.stalled[idx] = True
            due, code = t0 + self.stall_gap[idx], GAP_STALL
        elif kind == CRASH and due >= self.start_ns + self.crash_at[idx]:
            self.crashed[idx] = True
            return None
        return due, code

    # -- running ------------------------------------------------------------------------------

    def _schedule_real(self, heap: list[tuple[int, int, int]]) -> None:
        mono = time.monotonic_ns
        send = self.send
        assert send is not None
        beats, nxt, stop_ns, stop = self.beats, self._next, self.stop_ns, self._stop
        pop, push = heapq.heappop, heapq.heappush
        late = self.lateness
        while not stop.is_set():
            now = mono()
            if now >= stop_ns:
                break
            if heap and heap[0][0] <= now:
                due_now = []
                while heap and heap[0][0] <= now:
                    due_now.append(pop(heap))
                brackets = send([entry[1] for entry in due_now])
                for (due, idx, code), (t0, t1) in zip(due_now, brackets, strict=True):
                    late.append(t0 - due)
                    beats[idx].append((t0, t1, code))
                    follow = nxt(idx, t0)
                    if follow is not None:
                        push(heap, (follow[0], idx, follow[1]))
                self.sent += len(due_now)
                continue
            wait = (heap[0][0] if heap else stop_ns) - now
            time.sleep(min(max(wait, 500_000), 20_000_000) / _NS)

    def _schedule_virtual(self, heap: list[tuple[int, int, int]],
                          progress: Callable[[], None] | None = None,
                          every_ns: int = 0) -> None:
        clock, monitor, send = self.vclock, self.monitor, self.send
        assert clock is not None and monitor is not None and send is not None
        tick = self.config.tick_ms * 1_000_000
        beats, nxt = self.beats, self._next
        next_tick = (clock.monotonic_ns() // tick + 1) * tick
        next_progress = clock.monotonic_ns() + every_ns
        inf = 1 << 62
        while True:
            due = heap[0][0] if heap else inf
            t = min(due, next_tick)
            if t > self.stop_ns:
                break
            clock.set(t / _NS)
            if due < next_tick:
                _, idx, code = heapq.heappop(heap)
                [(t0, t1)] = send([idx])
                beats[idx].append((t0, t1, code))
                self.sent += 1
                follow = nxt(idx, t0)
                if follow is not None:
                    heapq.heappush(heap, (follow[0], idx, follow[1]))
            else:
                monitor.advance()
                next_tick += tick
                if progress is not None and t >= next_progress:
                    progress()
                    next_progress += every_ns
        clock.set(self.stop_ns / _NS)
        monitor.advance()

    def run(self, on_progress: Callable[[dict[str, Any]], None] | None = None,
            refresh: float = 1.0) -> SwarmResult:
        """Register, run for duration + grace, then compare truth with the alerts."""
        c = self.config
        reg_s = self.register()
        monitor = self.monitor
        assert monitor is not None
        self.start_ns = self._now()
        self.window_end_ns = self.start_ns + round(c.duration * _NS)
        self.stop_ns = self.window_end_ns + round(c.grace * _NS)
        heap = self.heap = self._initial_heap()
        wall0 = time.perf_counter()
        self._snap_state = (self.start_ns, 0, 0)
        if self.virtual:
            self._schedule_virtual(
                heap, (lambda: on_progress(self.snapshot())) if on_progress else None,
                round(refresh * _NS))
        else:
            worker = threading.Thread(target=self._schedule_real, args=(heap,),
                                      name="moai-flow-fast-swarm", daemon=True)
            worker.start()
            try:
                while worker.is_alive():
                    worker.join(refresh)
                    if on_progress is not None and worker.is_alive():
                        on_progress(self.snapshot())
            except BaseException:
                self._stop.set()
                worker.join()
                monitor.shutdown()
                raise
        elapsed = time.perf_counter() - wall0
        monitor.shutdown()
        monitor.advance()     # no thread now: dispatches anything still queued
        horizon = self._now()
        stats = monitor.get_monitoring_stats()
        report = self.judge(horizon)
        late = self.lateness
        lateness = {"p50": (percentile(late, 50) or 0) / 1e6,
                    "p99": (percentile(late, 99) or 0) / 1e6,
                    "max": max(late, default=0) / 1e6}
        return SwarmResult(c, monitor.engine_name, report, dict(self.injected), self.sent,
                           elapsed, reg_s, stats, lateness)

    def stop(self) -> None:
        self._stop.set()

    # -- live numbers ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Numbers for a dashboard: call from one thread, about once per refresh."""
        monitor = self.monitor
        assert monitor is not None
        now = self._now()
        last_t, last_sent, last_alert = self._snap_state
        stats = monitor.get_monitoring_stats()
        alerts = self.alerts[last_alert:]
        sent = self.sent
        dt = max(now - last_t, 1) / _NS
        self._snap_state = (now, sent, last_alert + len(alerts))
        per_state = list(self.alert_counts)
        lat = sorted(a[4] / _NS - a[2] for a in alerts)
        since = now - self.start_ns
        return {
            "elapsed": since / _NS,
            "duration": self.config.duration,
            "health": stats["health_distribution"],
            "agents": stats["total_agents"],
            "hb_per_s": (sent - last_sent) / dt,
            "heartbeats": sent,
            "alerts": {"degraded": per_state[1], "critical": per_state[2],
                       "failed": per_state[3]},
            "recoveries": len(self.recoveries),
            "recent_latency_ms": ([(percentile(lat, 50) or 0.0) * 1e3,
                                   (percentile(lat, 99) or 0.0) * 1e3, lat[-1] * 1e3]
                                  if lat else None),
            "recent_detections": len(lat),
            "injected_so_far": {
                "crashes": bisect.bisect_right(self._crash_times, since),
                "stalls": bisect.bisect_right(self._stall_times, since),
                "slow starters": sum(1 for i, r in enumerate(self.registered)
                                     if r is not None and self.beats[i]),
                "flaps": self.flaps,
            },
            "injected": dict(self.injected),
        }

    # -- judging ------------------------------------------------------------------------------

    def judge(self, horizon: int) -> Report:
        """Truth for every agent, matched against the alerts and recoveries received."""
        crossings: list[Crossing] = []
        expected_rec: dict[Any, int] = {}
        unsure: set[Any] = set()
        threshold = self.config.threshold
        # The silence still going on at the end was planned as the pending heartbeat says.
        pending = {idx: code for _, idx, code in self.heap}
        for idx, aid in enumerate(self.ids):
            if self.crashed[idx]:
                final = "crash"
            else:
                final = GAP_CAUSES.get(pending.get(idx, GAP_NORMAL), "lag")
            truth = agent_truth(aid, self.interval_ns[idx], threshold, self.beats[idx],
                                registered=self.registered[idx], final_cause=final,
                                horizon=horizon)
            crossings.extend(truth.crossings)
            if truth.recoveries:
                expected_rec[aid] = truth.recoveries
            if truth.ambiguous_recoveries:
                unsure.add(aid)
        reported_rec: dict[Any, int] = {}
        for aid in self.recoveries:
            reported_rec[aid] = reported_rec.get(aid, 0) + 1
        for aid in unsure:     # an ambiguous crossing makes its recovery unjudgeable
            expected_rec.pop(aid, None)
            reported_rec.pop(aid, None)
        alerts = [Alert(aid, sev, round(deadline * _NS), round(detected * _NS), delivered)
                  for aid, sev, deadline, detected, delivered in self.alerts]
        return compare(crossings, alerts, self.window_end_ns,
                       recoveries_expected=expected_rec, recoveries_reported=reported_rec)
