"""Benchmark helpers: monitors at a size, per-call figures, targets and compiled/pure ratios.

Every benchmark records (figure, engine, value, unit, target); the session ends with one
table of them, the ratio of the compiled and pure figures measured in the same run, and a
PASS/FAIL per target. A target that is missed fails its benchmark.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

import moai_flow_fast.core._engine_c  # noqa: F401  (a missing build fails loudly)

_RESULTS: list[tuple[str, str, float, str, float | None, bool, bool]] = []


@pytest.fixture(params=["compiled", "pure"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def report():
    """report(figure, engine, value, unit, target=None, lower_is_better=True)."""
    def _report(figure: str, engine: str, value: float, unit: str,
                target: float | None = None, lower_is_better: bool = True) -> None:
        ok = target is None or (value <= target if lower_is_better else value >= target)
        _RESULTS.append((figure, engine, value, unit, target, lower_is_better, ok))
        assert ok, f"{figure} [{engine}]: {value:.4g} {unit} misses the target {target} {unit}"
    return _report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    by_fig: dict[str, dict[str, tuple[float, str, float | None, bool, bool]]] = defaultdict(dict)
    for figure, engine, value, unit, target, lower, ok in _RESULTS:
        by_fig[figure][engine] = (value, unit, target, lower, ok)
    tr = terminalreporter
    tr.section("moai-flow-fast figures (compiled vs pure, same run)")
    tr.write_line(f"{'figure':58} {'compiled':>14} {'pure':>14} {'speedup':>8}  target")
    for figure, engines in by_fig.items():
        cells = []
        for name in ("compiled", "pure"):
            v = engines.get(name)
            cells.append(f"{v[0]:>10.4g} {v[1]:<3}" if v else f"{'-':>14}")
        c, p = engines.get("compiled"), engines.get("pure")
        ratio = ""
        if c and p and c[0] > 0 and p[0] > 0:
            ratio = f"{(p[0] / c[0]) if c[3] else (c[0] / p[0]):>7.1f}x"
        target = ""
        if c and c[2] is not None:
            target = f"{'<=' if c[3] else '>='} {c[2]:g} {c[1]} {'PASS' if c[4] else 'FAIL'}"
        tr.write_line(f"{figure:58} {cells[0]} {cells[1]} {ratio}  {target}")
