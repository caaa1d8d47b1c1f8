"""Start, signals and durability: exit 0 on SIGTERM/SIGINT, and a restart from the state file
that forgets no agent and fails none for the time the service itself was down."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
from service_util import served, wait_for


def test_sigterm_and_sigint_exit_0_after_a_graceful_stop(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        state = tmp_path / f"state-{sig}.npz"
        with served("--state-file", str(state), "--snapshot-interval", "60") as s:
            s.post("/v1/agents", json={"agents": [{"id": "a"}]})
            assert s.stop(sig) == 0, s.log
            assert "stopped" in s.log
        assert state.exists()      # the snapshot at shutdown


def test_restart_forgets_nobody_and_fails_nobody_for_the_downtime(tmp_path: Path) -> None:
    state = str(tmp_path / "state.npz")
    # Interval 1000 ms: FAILED after 3 s, more than this test needs to resume heartbeating
    # after the restart even on a loaded machine, less than the downtime (> 3.2 s). (At
    # 500 ms one HTTP round trip stalled past the interval once in a loaded full run.)
    common = ("--state-file", state, "--snapshot-interval", "0.2", "--interval-ms", "1000")
    with served(*common) as s:
        s.post("/v1/agents", json={"agents": [
            {"id": "steady"}, {"id": "quiet-later"}, {"id": "dead"},
            {"id": "custom", "interval_ms": 60_000, "failure_threshold": 7}]})
        s.post("/v1/heartbeats", json={"ids": ["steady", "quiet-later", "custom", "custom"]})
        s.post("/v1/heartbeats", json={"ids": ["steady", "quiet-later"]})
        wait_for(lambda: s.get("/v1/agents/dead").json()["state"] == "failed", timeout=8)
        for _ in range(3):
            s.post("/v1/heartbeats", json={"ids": ["steady", "quiet-later"]})
            time.sleep(0.05)
        before = {i: s.get(f"/v1/agents/{i}").json() for i in ("steady", "custom", "dead")}
        history = s.get("/v1/agents/steady/history").json()["timestamps"]
        assert s.stop() == 0
    with np.load(state, allow_pickle=False) as data:
        assert int(data["version"][0]) == 1 and len(data["state"]) == 4

    time.sleep(3.2)      # down for > 3 intervals: without the grace all would be failed

    with served(*common) as s:
        t0 = time.monotonic()
        s.post("/v1/heartbeats", json={"ids": ["steady"]})   # back on its schedule at once
        stats = s.get("/v1/stats").json()
        assert stats["service"]["restored"]["agents"] == 4
        assert stats["service"]["restored"]["downtime_s"] >= 3.2
        steady = s.get("/v1/agents/steady").json()
        assert steady["state"] == "healthy"
        assert s.get("/v1/agents/steady/history").json()["timestamps"][:-1] == history
        assert history[-1] == before["steady"]["last_heartbeat"]
        custom = s.get("/v1/agents/custom").json()
        assert (custom["interval_ms"], custom["failure_threshold"]) == (60_000, 7)
        assert s.get("/v1/agents/dead").json()["state"] == "failed"
        # The steady agent goes on heartbeating within its interval: never alerted.
        while time.monotonic() - t0 < 3.5:
            s.post("/v1/heartbeats", json={"ids": ["steady"]})
            time.sleep(0.1)
        assert s.get("/v1/agents/steady").json()["state"] == "healthy"
        # The agent that stopped during the downtime is failed one full timeout after the
        # restart (the grace), and the dead one is not reported again.
        wait_for(lambda: s.get("/v1/agents/quiet-later").json()["state"] == "failed",
                 timeout=5)
        assert time.monotonic() - t0 >= 1.4
        events = s.get("/v1/stats").json()["service"]["events"]
        failures = [line for line in s.log.splitlines() if " failed (no heartbeat" in line]
        assert events["by_state"]["failed"] == 1, failures   # quiet-later only
        assert events["by_state"]["degraded"] == 1        # quiet-later's first crossing
        assert s.stop() == 0


def test_unreadable_state_file_exits_1_and_keeps_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state.npz"
    state.write_bytes(b"not a state file")
    with served("--state-file", str(state), ready=False) as s:
        assert s.wait_exit() == 1
        assert "cannot be restored" in s.log
    assert state.read_bytes() == b"not a state file"
