"""Operator tools behind the ``moai-flow-fast`` command: demo, simulator, capacity, bench."""

__all__: list[str] = []
