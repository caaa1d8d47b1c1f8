"""The capacity planner's answers ("one monitor can watch N agents"), its text report and
its plot, from the measurements of `_capacity`."""

from __future__ import annotations

import importlib.util
import textwrap
from typing import TYPE_CHECKING, Any

from ._screen import fit

if TYPE_CHECKING:
    from ._capacity import CapacityConfig

__all__ = ["MAX_FIXED_SHARE", "MIN_BASIS_AGENTS", "answers", "format_result", "have_matplotlib",
           "plot"]

# A point can be extrapolated from only when the agents' own cost shows through the
# monitor's fixed costs: at least this many agents (one history block holds 1,024) ...
MIN_BASIS_AGENTS = 1_000
# ... and the wheel's fixed cost at most this share of the point's measured CPU.
MAX_FIXED_SHARE = 0.5
WIDTH = 80


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def per_agent_cpu(p: dict[str, Any], fixed: float) -> float:
    """CPU seconds per second per agent at a measured point, the wheel's fixed cost out."""
    return float(p["heartbeat_cost_ns"] / 1e9 / p["heartbeat_period_s"]
                 + max(0.0, p["wheel_cpu_per_s"] - fixed) / p["agents"])


def fixed_share(p: dict[str, Any], fixed: float) -> float:
    """The share of a point's measured CPU that is the wheel's fixed cost."""
    return fixed / p["cpu_share"] if p["cpu_share"] > 0 else 1.0


def measurable(p: dict[str, Any], fixed: float) -> bool:
    """True when the per-agent cost can be told apart from the fixed cost at this point."""
    return p["agents"] >= MIN_BASIS_AGENTS and fixed_share(p, fixed) <= MAX_FIXED_SHARE


def answers(points: list[dict[str, Any]], config: CapacityConfig, fixed: float = 0.0
            ) -> list[dict[str, Any]]:
    """'At interval X with a CPU budget of Y % of a core, one monitor can watch N agents.'

    The wheel's fixed cost (`fixed`, CPU s per s with no agent) is paid once, so
    N = (budget - fixed) / (CPU per agent, the fixed cost out), with the CPU per agent
    measured at the smallest agent count whose CPU share is over the budget (per-agent
    costs grow with the agent count, as caches stop holding the tables, so this errs on the
    safe side), and never less than a measured count that was within the budget. When every
    count is within the budget, the costs of the largest are extrapolated beyond it.

    Only a `measurable` point is extrapolated from. Otherwise the answer is a bound taken
    from the measurements themselves (kind "at least" or "fewer than"), with the reason;
    kind "none" when the fixed cost alone is over the budget.
    """
    out = []
    budget = config.cpu_budget / 100
    for interval in config.intervals:
        pts = sorted((p for p in points if p["interval_s"] == interval),
                     key=lambda p: p["agents"])
        if not pts:
            continue
        within = [p for p in pts if p["cpu_share"] <= budget]
        over = [p for p in pts if p["cpu_share"] > budget]
        first_over = over[0] if over else None
        basis: dict[str, Any] | None = None
        extrapolated = False
        n_max = 0
        if fixed >= budget:
            kind = "none"
            note = (f"the wheel's fixed cost alone is {fixed * 100:.3g}% of a core at tick "
                    f"{config.tick_ms} ms: raise --cpu-budget or --tick-ms")
        elif first_over is not None and not measurable(first_over, fixed):
            below = [p for p in within if p["agents"] < first_over["agents"]]
            kind = "at least" if below else "fewer than"
            n_max = below[-1]["agents"] if below else first_over["agents"]
            note = (f"over the budget at {first_over['agents']:,} agents, "
                    f"{_too_few(first_over, fixed)}, so no estimate is made"
                    + (f" beyond the {n_max:,} measured within it" if below else ""))
        else:
            candidates = [p for p in pts if measurable(p, fixed)]
            if first_over is not None:
                basis = first_over
            elif candidates:
                basis = candidates[-1]
            if basis is None:
                kind, n_max = "at least", pts[-1]["agents"]
                note = (f"measured within the budget; {_too_few(pts[-1], fixed)}, so no "
                        "extrapolation is made: measure larger counts (e.g. --max-agents "
                        "100000)")
            else:
                kind = "estimate"
                n_max = int((budget - fixed) / per_agent_cpu(basis, fixed))
                below = [p for p in within if p["agents"] < basis["agents"]]
                if first_over is None:
                    extrapolated = True
                    n_max = max(n_max, pts[-1]["agents"])
                    note = (f"extrapolated beyond the largest measured count, from the costs "
                            f"at {basis['agents']:,} agents")
                elif below:
                    n_max = max(n_max, below[-1]["agents"])
                    note = (f"between the measured {below[-1]['agents']:,} and "
                            f"{basis['agents']:,} agents, with the costs measured at "
                            f"{basis['agents']:,}")
                else:
                    extrapolated = True
                    note = (f"extrapolated below the smallest measured count, from the costs "
                            f"at {basis['agents']:,} agents")
        out.append({
            "interval_s": interval,
            "cpu_budget_percent": config.cpu_budget,
            "kind": kind,
            "max_agents": n_max,
            "basis_agents": None if basis is None else basis["agents"],
            "cpu_per_agent": None if basis is None else per_agent_cpu(basis, fixed),
            "extrapolated": extrapolated,
            "note": note,
            "text": _answer_text(interval, config.cpu_budget, kind, n_max, basis),
        })
    return out


def _too_few(p: dict[str, Any], fixed: float) -> str:
    if p["agents"] < MIN_BASIS_AGENTS:
        return (f"{p['agents']:,} agents are too few to measure the cost per agent (the "
                f"monitor's fixed costs outweigh it below {MIN_BASIS_AGENTS:,})")
    return (f"the wheel's fixed cost is {fixed_share(p, fixed):.0%} of the CPU measured at "
            f"{p['agents']:,} agents, too much to tell the cost per agent from it")


def _answer_text(interval: float, budget: float, kind: str, n: int,
                 basis: dict[str, Any] | None) -> str:
    head = f"At interval {interval:g} s with a CPU budget of {budget:g}% of a core"
    if kind == "none":
        return f"{head}, one monitor cannot run: its fixed cost is over the budget."
    if kind == "at least":
        return f"{head}, one monitor can watch at least {n:,} agents (measured)."
    if kind == "fewer than":
        return f"{head}, one monitor can watch fewer than {n:,} agents (measured)."
    mem = basis["memory_bytes_per_agent"] if basis is not None else None
    return (f"{head}, one monitor can watch {_round_sig(n):,} agents"
            + (f" (~{_bytes(mem * n)} of memory)" if mem else "") + ".")


def _round_sig(n: int, digits: int = 2) -> int:
    if n <= 0:
        return 0
    scale = int(10 ** max(0, len(str(n)) - digits))
    return (n // scale) * scale


def _short(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:g}{suffix}" if v == int(v) or v >= 10 else f"{v:.1f}{suffix}"
    return str(n)


def _bytes(b: float) -> str:
    """Binary units (1 KiB = 1024 B), labelled as such."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def _wrap(text: str, indent: str = "", cont: str = "  ") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=cont,
                         break_long_words=False, break_on_hyphens=False)


def format_result(result: dict[str, Any]) -> list[str]:
    """The report as lines of at most 80 columns."""
    p = result["parameters"]
    m = result["machine"]
    fixed = result.get("fixed_cpu_per_s", 0.0)
    lines = fit([f"Capacity of one monitor: engine {result['engine']}",
                 f"threshold {p['threshold']}", f"history_size {p['history_size']}",
                 f"tick {p['tick_ms']} ms"], WIDTH, sep=", ")
    lines += fit([f"Machine: {m['processor']}", f"{m['cpus']} CPUs", f"Python {m['python']}"],
                 WIDTH, sep=", ")
    lines += fit([f"Virtual time: agents heartbeat every {p['heartbeat_fraction']:g} x "
                  "interval;", "costs are "
                  + ("CPU time (thread_time)" if p.get("timer") == "thread_time"
                     else "wall time") + " per call from Python."], WIDTH, sep=" ")
    lines += [
        "",
        f"{'agents':>10} {'interval':>9} {'hb/s':>10} {'ns/hb':>7} {'wheel ms/s':>11} "
        f"{'ns/op':>7} {'CPU %':>8} {'B/agent':>8}",
    ]
    for pt in result["points"]:
        lines.append(
            f"{pt['agents']:>10,} {pt['interval_s']:>8g}s {pt['heartbeats_per_s']:>10,.0f} "
            f"{pt['heartbeat_cost_ns']:>7.0f} {pt['wheel_cpu_per_s'] * 1e3:>11.3f} "
            f"{_fmt(pt['wheel_op_cost_ns'], '>7.0f')} {pt['cpu_share'] * 100:>8.3f} "
            f"{_fmt(pt['memory_bytes_per_agent'], '>8.0f')}")
    lines.append("")
    lines += _wrap("ns/hb: CPU ns per record_heartbeat. wheel ms/s: CPU ms in advance() per "
                   "simulated second (ns/op: per wheel operation). CPU %: share of one core "
                   "for heartbeats + wheel. B/agent: tracemalloc bytes per agent.")
    if any(pt["agents"] < MIN_BASIS_AGENTS for pt in result["points"]):
        lines += _wrap(f"Below {MIN_BASIS_AGENTS:,} agents the per-agent figures (ns/op, "
                       "B/agent) are mostly the monitor's fixed costs: the wheel's ticks and "
                       "a first history block for 1,024 agents.")
    if result["latency"]:
        lines += [""]
        lines += _wrap(f"Detection latency in real time: {p['latency_sample']} silent probe "
                       f"agents (interval {p['probe_interval_ms']} ms) among the N agents, "
                       "callback time - deadline, in ms:")
        lines.append(f"{'agents':>10} {'p50':>8} {'p99':>8} {'max':>8} {'samples':>9}")
        for lat in result["latency"]:
            lines.append(f"{lat['agents']:>10,} {_fmt(lat['p50'], '>8.1f')} "
                         f"{_fmt(lat['p99'], '>8.1f')} {_fmt(lat['max'], '>8.1f')} "
                         f"{lat['samples']:>5}/{lat['expected']}")
    lines += [""]
    lines += _wrap(f"Answers for a CPU budget of {p['cpu_budget']:g}% of one core. The "
                   f"wheel's fixed cost (advance() every {p['tick_ms']} ms with no agent: "
                   f"{fixed * 1e3:.3f} ms of CPU per second, {fixed * 100:.4f}% of a core) is "
                   "counted once; the CPU per agent excludes it. Counts below "
                   f"{MIN_BASIS_AGENTS:,} agents, or where the fixed cost is over "
                   f"{MAX_FIXED_SHARE:.0%} of the measured CPU, are too small to extrapolate "
                   "from and give a bound.")
    for ans in result["answers"]:
        lines += _wrap(ans["text"], "  ", "    ")
        lines += _wrap(f"[{ans['note']}]", "      ", "       ")
    lines.append(f"Sweep took {result['elapsed_s']:.1f} s.")
    return lines


def plot(result: dict[str, Any], path: str) -> None:
    """A PNG of cost per heartbeat, CPU share and memory per agent against agent count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    intervals = sorted({p["interval_s"] for p in points})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    xs: list[int] = []
    for interval in intervals:
        pts = sorted((p for p in points if p["interval_s"] == interval), key=lambda p: p["agents"])
        xs = [p["agents"] for p in pts]
        axes[0].plot(xs, [p["heartbeat_cost_ns"] for p in pts], marker="o",
                     label=f"interval {interval:g} s")
        axes[1].plot(xs, [p["cpu_share"] * 100 for p in pts], marker="o",
                     label=f"interval {interval:g} s")
    mem = sorted({p["agents"]: p["memory_bytes_per_agent"] for p in points
                  if p["memory_bytes_per_agent"] is not None}.items())
    axes[2].plot([m[0] for m in mem], [m[1] for m in mem], marker="o", color="tab:green")
    axes[0].set_title("cost per heartbeat")
    axes[0].set_ylabel("ns per record_heartbeat")
    axes[1].set_title("CPU share (heartbeats + wheel)")
    axes[1].set_ylabel("% of one core")
    axes[1].set_yscale("log")
    axes[2].set_title(f"memory per agent (history_size {result['parameters']['history_size']})")
    axes[2].set_ylabel("bytes (tracemalloc)")
    from matplotlib.ticker import NullFormatter

    counts = sorted({p["agents"] for p in points})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("agents")
        ax.set_xticks(counts)
        ax.set_xticklabels([_short(n) for n in counts])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    axes[0].legend()
    axes[1].legend()
    budget = result["parameters"]["cpu_budget"]
    axes[1].axhline(budget, color="tab:red", linestyle="--", linewidth=1)
    axes[1].text(xs[0] if xs else 1, budget, f" budget {budget:g}%", color="tab:red",
                 va="bottom")
    fig.suptitle(f"moai-flow-fast capacity ({result['engine']} engine, "
                 f"{result['machine']['processor']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
