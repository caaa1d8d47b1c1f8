"""Issue 14's cluster benchmark with real processes: one `redis-server` on loopback, S shards
as `moai-flow-fast serve --redis ...` subprocesses, and sender subprocesses that XADD a
heartbeat for each of N agents every I seconds (paced, spread evenly over the period) with
`RedisHeartbeatSender`.

Measured and printed (a table, then one `RESULT {json}` line):

1. heartbeats/s consumed by the shards in total (sum of the `consumed` counters of their
   `GET /v1/stats` -> service.cluster) over a steady window, vs the offered rate N / I and
   the rate the senders achieved (and how far behind their schedule they fell);
2. CPU of each shard, of Redis and of the senders, % of one core over the window
   (utime + stime from /proc/PID/stat; Redis also by INFO cpu);
3. Redis used_memory and the stream lengths;
4. takeover after `kill -9` of one shard: from the kill to every partition's lease held by
   a survivor (the `{prefix}:lease:{p}` keys), and to every partition live again (replay
   done, the survivors' `live` lists); no false FAILED for the living agents;
5. detection lag: `--dead` agents stop heartbeating; for each FAILED entry of
   `{prefix}:alerts`, lag = entry ID ms time - its `deadline` field.

Agents are registered (Shard.register, the Redis registry) with interval_ms =
I x `--tolerance` (default 1.5: an agent sending every I s may be up to I/2 late before it
is DEGRADED) and failure_threshold 3. Leases `--lease-ms` (default 2000), polls `--poll-ms`
(default 100). Redis runs as tests/redis_util.py starts it (AOF, appendfsync always) unless
`--appendfsync` says otherwise.

Run: .venv/bin/python benchmarks/bench_cluster_shards.py --agents 100000 --interval-s 5 \\
         --shards 4 --seconds 30 [--senders 2]
(pytest runs a small version: test_cluster_shards_bench_small.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np

_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
sys.path.insert(0, _TESTS)

from redis_util import RedisServer, redis_server, wait_for  # noqa: E402
from service_util import Served  # noqa: E402

PARTITIONS = 16
THRESHOLD = 3
PREFIX = "mff"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def agent_id(i: int) -> str:
    return f"agent-{i:07d}"


# -- the sender subprocess ------------------------------------------------------------------


def sender_main(argv: list[str]) -> None:
    """`bench_cluster_shards.py _sender URL K SENDERS N INTERVAL_S DEAD BATCH TICK_MS`: the
    agents i = K mod SENDERS, each one heartbeat per INTERVAL_S, paced (what is due is sent
    every TICK_MS, in one pipeline per `batch`). One JSON line answers each
    command read from stdin: `go T0` (start at Unix time T0), `mark`, `kill` (the agents
    i < DEAD stop), `stop`."""
    from moai_flow_fast.client import RedisHeartbeatSender

    url, k, senders, n, interval_s, dead, batch, tick_s = (
        argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5]),
        int(argv[6]), float(argv[7]) / 1000)
    ids = [agent_id(i) for i in range(k, n, senders)]
    alive = [True] * len(ids)
    killable = [j for j, i in enumerate(range(k, n, senders)) if i < dead]
    sender = RedisHeartbeatSender(url, prefix=PREFIX, partitions=PARTITIONS, batch=batch,
                                  max_buffer=max(100_000, 2 * batch), timeout=5.0)
    state: dict[str, Any] = {"done": 0, "behind_max_s": 0.0, "behind_s": 0.0, "stop": False,
                             "t0": math.inf, "killed_at": None}
    out_mu = threading.Lock()

    def reply(obj: dict[str, Any]) -> None:
        with out_mu:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    go = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            word, _, rest = line.strip().partition(" ")
            if word == "go":
                state["t0"] = float(rest)
                go.set()
                reply({"ok": "go"})
            elif word == "mark":
                reply({"t": time.time(), "sent": sender.sent, "done": state["done"],
                       "behind_s": state["behind_s"], "behind_max_s": state["behind_max_s"],
                       "dropped": sender.dropped, "failed_flushes": sender.failed_flushes})
                state["behind_max_s"] = 0.0
            elif word == "kill":
                for j in killable:
                    alive[j] = False
                state["killed_at"] = time.time()
                reply({"killed": len(killable), "t": state["killed_at"]})
            elif word == "stop":
                state["stop"] = True
                go.set()
                return
        state["stop"] = True
        go.set()

    reader = threading.Thread(target=commands, daemon=True)
    reader.start()
    reply({"ready": len(ids)})
    go.wait()
    local = len(ids)
    rate = local / interval_s                      # this sender's heartbeats per second
    chunk = max(1, int(rate * tick_s) + 1)      # at most one tick of schedule per round
    t0 = state["t0"]
    while time.time() < t0 and not state["stop"]:
        time.sleep(min(0.01, max(0.0, t0 - time.time())))
    done = 0
    next_tick = 0.0
    while not state["stop"] and local:
        now = time.time()
        due = int((now - t0) * rate)
        if due <= done or (due - done < chunk and now < next_tick):
            time.sleep(max(0.0005, min(next_tick - now, (done + 1 - due) / rate)))
            continue
        next_tick = now + tick_s
        behind = (due - done) / rate
        state["behind_s"] = behind
        if behind > state["behind_max_s"]:
            state["behind_max_s"] = behind
        upto = min(due, done + chunk)
        for g in range(done, upto):
            j = g % local
            if alive[j]:
                sender.send(ids[j], ts=now)     # a full `batch` goes out at once
        sender.flush()
        done = upto
        state["done"] = done
    sender.close()
    reply({"t": time.time(), "sent": sender.sent, "done": done, "dropped": sender.dropped,
           "failed_flushes": sender.failed_flushes, "last_error": sender.last_error})


class SenderProc:
    """One sender subprocess, driven over stdin/stdout (one JSON line per command)."""

    def __init__(self, url: str, k: int, senders: int, agents: int, interval_s: float,
                 dead: int, batch: int, tick_ms: float) -> None:
        args = [sys.executable, os.path.abspath(__file__), "_sender", url, str(k),
                str(senders), str(agents), repr(interval_s), str(dead), str(batch),
                repr(tick_ms)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def answer(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"sender {self.proc.pid} did not answer (exit "
                               f"{self.proc.poll()}): {''.join(self.errors)[-2000:]}") from None

    def command(self, text: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# -- measurements ----------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def load() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return " ".join(fh.read().split()[:3])


def shard_args(url: str, name: str, interval_ms: int, lease_ms: int, poll_ms: int
               ) -> list[str]:
    return ["--http", "127.0.0.1:0", "--redis", url, "--partitions", str(PARTITIONS),
            "--shard-name", name, "--prefix", PREFIX, "--lease-ms", str(lease_ms),
            "--poll-ms", str(poll_ms), "--interval-ms", str(interval_ms),
            "--failure-threshold", str(THRESHOLD), "--history-size", "16",
            "--log-level", "warning"]


def cluster_status(shard: Served, timeout: float = 30.0) -> dict[str, Any]:
    body = shard.get("/v1/stats", timeout=timeout).json()
    return dict(body["service"]["cluster"])


def holders(client: Any) -> list[str | None]:
    got = client.mget([f"{PREFIX}:lease:{p}" for p in range(PARTITIONS)])
    return [None if h is None else str(h).rpartition("|")[0] for h in got]


def stream_lengths(client: Any) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for p in range(PARTITIONS):
        pipe.xlen(f"{PREFIX}:hb:{p}")
    for p in range(PARTITIONS):
        pipe.xlen(f"{PREFIX}:reg:{p}")
    pipe.xlen(f"{PREFIX}:alerts")
    out = [int(x) for x in pipe.execute()]
    return {"hb": sum(out[:PARTITIONS]), "hb_max_partition": max(out[:PARTITIONS]),
            "reg": sum(out[PARTITIONS:2 * PARTITIONS]), "alerts": out[-1]}


class AlertReader:
    """`{prefix}:alerts` read incrementally: `read()` returns every entry so far."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.entries: list[tuple[str, dict[str, str]]] = []
        self.cursor = "-"

    def read(self) -> list[tuple[str, dict[str, str]]]:
        while True:
            chunk = self.client.xrange(f"{PREFIX}:alerts", min=self.cursor, max="+",
                                       count=50_000)
            self.entries.extend(chunk)
            if chunk:
                self.cursor = "(" + chunk[-1][0]
            if len(chunk) < 50_000:
                return self.entries


def register(url: str, agents: int, interval_ms: int) -> float:
    """Every agent into the registry in Redis (the owners pick them up); agents/s."""
    from moai_flow_fast import HeartbeatMonitor
    from moai_flow_fast.cluster import ClusterConfig, Shard

    monitor = HeartbeatMonitor(interval_ms=interval_ms, failure_threshold=THRESHOLD)
    registrar = Shard(monitor, ClusterConfig(url=url, shard_name="bench-registrar",
                                             prefix=PREFIX, partitions=PARTITIONS))
    t0 = time.perf_counter()
    try:
        for i in range(0, agents, 50_000):
            registrar.register([(agent_id(j), interval_ms, THRESHOLD)
                                for j in range(i, min(agents, i + 50_000))])
        return agents / (time.perf_counter() - t0)
    finally:
        registrar.stop()
        monitor.shutdown()


@contextlib.contextmanager
def processes(server: RedisServer, shards: int, senders: int, agents: int, interval_s: float,
              interval_ms: int, dead: int, batch: int, tick_ms: float, lease_ms: int,
              poll_ms: int) -> Iterator[tuple[dict[str, Served], list[SenderProc]]]:
    """The shards and the senders; every process is killed at exit, whatever happened."""
    served: dict[str, Served] = {}
    procs: list[SenderProc] = []
    try:
        for i in range(shards):
            name = f"shard-{i}"
            served[name] = Served(shard_args(server.url, name, interval_ms, lease_ms, poll_ms))
        for s in served.values():
            s.wait_ready(60)
        for k in range(senders):
            procs.append(SenderProc(server.url, k, senders, agents, interval_s, dead, batch,
                                    tick_ms))
        yield served, procs
    finally:
        for sp in procs:
            sp.kill()
        for s in served.values():
            s.close()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def run(agents: int, interval_s: float, shards: int, seconds: float, senders: int = 1,
        dead: int = 1000, lease_ms: int = 2000, poll_ms: int = 100, batch: int = 2000,
        tick_ms: float = 20.0, tolerance: float = 1.5, appendfsync: str = "always",
        warmup_s: float | None = None, force: bool = False, verbose: bool = True,
        fig: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures of one run (see the module docstring). When the window shows the load
    is not sustained (sent or consumed < 90 % of offered) the takeover and detection
    phases are skipped (`sustained` false) unless `force`: every agent is then late and
    the alert storm says nothing about takeover or detection. `fig`, when given, is filled
    in as the run goes (what was measured survives an exception)."""
    import redis as redis_py

    def say(text: str) -> None:
        if verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    dead = min(dead, agents // 10)
    interval_ms = math.ceil(interval_s * 1000 * tolerance)
    offered = agents / interval_s
    fig = {} if fig is None else fig
    fig.update({
        "agents": agents, "interval_s": interval_s, "shards": shards, "senders": senders,
        "seconds": seconds, "offered_per_s": offered, "registered_interval_ms": interval_ms,
        "failure_threshold": THRESHOLD, "lease_ms": lease_ms, "poll_ms": poll_ms,
        "sender_batch": batch, "sender_tick_ms": tick_ms, "appendfsync": appendfsync,
        "dead_agents": dead,
        "load_before": load(), "cores": os.cpu_count()})
    with redis_server() as server:
        client = redis_py.Redis.from_url(server.url, decode_responses=True)
        if appendfsync != "always":
            client.config_set("appendfsync", appendfsync)
        # The registry first, before any shard: owners adopting a partition load its agents
        # without a clock (their deadlines start at their first heartbeat), so a slow
        # registration of 10^6 agents makes no agent late.
        say(f"registering {agents} agents")
        fig["register_per_s"] = register(server.url, agents, interval_ms)
        with processes(server, shards, senders, agents, interval_s, interval_ms, dead, batch,
                       tick_ms, lease_ms, poll_ms) as (served, procs):
            names = sorted(served)

            def even() -> bool:
                held = holders(client)
                counts = [held.count(n) for n in names]
                return set(held) == set(names) and max(counts) - min(counts) <= 1

            t_up = time.perf_counter()
            wait_for(even, 300, step=0.05, what="an even spread of the partitions")
            wait_for(lambda: sum(s.get("/healthz", timeout=30).json().get("agents", 0)
                                 for s in served.values()) == agents, 300, step=0.2,
                     what="the owners loading the registry")
            fig["shards_even_and_loaded_s"] = time.perf_counter() - t_up
            for sp in procs:
                sp.answer(120)                                  # ready
            t0 = time.time() + 0.2
            for sp in procs:
                sp.command(f"go {t0!r}")
            t_registered = t0
            say(f"{shards} shards up, senders started ({offered:,.0f}/s offered)")
            warm = warmup_s if warmup_s is not None else max(3.0, 1.5 * interval_s)
            say(f"registered; warming up {warm:.0f} s")
            time.sleep(warm)

            # 1-3. The steady window.
            pids = {n: s.proc.pid for n, s in served.items()}
            st0 = {n: cluster_status(s) for n, s in served.items()}
            m0 = [sp.command("mark") for sp in procs]
            c0 = {n: cpu_s(pid) for n, pid in pids.items()}
            cs0 = [cpu_s(sp.proc.pid) for sp in procs]
            r0, rc0, w0 = cpu_s(server.proc.pid) if server.proc else 0.0, redis_cpu(client), \
                time.perf_counter()
            time.sleep(seconds)
            wall = time.perf_counter() - w0
            c1 = {n: cpu_s(pid) for n, pid in pids.items()}
            cs1 = [cpu_s(sp.proc.pid) for sp in procs]
            r1, rc1 = cpu_s(server.proc.pid) if server.proc else 0.0, redis_cpu(client)
            m1 = [sp.command("mark") for sp in procs]
            st1 = {n: cluster_status(s) for n, s in served.items()}
            consumed = sum(st1[n]["consumed"] - st0[n]["consumed"] for n in names)
            sent = sum(b["sent"] - a["sent"] for a, b in zip(m0, m1))
            sent_wall = max(b["t"] - a["t"] for a, b in zip(m0, m1))
            fig["window_s"] = wall
            fig["consumed_per_s"] = consumed / wall
            fig["consumed_vs_offered"] = consumed / wall / offered
            fig["sent_per_s"] = sent / sent_wall
            fig["sent_vs_offered"] = sent / sent_wall / offered
            fig["sender_behind_max_s"] = max(b["behind_max_s"] for b in m1)
            fig["sender_behind_end_s"] = max(b["behind_s"] for b in m1)
            fig["sender_dropped"] = sum(b["dropped"] for b in m1)
            fig["shard_lag_ms_end"] = {n: round(st1[n]["lag_ms"], 1) for n in names}
            fig["shard_cpu_pct"] = {n: 100 * (c1[n] - c0[n]) / wall for n in names}
            fig["shard_cpu_pct_total"] = sum(fig["shard_cpu_pct"].values())
            fig["sender_cpu_pct"] = [100 * (b - a) / wall for a, b in zip(cs0, cs1)]
            fig["sender_cpu_pct_total"] = sum(fig["sender_cpu_pct"])
            fig["redis_cpu_pct"] = 100 * (r1 - r0) / wall
            fig["redis_cpu_pct_info"] = 100 * (rc1 - rc0) / wall
            fig["cpu_us_per_hb_shards"] = 1e6 * sum(c1[n] - c0[n] for n in names) / max(
                consumed, 1)
            fig["cpu_us_per_hb_redis"] = 1e6 * (r1 - r0) / max(consumed, 1)
            fig["cpu_us_per_hb_senders"] = 1e6 * sum(b - a for a, b in zip(cs0, cs1)) / max(
                sent, 1)
            mem = client.info("memory")
            fig["redis_used_memory_mb"] = int(mem["used_memory"]) / 2**20
            fig["redis_rss_mb"] = int(mem["used_memory_rss"]) / 2**20
            fig["streams"] = stream_lengths(client)
            fig["load_window"] = load()
            say(f"window: consumed {fig['consumed_per_s']:,.0f}/s, sent "
                f"{fig['sent_per_s']:,.0f}/s, load {fig['load_window']}")
            fig["sustained"] = fig["sent_vs_offered"] >= 0.9 and \
                fig["consumed_vs_offered"] >= 0.9
            alerts = AlertReader(client)
            t_kill_wall = math.inf
            dead_ids = {agent_id(i) for i in range(dead)}
            if not fig["sustained"] and not force:
                say("not sustained: takeover and detection skipped")
                for sp in procs:
                    sp.command("stop", 120)
                fig["load_after"] = load()
                entries = alerts.read()
                client.close()
                return _alert_figures(fig, entries, dead_ids, t_registered, interval_ms,
                                      t_kill_wall)

            # 4. Takeover after kill -9 of one shard.
            victim = names[-1]
            survivors = [n for n in names if n != victim]
            victim_parts = [p for p, h in enumerate(holders(client)) if h == victim]
            served[victim].proc.kill()
            t_kill = time.perf_counter()
            t_kill_wall = time.time()
            wait_for(lambda: all(h in survivors for h in holders(client)), 120, step=0.01,
                     what="every partition owned again")
            fig["takeover_owned_s"] = time.perf_counter() - t_kill
            slowest = [0.0, 0]      # the survivors' slowest GET /v1/stats, and timeouts

            def all_live() -> bool:
                total = 0
                for n in survivors:
                    t = time.perf_counter()
                    try:
                        total += len(cluster_status(served[n], 10)["live"])
                    except httpx.HTTPError:
                        slowest[1] += 1
                        return False
                    finally:
                        slowest[0] = max(slowest[0], time.perf_counter() - t)
                return total == PARTITIONS

            wait_for(all_live, 300, step=0.05, what="every partition live again")
            fig["takeover_live_s"] = time.perf_counter() - t_kill
            fig["takeover_partitions"] = len(victim_parts)
            fig["takeover_stats_slowest_s"] = slowest[0]
            fig["takeover_stats_timeouts_10s"] = slowest[1]
            say(f"takeover: owned after {fig['takeover_owned_s']:.2f} s, live after "
                f"{fig['takeover_live_s']:.2f} s")
            time.sleep(max(2.0, interval_s))

            # 5. Detection lag: the first `dead` agents go quiet.
            t_dead = time.time()
            for sp in procs:
                sp.command("kill")

            def dead_failed() -> int:
                return sum(1 for _, f in alerts.read()
                           if f.get("state") == "failed" and f.get("id") in dead_ids)

            expect = interval_ms * THRESHOLD / 1000
            say(f"{dead} agents silenced; FAILED due ~{expect:.1f} s after their last beat")
            with contextlib.suppress(AssertionError):
                wait_for(lambda: dead_failed() >= dead, expect + interval_s + 60, step=0.5,
                         what="the silenced agents' FAILED")
            fig["detect_wait_s"] = time.time() - t_dead
            time.sleep(1.0)      # keep beating: a late false alarm would show
            finals = [sp.command("stop", 120) for sp in procs]
            fig["sender_failed_flushes"] = sum(f["failed_flushes"] for f in finals)
            st2 = {n: cluster_status(served[n]) for n in survivors}
            entries = alerts.read()
            fig["load_after"] = load()
            client.close()
    fig["survivor_counters"] = {n: {k: st2[n][k] for k in (
        "takeovers", "replayed", "leases_lost", "fenced_writes", "published", "suppressed",
        "disproved", "pending_dropped", "unknown_heartbeats", "outages")} for n in survivors}
    return _alert_figures(fig, entries, dead_ids, t_registered, interval_ms, t_kill_wall)


def _alert_figures(fig: dict[str, Any], entries: list[tuple[str, dict[str, str]]],
                   dead_ids: set[str], t_registered: float, interval_ms: int,
                   t_kill_wall: float) -> dict[str, Any]:
    lags: list[float] = []
    failed_dead: set[str] = set()
    dup_failed = 0
    false_failed: list[str] = []
    living_states: dict[str, int] = {"degraded": 0, "critical": 0, "failed": 0}
    # Alerts of living agents by phase (before the senders' start, before the kill, after
    # it) and takeover flag: where any lateness came from.
    living_by: dict[str, int] = {}
    for entry_id, f in entries:
        state, aid = f.get("state", ""), f.get("id", "")
        if aid in dead_ids:
            if state == "failed":
                if aid in failed_dead:
                    dup_failed += 1
                failed_dead.add(aid)
                lags.append(int(entry_id.split("-")[0]) / 1000 - float(f["deadline"]))
        elif state in living_states:
            living_states[state] += 1
            at = int(entry_id.split("-")[0]) / 1000
            phase = "start" if at < t_registered + interval_ms / 1000 else \
                "steady" if at < t_kill_wall else "after_kill"
            key = f"{state}/{phase}/takeover={f.get('takeover')}/{f.get('shard')}"
            living_by[key] = living_by.get(key, 0) + 1
            if state == "failed":
                false_failed.append(aid)
    fig["dead_failed"] = len(failed_dead)
    fig["dead_failed_duplicates"] = dup_failed
    fig["detection_lag_p50_ms"] = 1000 * _pct(lags, 50)
    fig["detection_lag_p99_ms"] = 1000 * _pct(lags, 99)
    fig["detection_lag_max_ms"] = 1000 * max(lags) if lags else math.nan
    fig["false_failed"] = len(false_failed)
    fig["false_failed_sample"] = false_failed[:5]
    fig["living_alerts"] = living_states
    fig["living_alerts_by"] = living_by
    fig["alerts_total"] = len(entries)
    return fig


def table(fig: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    for key, value in fig.items():
        if isinstance(value, float):
            text = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, dict):
            text = json.dumps({k: round(v, 1) if isinstance(v, float) else v
                               for k, v in value.items()})
        elif isinstance(value, list):
            text = json.dumps([round(v, 1) if isinstance(v, float) else v for v in value])
        else:
            text = str(value)
        rows.append((key, text))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def test_cluster_shards_bench_small() -> None:
    lease_ms, poll_ms = 1000, 100
    fig = run(5000, 1.0, 2, 6.0, senders=1, dead=500, lease_ms=lease_ms, poll_ms=poll_ms,
              batch=1000, verbose=False)
    print("\n" + table(fig))
    assert fig["consumed_vs_offered"] >= 0.9, fig
    assert fig["sent_vs_offered"] >= 0.9, fig
    assert fig["takeover_owned_s"] <= (lease_ms + lease_ms / 3 + poll_ms) / 1000 + 1.0, fig
    assert fig["dead_failed"] == fig["dead_agents"] and fig["dead_failed_duplicates"] == 0, fig
    assert fig["detection_lag_p99_ms"] < 3000, fig
    assert fig["false_failed"] == 0, fig


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_sender":
        sender_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="steady window")
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--dead", type=int, default=1000)
    parser.add_argument("--lease-ms", type=int, default=2000)
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--batch", type=int, default=2000, help="sender pipeline size")
    parser.add_argument("--tick-ms", type=float, default=20.0,
                        help="senders send what is due every this many ms")
    parser.add_argument("--force", action="store_true",
                        help="takeover and detection even when the load is not sustained")
    parser.add_argument("--tolerance", type=float, default=1.5,
                        help="registered interval = interval-s x this")
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"),
                        default="always")
    parser.add_argument("--warmup-s", type=float, default=None)
    args = parser.parse_args()
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: the `finally` blocks kill every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.shards < 2:
        parser.error("--shards must be >= 2 (one is killed for the takeover)")
    fig: dict[str, Any] = {}
    try:
        run(args.agents, args.interval_s, args.shards, args.seconds, senders=args.senders,
            dead=args.dead, lease_ms=args.lease_ms, poll_ms=args.poll_ms, batch=args.batch,
            tick_ms=args.tick_ms, tolerance=args.tolerance, appendfsync=args.appendfsync,
            warmup_s=args.warmup_s, force=args.force, fig=fig)
    except BaseException as exc:
        fig["error"] = f"{type(exc).__name__}: {exc}"
        fig["load_at_error"] = load()
        print(table(fig))
        print("RESULT " + json.dumps(fig))
        raise
    print(table(fig))
    print("RESULT " + json.dumps(fig))


if __name__ == "__main__":
    main()
