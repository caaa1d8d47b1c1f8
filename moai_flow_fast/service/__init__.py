"""The monitor as a network service (`moai-flow-fast serve`); needs the [service] extra.

Importing this package needs only the core; the HTTP front end is loaded by `serve`.
"""

from __future__ import annotations

from moai_flow_fast.service._wire import decode_datagram, encode_datagrams

__all__ = ["decode_datagram", "encode_datagrams"]
