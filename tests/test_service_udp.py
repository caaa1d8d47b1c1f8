"""UDP ingestion end to end: plain and HMAC-signed datagrams, bad ones counted, batching."""

from __future__ import annotations

import os
import signal

from service_util import served, wait_for

from moai_flow_fast.client import UdpHeartbeatSender
from moai_flow_fast.service._wire import encode_datagrams


def _recorded(s, agent_id: str) -> int:
    r = s.get(f"/v1/agents/{agent_id}/history")
    return len(r.json()["timestamps"]) if r.status_code == 200 else -1


def _all_stopped(pid: int) -> bool:
    """Every thread of `pid` in state T (stopped), from /proc."""
    tasks = os.listdir(f"/proc/{pid}/task")
    for tid in tasks:
        with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return bool(tasks)


def test_plain_datagrams_are_recorded_and_waiting_ones_in_one_batch() -> None:
    with served("--udp", "127.0.0.1:0", "--interval-ms", "60000") as s:
        ids = [f"u-{i}" for i in range(2000)]
        s.post("/v1/agents", json={"agents": [{"id": i} for i in ids]})
        grams = [*encode_datagrams(ids, max_size=1400), b"u-0\nu-1", b"never-registered"]
        s.send_udp(grams)
        # the counters of one batch are updated one after the other: wait for the last
        stats = wait_for(lambda: (st := s.get("/v1/stats").json())["heartbeats_recorded"]
                         >= 2002 and st["service"]["unknown_heartbeats"] >= 1 and st)
        udp = stats["service"]["udp"]
        assert stats["heartbeats_recorded"] == 2002
        assert udp["datagrams"] == len(grams)
        assert udp["ids"] == 2003 and udp["bad_datagrams"] == 0
        assert stats["service"]["unknown_heartbeats"] == 1
        assert _recorded(s, "u-0") == 2 and _recorded(s, "u-1999") == 1
        # Datagrams that wait together (the service is paused while they arrive) reach the
        # monitor in one batch call, not one call per datagram.
        s.proc.send_signal(signal.SIGSTOP)
        try:
            # kill() returns before the stop takes effect: on a loaded machine the receiver
            # could still take the first datagrams alone. Wait for every thread to be stopped.
            wait_for(lambda: _all_stopped(s.proc.pid))
            s.send_udp([i.encode() for i in ids])
        finally:
            s.proc.send_signal(signal.SIGCONT)
        after = wait_for(lambda: (st := s.get("/v1/stats").json())["heartbeats_recorded"]
                         >= 4002 and st)
        assert after["heartbeats_recorded"] == 4002
        assert after["service"]["udp"]["batches"] - udp["batches"] == 1


def test_signed_datagrams_and_forgeries() -> None:
    with served("--udp", "127.0.0.1:0", "--udp-secret", "s3cret",
                "--interval-ms", "60000") as s:
        s.post("/v1/agents", json={"agents": [{"id": "sig-a"}, {"id": "sig-b"}]})
        good = encode_datagrams(["sig-a", "sig-b"], secret="s3cret")
        forged = encode_datagrams(["sig-a"], secret="wrong")
        unsigned = [b"sig-a"]
        s.send_udp([*forged, *unsigned, b"\x00" * 40, *good])
        stats = wait_for(lambda: (st := s.get("/v1/stats").json())["service"]["udp"]
                         ["datagrams"] >= 4 and st)
        assert stats["service"]["udp"]["bad_datagrams"] == 3
        assert stats["heartbeats_recorded"] == 2
        assert _recorded(s, "sig-a") == 1 and _recorded(s, "sig-b") == 1
        metrics = s.get("/metrics").text
        assert "moai_flow_fast_service_udp_bad_datagrams_total 3.0" in metrics


def test_auto_register_over_udp_with_the_client_sender() -> None:
    with served("--udp", "127.0.0.1:0", "--udp-secret", "k", "--auto-register",
                "--interval-ms", "200") as s:
        assert s.udp is not None
        with UdpHeartbeatSender(s.udp[0], s.udp[1], secret="k") as sender:
            sender.heartbeats([f"auto-{i}" for i in range(300)])
        wait_for(lambda: s.get("/v1/stats").json()["total_agents"] == 300)
        info = s.get("/v1/agents/auto-7").json()
        assert info["interval_ms"] == 200 and info["state"] in ("healthy", "degraded")
        # Silent after their one heartbeat, they fail like any agent.
        wait_for(lambda: s.get("/v1/agents/auto-7").json()["state"] == "failed", timeout=5)
