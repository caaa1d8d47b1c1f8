"""Issue 14 figures on one machine, with a real redis-server on loopback: sender XADD rate,
a shard's consumption rate and CPU (live and takeover replay), Redis CPU and memory per
heartbeat entry, takeover time and detection lag (deadline -> entry in {prefix}:alerts).

Run: .venv/bin/python benchmarks/bench_cluster.py [--agents 100000] [--beats 5]
(pytest runs a small version: test_cluster_bench_small)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from redis_util import read_alerts, redis_server, wait_for

from moai_flow_fast import HeartbeatMonitor
from moai_flow_fast.client import RedisHeartbeatSender
from moai_flow_fast.cluster import ClusterConfig, Shard

INTERVAL_MS = 600_000    # the bulk: no crossing while the figures are taken (10^6: minutes)
THRESHOLD = 3
DEAD_INTERVAL_MS = 1000  # the agents whose failures measure the detection lag
_SENDER = """
import sys, time
from moai_flow_fast.client import RedisHeartbeatSender
url, agents, beats, start, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
    float(sys.argv[4]), float(sys.argv[5])
ids = [f"agent-{i:07d}" for i in range(agents)]
sender = RedisHeartbeatSender(url, batch=10_000)
t0 = time.perf_counter()
for k in range(beats):
    ts = start + k * step
    for agent_id in ids:
        sender.send(agent_id, ts=ts)
sender.close()
print(agents * beats / (time.perf_counter() - t0))
"""


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _send(url: str, agents: int, beats: int, start_ts: float, step: float) -> float:
    """XADD `beats` heartbeats per agent from another process (its own core and GIL), ts
    spaced by `step`; returns its heartbeats/s."""
    out = subprocess.run([sys.executable, "-c", _SENDER, url, str(agents), str(beats),
                          str(start_ts), str(step)], capture_output=True, text=True,
                         check=True, timeout=600)
    return float(out.stdout.strip())


def run(agents: int, beats: int) -> dict[str, float]:
    import redis as redis_py

    figures: dict[str, float] = {}
    ids = [f"agent-{i:07d}" for i in range(agents)]
    with redis_server() as server:
        client = redis_py.Redis.from_url(server.url)
        mem0 = int(client.info("memory")["used_memory"])
        # 1. The registry, and a log of `beats` heartbeats per agent in the replay window.
        monitor = HeartbeatMonitor(interval_ms=INTERVAL_MS, failure_threshold=THRESHOLD)
        monitor.configure_alerts(coalesce_above=100)   # no per-agent log line in a storm
        config = ClusterConfig(url=server.url, shard_name="bench", lease_ms=3000, poll_ms=100)
        shard = Shard(monitor, config)
        t0 = time.perf_counter()
        for i in range(0, agents, 50_000):
            shard.register([(a, None, None) for a in ids[i:i + 50_000]])
        figures["register_per_s"] = agents / (time.perf_counter() - t0)
        mem1 = int(client.info("memory")["used_memory"])
        now = time.time()
        cpu0 = _redis_cpu(client)
        figures["xadd_per_s_one_sender"] = _send(server.url, agents, beats,
                                                 now - beats * 0.5, 0.5)
        figures["redis_cpu_s_per_million_xadd"] = (_redis_cpu(client) - cpu0) / (
            agents * beats / 1e6)
        mem2 = int(client.info("memory")["used_memory"])
        figures["redis_bytes_per_agent_registry"] = (mem1 - mem0) / agents
        figures["redis_bytes_per_entry"] = (mem2 - mem1) / (agents * beats)
        # 2. Takeover: adopt all 16 partitions = load the registry and replay the log.
        cpu0, rcpu0, t0 = time.process_time(), _redis_cpu(client), time.perf_counter()
        shard.start()
        wait_for(lambda: len(shard.status()["live"]) == 16, 600, step=0.01, what="adopted")
        took = time.perf_counter() - t0
        figures["takeover_s_all_16_partitions"] = took
        figures["replay_entries_per_s"] = shard.status()["replayed"] / took
        figures["takeover_shard_cpu_s"] = time.process_time() - cpu0
        figures["takeover_redis_cpu_s"] = _redis_cpu(client) - rcpu0
        # 3. Live: one more round for everybody from the other process; the shard's CPU
        # and Redis' per million heartbeats consumed.
        consumed0 = shard.status()["consumed"]
        cpu0, rcpu0 = time.process_time(), _redis_cpu(client)
        _send(server.url, agents, 1, time.time(), 0.0)
        wait_for(lambda: shard.status()["consumed"] - consumed0 >= agents, 600, step=0.01,
                 what="consumed")
        figures["live_shard_cpu_s_per_million"] = (time.process_time() - cpu0) / (agents / 1e6)
        figures["live_redis_cpu_s_per_million"] = (_redis_cpu(client) - rcpu0) / (agents / 1e6)
        # 4. Detection lag: `dead` agents (1 s x 3) beat once and go quiet; the deadline of
        # each FAILED vs its entry time in {prefix}:alerts.
        dead = [f"dead-{i:06d}" for i in range(max(100, min(10_000, agents // 10)))]
        shard.register([(a, DEAD_INTERVAL_MS, THRESHOLD) for a in dead])
        wait_for(lambda: all(a in monitor.monitoring_agents for a in dead), 60, what="dead")
        with RedisHeartbeatSender(server.url, batch=10_000) as sender:
            for agent_id in dead:
                sender.send(agent_id)
        dead_set = set(dead)

        def failed() -> list[dict[str, str]]:
            return [a for a in read_alerts(server.url)
                    if a["state"] == "failed" and a["id"] in dead_set]

        found = wait_for(lambda: (lambda f: f if len(f) >= len(dead) else None)(failed()),
                         600, step=0.2, what="failures published")
        lags = [int(a["_id"].split("-")[0]) / 1000 - float(a["deadline"]) for a in found]
        figures["dead_agents"] = len(dead)
        figures["detection_lag_p50_ms"] = float(np.percentile(lags, 50) * 1000)
        figures["detection_lag_p99_ms"] = float(np.percentile(lags, 99) * 1000)
        figures["redis_used_memory_mb"] = int(client.info("memory")["used_memory"]) / 2**20
        shard.stop()
        monitor.shutdown()
        client.close()
    return figures


def test_cluster_bench_small() -> None:
    figures = run(20_000, 2)
    assert figures["replay_entries_per_s"] > 10_000
    assert figures["detection_lag_p99_ms"] < 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--beats", type=int, default=3)
    args = parser.parse_args()
    for name, value in run(args.agents, args.beats).items():
        print(f"{name:36s} {value:14,.1f}")


if __name__ == "__main__":
    main()
