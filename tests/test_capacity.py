"""The capacity planner (moai_flow_fast.tools._capacity, _capacity_report): a short run with
valid JSON (and a PNG when matplotlib is installed), the sweep's options, the answer's
arithmetic, and honest answers from counts too small to extrapolate from."""
from __future__ import annotations

import importlib.util
import io
import json
import re

import pytest

from moai_flow_fast.tools._capacity import POINT_KEYS, CapacityConfig, measure_fixed
from moai_flow_fast.tools._capacity_report import _bytes, answers
from moai_flow_fast.tools._cli import main
from moai_flow_fast.tools._screen import Progress

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
TOP_KEYS = {"version", "moai_flow_fast", "engine", "machine", "parameters", "fixed_cpu_per_s",
            "points", "latency", "answers", "elapsed_s"}
ANSWER_KEYS = {"interval_s", "cpu_budget_percent", "kind", "max_agents", "basis_agents",
               "cpu_per_agent", "extrapolated", "note", "text"}


@pytest.mark.compiled
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
    report = out[:out.index("JSON written to")]          # (then paths, as long as they are)
    assert all(len(line) <= 80 for line in report.splitlines()), report
    words = " ".join(out.split())
    assert "At interval 0.5 s with a CPU budget of 1% of a core, one monitor can watch" in words
    assert "extrapolated beyond the largest measured count, from the costs at 1,000" in words
    assert "MiB of memory" in words and " MB " not in words
    # Latency is measured per agent count: one table row each, not repeated per interval.
    assert len([ln for ln in out.splitlines() if ln.endswith(" 30/30")]) == 2

    data = json.loads(js.read_text())
    assert set(data) == TOP_KEYS
    assert data["version"] == 2
    assert 0 < data["fixed_cpu_per_s"] < 0.05
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
        assert ans["kind"] == "estimate"
        assert ans["max_agents"] > 0 and ans["basis_agents"] == 1000

    if not HAVE_MPL:
        pytest.skip("matplotlib is not installed: the PNG assertion is skipped "
                    "(pip install 'moai-flow-fast[plot]')")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_png_without_matplotlib_is_an_argument_error(monkeypatch, capsys, tmp_path):
    from moai_flow_fast.tools import _capacity_report

    monkeypatch.setattr(_capacity_report, "have_matplotlib", lambda: False)
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
    assert ans["kind"] == "estimate"
    assert ans["text"] == ("At interval 1 s with a CPU budget of 1% of a core, one monitor "
                           "can watch 6,100 agents (~5.9 MiB of memory).")

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


def test_memory_is_labelled_in_binary_units():
    # 1 KiB = 1024 B, and the labels say so (the figures were MiB labelled MB before).
    assert _bytes(100) == "100 B"
    assert _bytes(1536) == "1.5 KiB"
    assert _bytes(5 * 2**20) == "5.0 MiB"
    assert _bytes(6153 * 1000.0) == "5.9 MiB"
    assert _bytes(3 * 2**30) == "3.0 GiB"
    assert _bytes(2 * 2**40) == "2.0 TiB"


def test_the_wheels_fixed_cost_is_counted_once():
    # 10,000 agents at 800 ns per heartbeat (one per 0.8 s: 1e-6 s/s each) and 0.0205 s/s of
    # wheel, of which 0.0005 is the fixed cost with no agent: 2e-6 s/s per agent. Share
    # 0.0305 > 1 %. N = (0.01 - 0.0005) / 3e-6 = 3166.7.
    config = CapacityConfig(intervals=[1.0], cpu_budget=1.0)
    [ans] = answers([_pt(10_000, 800.0, 0.0205)], config, fixed=0.0005)
    assert ans["kind"] == "estimate" and ans["basis_agents"] == 10_000
    assert ans["cpu_per_agent"] == pytest.approx(3e-6)
    assert ans["max_agents"] == 3166
    # Spread over the agents (no fixed cost given), 0.01 / 3.05e-6 = 3278: the fixed cost
    # would be counted only 3,278 / 10,000 times.
    [spread] = answers([_pt(10_000, 800.0, 0.0205)], config)
    assert spread["max_agents"] == 3278


def test_too_few_agents_give_a_bound_not_an_extrapolation():
    # 50 agents, as in `capacity --max-agents 50`: 253 ns per heartbeat, wheel 0.085 ms/s of
    # which 0.073 is fixed. The old answer divided the budget by (fixed + agents) / 50 and
    # said "4,900 agents"; the per-agent cost cannot be measured at that size.
    config = CapacityConfig(intervals=[1.0], cpu_budget=1.0)
    tiny = _pt(50, 253.0, 8.5e-5)
    [ans] = answers([tiny], config, fixed=7.3e-5)
    assert ans["kind"] == "at least" and ans["max_agents"] == 50
    assert ans["extrapolated"] is False and ans["basis_agents"] is None
    assert ans["text"] == ("At interval 1 s with a CPU budget of 1% of a core, one monitor "
                           "can watch at least 50 agents (measured).")
    assert "too few to measure the cost per agent" in ans["note"]
    assert "--max-agents" in ans["note"]

    # 2,000 agents, but the fixed cost is 64 % of what was measured: still a bound.
    idle = _pt(2_000, 10.0, 1e-4)                  # share 2.5e-5 + 1e-4 = 1.25e-4
    [ans] = answers([tiny, idle], config, fixed=8e-5)
    assert ans["kind"] == "at least" and ans["max_agents"] == 2_000
    assert "the wheel's fixed cost is 64% of the CPU measured at 2,000 agents" in ans["note"]

    # A measurable larger count is extrapolated from, never the tiny one.
    big = _pt(10_000, 300.0, 0.0005)
    [ans] = answers([tiny, big], config, fixed=7.3e-5)
    assert ans["kind"] == "estimate" and ans["basis_agents"] == 10_000


def test_over_the_budget_at_a_count_too_small_to_measure():
    config = CapacityConfig(intervals=[1.0], cpu_budget=0.01)    # 1e-4 of a core
    tiny = _pt(50, 253.0, 8.5e-5)                                # share 1.008e-4: over
    [ans] = answers([tiny], config, fixed=7e-5)
    assert ans["kind"] == "fewer than" and ans["max_agents"] == 50
    assert ans["text"].endswith("one monitor can watch fewer than 50 agents (measured).")
    [ans] = answers([_pt(20, 250.0, 7.5e-5), tiny], config, fixed=7e-5)
    assert ans["kind"] == "at least" and ans["max_agents"] == 20
    assert "no estimate is made beyond the 20 measured within it" in ans["note"]
    # The fixed cost alone over the budget: no monitor fits.
    [ans] = answers([tiny], CapacityConfig(intervals=[1.0], cpu_budget=0.005), fixed=7e-5)
    assert ans["kind"] == "none" and ans["max_agents"] == 0
    assert "raise --cpu-budget or --tick-ms" in ans["note"]


def test_fixed_cost_is_measured(engine):
    fixed = measure_fixed(CapacityConfig(engine=engine))
    # advance() every 10 ms with nothing due: well under 5 % of a core, and not nothing.
    assert 0 < fixed < 0.05


def test_max_agents_50_is_answered_honestly(capsys):
    assert main(["capacity", "--max-agents", "50", "--intervals", "1", "--latency-sample", "0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())
    assert "one monitor can watch at least 50 agents (measured)." in words
    # No number beyond what was measured.
    assert re.findall(r"can watch (at least |fewer than )?([\d,]+) agents", words) == [
        ("at least ", "50")]
    assert "so no extrapolation is made" in words
    assert "Below 1,000 agents the per-agent figures" in words
    assert "The wheel's fixed cost (advance() every 10 ms with no agent:" in words
    assert all(len(line) <= 80 for line in out.splitlines()), out
