"""Shared fixtures. Every test that uses `engine` (directly or through
`make_monitor`) runs once per engine: compiled and pure."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from moai_flow_fast import HeartbeatMonitor, VirtualClock  # noqa: E402

START = 1000.0
WALL_START = 1_700_000_000.0


@pytest.fixture(scope="session", params=["compiled", "pure"], ids=["compiled", "pure"])
def engine(request):
    if request.param == "compiled":
        # Deliberately no importorskip: a missing build must fail loudly.
        import moai_flow_fast.core._engine_c  # noqa: F401
    else:
        import moai_flow_fast.core._engine_py  # noqa: F401
    return request.param


@pytest.fixture
def vclock():
    return VirtualClock(start=START, wall_start=WALL_START)


@pytest.fixture
def make_monitor(engine, vclock):
    """Factory: HeartbeatMonitor(..., engine=engine, clock=vclock) by default.
    Pass clock=None for a system-clock monitor (with its background thread).
    Every monitor made is shut down at teardown."""
    made = []

    def factory(*args, **kwargs):
        kwargs.setdefault("engine", engine)
        kwargs.setdefault("clock", vclock)
        m = HeartbeatMonitor(*args, **kwargs)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.shutdown()
