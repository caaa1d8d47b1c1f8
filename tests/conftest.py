"""Shared fixtures. Every test that uses `engine` (directly or through `make_monitor`) runs
once per engine: compiled and pure. A missing compiled module fails those tests loudly.

The one opt-out, for a pure-Python install (built with MOAI_FLOW_FAST_NO_EXTENSIONS=1):
set MOAI_FLOW_FAST_NO_EXTENSIONS=1 when running the tests too. Then `engine` is "pure" only,
and what needs the compiled module is left out: modules that import a compiled module at
import time are not collected, and tests marked `compiled` or parametrised with the value
"compiled" are deselected. The session header says which mode ran.
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moai_flow_fast
from moai_flow_fast import HeartbeatMonitor, VirtualClock
from moai_flow_fast.core._engine import NO_EXTENSIONS as PURE_ONLY

START = 1000.0
WALL_START = 1_700_000_000.0
ENGINES = ["pure"] if PURE_ONLY else ["compiled", "pure"]
COMPILED_MODULES = {"moai_flow_fast.core._engine_c", "moai_flow_fast.analytics._stats_c"}
_not_collected: set[str] = set()
_deselected: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if not PURE_ONLY and not moai_flow_fast.COMPILED:
        pytest.exit(
            f"moai_flow_fast imported from {os.path.dirname(moai_flow_fast.__file__)} has no "
            "compiled engine. Build it (README: Set-up); to test an installed wheel, run "
            "pytest from another folder (here the sources come first on sys.path); to test "
            "a pure-Python install, set MOAI_FLOW_FAST_NO_EXTENSIONS=1.",
            returncode=pytest.ExitCode.USAGE_ERROR)


def _imports_compiled_at_import_time(path: Path) -> bool:
    """True when a top-level statement of the test module imports a compiled module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        else:
            continue
        if names & COMPILED_MODULES:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if (PURE_ONLY and collection_path.suffix == ".py" and collection_path.name.startswith("test_")
            and _imports_compiled_at_import_time(collection_path)):
        _not_collected.add(collection_path.name)
        return True
    return None


def _needs_compiled(item: pytest.Item) -> bool:
    if item.get_closest_marker("compiled") is not None:
        return True
    params = getattr(item, "callspec", None)
    return params is not None and any(
        isinstance(value, str) and value == "compiled" for value in params.params.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not PURE_ONLY:
        return
    drop = [item for item in items if _needs_compiled(item)]
    if drop:
        _deselected.extend(item.nodeid for item in drop)
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not _needs_compiled(item)]


def _session_lines() -> list[str]:
    mode = ("pure only (MOAI_FLOW_FAST_NO_EXTENSIONS=1: what needs the compiled module is "
            "left out)" if PURE_ONLY else "compiled and pure")
    return [f"moai_flow_fast {moai_flow_fast.__version__} from "
            f"{os.path.dirname(moai_flow_fast.__file__)}, COMPILED={moai_flow_fast.COMPILED}",
            f"engines under test: {mode}"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _session_lines()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    # Also at the end: -q hides the header, and CI checks which package and mode ran.
    for line in _session_lines():
        terminalreporter.write_line(line)
    if PURE_ONLY:
        terminalreporter.write_line(
            f"left out: {len(_not_collected)} modules not collected "
            f"({', '.join(sorted(_not_collected)) or 'none'}), {len(_deselected)} tests "
            "deselected: they need the compiled module")


@pytest.fixture(scope="session", params=ENGINES)
def engine(request):
    if request.param == "compiled":
        # Deliberately no importorskip: a missing build must fail loudly.
        import moai_flow_fast.core._engine_c
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
