"""The `moai-flow-fast` command: --help, argument errors (exit 2), a tiny real-time demo
and a tiny bench."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import moai_flow_fast
from moai_flow_fast.tools._cli import main

# The folder holding the package under test (site-packages for an installed build), so that
# `python -m moai_flow_fast` runs that package, not a source tree that lies nearby.
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(moai_flow_fast.__file__)))


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
    # No formatting leftovers, no undefined jargon.
    assert "%%" not in out and "%(" not in out
    assert "Part A" not in out and "Part B" not in out
    if argv[0] == "demo":
        for option in ("--agents", "--duration", "--seed", "--plain", "--tick-ms", "--engine"):
            assert option in out
    if argv[0] == "capacity":
        for option in ("--agents", "--max-agents", "--intervals", "--cpu-budget", "--quick",
                       "--json", "--png"):
            assert option in out
        assert "CPU budget of Y% of a core" in " ".join(out.split())


@pytest.mark.parametrize("argv, message", [
    (["demo", "--agents", "0"], "argument --agents: must be >= 1, got '0'"),
    (["demo", "--agents", "ten"], "argument --agents: expected a whole number, got 'ten'"),
    (["demo", "--agents", "2.5"], "argument --agents: expected a whole number, got '2.5'"),
    (["demo", "--agents", "1,000"], "argument --agents: expected a whole number, got '1,000'"),
    (["demo", "--duration", "-3"],
     "argument --duration: must be positive (at least 0.5), got '-3'"),
    (["demo", "--duration", "0.2"], "argument --duration: must be >= 0.5, got '0.2'"),
    (["demo", "--duration", "nan"], "argument --duration: expected a finite number"),
    (["demo", "--seed", "x"], "argument --seed: expected a whole number"),
    (["demo", "--tick-ms", "0"], "argument --tick-ms: must be >= 1"),
    (["demo", "--engine", "turbo"], "argument --engine: invalid choice: 'turbo'"),
    (["demo", "--intervals", "1,,2"], "argument --intervals: expected a comma-separated list"),
    (["demo", "--intervals", "1,0.05"],
     "argument --intervals: must be >= 0.1, got '0.05' in '1,0.05'"),
    (["demo", "--intervals", "0"], "argument --intervals: must be positive (at least 0.1), "
                                   "got '0'"),
    # A negative value after a space is the option's value, not an unknown option.
    (["demo", "--intervals", "-1,2"],
     "argument --intervals: must be positive (at least 0.1), got '-1' in '-1,2'"),
    (["demo", "--intervals=-1,2"],
     "argument --intervals: must be positive (at least 0.1), got '-1' in '-1,2'"),
    (["demo", "--intervals", "-0.5"],
     "argument --intervals: must be positive (at least 0.1), got '-0.5'"),
    (["demo", "--plain", "extra"], "unrecognized arguments: extra"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--json", "/nonexistent-folder/x.json"], "argument --json: folder"),
    (["capacity", "--cpu-budget", "0"], "argument --cpu-budget: must be > 0, got '0'"),
    (["capacity", "--cpu-budget", "101"], "argument --cpu-budget: must be <= 100"),
    (["capacity", "--agents", "5"], "argument --agents: must be >= 10, got '5'"),
    (["capacity", "--agents", "100,5"], "argument --agents: must be >= 10, got '5' in '100,5'"),
    (["capacity", "--agents", "100", "--max-agents", "1000"],
     "argument --max-agents: not allowed with argument --agents"),
    (["capacity", "--intervals", "fast"], "argument --intervals: expected a number, got 'fast'"),
    (["capacity", "--history-size", "10000000"],
     "argument --history-size: must be <= 1,000,000, got '10000000'"),
    (["capacity", "--history-size", "0"], "argument --history-size: must be >= 1, got '0'"),
    (["capacity", "--latency-sample", "-1"], "argument --latency-sample: must be >= 0"),
    (["capacity", "--png", "/nonexistent-folder/x.png"], "argument --png: folder"),
    (["capacity", "--quick", "--verbose"], "unrecognized arguments: --verbose"),
    (["bench", "--engines", "fast"], "argument --engines: expected compiled or pure, got 'fast'"),
    (["bench", "--engines", "pure,fast"],
     "argument --engines: expected compiled or pure, got 'fast' in 'pure,fast'"),
    (["bench", "--repeat", "0"], "argument --repeat: must be >= 1"),
    (["bench", "--agents", "1e9"], "argument --agents: must be <= 10,000,000"),
    (["bench", "-x"], "unrecognized arguments: -x"),
])
def test_argument_errors_exit_2_with_the_commands_usage(capsys, argv, message):
    err = _error(capsys, argv)
    command = argv[0]
    # The command's own usage, not the top-level one.
    assert err.startswith(f"usage: moai-flow-fast {command} ")
    assert message in err
    # Each message names the option and says the bad value once.
    said = err.splitlines()[-1]
    for value in re.findall(r"got ('[^']*')", said):
        assert said.count(value) == 1, said
    assert said.startswith(f"moai-flow-fast {command}: error: ")


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["launch"], "invalid choice: 'launch'"),
    (["--bogus", "demo"], "unrecognized arguments: --bogus"),
])
def test_top_level_errors_show_the_top_level_usage(capsys, argv, message):
    err = _error(capsys, argv)
    assert err.startswith("usage: moai-flow-fast [-h]")
    assert message in err


def test_output_paths_are_checked_before_the_run(capsys, tmp_path):
    err = _error(capsys, ["demo", "--json", str(tmp_path)])
    assert f"argument --json: '{tmp_path}' is a folder; give a file name" in err
    err = _error(capsys, ["bench", "--json", str(tmp_path)])
    assert "argument --json:" in err and "is a folder" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):      # root writes anywhere: nothing to refuse
            return
        err = _error(capsys, ["capacity", "--png", str(locked / "x.png")])
        assert "argument --png: cannot write" in err
    finally:
        locked.chmod(0o700)


def test_history_size_limit_is_the_librarys():
    from moai_flow_fast import HeartbeatMonitor, VirtualClock
    from moai_flow_fast.tools._cli import build_parser

    args = build_parser().parse_args(["capacity", "--history-size", "1000000"])
    assert args.history_size == 1_000_000
    HeartbeatMonitor(history_size=1_000_000, clock=VirtualClock()).shutdown()
    with pytest.raises(ValueError, match="history_size must be <= 1000000"):
        HeartbeatMonitor(history_size=1_000_001, clock=VirtualClock())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["capacity", "--history-size", "1000001"])


def test_python_dash_m_runs_the_cli():
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "moai_flow_fast", "demo", "--agents", "-1"],
                          capture_output=True, text=True, env=env, cwd=PKG_ROOT, timeout=60)
    assert done.returncode == 2
    assert "argument --agents: must be >= 1" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "moai_flow_fast", "--version"],
                        capture_output=True, text=True, env=env, cwd=PKG_ROOT, timeout=60)
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
    assert re.search(r"^  callback - deadline +[\d.]+ ms +[\d.]+ ms +[\d.]+ ms$", out, re.M)
    # The report fits 80 columns.
    report = out[out.index("Swarm: "):]
    assert all(len(line) <= 80 for line in report.splitlines()), report
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


@pytest.mark.compiled
def test_bench_side_by_side_shows_the_ratio(capsys):
    import moai_flow_fast.core._engine_c  # noqa: F401  (the compiled engine must be built)

    assert main(["bench", "--agents", "200", "--repeat", "1", "--engines",
                 "compiled,pure,compiled"]) == 0
    out = capsys.readouterr().out
    assert "compiled" in out and "pure" in out and "pure/compiled" in out
    assert out.count("record_heartbeat") == 1          # "compiled" listed twice: timed once
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "[3] per agent whose deadline came up after a newer heartbeat" in out
