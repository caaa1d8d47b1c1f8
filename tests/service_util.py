"""Starting `moai-flow-fast serve` as a subprocess on free loopback ports, for the
end-to-end tests: it waits for the ready line, and always stops (then kills) the process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

_READY = re.compile(r"serve ready: http://([^ ]+):(\d+) udp=(\S+)")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class Served:
    """A running `serve` subprocess: its URLs, its log, an HTTP client."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None,
                 token: str | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MOAI_FLOW_FAST")}
        full_env.update(env or {})
        self.args = [sys.executable, "-m", "moai_flow_fast", "serve", *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=full_env, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self.udp: tuple[str, int] | None = None
        self.returncode: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=10.0)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = _READY.search(line)
            if match and not self._ready.is_set():
                host, port, udp = match.groups()
                self.url = f"http://{host}:{port}"
                if udp != "off":
                    udp_host, _, udp_port = udp.rpartition(":")
                    self.udp = (udp_host, int(udp_port))
                self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Served:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2.0)
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready after {timeout} s:\n{self.log}")
        return self

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        self.returncode = self.proc.wait(timeout)
        self._reader.join(2.0)
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal, wait, and kill if it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.wait_exit()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.wait_exit()

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    # -- conveniences ------------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(self.url + path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.delete(self.url + path, **kwargs)

    def send_udp(self, datagrams: Sequence[bytes]) -> None:
        assert self.udp is not None, "serve was started without --udp"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in datagrams:
                sock.sendto(data, self.udp)


@contextmanager
def served(*args: str, env: dict[str, str] | None = None, token: str | None = None,
           ready: bool = True) -> Iterator[Served]:
    """`serve` on free loopback ports (--http 127.0.0.1:0 unless given), stopped at exit."""
    argv = list(args)
    if "--http" not in argv:
        argv = ["--http", "127.0.0.1:0", *argv]
    server = Served(argv, env=env, token=token)
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        server.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
