"""The `moai-flow-fast` command (also `python -m moai_flow_fast`): demo, capacity, bench."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["main"]

PROG = "moai-flow-fast"


# -- argument types: each raises ArgumentTypeError, which argparse turns into exit code 2 -----

def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        n = int(value)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        if maximum is not None and n > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:,}, got {text!r}")
        return n

    parse.__name__ = "integer"
    return parse


def _float_range(low: float, high: float | None = None, *, low_open: bool = False
                 ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if low_open else '>='} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _list_of(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [p.strip() for p in text.split(",")]
        if not parts or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        values = []
        for p in parts:
            try:
                values.append(item(p))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{p!r} in {text!r}: {exc}") from None
        return values

    parse.__name__ = "list"
    return parse


_ENGINES = ("auto", "compiled", "pure")


def _check_engine(parser: argparse.ArgumentParser, engine: str) -> None:
    if engine == "compiled":
        try:
            importlib.import_module("moai_flow_fast.core._engine_c")
        except ImportError as exc:
            parser.error(f"argument --engine: the compiled engine is not built ({exc}); "
                         "build it with 'python setup.py build_ext --inplace' or use "
                         "--engine pure")


def _writable(parser: argparse.ArgumentParser, option: str, path: str | None) -> None:
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"argument {option}: folder {folder!r} does not exist")


# -- the parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Heartbeat failure detection for very large agent swarms: a live demo, "
                    "a capacity planner and micro-benchmarks.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo", help="a simulated swarm against a real monitor, in real time, with a truth check",
        description="Runs a simulated swarm against a real monitor in real time (system clock, "
                    "background threads). Agents heartbeat on their own schedules with jitter; "
                    "the simulator injects crashes, stalls that recover, slow starters and "
                    "flapping agents, and knows the truth. At the end a report compares the "
                    "truth with the monitor's alerts. Exit code 1 when a failure was missed or "
                    "a false alarm raised.")
    demo.add_argument("--agents", type=_int_at_least(1, 1_000_000), default=10_000,
                      help="number of agents (default 10000)")
    demo.add_argument("--duration", type=_float_range(0.5, 3600.0), default=20.0,
                      help="seconds of swarm whose crossings must all be detected (default 20)")
    demo.add_argument("--seed", type=_int_at_least(0), default=1,
                      help="random seed of the swarm's plan (default 1)")
    demo.add_argument("--intervals", type=_list_of(_float_range(0.1, 3600.0)),
                      default=[1.0, 2.0, 3.0, 4.0, 5.0], metavar="SECONDS,...",
                      help="heartbeat intervals to mix, in seconds (default 1,2,3,4,5)")
    demo.add_argument("--threshold", type=_int_at_least(1, 1000), default=3,
                      help="failure_threshold of every agent (default 3)")
    demo.add_argument("--tick-ms", type=_int_at_least(1, 60_000), default=10,
                      help="timer-wheel tick in ms (default 10)")
    demo.add_argument("--engine", choices=_ENGINES, default="auto",
                      help="engine (default auto: compiled when built)")
    demo.add_argument("--plain", action="store_true",
                      help="print a plain line once a second instead of the live dashboard "
                           "(automatic when stdout is not a terminal)")
    demo.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    demo.set_defaults(run=_run_demo, parser=demo)

    cap = sub.add_parser(
        "capacity", help="how many agents one monitor can watch, for how much CPU and memory",
        description="Sweeps agent counts and heartbeat intervals. Virtual time measures the cost "
                    "per heartbeat, the wheel's CPU per simulated second and memory per agent; "
                    "real time (a real background thread) measures detection latency on a sample "
                    "of agents. Answers 'at interval X with a CPU budget of Y%% of a core, one "
                    "monitor can watch N agents', extrapolating from the measured costs.")
    cap.add_argument("--agents", type=_list_of(_int_at_least(10, 10_000_000)), default=None,
                     metavar="N,...", help="agent counts to sweep (default 1000,10000,100000,"
                                           "1000000; --quick: 200,2000)")
    cap.add_argument("--max-agents", type=_int_at_least(10, 10_000_000), default=None,
                     metavar="N", help="sweep powers of ten from 1000 (or 100) up to N")
    cap.add_argument("--intervals", type=_list_of(_float_range(0.1, 3600.0)), default=None,
                     metavar="SECONDS,...",
                     help="heartbeat intervals in seconds (default 1,5,30; --quick: 1)")
    cap.add_argument("--cpu-budget", type=_float_range(0.0, 100.0, low_open=True), default=1.0,
                     metavar="PERCENT", help="CPU budget, in %% of one core (default 1)")
    cap.add_argument("--threshold", type=_int_at_least(1, 1000), default=3,
                     help="failure_threshold (default 3)")
    cap.add_argument("--history-size", type=_int_at_least(1, 100_000), default=100,
                     help="history_size (default 100, as Part A)")
    cap.add_argument("--tick-ms", type=_int_at_least(1, 60_000), default=10,
                     help="timer-wheel tick in ms (default 10)")
    cap.add_argument("--engine", choices=_ENGINES, default="auto", help="engine (default auto)")
    cap.add_argument("--latency-sample", type=_int_at_least(0, 100_000), default=None,
                     metavar="N", help="silent agents timed in real time per agent count "
                                       "(default 200; --quick: 50; 0 = skip)")
    cap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    cap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    cap.add_argument("--png", metavar="PATH",
                     help="plot cost and memory against agent count (needs matplotlib: "
                          "pip install 'moai-flow-fast[plot]')")
    cap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    cap.set_defaults(run=_run_capacity, parser=cap)

    bench = sub.add_parser(
        "bench", help="micro-benchmarks of the hot operations, compiled and pure side by side",
        description="Times every hot operation (record_heartbeat, check_agent_health, "
                    "get_unhealthy_agents, get_monitoring_stats, start/stop, advance) at one "
                    "agent count, per call from Python, best of --repeat runs, on the compiled "
                    "and the pure engine, with the ratio.")
    bench.add_argument("--agents", type=_int_at_least(10, 10_000_000), default=100_000,
                       help="agents registered (default 100000)")
    bench.add_argument("--engines", type=_list_of(_engine_name), default=None,
                       metavar="NAME,...", help="engines to time (default compiled,pure; "
                                                "pure only when the extension is not built)")
    bench.add_argument("--repeat", type=_int_at_least(1, 100), default=3,
                       help="runs per operation; the best is kept (default 3)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(run=_run_bench, parser=bench)
    return parser


def _engine_name(text: str) -> str:
    if text not in ("compiled", "pure"):
        raise argparse.ArgumentTypeError(f"expected compiled or pure, got {text!r}")
    return text


def _version() -> str:
    from .. import COMPILED, __version__

    return f"{PROG} {__version__} ({'compiled' if COMPILED else 'pure'} engine)"


# -- demo ------------------------------------------------------------------------------------

_STATE_COLOURS = {"healthy": "32", "degraded": "33", "critical": "35", "failed": "31"}


class Dashboard:
    """A live block of lines rewritten in place (ANSI), or one plain line per second."""

    def __init__(self, stream: TextIO, plain: bool, header: str) -> None:
        self.stream = stream
        self.plain = plain
        self.header = header
        self.colour = not plain and not os.environ.get("NO_COLOR")
        self.drawn = 0

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def update(self, snap: dict[str, Any]) -> None:
        if self.plain:
            self.stream.write(plain_line(snap) + "\n")
            self.stream.flush()
            return
        lines = self.render(snap)
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")
        out.extend("\x1b[2K" + line + "\n" for line in lines)
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(lines)

    def render(self, snap: dict[str, Any]) -> list[str]:
        h = snap["health"]
        width = 30
        done = min(1.0, snap["elapsed"] / snap["duration"]) if snap["duration"] else 1.0
        bar = "#" * round(done * width) + "." * (width - round(done * width))
        states = "  ".join(self._c(_STATE_COLOURS[k], f"{k} {h[k]:>8,}")
                           for k in ("healthy", "degraded", "critical", "failed"))
        a = snap["alerts"]
        lat = snap["recent_latency_ms"]
        lat_text = ("p50 {:.1f} ms  p99 {:.1f} ms  max {:.1f} ms".format(*lat) if lat
                    else "no detection")
        inj, so_far = snap["injected"], snap["injected_so_far"]
        return [
            self._c("1", self.header),
            f"  [{bar}] {min(snap['elapsed'], snap['duration']):5.1f} / {snap['duration']:g} s"
            + ("  (grace: heartbeats go on, crossings no longer required)"
               if snap["elapsed"] > snap["duration"] else ""),
            f"  agents {snap['agents']:,}:  {states}",
            f"  heartbeats/s {snap['hb_per_s']:>9,.0f}    total {snap['heartbeats']:,}",
            f"  detections   degraded {a['degraded']:,}  critical {a['critical']:,}  "
            f"failed {a['failed']:,}  recoveries {snap['recoveries']:,}",
            f"  latency of the latest detections (callback - deadline): {lat_text}  "
            f"({snap['recent_detections']:,} detections)",
            f"  injected so far: crashes {so_far['crashes']}/{inj['crashes']}  stalls "
            f"{so_far['stalls']}/{inj['stalls']}  slow starters started "
            f"{so_far['slow starters']}/{inj['slow starters']}  flaps {so_far['flaps']:,} "
            f"(by {inj['flapping']} agents)",
        ]


def plain_line(snap: dict[str, Any]) -> str:
    h, a, lat = snap["health"], snap["alerts"], snap["recent_latency_ms"]
    lat_text = ("p50={:.1f} p99={:.1f} max={:.1f}".format(*lat) if lat else "p50=- p99=- max=-")
    return (f"[{snap['elapsed']:6.1f}s] healthy={h['healthy']} degraded={h['degraded']} "
            f"critical={h['critical']} failed={h['failed']} hb/s={snap['hb_per_s']:.0f} "
            f"detections={a['degraded'] + a['critical'] + a['failed']} "
            f"recoveries={snap['recoveries']} latency_ms {lat_text}")


def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._sim import Swarm, SwarmConfig

    _check_engine(args.parser, args.engine)
    _writable(args.parser, "--json", args.json)
    config = SwarmConfig(agents=args.agents, duration=args.duration, seed=args.seed,
                         intervals=tuple(args.intervals), threshold=args.threshold,
                         tick_ms=args.tick_ms, engine=args.engine)
    plain = args.plain or not out.isatty()
    swarm = Swarm(config)
    header = (f"{PROG} demo: {config.agents:,} agents, intervals "
              f"{','.join(f'{i:g}' for i in config.intervals)} s, real time")
    out.write(f"{header}; registering...\n")
    out.flush()
    board = Dashboard(out, plain, header)
    board.drawn = 0 if plain else 1      # the live block replaces the "registering" line
    result = swarm.run(board.update, refresh=1.0 if plain else 0.5)
    out.write("\n" + "\n".join(result.format()) + "\n")
    out.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)
    return 0 if result.passed else 1


# -- capacity and bench ------------------------------------------------------------------------

def _run_capacity(args: argparse.Namespace, out: TextIO) -> int:
    from . import _capacity

    parser = args.parser
    _check_engine(parser, args.engine)
    _writable(parser, "--json", args.json)
    _writable(parser, "--png", args.png)
    if args.agents is not None and args.max_agents is not None:
        parser.error("argument --max-agents: not allowed with argument --agents")
    if args.png is not None and not _capacity.have_matplotlib():
        parser.error("argument --png: matplotlib is not installed "
                     "(pip install 'moai-flow-fast[plot]')")
    config = _capacity.CapacityConfig.from_args(
        agents=args.agents, max_agents=args.max_agents, intervals=args.intervals,
        cpu_budget=args.cpu_budget, threshold=args.threshold, history_size=args.history_size,
        tick_ms=args.tick_ms, engine=args.engine, latency_sample=args.latency_sample,
        quick=args.quick)
    progress = _capacity.Progress(sys.stderr, enabled=not args.no_progress)
    result = _capacity.run(config, progress)
    out.write("\n".join(_capacity.format_result(result)) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        out.write(f"JSON written to {args.json}\n")
    if args.png:
        _capacity.plot(result, args.png)
        out.write(f"Plot written to {args.png}\n")
    return 0


def _run_bench(args: argparse.Namespace, out: TextIO) -> int:
    from . import _bench

    _writable(args.parser, "--json", args.json)
    engines = args.engines
    if engines is None:
        engines = ["compiled", "pure"] if _bench.compiled_available() else ["pure"]
    for name in engines:
        _check_engine(args.parser, name)
    result = _bench.run(args.agents, engines, args.repeat, progress=sys.stderr)
    out.write("\n".join(_bench.format_result(result)) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (argparse errors exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
