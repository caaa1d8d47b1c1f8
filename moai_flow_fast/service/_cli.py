"""`moai-flow-fast serve`: its options (also read from a TOML file) and its entry point.

This module imports only the standard library, so `moai-flow-fast --help` works without
the [service] extra; the server itself is imported when `serve` runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TextIO

from ._config import (
    CLUSTER_DEFAULTS,
    REDIS_ENV,
    TOKEN_ENV,
    UDP_SECRET_ENV,
    ConfigError,
    ServiceConfig,
    load_toml,
)

__all__ = ["add_serve_parser", "run_serve"]

_HELP = {
    "http": "HTTP API address (default 127.0.0.1:8080; port 0 picks a free port)",
    "udp": "UDP heartbeat address (off unless given)",
    "token": f"bearer token required on /v1/* and /metrics (prefer --token-file or "
             f"{TOKEN_ENV}: a command line is visible to other users)",
    "token_file": "read the bearer token from FILE",
    "udp_secret": f"HMAC-SHA256 key of signed UDP datagrams (or {UDP_SECRET_ENV})",
    "udp_secret_file": "read the UDP secret from FILE",
    "state_file": "snapshot agents and histories to FILE and restore them at start (not "
                  "with --redis: Redis holds the state of a cluster)",
    "snapshot_interval": "seconds between snapshots (default 5)",
    "interval_ms": "default heartbeat interval of registered agents (default 5000)",
    "failure_threshold": "default failure threshold (default 3)",
    "history_size": "heartbeats kept per agent (default 100)",
    "tick_ms": "timer-wheel tick in ms (default 10)",
    "engine": "monitor engine (default auto)",
    "auto_register": "register unknown ids that send heartbeats, with the defaults",
    "max_agents": "auto-registration stops at this many agents (default 10000000)",
    "webhook": "POST transitions as JSON batches to URL (repeatable)",
    "webhook_queue": "events queued per webhook before the oldest are dropped (default 10000)",
    "webhook_retries": "retries of a failed webhook POST, with backoff (default 5)",
    "webhook_timeout": "seconds per webhook POST (default 5)",
    "sse_queue": "events queued per /v1/events client before it is dropped (default 10000)",
    "max_body_bytes": "largest request body accepted (default 8388608)",
    "log_level": "debug, info, warning, error (default info)",
    "redis": f"cluster mode: join the shards sharing the swarm through this Redis "
             f"(redis://HOST:PORT/DB, or {REDIS_ENV}). Heartbeats and registrations go "
             f"into Redis, the owner of an agent's partition monitors it, any shard answers "
             f"for every agent. Redis is then the durable state: --state-file is refused",
    "partitions": f"partitions of the swarm, the same on every shard (default "
                  f"{CLUSTER_DEFAULTS['partitions']})",
    "shard_name": "this shard's name, unique in the cluster (default hostname-pid)",
    "prefix": f"prefix of the Redis keys and streams (default {CLUSTER_DEFAULTS['prefix']})",
    "lease_ms": f"partition lease in ms: a dead shard's partitions are taken over after "
                f"this (default {CLUSTER_DEFAULTS['lease_ms']})",
    "poll_ms": f"stream poll in ms, at most half the lease (default "
               f"{CLUSTER_DEFAULTS['poll_ms']})",
    "announce_url": "URL the other shards use to reach this one's HTTP API (default the "
                    "bound address; set it when binding 0.0.0.0 or ::)",
}


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `serve` subcommand to an argparse subparsers object."""
    serve = sub.add_parser(
        "serve", help="run a monitor as a network service (HTTP API, UDP, SSE, webhooks)",
        description="Runs one monitor with an HTTP API (JSON, OpenAPI at /openapi.json), "
                    "server-sent events, Prometheus metrics, webhooks, UDP ingestion and a "
                    "dashboard at /. Needs the service extra: "
                    "pip install 'moai-flow-fast[service]'. Settings come from --config "
                    "(TOML, same keys with _ or -), the environment, then the options.")
    serve.add_argument("--config", metavar="FILE", help="TOML file of settings")
    for name in ("http", "udp"):
        serve.add_argument(f"--{name}", metavar="HOST:PORT", help=_HELP[name])
    for name, metavar in (("token", "TOKEN"), ("token_file", "FILE"), ("udp_secret", "SECRET"),
                          ("udp_secret_file", "FILE"), ("state_file", "FILE")):
        serve.add_argument("--" + name.replace("_", "-"), dest=name, metavar=metavar,
                           help=_HELP[name])
    for name, kind in (("snapshot_interval", float), ("interval_ms", float),
                       ("failure_threshold", int), ("history_size", int), ("tick_ms", int),
                       ("max_agents", int), ("webhook_queue", int), ("webhook_retries", int),
                       ("webhook_timeout", float), ("sse_queue", int), ("max_body_bytes", int)):
        serve.add_argument("--" + name.replace("_", "-"), dest=name, type=kind,
                           help=_HELP[name])
    serve.add_argument("--engine", choices=("auto", "compiled", "pure"), help=_HELP["engine"])
    serve.add_argument("--auto-register", dest="auto_register", action="store_true",
                       default=None, help=_HELP["auto_register"])
    serve.add_argument("--webhook", action="append", metavar="URL", help=_HELP["webhook"])
    serve.add_argument("--log-level", dest="log_level", help=_HELP["log_level"])
    cluster = serve.add_argument_group("cluster mode (Redis Streams)")
    cluster.add_argument("--redis", metavar="URL", help=_HELP["redis"])
    options: list[tuple[str, str, type[Any]]] = [
        ("partitions", "N", int), ("shard_name", "NAME", str), ("prefix", "PREFIX", str),
        ("lease_ms", "MS", int), ("poll_ms", "MS", int), ("announce_url", "URL", str)]
    for name, metavar, kind in options:
        cluster.add_argument("--" + name.replace("_", "-"), dest=name, metavar=metavar,
                             type=kind, help=_HELP[name])
    serve.set_defaults(run=run_serve, parser=serve)
    return serve  # type: ignore[no-any-return]


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """Defaults, then the TOML file, then the environment and the options given."""
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    for name in ServiceConfig.__dataclass_fields__:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    # A token or secret given on the command line replaces a file named in the config.
    for value, file in (("token", "token_file"), ("udp_secret", "udp_secret_file")):
        if getattr(args, value, None) is not None and getattr(args, file, None) is None:
            values.pop(file, None)
    return ServiceConfig(**values).resolve()


def run_serve(args: argparse.Namespace, out: TextIO) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        args.parser.error(str(exc))
    _logging(config.log_level)
    try:
        from ._server import run_service
    except ImportError as exc:
        sys.stderr.write(f"serve needs the service extra ({exc.name} is missing): "
                         "pip install 'moai-flow-fast[service]'\n")
        return 2
    try:
        return run_service(config)
    except OSError as exc:
        logging.getLogger("moai_flow_fast.service").error("cannot start: %s", exc)
        return 1
    except ValueError as exc:     # an unreadable state file
        logging.getLogger("moai_flow_fast.service").error("%s", exc)
        return 1


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The ready line is printed whatever the level: scripts and tests wait for it.
    logging.getLogger("moai_flow_fast.service.ready").setLevel(logging.INFO)
    # Per-agent recovery lines of the monitor are noise in a service (SSE carries them).
    logging.getLogger("moai_flow_fast.monitor").setLevel(logging.WARNING)
