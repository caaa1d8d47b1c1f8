"""Clients of `moai-flow-fast serve`: heartbeats from other processes and machines."""

from __future__ import annotations

from typing import Any

from moai_flow_fast.client._http import HeartbeatClient
from moai_flow_fast.client._udp import UdpHeartbeatSender

__all__ = ["HeartbeatClient", "RedisHeartbeatSender", "UdpHeartbeatSender"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so this package imports without the `redis` extra installed.
    if name == "RedisHeartbeatSender":
        from moai_flow_fast.client._redis import RedisHeartbeatSender

        return RedisHeartbeatSender
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
