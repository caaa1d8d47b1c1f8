"""The `moai-flow-fast` command (also `python -m moai_flow_fast`): demo, capacity, bench."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ..core._monitor import MAX_HISTORY_SIZE

__all__ = ["main"]

PROG = "moai-flow-fast"


# -- argument types: each raises ArgumentTypeError, which argparse turns into exit code 2 -----

class _Bad(argparse.ArgumentTypeError):
    """A bad value: `problem` says what is wrong ("must be >= 1"), the message adds the value."""

    def __init__(self, problem: str, text: str) -> None:
        super().__init__(f"{problem}, got {text!r}")
        self.problem = problem


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            raise _Bad("expected a whole number", text) from None
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise _Bad("expected a whole number", text)
        n = int(value)
        if n < minimum:
            raise _Bad(f"must be >= {minimum:,}", text)
        if maximum is not None and n > maximum:
            raise _Bad(f"must be <= {maximum:,}", text)
        return n

    parse.__name__ = "integer"
    return parse


def _float_range(low: float, high: float | None = None, *, low_open: bool = False
                 ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Bad("expected a number", text) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _Bad("expected a finite number", text)
        if value < low or (low_open and value == low):
            if low > 0 and value <= 0:
                raise _Bad(f"must be positive (at least {low:g})", text)
            raise _Bad(f"must be {'>' if low_open else '>='} {low:g}", text)
        if high is not None and value > high:
            raise _Bad(f"must be <= {high:g}", text)
        return value

    parse.__name__ = "number"
    return parse


def _list_of(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [p.strip() for p in text.split(",")]
        if any(not p for p in parts):
            raise _Bad("expected a comma-separated list", text)
        values = []
        for p in parts:
            try:
                values.append(item(p))
            except _Bad as exc:
                if len(parts) == 1:
                    raise
                # The bad item, and the list it is in for context: each value said once.
                raise argparse.ArgumentTypeError(f"{exc.problem}, got {p!r} in {text!r}"
                                                 ) from None
        return values

    parse.__name__ = "list"
    return parse


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that knows which of its options take a value, so that a value
    looking like a negative number list ("-1,2") is given to its option (argparse alone
    takes it for an unknown option and says "expected one argument")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.value_options: set[str] = set()
        self.commands: dict[str, _Parser] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.nargs != 0:
            self.value_options.update(action.option_strings)
        return action

    def command(self, sub: Any, name: str, **kwargs: Any) -> _Parser:
        parser: _Parser = sub.add_parser(name, **kwargs)
        self.commands[name] = parser
        return parser

    def join_negative_values(self, argv: Sequence[str]) -> list[str]:
        """`--opt -1,2` becomes `--opt=-1,2` for the chosen command's value options."""
        out = list(argv)
        start = next((i for i, a in enumerate(out) if not a.startswith("-")), len(out))
        command = self.commands.get(out[start]) if start < len(out) else None
        if command is None:
            return out
        i = start + 1
        while i < len(out) - 1:
            if out[i] not in command.value_options:
                i += 1
            elif _NEGATIVE.match(out[i + 1]):
                out[i:i + 2] = [f"{out[i]}={out[i + 1]}"]
                i += 1
            else:
                i += 2          # the option and its value
        return out


_NEGATIVE = re.compile(r"^-\.?\d")


_ENGINES = ("auto", "compiled", "pure")


def _check_engine(parser: argparse.ArgumentParser, engine: str) -> None:
    if engine == "compiled":
        try:
            importlib.import_module("moai_flow_fast.core._engine_c")
        except ImportError as exc:
            parser.error(f"argument --engine: the compiled engine is not available ({exc}); "
                         "use --engine pure (same behaviour, slower), or reinstall "
                         "moai-flow-fast where a C compiler is available")


def _writable(parser: argparse.ArgumentParser, option: str, path: str | None) -> None:
    """Checked before a run, so that a long run does not end in a traceback."""
    if path is None:
        return
    if os.path.isdir(path):
        parser.error(f"argument {option}: {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"argument {option}: folder {folder!r} does not exist")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        parser.error(f"argument {option}: cannot write {path!r} (permission denied)")


def _engine_name(text: str) -> str:
    if text not in ("compiled", "pure"):
        raise _Bad("expected compiled or pure", text)
    return text


def _version() -> str:
    from .. import COMPILED, __version__

    return f"{PROG} {__version__} ({'compiled' if COMPILED else 'pure'} engine)"


# -- the parser ------------------------------------------------------------------------------

def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Heartbeat failure detection for very large agent swarms: a live demo, "
                    "a capacity planner and micro-benchmarks.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # argparse %-formats help texts (so a literal percent sign is written %%) but not
    # descriptions.
    demo = parser.command(
        sub, "demo",
        help="a simulated swarm against a real monitor, in real time, with a truth check",
        description="Runs a simulated swarm against a real monitor in real time (system clock, "
                    "background threads). Agents heartbeat on their own schedules with jitter; "
                    "the simulator injects crashes, stalls that recover, slow starters and "
                    "flapping agents, and knows the truth. At the end a report compares the "
                    "truth with the monitor's alerts. Exit code 1 when a failure was missed or "
                    "a false alarm raised.")
    demo.add_argument("--agents", type=_int_at_least(1, 1_000_000), default=10_000,
                      metavar="N", help="number of agents (default 10000)")
    demo.add_argument("--duration", type=_float_range(0.5, 3600.0), default=20.0,
                      metavar="SECONDS",
                      help="seconds of swarm whose crossings must all be detected, 0.5 to 3600 "
                           "(default 20; heartbeats go on for 1 s more)")
    demo.add_argument("--seed", type=_int_at_least(0), default=1, metavar="N",
                      help="random seed of the swarm's plan (default 1)")
    demo.add_argument("--intervals", type=_list_of(_float_range(0.1, 3600.0)),
                      default=[1.0, 2.0, 3.0, 4.0, 5.0], metavar="SECONDS,...",
                      help="heartbeat intervals to mix, in seconds, each 0.1 to 3600 "
                           "(default 1,2,3,4,5)")
    demo.add_argument("--threshold", type=_int_at_least(1, 1000), default=3, metavar="N",
                      help="failure_threshold of every agent: FAILED after N intervals "
                           "without a heartbeat (default 3)")
    demo.add_argument("--tick-ms", type=_int_at_least(1, 60_000), default=10, metavar="MS",
                      help="timer-wheel tick in ms (default 10)")
    demo.add_argument("--engine", choices=_ENGINES, default="auto",
                      help="engine (default auto: compiled when built)")
    demo.add_argument("--plain", action="store_true",
                      help="print a plain line once a second instead of the live dashboard "
                           "(automatic when stdout is not a terminal)")
    demo.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    demo.add_argument("--serve", action="store_true",
                      help="over the network: a real 'serve' subprocess, the swarm as UDP "
                           "sender processes, detections read from /v1/events, and the web "
                           "dashboard's URL on screen (needs the service extra)")
    demo.set_defaults(run=_run_demo, parser=demo)

    cap = parser.command(
        sub, "capacity",
        help="how many agents one monitor can watch, for how much CPU and memory",
        description="Sweeps agent counts and heartbeat intervals. Virtual time measures the cost "
                    "per heartbeat, the wheel's CPU per simulated second and memory per agent; "
                    "real time (a real background thread) measures detection latency on a sample "
                    "of agents. Answers 'at interval X with a CPU budget of Y% of a core, one "
                    "monitor can watch N agents' from the measured costs, counting the wheel's "
                    "fixed cost once; counts too small to measure the per-agent cost (below "
                    "1,000 agents) give a lower bound, not an extrapolation.")
    cap.add_argument("--agents", type=_list_of(_int_at_least(10, 10_000_000)), default=None,
                     metavar="N,...", help="agent counts to sweep (default 1000,10000,100000,"
                                           "1000000; --quick: 200,2000)")
    cap.add_argument("--max-agents", type=_int_at_least(10, 10_000_000), default=None,
                     metavar="N", help="sweep 1000, 10000, ... up to N (from 100 with --quick "
                                       "or when N < 1000)")
    cap.add_argument("--intervals", type=_list_of(_float_range(0.1, 3600.0)), default=None,
                     metavar="SECONDS,...",
                     help="heartbeat intervals in seconds (default 1,5,30; --quick: 1)")
    cap.add_argument("--cpu-budget", type=_float_range(0.0, 100.0, low_open=True), default=1.0,
                     metavar="PERCENT", help="CPU budget, in %% of one core (default 1)")
    cap.add_argument("--threshold", type=_int_at_least(1, 1000), default=3, metavar="N",
                     help="failure_threshold (default 3)")
    cap.add_argument("--history-size", type=_int_at_least(1, MAX_HISTORY_SIZE), default=100,
                     metavar="N",
                     help=f"heartbeat records kept per agent, 1 to {MAX_HISTORY_SIZE:,} "
                          "(default 100, as MoAI-Flow's monitor)")
    cap.add_argument("--tick-ms", type=_int_at_least(1, 60_000), default=10, metavar="MS",
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

    bench = parser.command(
        sub, "bench",
        help="micro-benchmarks of the hot operations, compiled and pure side by side",
        description="Times every hot operation (record_heartbeat, check_agent_health, "
                    "get_unhealthy_agents, get_monitoring_stats, start/stop, advance) at one "
                    "agent count, per call from Python, best of --repeat runs, on the compiled "
                    "and the pure engine, with the ratio.")
    bench.add_argument("--agents", type=_int_at_least(10, 10_000_000), default=100_000,
                       metavar="N", help="agents registered (default 100000)")
    bench.add_argument("--engines", type=_list_of(_engine_name), default=None,
                       metavar="NAME,...", help="engines to time: compiled, pure or both "
                                                "(default both; pure alone when the compiled "
                                                "engine is not built)")
    bench.add_argument("--repeat", type=_int_at_least(1, 100), default=3, metavar="N",
                       help="runs per operation; the best is kept (default 3)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(run=_run_bench, parser=bench)

    # stdlib only: the server itself is imported when `serve` runs
    from ..service._cli import add_serve_parser
    serve = add_serve_parser(sub)
    if isinstance(serve, _Parser):          # made by `sub`, so of this class
        parser.commands["serve"] = serve
    return parser


# -- demo ------------------------------------------------------------------------------------

def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._screen import Dashboard
    from ._sim import Swarm, SwarmConfig

    _check_engine(args.parser, args.engine)
    _writable(args.parser, "--json", args.json)
    config = SwarmConfig(agents=args.agents, duration=args.duration, seed=args.seed,
                         intervals=tuple(args.intervals), threshold=args.threshold,
                         tick_ms=args.tick_ms, engine=args.engine)
    plain = args.plain or not out.isatty()
    if args.serve:
        from ._demo_serve import run as run_over_network

        return run_over_network(config, out, plain=plain, json_path=args.json)
    swarm = Swarm(config)
    header = (f"{PROG} demo: {config.agents:,} agents, intervals "
              f"{','.join(f'{i:g}' for i in config.intervals)} s, real time")
    board = Dashboard(out, plain, header)
    board.start("registering...")
    result = swarm.run(board.update, refresh=1.0 if plain else 0.5)
    out.write("\n" + "\n".join(result.format()) + "\n")
    out.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)
    return 0 if result.passed else 1


# -- capacity and bench ------------------------------------------------------------------------

def _run_capacity(args: argparse.Namespace, out: TextIO) -> int:
    from . import _capacity, _capacity_report
    from ._screen import Progress

    parser = args.parser
    _check_engine(parser, args.engine)
    _writable(parser, "--json", args.json)
    _writable(parser, "--png", args.png)
    if args.agents is not None and args.max_agents is not None:
        parser.error("argument --max-agents: not allowed with argument --agents")
    if args.png is not None and not _capacity_report.have_matplotlib():
        parser.error("argument --png: matplotlib is not installed "
                     "(pip install 'moai-flow-fast[plot]')")
    config = _capacity.CapacityConfig.from_args(
        agents=args.agents, max_agents=args.max_agents, intervals=args.intervals,
        cpu_budget=args.cpu_budget, threshold=args.threshold, history_size=args.history_size,
        tick_ms=args.tick_ms, engine=args.engine, latency_sample=args.latency_sample,
        quick=args.quick)
    progress = Progress(sys.stderr, enabled=not args.no_progress)
    result = _capacity.run(config, progress)
    out.write("\n".join(_capacity_report.format_result(result)) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        out.write(f"JSON written to {args.json}\n")
    if args.png:
        _capacity_report.plot(result, args.png)
        out.write(f"Plot written to {args.png}\n")
    return 0


def _run_bench(args: argparse.Namespace, out: TextIO) -> int:
    from . import _bench

    _writable(args.parser, "--json", args.json)
    engines = args.engines
    if engines is None:
        engines = ["compiled", "pure"] if _bench.compiled_available() else ["pure"]
    engines = list(dict.fromkeys(engines))          # "compiled,compiled" times it once
    for name in engines:
        _check_engine(args.parser, name)
    result = _bench.run(args.agents, engines, args.repeat, progress=sys.stderr)
    out.write("\n".join(_bench.format_result(result)) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        out.write(f"JSON written to {args.json}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (argparse errors exit 2)."""
    parser = build_parser()
    argv = parser.join_negative_values(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse leaves unknown options to the top-level parser, whose usage says nothing
        # of the command's options: the command's own parser reports them.
        before = argv.index(args.command) if args.command in argv else len(argv)
        owner = parser if any(argv.index(u) < before for u in unknown if u in argv) \
            else args.parser
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.run(args, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
