"""Terminal output of the tools: lines fitted to a width, the demo's live dashboard (or plain
lines), and the capacity planner's progress bar."""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["MIN_WIDTH", "Dashboard", "Progress", "fit", "plain_line", "terminal_size"]

# Below this many columns the live dashboard gives way to plain lines: its widest piece of
# text (a progress bar with its figures) no longer fits on one line.
MIN_WIDTH = 40
REPORT_WIDTH = 80

Segment = tuple[str, str]          # (visible text, ANSI SGR code or "")
Size = Callable[[], tuple[int, int]]


def terminal_size() -> tuple[int, int]:
    """(columns, lines) of the terminal (COLUMNS/LINES when set; 80 x 24 when unknown)."""
    size = shutil.get_terminal_size((80, 24))
    return size.columns, size.lines


def fit(segments: Sequence[str | Segment], width: int, *, indent: str = "",
        cont: str = "  ", sep: str = "  ", colour: bool = False) -> list[str]:
    """Lays `segments` out in order on lines of at most `width` visible columns.

    A segment that does not fit on the current line moves to the next one (indented by
    `cont`); one wider than a whole line is word-wrapped. Nothing is cut inside a word, so
    a number is always shown in full. A segment ending with ":" (a label) stays on the
    line of the segment after it. With `colour`, each segment's SGR code is applied.
    """
    items: list[Segment] = [(s, "") if isinstance(s, str) else s for s in segments]
    units: list[list[Segment]] = []
    i = 0
    while i < len(items):
        take = 2 if items[i][0].endswith(":") and i + 1 < len(items) else 1
        units.append(items[i:i + take])
        i += take

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text

    # A line broken after a segment ends with the separator's mark ("," of ", "), which
    # must fit too.
    mark = sep.rstrip()
    lines: list[str] = []
    cur, cur_len = "", 0
    n = -1
    while n + 1 < len(units):
        n += 1
        unit = units[n]
        size = sum(len(t) for t, _ in unit) + len(unit) - 1
        tail = len(mark) if n + 1 < len(units) else 0
        body = " ".join(paint(t, c) for t, c in unit)
        if cur_len and cur_len + len(sep) + size + tail <= width:
            cur, cur_len = cur + sep + body, cur_len + len(sep) + size
            continue
        lead = cont if lines or cur_len else indent
        if len(unit) == 2 and len(lead) + size + tail > width:
            # A label and its value too wide for a line together: laid out apart.
            units[n:n + 1] = [unit[:1], unit[1:]]
            n -= 1
            continue
        if cur_len:
            lines.append(cur + mark)
        if len(lead) + size + tail <= width:
            cur, cur_len = lead + body, len(lead) + size
            continue
        # Wider than a whole line: word-wrap it; what follows may share its last line.
        code = unit[-1][1]
        pieces = textwrap.wrap(" ".join(t for t, _ in unit), max(1, width - len(cont) - tail),
                               break_long_words=False, break_on_hyphens=False)
        for piece in pieces[:-1]:
            lines.append(lead + paint(piece, code))
            lead = cont
        cur, cur_len = lead + paint(pieces[-1], code), len(lead) + len(pieces[-1])
    if cur_len:
        lines.append(cur)
    return lines


# -- the demo's dashboard --------------------------------------------------------------------

_STATE_COLOURS = {"healthy": "32", "degraded": "33", "critical": "35", "failed": "31"}
STATES = ("healthy", "degraded", "critical", "failed")


class Dashboard:
    """A live block of lines rewritten in place (ANSI) that fits the terminal's width, or
    one plain line per update.

    The block is redrawn from its first line each time, and the lines a taller previous
    block left are blanked, so a block that changes height leaves nothing behind. When the
    terminal is narrower than `MIN_WIDTH` or too short for the block, the dashboard turns
    into plain lines (wrapped to the width) for the rest of the run.
    """

    def __init__(self, stream: TextIO, plain: bool, header: str, *,
                 size: Size = terminal_size) -> None:
        self.stream = stream
        self.plain = plain
        self.header = header
        self.size = size
        self.colour = not plain and not os.environ.get("NO_COLOR")
        self.drawn = 0          # lines of the live block on screen, to move back over
        self.wrap = False       # plain lines wrapped to the terminal (a degraded dashboard)

    def start(self, status: str) -> None:
        """Prints the header and a status line ("registering..."), which the live block
        replaces; in plain mode they stay."""
        width, _ = self.size()
        lines = [f"{self.header}; {status}"] if self.plain else fit(
            [self.header + ";", status], max(width, 20))
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        if not self.plain and width >= MIN_WIDTH:
            self.drawn = len(lines)

    def update(self, snap: dict[str, Any]) -> None:
        if not self.plain:
            width, rows = self.size()
            lines = self.render(snap, width) if width >= MIN_WIDTH else []
            if lines and len(lines) < rows:
                # Back to the block's first line, each line cleared as it is rewritten, and
                # what is left of a taller previous block blanked. (Not "erase below": tmux
                # moves a screen erased from the top into its history, a pile of frames.)
                out = [f"\x1b[{self.drawn}F"] if self.drawn else []
                out += [f"\x1b[2K{line}\n" for line in lines]
                extra = self.drawn - len(lines)
                if extra > 0:
                    out += ["\x1b[2K\n" * extra, f"\x1b[{extra}F"]
                self.stream.write("".join(out))
                self.stream.flush()
                self.drawn = len(lines)
                return
            # Too narrow or too short to redraw in place: plain lines from now on.
            self.plain, self.wrap, self.drawn = True, True, 0
        text = plain_line(snap)
        if self.wrap:
            width, _ = self.size()
            text = "\n".join(textwrap.wrap(text, max(width, 20), subsequent_indent="  ",
                                           break_long_words=False, break_on_hyphens=False))
        self.stream.write(text + "\n")
        self.stream.flush()

    def render(self, snap: dict[str, Any], width: int = REPORT_WIDTH) -> list[str]:
        """The live block's lines, each at most `width` columns (at least MIN_WIDTH)."""
        width = max(width, MIN_WIDTH)
        h, a = snap["health"], snap["alerts"]
        duration = snap["duration"]
        shown = min(snap["elapsed"], duration)
        figures = f"{shown:.1f} / {duration:g} s"
        bar_width = max(10, min(30, width - len(figures) - 6))
        done = min(1.0, snap["elapsed"] / duration) if duration else 1.0
        filled = round(done * bar_width)
        bar = "[" + "#" * filled + "." * (bar_width - filled) + "]"
        # Counts padded to the width of the agent count, so columns stay put between frames.
        pad = len(f"{snap['agents']:,}")
        states: list[str | Segment] = [f"agents {snap['agents']:,}:"]
        states += [(f"{k} {h[k]:>{pad},}", _STATE_COLOURS[k]) for k in STATES]
        lat = snap["recent_latency_ms"]
        recent = snap["recent_detections"]
        latency: list[str | Segment] = [
            f"latency of the latest {recent:,} detection{'s' if recent != 1 else ''}:"]
        latency += ([f"p50 {lat[0]:.1f} ms", f"p99 {lat[1]:.1f} ms", f"max {lat[2]:.1f} ms"]
                    if lat else ["none since the last update"])
        inj, so_far = snap["injected"], snap["injected_so_far"]
        progress: list[str | Segment] = [bar, figures]
        if snap["elapsed"] > duration:
            progress.append("grace: heartbeats go on, crossings no longer required")
        groups: list[list[str | Segment]] = [
            progress,
            states,
            [f"heartbeats/s {snap['hb_per_s']:,.0f}", f"total {snap['heartbeats']:,}"],
            ["detections:", f"degraded {a['degraded']:,}", f"critical {a['critical']:,}",
             f"failed {a['failed']:,}", f"recoveries {snap['recoveries']:,}"],
            latency,
            ["injected so far:", f"crashes {so_far['crashes']:,}/{inj['crashes']:,}",
             f"stalls {so_far['stalls']:,}/{inj['stalls']:,}",
             f"slow starters {so_far['slow starters']:,}/{inj['slow starters']:,}",
             f"flaps {so_far['flaps']:,} (by {inj['flapping']:,} agents)"],
        ]
        lines = fit([(self.header, "1")], width, colour=self.colour)
        for segments in groups:
            lines += fit(segments, width, indent="  ", cont="    ", colour=self.colour)
        return lines


def plain_line(snap: dict[str, Any]) -> str:
    """One line of figures (for a log, or a terminal too narrow for the dashboard)."""
    h, a, lat = snap["health"], snap["alerts"], snap["recent_latency_ms"]
    lat_text = ("p50={:.1f} p99={:.1f} max={:.1f}".format(*lat) if lat else "p50=- p99=- max=-")
    return (f"[{snap['elapsed']:6.1f}s] healthy={h['healthy']} degraded={h['degraded']} "
            f"critical={h['critical']} failed={h['failed']} hb/s={snap['hb_per_s']:.0f} "
            f"detections={a['degraded'] + a['critical'] + a['failed']} "
            f"recoveries={snap['recoveries']} latency_ms {lat_text}")


# -- the capacity planner's progress bar -------------------------------------------------------

class Progress:
    """A progress bar on stderr, shown only once a sweep has run for `after` seconds.
    On a terminal it redraws one line, fitted to the width; otherwise it prints a line
    every 5 seconds."""

    def __init__(self, stream: TextIO | None, *, enabled: bool = True, after: float = 2.0,
                 size: Size = terminal_size) -> None:
        self.stream = stream
        self.enabled = enabled and stream is not None
        self.after = after
        self.size = size
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.total = 1.0
        self.done = 0.0
        self.label = ""
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.shown = False

    def start(self, total: float) -> None:
        self.total, self.done, self.t0 = max(total, 1.0), 0.0, time.perf_counter()

    def step(self, units: float, label: str | None = None) -> None:
        self.done += units
        if label is not None:
            self.label = label
        self._draw()

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or self.stream is None:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if elapsed < self.after and not force:
            return
        if not force and now - self.last_draw < (0.2 if self.tty else 5.0):
            return
        self.last_draw = now
        frac = min(1.0, self.done / self.total)
        eta = elapsed * (1 - frac) / frac if frac > 0.01 else None
        eta_text = f"ETA {eta:4.0f} s" if eta is not None else "ETA    ? s"
        if self.tty:
            width = max(self.size()[0] - 1, 20)     # the last column would wrap the line
            bar_width = max(5, min(28, width - 30))
            bar = "#" * round(frac * bar_width) + "." * (bar_width - round(frac * bar_width))
            line = f"capacity [{bar}] {frac * 100:3.0f}%  {eta_text}  {self.label}"
            if len(line) > width:
                line = line[:width - 3] + "..."
            self.stream.write(f"\r\x1b[2K{line}")
        else:
            self.stream.write(f"capacity: {frac * 100:3.0f}% ({eta_text}) {self.label}\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty and self.stream is not None:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
