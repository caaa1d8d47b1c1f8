"""`moai-flow-fast demo --serve`: end to end over the network, and its truth check on data
made by hand (a missing, extra or mistimed detection must fail it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from moai_flow_fast.tools._demo_serve import EventCollector, NetworkRun, _Go, _judge
from moai_flow_fast.tools._sim import GAP_NORMAL, SwarmConfig


def test_demo_serve_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "moai_flow_fast", "demo", "--serve", "--agents", "400",
         "--duration", "3", "--intervals", "1", "--seed", "3", "--plain", "--json", str(out)],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr
    assert "Dashboard: http://127.0.0.1:" in text and "#token=" in text
    assert "Truth vs monitor (crossings due in the first 3 s):" in text
    assert "Over the network: 2 sender processes" in text
    assert "Result: PASS (every failure detected, no false alarm)" in text
    assert "Service stopped (exit code 0)" in text
    report = json.loads(out.read_text())
    assert report["passed"] is True
    assert report["missed"] == 0 and report["false_alarms"] == 0
    assert report["expected"] == report["detected"]
    assert sum(report["expected"].values()) > 0        # 400 agents: failures were injected
    net = report["network"]
    assert net["senders"] == 2
    assert net["udp_sent"]["ids_sent"] == report["heartbeats"] > 0
    assert net["service_udp"]["ids"] == net["udp_sent"]["ids_sent"]       # nothing lost
    assert net["transit_ms"]["max"] <= net["transit_bound_ms"]


# -- the judge on hand-made data ------------------------------------------------------------

_S = 1_000_000_000
T = 1000 * _S                     # the run starts here (monotonic ns)
TRANSIT = 300_000                 # 0.3 ms from send to the server's stamp


def _scenario(alert_edits: Any = None) -> NetworkRun:
    """One agent, interval 1 s, threshold 3: heartbeats at +0.5, +1.2 and +3.7 s, then silent
    until the run stops at +11 s. True crossings: DEGRADED at 2.2 s and CRITICAL at 3.2 s
    (the 2.5 s gap), a recovery at 3.7 s, then DEGRADED, CRITICAL, FAILED at 4.7, 5.7, 6.7."""
    config = SwarmConfig(agents=1, duration=10.0, intervals=(1.0,), threshold=3, grace=1.0)
    go = _Go(T, T + 10 * _S, T + 11 * _S)
    sends = [T + _S // 2, T + 12 * _S // 10, T + 37 * _S // 10]
    result = {"beats": {0: [(t, t + 100_000, GAP_NORMAL) for t in sends]},
              "registered": {0: (T - 1_000_000, T)}, "crashed": [],
              "pending": {0: GAP_NORMAL}, "sent": 3, "flaps": 0, "lateness": b"",
              "udp": {"ids_sent": 3, "datagrams_sent": 3}}
    alerts = []
    for start, sev_mults in ((sends[1], ((1, 1), (2, 2))), (sends[2], ((1, 1), (2, 2), (3, 3)))):
        for sev, m in sev_mults:
            deadline = start + TRANSIT + m * _S
            alerts.append(["agent-0", sev, deadline / _S, (deadline + 5_000_000) / _S,
                           deadline + 7_000_000])
    if alert_edits is not None:
        alerts = alert_edits(alerts)
    events = EventCollector("http://unused", {})
    events.alerts = [tuple(a) for a in alerts]      # type: ignore[misc]
    events.recoveries = [("agent-0", sends[2] + 10_000_000)]
    stats = {"engine": "compiled", "service": {"udp": {"ids": 3}, "events": {}}}
    return _judge(config, SimpleNamespace(url="http://unused"), 1, go,  # type: ignore[arg-type]
                  [result], events, go.stop_ns, stats)


def test_judge_passes_the_true_detections() -> None:
    run = _scenario()
    report = run.result.report
    assert run.passed
    assert report.expected == {1: 2, 2: 2, 3: 1} == report.detected
    assert report.recoveries_expected == report.recoveries_reported == 1
    assert run.transit_ms["max"] == pytest.approx(TRANSIT / 1e6, abs=1e-3)
    assert report.latency_summary()["max"] == pytest.approx(7.0, abs=1e-3)


def test_judge_fails_a_missing_detection() -> None:
    run = _scenario(lambda alerts: [a for a in alerts if a[1] != 3])
    assert not run.passed
    assert [(c.agent, c.state) for c in run.result.report.missed] == [("agent-0", 3)]
    assert "Result: FAIL" in run.format()[-1]


def test_judge_fails_an_alert_for_a_crossing_that_did_not_happen() -> None:
    # A FAILED at 4.2 s (3 intervals after the heartbeat at 1.2 s), but the heartbeat at
    # 3.7 s came first: it did not happen.
    extra = ["agent-0", 3, (T + 42 * _S // 10 + TRANSIT) / _S, (T + 43 * _S // 10) / _S,
             T + 43 * _S // 10]
    run = _scenario(lambda alerts: [*alerts, extra])
    assert not run.passed
    assert [reason for _, reason in run.result.report.false_alarms] == ["no such crossing"]


def test_judge_fails_a_deadline_beyond_the_transit_bound() -> None:
    # The server stamped the heartbeat 200 ms after it was sent (over the 80 ms bound):
    # its deadline matches no true crossing, and the true one is missed.
    def late(alerts: list[list[Any]]) -> list[list[Any]]:
        alerts[0][2] += 0.2
        return alerts

    run = _scenario(late)
    assert not run.passed
    assert len(run.result.report.false_alarms) == 1 and len(run.result.report.missed) == 1
