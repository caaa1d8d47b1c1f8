"""`serve` settings: one dataclass filled from defaults, a TOML file, the environment and
the command line (in increasing precedence), checked before anything starts."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["CLUSTER_DEFAULTS", "REDIS_ENV", "TOKEN_ENV", "UDP_SECRET_ENV", "ConfigError",
           "ServiceConfig", "load_toml", "parse_address", "redacted_url"]

TOKEN_ENV = "MOAI_FLOW_FAST_TOKEN"
UDP_SECRET_ENV = "MOAI_FLOW_FAST_UDP_SECRET"
REDIS_ENV = "MOAI_FLOW_FAST_REDIS"      # the URL may hold a password: keep it off argv
# Cluster settings are None unless given, so one given without `redis` is an error rather
# than silently unused; with `redis` the unset ones take these values.
CLUSTER_DEFAULTS: dict[str, Any] = {"partitions": 16, "prefix": "mff", "lease_ms": 3000,
                                    "poll_ms": 100}
# The cluster library's rules (moai_flow_fast.cluster.ClusterConfig), checked here too so
# that `serve` refuses a bad value before it starts anything, naming the option.
_NAMES = {"shard_name": (re.compile(r"^[A-Za-z0-9_.-]{1,64}$"), "_ . -"),
          "prefix": (re.compile(r"^[A-Za-z0-9_.:-]{1,64}$"), "_ . - :")}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass
class ServiceConfig:
    """Everything `serve` needs. Field names are the TOML keys and the long options."""

    http: str = "127.0.0.1:8080"
    udp: str | None = None
    token: str | None = None
    token_file: str | None = None
    udp_secret: str | None = None
    udp_secret_file: str | None = None
    state_file: str | None = None
    snapshot_interval: float = 5.0          # seconds between state-file snapshots
    interval_ms: float = 5000
    failure_threshold: int = 3
    history_size: int = 100
    tick_ms: int = 10
    engine: str = "auto"
    auto_register: bool = False
    max_agents: int = 10_000_000            # auto-registration stops here
    webhook: list[str] = field(default_factory=list)
    webhook_queue: int = 10_000             # events held per webhook before dropping
    webhook_retries: int = 5
    webhook_timeout: float = 5.0
    sse_queue: int = 10_000                 # events held per SSE client before dropping it
    max_body_bytes: int = 8 << 20
    log_level: str = "info"
    # Cluster mode (issue 14): shards sharing the swarm through Redis Streams.
    redis: str | None = None
    partitions: int | None = None
    shard_name: str | None = None           # default: hostname-pid
    prefix: str | None = None
    lease_ms: int | None = None
    poll_ms: int | None = None
    announce_url: str | None = None         # default: http:// + the bound address

    # -- filled by resolve() --------------------------------------------------------------

    def resolve(self, environ: dict[str, str] | None = None) -> ServiceConfig:
        """Read token and secret files, apply the environment, check every value.
        Raises ConfigError naming the setting."""
        env = os.environ if environ is None else environ
        if self.token is None and self.token_file is None and env.get(TOKEN_ENV):
            self.token = env[TOKEN_ENV]
        if self.udp_secret is None and self.udp_secret_file is None and env.get(UDP_SECRET_ENV):
            self.udp_secret = env[UDP_SECRET_ENV]
        if self.token_file is not None:
            self.token = _read_secret("token_file", self.token_file)
        if self.udp_secret_file is not None:
            self.udp_secret = _read_secret("udp_secret_file", self.udp_secret_file)
        if self.token is not None and not self.token.strip():
            raise ConfigError("token must not be empty")
        if self.udp_secret is not None and not self.udp_secret:
            raise ConfigError("udp_secret must not be empty")
        _check_range("interval_ms", self.interval_ms, 100, 1e12)
        _check_range("failure_threshold", self.failure_threshold, 1, 1_000_000, whole=True)
        _check_range("history_size", self.history_size, 1, 1_000_000, whole=True)
        _check_range("tick_ms", self.tick_ms, 1, 60_000, whole=True)
        _check_range("snapshot_interval", self.snapshot_interval, 0.1, 86_400)
        _check_range("max_agents", self.max_agents, 0, 1 << 40, whole=True)
        _check_range("webhook_queue", self.webhook_queue, 1, 10_000_000, whole=True)
        _check_range("webhook_retries", self.webhook_retries, 0, 100, whole=True)
        _check_range("webhook_timeout", self.webhook_timeout, 0.1, 600)
        _check_range("sse_queue", self.sse_queue, 1, 10_000_000, whole=True)
        _check_range("max_body_bytes", self.max_body_bytes, 1024, 1 << 32, whole=True)
        if self.engine not in ("auto", "compiled", "pure"):
            raise ConfigError(f"engine must be auto, compiled or pure, got {self.engine!r}")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ConfigError(f"log_level must be a logging level name, got {self.log_level!r}")
        for url in self.webhook:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"webhook must be an http:// or https:// URL, got {url!r}")
        self._resolve_cluster(env)
        host, _ = parse_address("http", self.http)
        if self.token is None and not is_loopback(host):
            raise ConfigError(f"http: refusing to bind {host!r}, which is not a loopback "
                              f"address, without a token (--token, --token-file or "
                              f"{TOKEN_ENV})")
        if self.udp is not None:
            udp_host, _ = parse_address("udp", self.udp)
            if self.udp_secret is None and not is_loopback(udp_host):
                raise ConfigError(f"udp: refusing to bind {udp_host!r}, which is not a "
                                  f"loopback address, without --udp-secret")
        return self

    def _resolve_cluster(self, env: Mapping[str, str]) -> None:
        if self.redis is None and env.get(REDIS_ENV):
            self.redis = env[REDIS_ENV]
        if self.redis is None:
            for name in (*CLUSTER_DEFAULTS, "shard_name", "announce_url"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{name} needs redis (cluster mode: --redis URL or "
                                      f"{REDIS_ENV})")
            return
        _check_redis_url(self.redis)
        if self.state_file is not None:
            raise ConfigError("state_file cannot be used with redis: in cluster mode the "
                              "registry and the heartbeat streams in Redis are the durable "
                              "state (a restarted shard replays them)")
        if not float(self.interval_ms).is_integer():
            raise ConfigError(f"interval_ms must be a whole number of milliseconds with "
                              f"redis (the cluster's registry holds integers), got "
                              f"{self.interval_ms!r}")
        for name, default in CLUSTER_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.shard_name is None:
            self.shard_name = f"{socket.gethostname()}-{os.getpid()}"
        _check_range("partitions", self.partitions, 1, 4096, whole=True)
        _check_range("lease_ms", self.lease_ms, 300, 600_000, whole=True)
        _check_range("poll_ms", self.poll_ms, 1, 60_000, whole=True)
        assert self.lease_ms is not None and self.poll_ms is not None
        if self.poll_ms * 2 > self.lease_ms:
            raise ConfigError(f"poll_ms must be at most half of lease_ms ({self.lease_ms}), "
                              f"got {self.poll_ms}: a shard must renew its leases in time")
        for name, (pattern, chars) in _NAMES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or not pattern.match(value):
                raise ConfigError(f"{name} must be 1 to 64 letters, digits or {chars}, "
                                  f"got {value!r}")
        if self.announce_url is not None:
            parts = urlsplit(self.announce_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"announce_url must be an http:// or https:// URL, got "
                                  f"{self.announce_url!r}")

    def public(self) -> dict[str, Any]:
        """The settings without secrets (for logs and /v1/stats)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("token", "udp_secret"):
            out[name] = None if out[name] is None else "***"
        if out["redis"] is not None:
            out["redis"] = redacted_url(out["redis"])
        return out


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _check_redis_url(url: Any) -> None:
    shown = redacted_url(url) if isinstance(url, str) else url
    usage = f"redis must be a URL redis://HOST:PORT/DB (or rediss://, unix://PATH), got {shown!r}"
    if not isinstance(url, str):
        raise ConfigError(usage)
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(usage)
        return
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(usage)
    try:
        _ = parts.port      # raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"redis: the port must be a number between 0 and 65535, got "
                          f"{shown!r}") from None
    db = parts.path.lstrip("/")
    if db and not (db.isdigit() and len(db) <= 5):
        raise ConfigError(f"redis: the database must be a number (redis://HOST:PORT/0), got "
                          f"{shown!r}")


def _check_range(name: str, value: Any, low: float, high: float, whole: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if whole and not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def _read_secret(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path!r}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{name}: {path!r} is empty")
    return text


def parse_address(name: str, text: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT" (IPv6 as "[::1]:PORT"); port 0 picks a free port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name} must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{name}: port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: port must be between 0 and 65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


_TYPES = {f.name: f.type for f in fields(ServiceConfig)}


def load_toml(path: str) -> dict[str, Any]:
    """The settings of a TOML file (keys as the long options, "-" or "_"), checked for
    unknown keys and types. Raises ConfigError naming the key."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:   # pragma: no cover - the [service] extra installs tomli on 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path!r} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _TYPES:
            raise ConfigError(f"config: unknown key {key!r}")
        out[name] = _typed(key, value, str(_TYPES[name]))
    return out


def _typed(key: str, value: Any, kind: str) -> Any:
    ok: bool
    kind = kind.removesuffix(" | None")
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind.startswith("list"):
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:   # str or "str | None"
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"config: {key!r} must be of type {kind}, got {value!r}")
    return value
