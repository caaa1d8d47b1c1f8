"""The `moai-flow-fast` command: --help, argument errors (exit 2), a tiny real-time demo
and a tiny bench."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from moai_flow_fast.tools._cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["capacity", "--help"],
                                  ["bench", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: moai-flow-fast")
    if argv[0] == "demo":
        for option in ("--agents", "--duration", "--seed", "--plain", "--tick-ms", "--engine"):
            assert option in out
    if argv[0] == "capacity":
        for option in ("--agents", "--max-agents", "--intervals", "--cpu-budget", "--quick",
                       "--json", "--png"):
            assert option in out


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["launch"], "invalid choice: 'launch'"),
    (["demo", "--agents", "0"], "argument --agents: must be >= 1, got '0'"),
    (["demo", "--agents", "ten"], "argument --agents: expected a whole number, got 'ten'"),
    (["demo", "--agents", "2.5"], "argument --agents: expected a whole number, got '2.5'"),
    (["demo", "--duration", "-3"], "argument --duration: must be >= 0.5, got '-3'"),
    (["demo", "--duration", "nan"], "argument --duration: expected a finite number"),
    (["demo", "--seed", "x"], "argument --seed: expected a whole number"),
    (["demo", "--tick-ms", "0"], "argument --tick-ms: must be >= 1"),
    (["demo", "--engine", "turbo"], "argument --engine: invalid choice: 'turbo'"),
    (["demo", "--intervals", "1,,2"], "argument --intervals: expected a comma-separated list"),
    (["demo", "--intervals", "1,0.05"], "argument --intervals: '0.05' in '1,0.05': must be >= 0.1"),
    (["demo", "--plain", "extra"], "unrecognized arguments: extra"),
    (["demo", "--json", "/nonexistent-folder/x.json"], "argument --json: folder"),
    (["capacity", "--cpu-budget", "0"], "argument --cpu-budget: must be > 0, got '0'"),
    (["capacity", "--cpu-budget", "101"], "argument --cpu-budget: must be <= 100"),
    (["capacity", "--agents", "5"], "argument --agents: '5' in '5': must be >= 10"),
    (["capacity", "--agents", "100", "--max-agents", "1000"],
     "argument --max-agents: not allowed with argument --agents"),
    (["capacity", "--intervals", "fast"],
     "argument --intervals: 'fast' in 'fast': expected a number"),
    (["capacity", "--png", "/nonexistent-folder/x.png"], "argument --png: folder"),
    (["bench", "--engines", "fast"],
     "argument --engines: 'fast' in 'fast': expected compiled or pure"),
    (["bench", "--repeat", "0"], "argument --repeat: must be >= 1"),
    (["bench", "--agents", "1e9"], "argument --agents: must be <= 10,000,000"),
])
def test_argument_errors_exit_2_with_a_message(capsys, argv, message):
    err = _error(capsys, argv)
    assert err.startswith("usage: moai-flow-fast")
    assert message in err


def test_python_dash_m_runs_the_cli():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "moai_flow_fast", "demo", "--agents", "-1"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "argument --agents: must be >= 1" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "moai_flow_fast", "--version"],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("moai-flow-fast 0.")


def test_tiny_real_time_demo_passes(capsys, tmp_path):
    """A ~2.5 s real-time run: system clock, background threads, the truth check."""
    path = tmp_path / "demo.json"
    code = main(["demo", "--agents", "300", "--duration", "1.5", "--intervals", "0.2,0.3",
                 "--seed", "3", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Result: PASS" in out
    # Not a terminal: plain lines once a second.
    assert re.search(r"^\[\s+\d+\.\ds\] healthy=\d+ degraded=\d+ critical=\d+ failed=\d+ hb/s=",
                     out, re.M)
    assert "Detection latency (callback - deadline): p50" in out
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["missed"] == 0 and data["false_alarms"] == 0
    assert data["expected"] == data["detected"]
    assert data["expected"]["degraded"] > 0 and data["expected"]["failed"] > 0
    assert data["monitor"]["callback_errors"] == 0


def test_tiny_bench(capsys, engine, tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "--agents", "300", "--repeat", "1", "--engines", engine,
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for op in ("record_heartbeat", "check_agent_health", "get_unhealthy_agents",
               "get_monitoring_stats", "start_monitoring", "stop_monitoring", "advance: idle",
               "advance: re-arm", "advance: expire"):
        assert op in out
    data = json.loads(path.read_text())
    assert data["engines"] == [engine]
    assert all(v > 0 for v in data["ns"][engine].values())


def test_bench_side_by_side_shows_the_ratio(capsys):
    import moai_flow_fast.core._engine_c  # noqa: F401  (the compiled engine must be built)

    assert main(["bench", "--agents", "200", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "compiled" in out and "pure" in out and "pure/compiled" in out
