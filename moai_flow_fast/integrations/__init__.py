"""Integrations with other systems: Prometheus metrics and asyncio event streams.

Each needs only its own optional extra; the core never imports them.
"""

__all__: list[str] = []
