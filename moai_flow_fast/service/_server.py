"""The service: one monitor, its HTTP API (uvicorn), UDP ingestion, SSE, webhooks and the
state file, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import uvicorn

from .. import HeartbeatMonitor
from ._app import Guard, build_app
from ._config import ConfigError, ServiceConfig, parse_address
from ._hub import EventHub
from ._ingest import UdpIngest, udp_socket
from ._metrics import registry
from ._models import MAX_ID_LENGTH, AgentSpec
from ._state import Restored, restore, resume, save
from ._webhooks import Webhook
from ._wire import secret_key

if TYPE_CHECKING:
    from ._cluster import ClusterFront

__all__ = ["Service", "run_service"]

logger = logging.getLogger("moai_flow_fast.service")

_STOP_TIMEOUT_S = 3.0


class _Server(uvicorn.Server):
    """uvicorn's server with the service's own SIGTERM/SIGINT handling: a graceful stop and
    exit code 0 (uvicorn would re-raise the signal after stopping)."""

    on_exit: Any = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self._signalled, sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _signalled(self, sig: int) -> None:
        if self.should_exit:
            self.force_exit = True      # a second signal: stop waiting for connections
        self.should_exit = True
        if self.on_exit is not None:
            self.on_exit(sig)


class Service:
    """Everything `serve` runs; the HTTP routes call into it."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        interval: Any = config.interval_ms   # the monitor takes int or float milliseconds
        self.monitor = HeartbeatMonitor(
            interval, config.failure_threshold, config.history_size,
            tick_ms=config.tick_ms, engine=config.engine, start_clock_on_register=True)
        # Transitions reach people through SSE, webhooks and metrics; the monitor's own
        # per-agent WARNING lines would flood the log in a storm.
        self.monitor.configure_alerts(on_degraded=False, on_critical=False, on_failed=False)
        self.settings: dict[str, tuple[float, int]] = {}   # agents with non-default settings
        self.default = (float(config.interval_ms), int(config.failure_threshold))
        self.hub: EventHub
        self.webhooks: list[Webhook] = []
        self.udp: UdpIngest | None = None
        self.ready = False
        self.stopping = False
        self.unknown_heartbeats = 0
        self.auto_registered = 0
        self.snapshots = 0
        self.snapshot_errors = 0
        self.last_snapshot_s: float | None = None
        self.restored: dict[str, Any] | None = None
        self._restored: Restored | None = None
        self.started = time.time()
        self._registry: Any = None
        self._mu = threading.Lock()
        self._snapshot_mu = threading.Lock()
        self._final_snapshot = False
        self.cluster: ClusterFront | None = None
        if config.redis is not None:
            try:
                import redis  # noqa: F401  (the Shard imports it only when it starts)

                from ._cluster import ClusterFront
            except ImportError as exc:
                raise ConfigError(f"--redis needs the redis extra ({exc.name} is missing): "
                                  "pip install 'moai-flow-fast[redis]'") from None
            self.cluster = ClusterFront(self)

    # -- called by the routes and the UDP thread -----------------------------------------------

    def register(self, agents: Sequence[AgentSpec]) -> tuple[int, int]:
        ids = [a.id for a in agents]
        intervals = [self.default[0] if a.interval_ms is None else a.interval_ms for a in agents]
        thresholds = [self.default[1] if a.failure_threshold is None else a.failure_threshold
                      for a in agents]
        mask = self.monitor.start_monitoring_many(ids, intervals, thresholds)
        for i in np.flatnonzero(mask).tolist():
            if (intervals[i], thresholds[i]) != self.default:
                self.settings[ids[i]] = (intervals[i], thresholds[i])
        registered = int(mask.sum())
        return registered, len(ids) - registered

    def unregister(self, agent_id: str) -> bool:
        stopped = bool(self.monitor.stop_monitoring(agent_id))
        if stopped:
            self.settings.pop(agent_id, None)
        return stopped

    def record(self, ids: list[str], timestamps: Sequence[float] | None = None
               ) -> tuple[int, int, int]:
        """(recorded, unknown, rejected) for one batch, auto-registering if configured."""
        monitor = self.monitor
        handles = monitor.handles(ids)
        missing = handles < 0
        if self.config.auto_register and missing.any():
            new = list(dict.fromkeys(ids[i] for i in np.flatnonzero(missing).tolist()
                                     if len(ids[i]) <= MAX_ID_LENGTH))
            # One registrar at a time (HTTP and UDP threads), so max_agents holds.
            with self._mu:
                room = self.config.max_agents - len(monitor.monitoring_agents)
                if room > 0 and new:
                    self.auto_registered += int(
                        monitor.start_monitoring_many(new[:room]).sum())
            handles = monitor.handles(ids)
            missing = handles < 0
        mask = monitor.record_heartbeats(handles, timestamps)
        recorded = int(np.count_nonzero(mask))
        unknown = int(np.count_nonzero(missing))
        if unknown:
            with self._mu:
                self.unknown_heartbeats += unknown
        return recorded, unknown, len(ids) - recorded - unknown

    def agent_info(self, agent_id: str) -> dict[str, Any] | None:
        monitor = self.monitor
        try:
            record = monitor.monitoring_agents[agent_id]
            state = monitor.check_agent_health(agent_id)
            base = record["last_heartbeat"]
            if not base:      # 0: no heartbeat yet; the clock started at registration
                base = record["started_at"]
            interval, threshold = record["interval_ms"], record["failure_threshold"]
        except (KeyError, ValueError):
            return None
        history = monitor.history_array(agent_id)
        last = float(history[-1]) if len(history) else None
        elapsed = None if not base else round(max(monitor.clock.time() - base, 0.0) * 1e3, 3)
        return {"id": agent_id, "state": state.value, "interval_ms": interval,
                "failure_threshold": threshold, "last_heartbeat": last, "elapsed_ms": elapsed}

    def stats(self) -> dict[str, Any]:
        out = self.monitor.get_monitoring_stats()
        out["service"] = {
            "version": _version(), "uptime_s": round(time.time() - self.started, 3),
            "unknown_heartbeats": self.unknown_heartbeats,
            "auto_registered": self.auto_registered,
            "events": self.hub.stats(),
            "udp": None if self.udp is None else self.udp.stats(),
            "webhooks": [w.stats() for w in self.webhooks],
            "snapshots": self.snapshots, "snapshot_errors": self.snapshot_errors,
            "last_snapshot_s": self.last_snapshot_s, "restored": self.restored,
            "config": self.config.public(),
        }
        if self.cluster is not None:
            out["service"]["cluster"] = {"shard": self.cluster.name,
                                         "partitions": sorted(self.cluster.owned()),
                                         **self.cluster.status()}
        return out

    def metrics(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._registry is None:
            self._registry = registry(self)
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    # -- state file ---------------------------------------------------------------------------

    def restore(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        got = restore(self.monitor, path, self.settings)
        if got is not None:
            self._restored = got
            self.restored = {"agents": got.agents, "heartbeats": got.heartbeats,
                             "saved_at": got.saved_at, "downtime_s": round(got.downtime_s, 3)}
            logger.info("restored %d agents and %d heartbeats from %s (down %.1f s)",
                        got.agents, got.heartbeats, path, got.downtime_s)

    def _go_live(self) -> None:
        """Grant the restored agents their grace now that heartbeats can arrive."""
        if self._restored is not None:
            resume(self.monitor, self._restored)
            self._restored = None
            # The crossings the resumed silences imply are found now, before the cut below.
            self.monitor.advance()
        # Transitions found while restoring describe the past: they are not published.
        self.hub.ignore_until = self.monitor.clock.monotonic_ns() / 1e9

    def snapshot(self, settings: dict[str, tuple[float, int]] | None = None,
                 final: bool = False) -> None:
        """Write the state file (`settings`: a copy taken in the event loop, which owns
        the dict; None copies it here)."""
        path = self.config.state_file
        if path is None:
            return
        # One writer at a time, and none after the final snapshot: a periodic one still
        # running in its thread at shutdown must not replace the final state with older.
        with self._snapshot_mu:
            if self._final_snapshot:
                return
            self._final_snapshot = final
            t0 = time.perf_counter()
            try:
                save(self.monitor, path, dict(self.settings) if settings is None else settings)
            except Exception:
                self.snapshot_errors += 1
                logger.exception("writing the state file %s failed", path)
                return
            self.snapshots += 1
            self.last_snapshot_s = round(time.perf_counter() - t0, 4)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval)
            # In a thread: a large swarm's snapshot must not stall the HTTP API.
            await asyncio.to_thread(self.snapshot, dict(self.settings))

    # -- lifecycle ----------------------------------------------------------------------------

    async def serve(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        clock = self.monitor.clock
        self.hub = EventHub(loop, lambda: clock.time() - clock.monotonic_ns() / 1e9)
        self.hub.ignore_until = float("inf")     # until _go_live: nothing found is news yet
        self.restore()
        self.monitor.configure_alerts(batch_callback=self.hub.on_batch)

        host, port = parse_address("http", config.http)
        http_sock = _tcp_socket(host, port)
        if self.cluster is not None:
            self.cluster.bind(config.announce_url or _url_of(http_sock))
        key = secret_key(config.udp_secret)
        if config.udp is not None:
            udp_host, udp_port = parse_address("udp", config.udp)
            try:
                sock = udp_socket(udp_host, udp_port)
            except OSError:
                http_sock.close()
                raise
            # In cluster mode datagrams go into Redis, for the owners of their partitions.
            cluster = self.cluster
            self.udp = UdpIngest(sock, key, lambda ids: self.record(ids) if cluster is None
                                 else cluster.record(ids))
            self.udp.start()

        client = httpx.AsyncClient(timeout=config.webhook_timeout)
        for url in config.webhook:
            hook = Webhook(url, client, maxsize=config.webhook_queue,
                           retries=config.webhook_retries)
            hook.start()
            self.hub.sinks.append(hook.offer)
            self.webhooks.append(hook)

        app = Guard(build_app(self), config.token, config.max_body_bytes)
        server = _Server(uvicorn.Config(
            app, lifespan="off", log_level=config.log_level.lower(), access_log=False,
            timeout_graceful_shutdown=int(_STOP_TIMEOUT_S), timeout_keep_alive=30,
            server_header=False, log_config=None))
        server.on_exit = self._on_signal
        tasks = [loop.create_task(self._snapshot_loop()),
                 loop.create_task(self._announce(server, http_sock))]
        try:
            await server.serve(sockets=[http_sock])
        finally:
            self.stopping = True
            for task in tasks:
                task.cancel()
            await self._stop(client)
        return 0

    def _on_signal(self, sig: int) -> None:
        self.stopping = True
        logger.info("%s received: stopping", signal.Signals(sig).name)
        self.hub.close()

    async def _announce(self, server: uvicorn.Server, sock: socket.socket) -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        self._go_live()
        cluster = ""
        if self.cluster is not None:
            # After _go_live: what the shard finds from now on (takeovers included) is news.
            await self.cluster.start()
            cluster = f" shard={self.cluster.name} announce={self.cluster.http_url}"
        self.ready = True
        udp = "off" if self.udp is None else "{}:{}".format(*self.udp.address)
        logging.getLogger("moai_flow_fast.service.ready").info(
            "moai-flow-fast serve ready: %s udp=%s agents=%d auth=%s state_file=%s%s",
            _url_of(sock, announce=False), udp, len(self.monitor.monitoring_agents),
            "token" if self.config.token else "none", self.config.state_file, cluster)

    async def _stop(self, client: httpx.AsyncClient) -> None:
        if self.udp is not None:
            await asyncio.to_thread(self.udp.stop)
        if self.cluster is not None:     # releases its leases before the monitor stops
            await self.cluster.stop()
        self.hub.close()
        self.monitor.shutdown()
        self.snapshot(final=True)
        await asyncio.gather(*(w.close(_STOP_TIMEOUT_S) for w in self.webhooks))
        await client.aclose()
        logger.info("stopped")


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_of(sock: socket.socket, announce: bool = True) -> str:
    """http://HOST:PORT of a bound socket; to announce a wildcard address, the host name."""
    host, port = sock.getsockname()[:2]
    if announce and host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    url_host = f"[{host}]" if ":" in host else host
    return f"http://{url_host}:{port}"


def _version() -> str:
    from .._version import __version__

    return __version__


def run_service(config: ServiceConfig) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful stop."""
    service = Service(config)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(service.serve())
    return uvloop.run(service.serve())
