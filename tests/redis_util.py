"""A real `redis-server` on a free loopback port for the cluster tests: AOF with fsync on
every write (a restart keeps every acknowledged entry), restart/pause helpers, always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["RedisServer", "read_alerts", "redis_fixture", "redis_server", "wait_for"]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.5) -> bool:
    """A raw RESP PING, so this helper works even without redis-py."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process: `.url`, `.port`, `.dir`; `restart()`, `pause()`, `stop()`."""

    def __init__(self, port: int | None = None, directory: str | None = None) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise RuntimeError("redis-server is not installed (Debian: apt-get install "
                               "redis-server); the cluster tests need a real one")
        self.binary = binary
        self.port = port or _free_port()
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="mff-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.dir, "redis.log")
        self.start()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", self.dir, "--logfile", self.log_path, "--daemonize", "no"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{self.log()[-2000:]}")
            if _ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGCONT)   # a paused server cannot handle SIGTERM
        except ProcessLookupError:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop (SIGTERM: the AOF is already fsynced) and start again, same port and dir."""
        self.stop()
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash; `start()` brings it back from the AOF."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def suspend(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def pause(self, seconds: float) -> None:
        """SIGSTOP for `seconds`, then SIGCONT: clients see a hung server, not a closed one."""
        self.suspend()
        try:
            time.sleep(seconds)
        finally:
            self.resume()

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """`with redis_server() as r: ... r.url ...`; the process is always stopped."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_fixture() -> Iterator[RedisServer]:
    """Import into a test module (`from redis_util import redis_fixture as redis`)."""
    with redis_server() as server:
        yield server


# -- helpers for the cluster tests ------------------------------------------------------------

def wait_for(condition: Any, timeout: float, step: float = 0.02, what: str = "condition") -> Any:
    """Poll `condition()` until it returns a truthy value (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def read_alerts(url: str, prefix: str = "mff") -> list[dict[str, str]]:
    """Every entry of {prefix}:alerts, oldest first, with its entry ID as `_id`."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [{"_id": entry_id, **fields}
                for entry_id, fields in client.xrange(f"{prefix}:alerts")]
    finally:
        client.close()


class Swarm:
    """Agents heartbeating through Redis every `period` s from a daemon thread, each with
    its own `ts`, via RedisHeartbeatSender (which keeps heartbeats through a Redis outage).
    `kill(ids)` silences agents; `last[id]` is the ts of each agent's last heartbeat."""

    def __init__(self, url: str, ids: list[str], period: float = 0.1,
                 partitions: int = 16, prefix: str = "mff") -> None:
        import threading

        from moai_flow_fast.client import RedisHeartbeatSender

        self.sender = RedisHeartbeatSender(url, prefix=prefix, partitions=partitions,
                                           batch=100_000, timeout=1.0)
        self.alive = set(ids)
        self.last: dict[str, float] = {}
        self.period = period
        self._mu = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-swarm")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            with self._mu:
                for agent_id in sorted(self.alive):
                    self.sender.send(agent_id, ts=now)
                    self.last[agent_id] = now
            self.sender.flush()
            self._stop.wait(self.period)

    def kill(self, ids: Any) -> None:
        with self._mu:
            self.alive.difference_update(ids)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sender.close()
