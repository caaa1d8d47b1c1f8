"""The capacity planner (moai_flow_fast.tools._capacity): a short run with valid JSON (and a PNG
when matplotlib is installed), the sweep's options and the answer's arithmetic."""
from __future__ import annotations

import importlib.util
import io
import json

import pytest

from moai_flow_fast.tools._capacity import POINT_KEYS, CapacityConfig, Progress, answers
from moai_flow_fast.tools._cli import main

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
TOP_KEYS = {"version", "moai_flow_fast", "engine", "machine", "parameters", "points", "latency",
            "answers", "elapsed_s"}
ANSWER_KEYS = {"interval_s", "cpu_budget_percent", "max_agents", "basis_agents",
               "cpu_per_agent", "extrapolated", "note", "text"}


def test_quick_capacity_run_writes_json_and_png(tmp_path, capsys):
    import moai_flow_fast.core._engine_c  # noqa: F401  (the default sweep uses the compiled engine)

    js, png = tmp_path / "cap.json", tmp_path / "cap.png"
    argv = ["capacity", "--quick", "--engine", "compiled", "--agents", "100,1000",
            "--intervals", "0.5,1",
            "--latency-sample", "10", "--json", str(js)]
    if HAVE_MPL:
        argv += ["--png", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ns/hb" in out and "B/agent" in out
    assert "At interval 0.5 s with a CPU budget of 1% of a core, one monitor can watch" in out
    assert "extrapolated beyond the largest measured count, from the costs at 1,000" in out

    data = json.loads(js.read_text())
    assert set(data) == TOP_KEYS
    assert data["engine"] == "compiled"
    assert data["parameters"]["agents"] == [100, 1000]
    assert data["parameters"]["intervals"] == [0.5, 1.0]
    assert len(data["points"]) == 4
    for point in data["points"]:
        assert set(point) == set(POINT_KEYS)
        assert point["heartbeat_cost_ns"] > 0
        assert point["wheel_cpu_per_s"] > 0
        assert point["memory_bytes_per_agent"] > 0
        assert 0 < point["cpu_share"] < 1
        assert point["transitions"] == 0          # healthy agents never cross
        assert point["heartbeats_measured"] >= 50_000
        assert point["heartbeat_period_s"] == pytest.approx(0.8 * point["interval_s"])
        lat = point["latency_ms"]
        assert lat["samples"] == lat["expected"] == 30   # 10 probes x 3 crossings
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert [lat["agents"] for lat in data["latency"]] == [100, 1000]
    assert [a["interval_s"] for a in data["answers"]] == [0.5, 1.0]
    for ans in data["answers"]:
        assert set(ans) == ANSWER_KEYS
        assert ans["max_agents"] > 0 and ans["basis_agents"] == 1000

    if not HAVE_MPL:
        pytest.skip("matplotlib is not installed: the PNG assertion is skipped "
                    "(pip install 'moai-flow-fast[plot]')")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_png_without_matplotlib_is_an_argument_error(monkeypatch, capsys, tmp_path):
    from moai_flow_fast.tools import _capacity

    monkeypatch.setattr(_capacity, "have_matplotlib", lambda: False)
    with pytest.raises(SystemExit) as exc:
        main(["capacity", "--quick", "--png", str(tmp_path / "x.png")])
    assert exc.value.code == 2
    assert "argument --png: matplotlib is not installed" in capsys.readouterr().err


def test_sweep_options():
    assert CapacityConfig.from_args().agents == [1_000, 10_000, 100_000, 1_000_000]
    assert CapacityConfig.from_args().intervals == [1.0, 5.0, 30.0]
    quick = CapacityConfig.from_args(quick=True)
    assert quick.agents == [200, 2_000] and quick.intervals == [1.0]
    assert quick.latency_sample == 50
    assert CapacityConfig.from_args(max_agents=100_000).agents == [1_000, 10_000, 100_000]
    assert CapacityConfig.from_args(max_agents=250_000).agents == [1_000, 10_000, 100_000,
                                                                  250_000]
    assert CapacityConfig.from_args(max_agents=500).agents == [100, 500]
    assert CapacityConfig.from_args(agents=[30, 10, 30]).agents == [10, 30]


def _pt(agents, hb_ns, wheel_s, share=None):
    period = 0.8
    point = {"agents": agents, "interval_s": 1.0, "heartbeat_period_s": period,
             "heartbeat_cost_ns": hb_ns, "wheel_cpu_per_s": wheel_s,
             "memory_bytes_per_agent": 1000.0}
    point["cpu_share"] = (agents / period * hb_ns / 1e9 + wheel_s) if share is None else share
    return point


def test_answer_arithmetic_by_hand():
    config = CapacityConfig(intervals=[1.0], cpu_budget=1.0)
    # Per agent: 500 ns per heartbeat, one heartbeat per 0.8 s -> 625 ns/s; wheel 0.001 s/s
    # over 1000 agents -> 1000 ns/s. Total 1625 ns of CPU per second per agent.
    # 1 % of a core = 0.01 s/s -> 0.01 / 1.625e-6 = 6153.8 -> 6153 agents.
    small = _pt(100, 400.0, 0.00005)          # share 0.0001: within budget
    point = _pt(1000, 500.0, 0.001)           # share 0.001625: within budget
    [ans] = answers([point, small], config)   # all within: extrapolate from the largest
    assert ans["basis_agents"] == 1000
    assert ans["cpu_per_agent"] == pytest.approx(1.625e-6)
    assert ans["max_agents"] == 6153
    assert ans["extrapolated"] is True
    assert ans["note"].startswith("extrapolated beyond the largest measured count")
    assert ans["text"] == ("At interval 1 s with a CPU budget of 1% of a core, one monitor "
                           "can watch 6,100 agents (~5.9 MB of memory).")

    # 10,000 agents at 800 ns/hb and 0.02 s/s of wheel: share 0.03 > 1 %. Per agent
    # 1e-6 + 2e-6 = 3e-6 -> 0.01 / 3e-6 = 3333 (>= the 1000 measured within budget).
    big = _pt(10_000, 800.0, 0.02)
    huge = _pt(100_000, 900.0, 0.5)           # also over; not the basis
    [ans] = answers([small, point, big, huge], config)
    assert ans["basis_agents"] == 10_000
    assert ans["max_agents"] == 3333
    assert ans["extrapolated"] is False
    assert ans["note"] == ("between the measured 1,000 and 10,000 agents, with the costs "
                           "measured at 10,000")
    # Never below a count measured within the budget.
    [floor] = answers([point, _pt(2000, 50_000.0, 0.5)], config)
    assert floor["max_agents"] == 1000
    # Over budget even at the smallest count: extrapolated below the range.
    [below] = answers([big], config)
    assert below["max_agents"] == 3333 and below["extrapolated"] is True
    assert below["note"].startswith("extrapolated below the smallest measured count")


def test_progress_bar_only_after_a_few_seconds():
    quiet = io.StringIO()
    p = Progress(quiet, after=60.0)
    p.start(10)
    p.step(5, "half")
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    p = Progress(loud, after=0.0)
    p.start(10)
    p.step(5, "half way")
    assert loud.getvalue().startswith("capacity:  50% (")
    assert "half way" in loud.getvalue()
    off = io.StringIO()
    p = Progress(off, enabled=False, after=0.0)
    p.start(1)
    p.step(1)
    assert off.getvalue() == ""
