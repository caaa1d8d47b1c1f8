"""Truth against what the monitor said: the arithmetic behind the demo's report.

Everything here is plain bookkeeping on integers (nanoseconds), so it can be checked by
hand. Terms:

- A **crossing** is a threshold crossing that truly happened (or may have happened) to an
  agent: its state went from HEALTHY to DEGRADED, DEGRADED to CRITICAL or to FAILED.
  The simulator computes them from the heartbeats it really sent. Because a heartbeat's
  timestamp is taken inside `record_heartbeat`, the simulator knows it only to within the
  call's duration: each crossing's deadline is known as an interval ``[lo, hi]`` (equal
  bounds in virtual time). A crossing is *certain* when it happened whatever the exact
  timestamps inside those intervals were, and *ambiguous* when it happened for some and not
  for others (a gap within a call's duration of the threshold). Ambiguous crossings are
  neither required nor false alarms; the report counts them (the demo plans no such gaps).
- An **alert** is what the monitor reported: agent, state and the deadline it computed
  (``details["deadline_monotonic"]``), the time its wheel detected the crossing
  (``details["detected_monotonic"]``) and the time the callback ran.
- An alert **matches** a crossing of the same agent and state whose ``[lo, hi]`` contains
  the alert's deadline (within `tolerance_ns`, for the float seconds of the details).
  Each crossing matches at most one alert.
- A **false alarm** is an alert that matches no crossing (the crossing did not happen, per
  the heartbeats actually recorded and when `record_heartbeat` was actually called), or a
  second alert for a crossing already matched (a duplicate).
- A crossing is **required** when it is certain and ``hi <= window_end``: it was due before
  the end of the run. A required crossing without an alert is **missed**.
- **Detection latency** of a matched required crossing: callback time minus the alert's
  deadline (``delivered - deadline``); the wheel's own latency is ``detected - deadline``.
- **Percentiles** use the nearest-rank method: the p-th percentile of n sorted values is
  the value at 1-based rank ``ceil(p / 100 * n)`` (at least 1). So p50 of [1, 2, 3, 4] is 2,
  p99 of 100 values is the 99th smallest, and p100 is the maximum.
- **Recoveries**: an agent that crossed at least DEGRADED and then heartbeats again
  recovers on that heartbeat. Expected and reported recoveries are compared per agent.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._screen import REPORT_WIDTH, fit

__all__ = [
    "STATE_NAMES",
    "Alert",
    "Crossing",
    "Report",
    "compare",
    "percentile",
]

# Severity codes, as HealthState.severity.
STATE_NAMES = {1: "degraded", 2: "critical", 3: "failed"}
DEFAULT_TOLERANCE_NS = 2_000


@dataclass(frozen=True)
class Crossing:
    """A crossing per truth. `lo`/`hi` bound its deadline (ns); `cause` says why it
    happened (e.g. "crash", "stall", "slow", "flap", "lag", "end")."""

    agent: Any
    state: int
    lo: int
    hi: int
    cause: str = ""
    certain: bool = True


@dataclass(frozen=True)
class Alert:
    """What the monitor said: deadline, wheel detection time and callback time (ns)."""

    agent: Any
    state: int
    deadline: int
    detected: int
    delivered: int


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (see the module docstring); None for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100, got {p!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Report:
    """The comparison. Latencies are in nanoseconds."""

    window_end: int
    expected: dict[int, int] = field(default_factory=dict)
    detected: dict[int, int] = field(default_factory=dict)
    missed: list[Crossing] = field(default_factory=list)
    false_alarms: list[tuple[Alert, str]] = field(default_factory=list)
    ambiguous: int = 0
    outside_window: int = 0          # alerts matched to crossings due after window_end
    by_cause: dict[str, dict[int, list[int]]] = field(default_factory=dict)  # [expected, detected]
    latencies: list[int] = field(default_factory=list)
    wheel_latencies: list[int] = field(default_factory=list)
    latencies_by_state: dict[int, list[int]] = field(default_factory=dict)
    recoveries_expected: int = 0
    recoveries_reported: int = 0
    recovery_mismatches: list[tuple[Any, int, int]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing was missed and nothing was falsely reported."""
        return not self.missed and not self.false_alarms and not self.recovery_mismatches

    def latency_summary(self, values: Sequence[int] | None = None) -> dict[str, float | None]:
        """p50, p99 and max of `values` (default: the detection latencies), in ms."""
        vals = self.latencies if values is None else values
        out: dict[str, float | None] = {}
        for key, p in (("p50", 50), ("p99", 99), ("max", 100)):
            v = percentile(vals, p)
            out[key] = None if v is None else v / 1e6
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "expected": {STATE_NAMES[s]: n for s, n in sorted(self.expected.items())},
            "detected": {STATE_NAMES[s]: n for s, n in sorted(self.detected.items())},
            "missed": len(self.missed),
            "false_alarms": len(self.false_alarms),
            "ambiguous": self.ambiguous,
            "outside_window": self.outside_window,
            "recoveries": {"expected": self.recoveries_expected,
                           "reported": self.recoveries_reported,
                           "mismatched_agents": len(self.recovery_mismatches)},
            "latency_ms": self.latency_summary(),
            "wheel_latency_ms": self.latency_summary(self.wheel_latencies),
            "by_cause": {cause: {STATE_NAMES[s]: {"expected": v[0], "detected": v[1]}
                                 for s, v in sorted(states.items())}
                         for cause, states in sorted(self.by_cause.items())},
        }

    def format(self, states: Iterable[int] = (1, 2, 3)) -> list[str]:
        """The report as text lines."""
        states = [s for s in states if s in self.expected or s in STATE_NAMES]
        lines = []
        head = "".join(f"{STATE_NAMES[s]:>11}" for s in states) + f"{'recovered':>11}"
        lines.append(f"{'':12}{head}")
        lines.append(f"{'  expected':12}" + "".join(f"{self.expected.get(s, 0):>11,}"
                                                    for s in states)
                     + f"{self.recoveries_expected:>11,}")
        lines.append(f"{'  detected':12}" + "".join(f"{self.detected.get(s, 0):>11,}"
                                                    for s in states)
                     + f"{self.recoveries_reported:>11,}")
        missed = Counter(c.state for c in self.missed)
        lines.append(f"{'  missed':12}" + "".join(f"{missed.get(s, 0):>11,}" for s in states)
                     + f"{len(self.recovery_mismatches):>11,}")
        if self.by_cause:
            lines.append("  by cause (detected/expected):")
            for cause, per in sorted(self.by_cause.items()):
                cells = [f"{STATE_NAMES[s]} {v[1]:,}/{v[0]:,}" for s, v in sorted(per.items())]
                cells[0] = f"{cause:<10}{cells[0]}"
                lines += fit(cells, REPORT_WIDTH, indent="    ", cont=" " * 14, sep=", ")
            if "lag" in self.by_cause:
                lines += fit(["(lag: a healthy agent's heartbeat was sent late by the simulator "
                              "itself, so the crossing really happened)"], REPORT_WIDTH,
                             indent="    ", cont="     ")
        kinds = Counter(reason for _, reason in self.false_alarms)
        detail = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        lines += fit([f"False alarms: {len(self.false_alarms):,}" + (f" ({detail})" if detail
                                                                     else ""),
                      "(alerts for crossings that did not happen, or duplicates)"],
                     REPORT_WIDTH, sep="   ")
        if self.outside_window:
            lines.append(f"Detections of crossings due after the window (true, not counted): "
                         f"{self.outside_window:,}")
        if self.ambiguous:
            lines += fit(["Ambiguous crossings (gap within a call's duration of a threshold, "
                          f"not judged): {self.ambiguous:,}"], REPORT_WIDTH)
        if self.latencies:
            lat = self.latency_summary()
            wheel = self.latency_summary(self.wheel_latencies)
            lines.append(f"{f'Detection latency, {len(self.latencies):,} detections:':<50}"
                         f"{'p50':>10}{'p99':>10}{'max':>10}")
            lines.append(f"{'  callback - deadline':<50}" + _fmt_lat(lat))
            lines.append(f"{'  of which the wheel (detected - deadline)':<50}" + _fmt_lat(wheel))
        else:
            lines.append("Detection latency: no detections")
        if self.false_alarms or self.missed or self.recovery_mismatches:
            for crossing in self.missed[:5]:
                lines += fit([f"missed: agent {crossing.agent} {STATE_NAMES[crossing.state]}",
                              f"due in [{crossing.lo}, {crossing.hi}] ns ({crossing.cause})"],
                             REPORT_WIDTH, indent="  ", cont="    ", sep=" ")
            for alert, reason in self.false_alarms[:5]:
                lines += fit([f"false alarm ({reason}): agent {alert.agent}",
                              f"{STATE_NAMES.get(alert.state, alert.state)} deadline "
                              f"{alert.deadline} ns"], REPORT_WIDTH, indent="  ", cont="    ",
                             sep=" ")
            for agent, exp, got in self.recovery_mismatches[:5]:
                lines += fit([f"recoveries of agent {agent}:", f"expected {exp}, reported {got}"],
                             REPORT_WIDTH, indent="  ", cont="    ")
        return lines


def _fmt_lat(summary: Mapping[str, float | None]) -> str:
    return "".join(f"{summary[k] or 0.0:>7.1f} ms" for k in ("p50", "p99", "max"))


def compare(
    crossings: Iterable[Crossing],
    alerts: Iterable[Alert],
    window_end: int,
    *,
    tolerance_ns: int = DEFAULT_TOLERANCE_NS,
    recoveries_expected: Mapping[Any, int] | None = None,
    recoveries_reported: Mapping[Any, int] | None = None,
) -> Report:
    """Match alerts to crossings (see the module docstring for every rule)."""
    report = Report(window_end=window_end)
    table: dict[tuple[Any, int], list[Crossing]] = defaultdict(list)
    for c in crossings:
        table[(c.agent, c.state)].append(c)
        if not c.certain:
            report.ambiguous += 1
        elif c.hi <= window_end:
            report.expected[c.state] = report.expected.get(c.state, 0) + 1
            cause = report.by_cause.setdefault(c.cause, {})
            cause.setdefault(c.state, [0, 0])[0] += 1
    for group in table.values():
        group.sort(key=lambda c: c.lo)
    matched: set[int] = set()   # id() of matched crossings
    for alert in sorted(alerts, key=lambda a: (a.deadline, a.delivered)):
        found = None
        duplicate = False
        for c in table.get((alert.agent, alert.state), ()):
            if c.lo - tolerance_ns <= alert.deadline <= c.hi + tolerance_ns:
                if id(c) in matched:
                    duplicate = True
                    continue
                found = c
                break
        if found is None:
            report.false_alarms.append((alert, "duplicate" if duplicate else "no such crossing"))
            continue
        matched.add(id(found))
        if found.certain and found.hi <= window_end:
            report.detected[found.state] = report.detected.get(found.state, 0) + 1
            report.by_cause[found.cause][found.state][1] += 1
            latency = alert.delivered - alert.deadline
            report.latencies.append(latency)
            report.wheel_latencies.append(alert.detected - alert.deadline)
            report.latencies_by_state.setdefault(found.state, []).append(latency)
        elif found.certain:
            report.outside_window += 1
    for group in table.values():
        for c in group:
            if c.certain and c.hi <= window_end and id(c) not in matched:
                report.missed.append(c)
    report.missed.sort(key=lambda c: (c.lo, c.state))
    if recoveries_expected is not None or recoveries_reported is not None:
        exp = dict(recoveries_expected or {})
        got = dict(recoveries_reported or {})
        report.recoveries_expected = sum(exp.values())
        report.recoveries_reported = sum(got.values())
        for agent in sorted(set(exp) | set(got), key=repr):
            if exp.get(agent, 0) != got.get(agent, 0):
                report.recovery_mismatches.append((agent, exp.get(agent, 0), got.get(agent, 0)))
    return report
