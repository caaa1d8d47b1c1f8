"""`moai-flow-fast demo --serve`: the simulated swarm as UDP sender processes against a real
`serve` subprocess, judged from the SSE stream with the same truth check as the in-process demo.

How it is measured (all clocks are this machine's CLOCK_MONOTONIC, shared by every process):

- Each sender process registers its agents over HTTP (`serve` starts an agent's clock at
  registration; the POST is bracketed before/after) and sends their heartbeats with a
  `UdpHeartbeatSender`, bracketing every send: clock before and after `sendto`.
- The service stamps a heartbeat when it records it, a little later than the send. So each
  heartbeat's server time is known to lie in ``[before, after + transit_bound]``, and the
  truth (`_sim.agent_truth`) is computed from those brackets: a crossing is required only
  when it happened whatever the transit was within the bound, otherwise it is ambiguous.
- Detections are the `/v1/events` stream: each event carries the server's deadline and
  detection time (Unix seconds, turned back into monotonic time with this process's offset,
  to within `CLOCK_SLACK_NS`). "Callback" latency in the report is the event's arrival here
  minus the server's deadline: the end-to-end delay of the alert over HTTP.
- The transit actually seen (server stamp implied by each deadline, minus the send) is
  printed too, so the bound can be checked.
"""

from __future__ import annotations

import bisect
import heapq
import json
import multiprocessing as mp
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TextIO

from ._report import percentile
from ._screen import MIN_WIDTH, REPORT_WIDTH, Dashboard, Segment, fit
from ._sim import GAP_NORMAL, GAP_SLOW, SLOW, Swarm, SwarmConfig, SwarmResult, crossing_mults

__all__ = ["CLOCK_SLACK_NS", "NetworkRun", "ServeProcess", "run", "transit_bound_ns"]

_NS = 1_000_000_000
CLOCK_SLACK_NS = 1_000_000        # Unix-second event times -> monotonic, offsets of 2 processes
_REGISTER_CHUNK = 2_000           # agents per POST /v1/agents (one bracket each)
_FIRST_BEAT = 0.5                 # first heartbeat within this fraction of the interval
_SETTLE_S = 0.5                   # after the senders stop: last events still on their way
_READY = re.compile(r"serve ready: http://(127\.0\.0\.1):(\d+) udp=127\.0\.0\.1:(\d+)")


def transit_bound_ns(config: SwarmConfig) -> int:
    """The bound assumed on send-to-record transit: 8 % of the smallest interval, at most
    100 ms (healthy gaps keep 10 % of the interval in hand, so no planned gap comes near)."""
    return min(100_000_000, round(0.08 * min(config.intervals) * _NS))


# -- the service -------------------------------------------------------------------------------

class ServeProcess:
    """`moai-flow-fast serve` as a subprocess on free loopback ports, with a token."""

    def __init__(self, config: SwarmConfig, token: str) -> None:
        self.token = token
        self.url = ""
        self.udp_port = 0
        self.log = tempfile.NamedTemporaryFile(prefix="moai-flow-fast-serve-", suffix=".log",
                                               delete=False)
        # The token goes through the environment: a command line is visible to all users.
        # Port 0: serve binds free ports and names them in its ready line.
        env = dict(os.environ, MOAI_FLOW_FAST_TOKEN=token)
        cmd = [sys.executable, "-m", "moai_flow_fast", "serve", "--http", "127.0.0.1:0",
               "--udp", "127.0.0.1:0", "--tick-ms", str(config.tick_ms),
               "--engine", config.engine, "--failure-threshold", str(config.threshold),
               "--log-level", "warning", "--sse-queue", "1000000"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits for the ready line (it names the bound addresses)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log.name, errors="replace") as f:
                match = _READY.search(f.read())
            if match:
                self.url = f"http://{match.group(1)}:{match.group(2)}"
                self.udp_port = int(match.group(3))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with code {self.proc.returncode}:\n"
                                   + self.log_tail())
            time.sleep(0.05)
        raise RuntimeError(f"serve was not ready after {timeout:g} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout`; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)


# -- the detections: /v1/events ----------------------------------------------------------------

_SEVERITY = {"degraded": 1, "critical": 2, "failed": 3}


class EventCollector(threading.Thread):
    """Reads `/v1/events` and keeps every crossing and recovery with its arrival time."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(name="moai-flow-fast-demo-events", daemon=True)
        self.url = url
        self.headers = headers
        self.connected = threading.Event()
        self.lock = threading.Lock()
        # (agent, severity, deadline s, detected s, arrival ns); times monotonic.
        self.alerts: list[tuple[Any, int, float, float, int]] = []
        self.recoveries: list[tuple[Any, int]] = []
        self.end_reason: str | None = None
        self.error: str | None = None
        self.converted = False       # Unix-second times were turned into monotonic ones
        self.offset = _wall_minus_monotonic()

    def run(self) -> None:
        import httpx

        try:
            with httpx.stream("GET", self.url + "/v1/events", headers=self.headers,
                              timeout=httpx.Timeout(10.0, read=None)) as response:
                response.raise_for_status()
                self.connected.set()
                name, data = "message", []
                for line in response.iter_lines():
                    if line:
                        key, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if key == "event":
                            name = value
                        elif key == "data":
                            data.append(value)
                        continue
                    if data:
                        self._on(name, json.loads("\n".join(data)), time.monotonic_ns())
                    name, data = "message", []
        except Exception as exc:     # the report says the stream broke; nothing is hidden
            if self.end_reason is None:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()

    def _on(self, name: str, event: Any, arrival: int) -> None:
        if name == "end" or not isinstance(event, dict) or "id" not in event:
            self.end_reason = str(event.get("reason") if isinstance(event, dict) else event)
            return
        with self.lock:
            if event.get("kind") == "recovery" or event.get("state") == "healthy":
                self.recoveries.append((event["id"], arrival))
                return
            if "deadline_monotonic" in event:
                deadline = float(event["deadline_monotonic"])
                detected = float(event["detected_monotonic"])
            else:
                self.converted = True
                deadline = float(event["deadline"]) - self.offset
                detected = float(event["detected"]) - self.offset
            self.alerts.append((event["id"], _SEVERITY[event["state"]], deadline, detected,
                                arrival))

    def until(self, horizon: int) -> tuple[list[tuple[Any, int, float, float, int]], list[Any]]:
        """The alerts whose deadline is at most `horizon` (monotonic ns), and the recoveries
        received so far."""
        with self.lock:
            return ([a for a in self.alerts if a[2] * _NS <= horizon],
                    [r[0] for r in self.recoveries])


def _wall_minus_monotonic() -> float:
    best = None
    for _ in range(20):
        m0 = time.monotonic_ns()
        wall = time.time()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, wall - (m0 + m1) / 2 / _NS)
    assert best is not None
    return best[1]


# -- a sender process --------------------------------------------------------------------------

@dataclass
class _Go:
    start_ns: int
    window_end_ns: int
    stop_ns: int


def _sender_main(conn: Connection, config: SwarmConfig, shard: int, shards: int, url: str,
                 token: str, udp_port: int) -> None:
    """One sender process: registers its share of the swarm, then heartbeats it over UDP."""
    import httpx

    from ..client._udp import UdpHeartbeatSender

    swarm = Swarm(config)
    mine = list(range(shard, config.agents, shards))
    sender = UdpHeartbeatSender("127.0.0.1", udp_port)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30.0)
    ids = swarm.ids
    mono = time.monotonic_ns

    def send(idxs: Sequence[int]) -> list[tuple[int, int]]:
        t0 = mono()
        sender.heartbeats([ids[i] for i in idxs])
        return [(t0, mono())] * len(idxs)

    conn.send("ready")
    conn.recv()                       # "register": every sender registers its agents...
    brackets: list[tuple[list[int], tuple[int, int]]] = []
    for at in range(0, len(mine), _REGISTER_CHUNK):
        chunk = mine[at:at + _REGISTER_CHUNK]
        body = {"agents": [{"id": ids[i], "interval_ms": swarm.interval_ns[i] // 1_000_000,
                            "failure_threshold": config.threshold} for i in chunk]}
        t0 = mono()
        client.post("/v1/agents", json=body).raise_for_status()
        brackets.append((chunk, (t0, mono())))
    conn.send("registered")
    # ... and only once all are done does any heartbeat go out: a registration being
    # processed would hold up the service's UDP ingestion (the GIL), so the first
    # heartbeats' stamps would lag their sends.
    go: _Go = conn.recv()
    swarm.start_ns, swarm.window_end_ns, swarm.stop_ns = go.start_ns, go.window_end_ns, go.stop_ns
    swarm.send = send
    rng = swarm.rng
    heap: list[tuple[int, int, int]] = []
    for chunk, bracket in brackets:
        for i in chunk:
            swarm.registered[i] = bracket
            if swarm.kind[i] == SLOW:
                due, code = bracket[1] + swarm.first_gap[i], GAP_SLOW
            else:
                offset = round(swarm.interval_ns[i] * rng.uniform(0, _FIRST_BEAT))
                due, code = bracket[1] + offset, GAP_NORMAL
            heap.append((max(due, go.start_ns), i, code))
    heapq.heapify(heap)
    swarm.heap = heap
    swarm._schedule_real(heap)
    client.close()
    sender.close()
    conn.send({
        "beats": {i: swarm.beats[i] for i in mine},
        "registered": {i: swarm.registered[i] for i in mine},
        "crashed": [i for i in mine if swarm.crashed[i]],
        "pending": {idx: code for _, idx, code in swarm.heap},
        "sent": swarm.sent,
        "flaps": swarm.flaps,
        "lateness": swarm.lateness.tobytes(),
        "udp": sender.stats(),
    })
    conn.close()


# -- the run ---------------------------------------------------------------------------------------

@dataclass
class NetworkRun:
    """The in-process demo's result plus what only a networked run has."""

    result: SwarmResult
    url: str
    senders: int
    transit_bound_ms: float
    transit_ms: dict[str, Any]
    udp_sent: dict[str, int]
    service: dict[str, Any]
    stream_problem: str | None = None
    converted_clock: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.result.passed and self.stream_problem is None

    def format(self) -> list[str]:
        """The in-process demo's report, then the network's own figures (80 columns)."""
        lines = self.result.format()
        verdict = lines.pop()
        udp = self.service.get("udp") or {}
        events = self.service.get("events") or {}
        sent = self.udp_sent
        t = self.transit_ms
        w = REPORT_WIDTH
        lines += fit([f"Over the network: {self.senders} sender processes", "-> UDP -> serve",
                      "-> SSE /v1/events -> this process"], w, sep=" ")
        lines += fit(["UDP:", f"{sent.get('ids_sent', 0):,} heartbeats sent",
                      f"in {sent.get('datagrams_sent', 0):,} datagrams,",
                      f"{sent.get('ids_dropped', 0):,} not sent;",
                      f"the service received {udp.get('ids', 0):,}",
                      f"({sent.get('ids_sent', 0) - udp.get('ids', 0):,} lost),",
                      f"{udp.get('bad_datagrams', 0):,} bad"], w, indent="  ", cont="    ",
                     sep=" ")
        lines += fit(["Events:", f"{events.get('published', 0):,} published,",
                      f"{events.get('dropped', 0):,} dropped; the 'callback' latency above",
                      "is an event's arrival here minus the server's deadline"],
                     w, indent="  ", cont="    ", sep=" ")
        lines += fit(["Transit, send -> recorded (from the deadlines):",
                      "no detection" if t.get("p50") is None else
                      f"p50 {t['p50']:.2f}  p99 {t['p99']:.2f}  max {t['max']:.2f} ms;",
                      f"the truth allows up to {self.transit_bound_ms:g} ms"],
                     w, indent="  ", cont="    ", sep=" ")
        if t.get("over_bound"):
            lines += fit([f"{t['over_bound']:,} of {t['count']:,} detections came from a "
                          f"heartbeat the service recorded more than {self.transit_bound_ms:g} "
                          "ms after it was sent: its ingestion lagged (CPU starved?), and "
                          "the truth check counts those as missed + false alarm"],
                         w, indent="  ", cont="    ")
        if self.stream_problem:
            lines += fit([f"Event stream problem: {self.stream_problem}"], w, indent="  ")
        lines.append(verdict if self.stream_problem is None else "Result: FAIL")
        return lines

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        out["passed"] = self.passed
        out["network"] = {"url": self.url, "senders": self.senders,
                          "transit_bound_ms": self.transit_bound_ms,
                          "transit_ms": self.transit_ms, "udp_sent": self.udp_sent,
                          "service_udp": self.service.get("udp"),
                          "service_events": self.service.get("events"),
                          "stream_problem": self.stream_problem,
                          "clock_converted": self.converted_clock}
        return out


def run(config: SwarmConfig, out: TextIO, *, plain: bool, json_path: str | None = None,
        senders: int | None = None, hold: bool | None = None) -> int:
    """Runs the networked demo, prints the report and the dashboard URL; the exit code.

    `hold` (default: when `out` is a terminal) keeps the service and its dashboard up after
    the report until Ctrl-C."""
    try:
        import httpx  # noqa: F401  (the [service] extra)
    except ImportError:
        out.write("demo --serve needs the service extra: pip install 'moai-flow-fast[service]'\n")
        return 2
    n_senders = senders or (2 if config.agents < 50_000 else 4)
    n_senders = max(1, min(n_senders, config.agents))
    token = secrets.token_urlsafe(16)
    service = ServeProcess(config, token)
    try:
        service.wait_ready()
        link = f"{service.url}/#token={token}"
        out.write(f"Dashboard: {link}\n")
        header = (f"moai-flow-fast demo --serve: {config.agents:,} agents, intervals "
                  f"{','.join(f'{i:g}' for i in config.intervals)} s, {n_senders} UDP "
                  f"senders -> serve pid {service.proc.pid}")
        board = _NetBoard(out, plain, header)
        board.start("starting the senders...")
        net = _run(config, service, n_senders, board)
        out.write("\n" + "\n".join(net.format()) + "\n")
        if json_path:
            with open(json_path, "w") as f:
                json.dump(net.to_dict(), f, indent=2)
        if hold is None:
            hold = out.isatty() and not plain
        if hold:
            out.write(f"\nThe service is still running (the senders have stopped, so every "
                      f"agent goes on to FAILED).\nDashboard: {link}\n"
                      "Press Ctrl-C to stop it.\n")
            out.flush()
            try:
                while service.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        code = service.stop()
        out.write(f"Service stopped (exit code {code}); the dashboard was at {service.url}/\n")
        if code != 0:
            out.write(service.log_tail())
        else:
            os.unlink(service.log.name)
        out.flush()
        return 0 if net.passed and code == 0 else 1
    finally:
        service.stop()


def _run(config: SwarmConfig, service: ServeProcess, n_senders: int,
         board: Dashboard) -> NetworkRun:
    import httpx

    events = EventCollector(service.url, service.headers)
    events.start()
    events.connected.wait(30)
    if events.error:
        raise RuntimeError(f"cannot read /v1/events: {events.error}")
    ctx = mp.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    for k in range(n_senders):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=_sender_main, name=f"moai-flow-fast-sender-{k}", daemon=True,
                        args=(theirs, config, k, n_senders, service.url, service.token,
                              service.udp_port))
        p.start()
        procs.append(p)
        pipes.append(mine)
    try:
        for conn in pipes:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError("a sender process did not start")
        began = time.perf_counter()
        for conn in pipes:
            conn.send("register")
        for conn in pipes:
            if not conn.poll(max(60.0, config.agents / 1000)) or conn.recv() != "registered":
                raise RuntimeError("a sender process did not register its agents")
        registration_s = time.perf_counter() - began
        start = time.monotonic_ns() + 20_000_000
        go = _Go(start, start + round(config.duration * _NS),
                 start + round((config.duration + config.grace) * _NS))
        for conn in pipes:
            conn.send(go)
        client = httpx.Client(base_url=service.url, headers=service.headers, timeout=10.0)
        _progress(config, client, events, go, board, service.url + "/",
                  1.0 if board.plain else 0.5)
        results = []
        for conn in pipes:
            if not conn.poll(max(60.0, config.agents / 1000)):
                raise RuntimeError("a sender process did not report")
            results.append(conn.recv())
        # The service's counts when the senders stopped (before every agent goes silent).
        stats = client.get("/v1/stats").json()
        # The truth ends when the senders stop (as the in-process demo's, when its monitor
        # stops); alerts due by then still on their way get _SETTLE_S to arrive.
        horizon = go.stop_ns
        while time.monotonic_ns() < horizon + round(_SETTLE_S * _NS):
            time.sleep(0.02)
        # Its event and UDP counters once the last events are out.
        final = client.get("/v1/stats").json().get("service") or {}
        client.close()
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
    return _judge(config, service, n_senders, go, results, events, horizon, stats, final,
                  registration_s)


def _judge(config: SwarmConfig, service: ServeProcess, n_senders: int, go: _Go,
           results: list[dict[str, Any]], events: EventCollector, horizon: int,
           stats: dict[str, Any], final: dict[str, Any] | None = None,
           registration_s: float = 0.0) -> NetworkRun:
    """The truth from the senders' records against the events; `stats` is the service's
    GET /v1/stats when the senders stopped, `final` its "service" part at the end."""
    swarm = Swarm(config)
    swarm.start_ns, swarm.window_end_ns, swarm.stop_ns = go.start_ns, go.window_end_ns, go.stop_ns
    bound = transit_bound_ns(config)
    # Event times came as Unix seconds: turned back into monotonic time, they are known to
    # within the two processes' offsets (measured to well under CLOCK_SLACK_NS).
    slack = CLOCK_SLACK_NS if events.converted else 0
    raw_beats: dict[int, list[tuple[int, int, int]]] = {}
    lateness = array("q")
    udp_sent: dict[str, int] = {}
    pending: dict[int, int] = {}
    for res in results:
        for idx, beats in res["beats"].items():
            raw_beats[idx] = beats
            # The server's stamp lies in [before send, after send + transit bound].
            swarm.beats[idx] = [(t0 - slack, t1 + bound, code) for t0, t1, code in beats]
        for idx, (t0, t1) in res["registered"].items():
            swarm.registered[idx] = (t0 - slack, t1 + slack)
        for idx in res["crashed"]:
            swarm.crashed[idx] = True
        pending.update(res["pending"])
        swarm.sent += res["sent"]
        late = array("q")
        late.frombytes(res["lateness"])
        lateness.extend(late)
        for k, v in res["udp"].items():
            if isinstance(v, int):
                udp_sent[k] = udp_sent.get(k, 0) + v
    swarm.heap = [(0, idx, code) for idx, code in pending.items()]
    alerts, recoveries = events.until(horizon)
    swarm.alerts = alerts
    swarm.recoveries = recoveries
    report = swarm.judge(horizon)
    svc = stats.get("service") or {}
    monitor_stats = dict(stats)
    # The service takes the monitor's transitions as batches (no per-agent callback): its
    # alerts are the crossing events it published.
    published = svc.get("events") or {}
    monitor_stats["alerts_raised"] = (published.get("published", 0)
                                      - (published.get("by_state") or {}).get("healthy", 0))
    lat = {"p50": (percentile(lateness, 50) or 0) / 1e6,
           "p99": (percentile(lateness, 99) or 0) / 1e6,
           "max": max(lateness, default=0) / 1e6}
    result = SwarmResult(config, str(stats.get("engine", "?")), report,
                         dict(swarm.injected), swarm.sent,
                         (horizon - go.start_ns) / _NS,
                         registration_s, monitor_stats, lat)
    problem = events.error if events.error else (
        f"the service ended the stream: {events.end_reason}" if events.end_reason else None)
    return NetworkRun(result, service.url, n_senders, bound / 1e6,
                      _transit(swarm, raw_beats, alerts, bound), udp_sent,
                      svc if final is None else final,
                      problem, events.converted)


def _transit(swarm: Swarm, beats: dict[int, list[tuple[int, int, int]]],
             alerts: Sequence[tuple[Any, int, float, float, int]], bound: int
             ) -> dict[str, Any]:
    """Send-to-record transit implied by each alert's deadline: the deadline minus the
    crossing's multiple of the interval is the server's stamp of the heartbeat that began
    the silence; minus that heartbeat's send time. Registrations are not counted."""
    mult = {sev: m for m, sev in crossing_mults(swarm.config.threshold)}
    values: list[float] = []
    over = 0
    for agent, sev, deadline, _, _ in alerts:
        idx = swarm.index.get(agent)
        if idx is None or sev not in mult:
            continue
        stamp = round(deadline * _NS) - mult[sev] * swarm.interval_ns[idx]
        agent_beats = beats.get(idx, [])
        # The last heartbeat sent before that stamp (a stamp after the next send would
        # mean a transit longer than a healthy gap: taken as the next heartbeat's).
        k = bisect.bisect_right(agent_beats, (stamp + CLOCK_SLACK_NS, 1 << 62, 0)) - 1
        if k >= 0:
            values.append(max(stamp - agent_beats[k][0], 0) / 1e6)
            # Past the truth's bracket: after the send returned, plus the bound.
            over += stamp > agent_beats[k][1] + bound + CLOCK_SLACK_NS
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None, "count": len(values),
            "over_bound": over}


# -- live progress -------------------------------------------------------------------------------

class _NetBoard(Dashboard):
    """The live block of the networked demo: what the service says (GET /v1/stats) and what
    arrived over SSE; the same in-place drawing and plain fallback as the in-process one."""

    def render(self, snap: dict[str, Any], width: int = REPORT_WIDTH) -> list[str]:
        width = max(width, MIN_WIDTH)
        h, a, lat = snap["health"], snap["alerts"], snap["recent_latency_ms"]
        duration = snap["duration"]
        figures = f"{min(snap['elapsed'], duration):.1f} / {duration:g} s"
        bar_width = max(10, min(30, width - len(figures) - 6))
        filled = round(min(1.0, snap["elapsed"] / duration) * bar_width)
        progress: list[str | Segment] = ["[" + "#" * filled + "." * (bar_width - filled) + "]",
                                         figures]
        if snap["elapsed"] > duration:
            progress.append("grace: heartbeats go on, crossings no longer required")
        pad = len(f"{snap['agents']:,}")
        states: list[str | Segment] = [f"agents {snap['agents']:,} (GET /v1/stats):"]
        states += [(f"{k} {h.get(k, 0):>{pad},}", _COLOURS[k]) for k in _STATES]
        recent = snap["recent_detections"]
        latency: list[str | Segment] = [
            f"latency (SSE arrival - deadline) of the latest {recent:,}:"]
        latency += ([f"p50 {lat[0]:.1f} ms", f"p99 {lat[1]:.1f} ms", f"max {lat[2]:.1f} ms"]
                    if lat else ["none since the last update"])
        groups: list[list[str | Segment]] = [
            progress, states,
            [f"heartbeats/s recorded by the service {snap['hb_per_s']:,.0f}",
             f"total {snap['heartbeats']:,}"],
            ["detections over SSE:", f"degraded {a['degraded']:,}", f"critical {a['critical']:,}",
             f"failed {a['failed']:,}", f"recoveries {snap['recoveries']:,}"],
            latency,
            ["dashboard:", snap["url"]],
        ]
        lines = fit([(self.header, "1")], width, colour=self.colour)
        for segments in groups:
            lines += fit(segments, width, indent="  ", cont="    ", colour=self.colour)
        return lines


_STATES = ("healthy", "degraded", "critical", "failed")
_COLOURS = {"healthy": "32", "degraded": "33", "critical": "35", "failed": "31"}


def _progress(config: SwarmConfig, client: Any, events: EventCollector, go: _Go,
              board: Dashboard, url: str, refresh: float) -> None:
    """Updates `board` every `refresh` seconds until the senders stop."""
    last: tuple[int, int] | None = None
    try:
        last = (time.monotonic_ns(), int(client.get("/v1/stats").json()["total_heartbeats"]))
    except Exception:
        pass
    seen = 0
    while True:
        now = time.monotonic_ns()
        if now >= go.stop_ns:
            return
        time.sleep(min(refresh, (go.stop_ns - now) / _NS))
        try:
            stats = client.get("/v1/stats").json()
        except Exception:            # shown as a frozen board; the report says what broke
            continue
        now = time.monotonic_ns()
        total = int(stats.get("total_heartbeats", 0))
        rate = 0.0 if last is None else (total - last[1]) * _NS / max(now - last[0], 1)
        last = (now, total)
        with events.lock:
            fresh = events.alerts[seen:]
            seen = len(events.alerts)
            counts = [0, 0, 0, 0]
            for alert in events.alerts:
                counts[alert[1]] += 1
            recovered = len(events.recoveries)
        lat = sorted(alert[4] / 1e6 - alert[2] * 1e3 for alert in fresh)
        board.update({
            "elapsed": (now - go.start_ns) / _NS, "duration": config.duration,
            "health": stats.get("health_distribution", {}),
            "agents": int(stats.get("total_agents", 0)), "hb_per_s": rate, "heartbeats": total,
            "alerts": {"degraded": counts[1], "critical": counts[2], "failed": counts[3]},
            "recoveries": recovered,
            "recent_latency_ms": ([percentile(lat, 50), percentile(lat, 99), lat[-1]]
                                  if lat else None),
            "recent_detections": len(lat), "url": url,
        })
