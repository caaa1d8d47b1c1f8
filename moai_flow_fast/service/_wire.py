"""The UDP heartbeat datagram format, shared by the service and every sender.

Format (version 1, documented so agents in any language can send):

* Without a secret, a datagram is the UTF-8 agent ids joined by ``b"\\n"``
  (``b"a\\nb\\nc"``). Empty lines are ignored, so a trailing newline is harmless. An id
  cannot contain ``"\\n"`` and must not be empty.
* With a secret (``serve --udp-secret``), the datagram is ``tag + body`` where ``body`` is
  exactly the unsigned form above and ``tag`` is the 32 raw bytes of
  ``HMAC-SHA256(key=secret.encode("utf-8"), msg=body)``. A datagram whose tag does not
  match is dropped and counted. In Python: ``hmac.digest(key, body, "sha256") + body``.

The HMAC authenticates the sender; it does not stop the replay of a captured datagram
(there is no nonce), so on an untrusted network keep UDP on a private segment.
A datagram should stay within the path MTU (``DEFAULT_MAX_SIZE`` is safe on Ethernet); on
loopback up to 65,507 bytes work and cost less per id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_UDP_PAYLOAD",
    "TAG_SIZE",
    "decode_datagram",
    "decode_datagrams",
    "encode_datagrams",
    "secret_key",
]

TAG_SIZE = 32                 # raw HMAC-SHA256 digest bytes in front of a signed body
DEFAULT_MAX_SIZE = 1400       # fits a 1500-byte Ethernet MTU with IPv4/IPv6 + UDP headers
MAX_UDP_PAYLOAD = 65_507      # the largest IPv4 UDP payload


def secret_key(secret: str | bytes | None) -> bytes | None:
    """The HMAC key for a secret given as text (UTF-8) or bytes; None for no secret."""
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be str or bytes, got {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    return secret


def _sign(key: bytes | None, body: bytes) -> bytes:
    return body if key is None else hmac.digest(key, body, hashlib.sha256) + body


def encode_datagrams(ids: Iterable[str], secret: str | bytes | None = None,
                     max_size: int = DEFAULT_MAX_SIZE) -> list[bytes]:
    """Pack ids, in order, into as few datagrams of at most max_size bytes as possible.

    Raises TypeError/ValueError naming ``ids`` for a non-str, empty or newline-containing
    id, or one too long to fit a datagram alone; nothing is returned in that case."""
    key = secret_key(secret)
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise TypeError(f"max_size must be an int, got {type(max_size).__name__}")
    overhead = TAG_SIZE if key is not None else 0
    if not overhead + 1 <= max_size <= MAX_UDP_PAYLOAD:
        raise ValueError(f"max_size must be in [{overhead + 1}, {MAX_UDP_PAYLOAD}], "
                         f"got {max_size}")
    room = max_size - overhead
    out: list[bytes] = []
    parts: list[bytes] = []
    used = -1                 # bytes of the body so far: ids plus the newlines between them
    for i, agent_id in enumerate(ids):
        if not isinstance(agent_id, str):
            raise TypeError(f"ids[{i}] must be str, got {type(agent_id).__name__}")
        raw = agent_id.encode("utf-8")
        if not raw or b"\n" in raw:
            raise ValueError(f"ids[{i}] must be non-empty and contain no newline")
        if len(raw) > room:
            raise ValueError(f"ids[{i}] is {len(raw)} bytes, more than fits a datagram "
                             f"of max_size={max_size}")
        if used + 1 + len(raw) > room:
            out.append(_sign(key, b"\n".join(parts)))
            parts, used = [], -1
        parts.append(raw)
        used += 1 + len(raw)
    if parts:
        out.append(_sign(key, b"\n".join(parts)))
    return out


def _verified(data: bytes, key: bytes | None) -> bytes | None:
    if key is None:
        return data
    if len(data) < TAG_SIZE:
        return None
    body = data[TAG_SIZE:]
    if not hmac.compare_digest(data[:TAG_SIZE], hmac.digest(key, body, hashlib.sha256)):
        return None
    return body


def decode_datagram(data: bytes, secret: str | bytes | None = None) -> list[str] | None:
    """The ids of one datagram, or None when it fails the HMAC or is not UTF-8."""
    body = _verified(data, secret_key(secret))
    if body is None:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return [line for line in text.split("\n") if line]


def decode_datagrams(datagrams: Sequence[bytes],
                     secret: str | bytes | None = None) -> tuple[list[str], int]:
    """(ids of all valid datagrams in order, number of datagrams rejected).

    The fast path of the receiver: one join, decode and split for the whole batch; only
    when that batch is not valid UTF-8 is each datagram decoded alone to find the bad ones.
    """
    key = secret_key(secret)
    bodies: list[bytes] = []
    bad = 0
    if key is None:
        bodies = list(datagrams)
    else:
        for data in datagrams:
            body = _verified(data, key)
            if body is None:
                bad += 1
            else:
                bodies.append(body)
    try:
        text = b"\n".join(bodies).decode("utf-8")
    except UnicodeDecodeError:
        ids: list[str] = []
        for body in bodies:
            try:
                ids.extend(line for line in body.decode("utf-8").split("\n") if line)
            except UnicodeDecodeError:
                bad += 1
        return ids, bad
    return [line for line in text.split("\n") if line], bad
