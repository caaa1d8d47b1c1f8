"""Clients of `moai-flow-fast serve`: heartbeats from other processes and machines."""

from __future__ import annotations

from moai_flow_fast.client._http import HeartbeatClient
from moai_flow_fast.client._udp import UdpHeartbeatSender

__all__ = ["HeartbeatClient", "UdpHeartbeatSender"]
