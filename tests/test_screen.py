"""Terminal output of the tools (moai_flow_fast.tools._screen): the demo's dashboard fits the
terminal's width with every count in full, redraws in place, and degrades to plain lines."""
from __future__ import annotations

import io
import re

import pytest

from moai_flow_fast.tools._screen import MIN_WIDTH, Dashboard, Progress, fit, plain_line

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEADER = "moai-flow-fast demo: 1,000,000 agents, intervals 0.5,1,2,3,4,5,10 s, real time"


def _snap(elapsed=21.0):
    """A big swarm's numbers: every count is distinct, so each can be looked for."""
    return {
        "elapsed": elapsed, "duration": 20.0, "agents": 1_000_000,
        "health": {"healthy": 987_654, "degraded": 12_345, "critical": 1_011, "failed": 990},
        "hb_per_s": 1_234_567.0, "heartbeats": 98_765_432,
        "alerts": {"degraded": 81_701, "critical": 37_402, "failed": 26_603},
        "recoveries": 62_704, "recent_latency_ms": [5.9, 13.7, 43.2], "recent_detections": 1_457,
        "injected_so_far": {"crashes": 19_998, "stalls": 19_997, "slow starters": 9_996,
                            "flaps": 123_456},
        "injected": {"crashes": 20_000, "stalls": 20_001, "slow starters": 10_002,
                     "flapping": 10_003},
    }


COUNTS = ["987,654", "12,345", "1,011", "990", "1,234,567", "98,765,432", "81,701", "37,402",
          "26,603", "62,704", "1,457", "19,998/20,000", "19,997/20,001", "9,996/10,002",
          "123,456", "10,003", "5.9 ms", "13.7 ms", "43.2 ms", "1,000,000"]


def _visible(lines):
    return [ANSI.sub("", line) for line in lines]


@pytest.mark.parametrize("width", [120, 80, 60, MIN_WIDTH])
@pytest.mark.parametrize("colour", [False, True])
def test_frames_fit_the_width_with_every_count_in_full(width, colour):
    board = Dashboard(io.StringIO(), False, HEADER, size=lambda: (width, 50))
    board.colour = colour
    lines = _visible(board.render(_snap(), width))
    assert all(len(line) <= width for line in lines), [ln for ln in lines if len(ln) > width]
    text = "\n".join(lines)
    for count in COUNTS:
        # A count is whole and on one line: never cut by the width.
        assert re.search(rf"(?<![\d,]){re.escape(count)}(?![\d,])", text), count
    assert "grace" in text          # past the duration: the grace period is said
    if width >= 80:
        # The health counts of an 80-column frame share one line with their labels.
        assert any("healthy" in line and "critical" in line for line in lines)


def test_counts_line_up_between_frames():
    board = Dashboard(io.StringIO(), False, "demo", size=lambda: (80, 24))
    board.colour = False
    a, b = _snap(), _snap(5.0)
    b["health"] = {"healthy": 1_000_000, "degraded": 0, "critical": 0, "failed": 0}
    line_a = next(x for x in board.render(a, 80) if "healthy" in x)
    line_b = next(x for x in board.render(b, 80) if "healthy" in x)
    assert [m.start() for m in re.finditer(r"[a-z]+ +\d", line_a)] == \
        [m.start() for m in re.finditer(r"[a-z]+ +\d", line_b)]


def test_live_updates_redraw_in_place():
    out = io.StringIO()
    board = Dashboard(out, False, HEADER, size=lambda: (80, 24))
    board.start("registering...")
    first = out.getvalue()
    assert all(len(line) <= 80 for line in first.splitlines())
    drawn = board.drawn
    assert drawn == len(first.splitlines()) >= 1
    board.update(_snap(5.0))
    tall = board.drawn
    frame = out.getvalue()[len(first):]
    # Back over the lines drawn before, each rewritten line cleared first.
    assert frame.startswith(f"\x1b[{drawn}F")
    assert "\x1b[J" not in frame     # tmux would move a screen erased from the top to history
    assert all(len(line) <= 80 for line in _visible(frame.splitlines()))
    board.update(_snap(21.0))        # the grace note makes this frame one line taller
    assert board.drawn == tall + 1
    # A shorter frame again: the leftover line is blanked and the cursor goes back up.
    mark = len(out.getvalue())
    board.update(_snap(6.0))
    again = out.getvalue()[mark:]
    assert again.startswith(f"\x1b[{tall + 1}F")
    assert again.endswith("\x1b[2K\n\x1b[1F")
    assert board.drawn == tall


@pytest.mark.parametrize("size", [(MIN_WIDTH - 1, 24), (30, 24), (80, 6)])
def test_too_narrow_or_too_short_degrades_to_plain_lines(size):
    out = io.StringIO()
    board = Dashboard(out, False, HEADER, size=lambda: size)
    board.start("registering...")
    board.update(_snap(5.0))
    board.update(_snap(6.0))
    assert board.plain
    text = out.getvalue()
    after = text[text.index("[   5.0s]"):]
    assert "\x1b" not in after
    assert all(len(line) <= max(size[0], 20) for line in after.splitlines())
    joined = " ".join(after.split())
    assert "healthy=987654 degraded=12345 critical=1011 failed=990" in joined


def test_plain_mode_prints_one_unwrapped_line_per_update():
    out = io.StringIO()
    board = Dashboard(out, True, HEADER, size=lambda: (30, 24))
    board.start("registering...")
    board.update(_snap(5.0))
    lines = out.getvalue().splitlines()
    assert lines == [f"{HEADER}; registering...", plain_line(_snap(5.0))]


def test_fit_keeps_labels_numbers_and_separators():
    lines = fit(["Swarm: 10,000 agents", "intervals 1,2,3,4,5 s", "threshold 3",
                 "20 s (+1 s grace)", "seed 1", "engine compiled"], 60, sep=", ")
    assert lines == ["Swarm: 10,000 agents, intervals 1,2,3,4,5 s, threshold 3,",
                     "  20 s (+1 s grace), seed 1, engine compiled"]
    # A label stays with its value when both fit on a line.
    lines = fit(["x" * 30, "detections:", "degraded 81,701"], 50, indent="  ", cont="    ")
    assert lines == ["  " + "x" * 30, "    detections: degraded 81,701"]
    # Too wide together: apart, the value whole.
    lines = fit(["label " * 8 + "end:", "p50 5.9 ms"], 40)
    assert all(len(line) <= 40 for line in lines)
    assert lines[-1].endswith("p50 5.9 ms")


def test_progress_bar_fits_a_narrow_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress(out, after=0.0, size=lambda: (50, 24))
    p.start(10)
    p.step(5, "1,000,000 agents, interval 30 s: heartbeats, a long label")
    line = out.getvalue().split("\r")[-1]
    assert len(ANSI.sub("", line)) <= 49
    assert "50%" in line
