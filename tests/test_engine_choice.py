"""Engine choice: MOAI_FLOW_FAST_NO_EXTENSIONS parsing (read at import, checked in
a subprocess; setup.py reads it the same way at build time) and the engine= argument."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

import moai_flow_fast
from moai_flow_fast import HeartbeatMonitor, VirtualClock
from moai_flow_fast.core import _engine

VAR = "MOAI_FLOW_FAST_NO_EXTENSIONS"
# The folder holding the package under test (site-packages for an installed build).
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(moai_flow_fast.__file__)))
SETUP_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
CODE = (
    "import moai_flow_fast as f\n"
    "from moai_flow_fast import HeartbeatMonitor, VirtualClock\n"
    "m = HeartbeatMonitor(clock=VirtualClock(start=1.0, wall_start=1.0))\n"
    "print(f.COMPILED, m.engine_name, m.get_monitoring_stats()['engine'])\n"
    "m.shutdown()\n"
)


def run_with(value):
    env = dict(os.environ)
    env.pop(VAR, None)
    if value is not None:
        env[VAR] = value
    env["PYTHONPATH"] = PKG_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", CODE], env=env, cwd=PKG_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.compiled
@pytest.mark.parametrize("value", [None, "", "0", "false", "FALSE", "no", "No", "off", "OFF"])
def test_extensions_enabled(value):
    import moai_flow_fast.core._engine_c  # noqa: F401  -- must be built
    r = run_with(value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "compiled", "compiled"]


@pytest.mark.parametrize("value", ["1", "true", "True", "TRUE", "yes", "YES", "on", "On"])
def test_extensions_disabled(value):
    r = run_with(value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "pure", "pure"]


@pytest.mark.parametrize("value", ["bogus", "2", "enable", "-1"])
def test_bad_value_fails_at_import(value):
    r = run_with(value)
    assert r.returncode != 0
    assert "ValueError" in r.stderr
    assert VAR in r.stderr


def test_in_process_engine_follows_the_flag():
    """Compiled unless this run opted out (a pure-Python install, tests/conftest.py)."""
    if _engine.NO_EXTENSIONS:
        assert moai_flow_fast.COMPILED is False
    else:
        from moai_flow_fast.core import _engine_c  # noqa: F401  -- must be built
        assert moai_flow_fast.COMPILED is True


def _setup_py_parser():
    """setup.py's parse_flag and its word sets, without running setup()."""
    with open(SETUP_PY, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=SETUP_PY)
    keep = [node for node in tree.body
            if (isinstance(node, ast.FunctionDef) and node.name == "parse_flag")
            or (isinstance(node, ast.Assign)
                and {getattr(t, "id", None) for t in node.targets} & {"_TRUE", "_FALSE"})]
    assert len(keep) == 3, "setup.py must define _TRUE, _FALSE and parse_flag"
    namespace = {"os": os}
    exec(compile(ast.Module(body=keep, type_ignores=[]), SETUP_PY, "exec"), namespace)
    return namespace["parse_flag"]


@pytest.mark.parametrize("value", [None, "", " ", "0", "1", "true", "FALSE", " yes ", "No",
                                   "on", "OFF", "bogus", "2", "-1", "enable", "y"])
def test_build_flag_parsed_as_at_import(monkeypatch, value):
    """MOAI_FLOW_FAST_NO_EXTENSIONS means the same at build time (setup.py) and at import."""
    parse_at_build = _setup_py_parser()
    if value is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, value)

    def outcome(parse):
        try:
            return parse(VAR)
        except ValueError as exc:
            return ("ValueError", str(exc))

    at_import = outcome(_engine._parse_flag)
    assert outcome(parse_at_build) == at_import
    if value in ("bogus", "2", "-1", "enable", "y"):
        assert at_import[0] == "ValueError" and VAR in at_import[1]


def _clock():
    return VirtualClock(start=1000.0, wall_start=1_700_000_000.0)


@pytest.mark.parametrize("name", ["compiled", "pure"])
def test_engine_by_name(name):
    m = HeartbeatMonitor(engine=name, clock=_clock())
    try:
        assert m.engine_name == name
        assert m.get_monitoring_stats()["engine"] == name
    finally:
        m.shutdown()


@pytest.mark.compiled
def test_engine_by_class():
    import moai_flow_fast.core._engine_c as ec
    import moai_flow_fast.core._engine_py as ep
    for cls, name in ((ec.Engine, "compiled"), (ep.Engine, "pure")):
        m = HeartbeatMonitor(engine=cls, clock=_clock())
        try:
            assert m.engine_name == name
        finally:
            m.shutdown()


def test_engine_auto_follows_compiled_flag():
    m = HeartbeatMonitor(engine="auto", clock=_clock())
    d = HeartbeatMonitor(clock=_clock())
    try:
        expected = "compiled" if moai_flow_fast.COMPILED else "pure"
        assert m.engine_name == expected
        assert d.engine_name == expected
    finally:
        m.shutdown()
        d.shutdown()


@pytest.mark.compiled
def test_engine_modules_have_engine_class():
    import moai_flow_fast.core._engine_c as ec
    import moai_flow_fast.core._engine_py as ep
    assert isinstance(ec.Engine, type) and isinstance(ep.Engine, type)
