"""Pure-Python (numpy) twin of ``_stats_c.phi_windows``: the interval window Akka's
``PhiAccrualFailureDetector`` holds after an agent's heartbeats, rebuilt from its history ring.

For each selected agent the records of its ring, oldest first, are replayed as heartbeats
into Akka's detector (``akka.remote.PhiAccrualFailureDetector``, with
``max_sample_size = history_size - 1``):

- the first heartbeat puts the two seed intervals ``first -/+ first / 4`` in the window
  (``first = first_heartbeat_estimate_ms``); they stay until pushed out;
- each later heartbeat ends an interval; it is added unless the agent was not available
  at that moment (``phi >= threshold``, phi judged against the window as it was then, with
  ``min_std_deviation_ms`` and ``acceptable_heartbeat_pause_ms``): the interval that ends
  an outage would skew the window, so Akka leaves it out;
- the window keeps the newest ``max_sample_size`` intervals (seeds included).

Row ``start + i`` of ``out`` gets ``WINDOW_COLUMNS`` and NaN in the remaining columns:
the count, mean and population standard deviation (ms) of the final window, the number of
seeds still in it, and the number of intervals left out. An agent with no record has count
0 and NaN elsewhere. The phi of "now" follows from these with ``_phi.phi``.

Where this differs from Akka (and why):

- The detector's memory is the ring. While the ring holds every heartbeat since the
  agent's history began (fewer than ``history_size`` records, or exactly that many), the
  window is Akka's. Once the ring has wrapped, the oldest record kept is replayed as a first
  heartbeat, with fresh seeds: the earliest intervals kept are judged against the seeds
  where Akka judged them against its older window, and the window cannot reach back past
  the ring, so when intervals were left out it holds seeds (or fewer entries) where Akka
  holds older intervals. Clearing an agent's history starts a new detector, as Akka's
  ``reset``.
- Intervals are the ring's timestamps' differences in ms as floats; Akka's clock counts
  whole ms, and its seeds are ``first -/+ first / 4`` rounded down to whole ms.
- Akka's sums are exact (integer ms). Here the judgements use running sums of the values
  minus ``first`` (the compiled kernel: prefix sums), exact to about 1e-16 of the sums; a
  judgement can differ from exact arithmetic only for an interval within about 1e-12
  (relative) of the threshold. The final mean and std are computed in two passes.
- An interval that is not finite (from a NaN or infinite record) is never added. The
  engines hand the kernels rings rebased by their wall-clock step markers
  (``core/_steps.py``), so intervals are monotonic, as Akka's; one that is still negative
  (a step the markers could not hold) is judged and added like any other.

And in the monitor's ``phi``/``snapshot`` (``_fleet.py``), which apply ``_phi.phi`` to these
windows and each agent's silence:

- Where Akka's ``exp`` underflows (phi above about 300) Akka returns +inf; phi keeps
  growing, finite (see ``_phi``).
- ``first_heartbeat_estimate_ms`` is one value per call (default: the monitor's default
  interval), not each agent's own interval: an agent whose intervals are far above it has
  them all judged as ends of outages, as Akka's detector would.
- An agent with no heartbeat in its ring has phi 0 (Akka: an unmanaged connection), except
  one whose clock started at registration (``start_clock_on_register``): it is judged
  against the seeds from then on, as if registration were a first heartbeat.
- The silences are read in the engine's snapshot, the windows just after it (a second
  pass over the rings): a heartbeat arriving in between can be in an agent's window and
  not yet in its silence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._phi import window_params
from ._stats_py import _check, _check_indices, _check_threads

__all__ = ["WINDOW_COLUMNS", "phi_windows"]

WINDOW_COLUMNS = ("count", "mean_ms", "std_ms", "seeds", "skipped")

_BLOCK_RECORDS = 1 << 18                 # ring records per vectorised block

F64Array = npt.NDArray[np.float64]


def _block(ring: F64Array, heads: npt.NDArray[np.int32], counts: npt.NDArray[np.int32],
           rows: npt.NDArray[np.int64], params: tuple[float, float, float, float, int],
           out: F64Array) -> None:
    """The windows of one block of agents into ``out`` (one row per agent)."""
    first, pause, min_var, ys, cap = params
    B, H = len(heads), ring.shape[1]
    j = np.arange(H, dtype=np.int64)
    c = counts.astype(np.int64)
    pos = (heads.astype(np.int64) - c)[:, None] + j                 # oldest first
    pos %= H
    t = ring[rows[:, None], pos]
    d = np.diff(t, axis=1) * 1000.0                                 # B x (H - 1), ms
    # The accepted values minus `first` (seeds first), the running sums of the window
    # (of the values and their squares) and the number of values accepted so far.
    a = np.empty((B, H + 1))
    a[:, 0], a[:, 1] = -0.25 * first, 0.25 * first
    seeds = a[0, 2 - min(cap, 2): 2]                # those the window holds (cap 1: one)
    s1 = np.full(B, seeds.sum())
    s2 = np.full(B, (seeds * seeds).sum())
    k = np.full(B, 2, dtype=np.int64)
    skipped = np.zeros(B, dtype=np.int64)
    everyone = np.arange(B)
    for step in range(H - 1):
        live = step < c - 1
        if not live.any():
            break
        x = d[:, step]
        n = np.minimum(k, cap)
        mu = s1 / n
        sigma = np.sqrt(np.maximum(s2 / n - mu * mu, min_var))
        y = (x - first - pause - mu) / sigma
        ok = live & (y < ys) & np.isfinite(x)          # available when it came
        skipped += live & ~ok
        who, kk = everyone[ok], k[ok]
        u = x[ok] - first
        a[who, kk] = u
        s1[who] += u
        s2[who] += u * u
        full = kk >= cap                              # the oldest value leaves
        old = a[who[full], kk[full] - cap]
        s1[who[full]] -= old
        s2[who[full]] -= old * old
        k[who] += 1
    nw = np.minimum(k, cap)
    cols = np.arange(H + 1)
    inside = (cols >= (k - nw)[:, None]) & (cols < k[:, None])
    mean = np.where(inside, a, 0.0).sum(axis=1) / nw
    dev = np.where(inside, a - mean[:, None], 0.0)
    out[:, 0] = nw
    out[:, 1] = first + mean
    out[:, 2] = np.sqrt((dev * dev).sum(axis=1) / nw)
    out[:, 3] = np.maximum(2 - (k - nw), 0)
    out[:, 4] = skipped
    out[:, 5:] = np.nan
    empty = c == 0
    out[empty, 0] = 0.0
    out[empty, 1:] = np.nan


def phi_windows(ring: F64Array, heads: npt.NDArray[np.int32],
                counts: npt.NDArray[np.int32], rows: npt.NDArray[np.int64],
                lo: float, hi: float, out: F64Array, start: int, *,
                threshold: Any = 8.0, min_std_deviation_ms: Any = 100.0,
                acceptable_heartbeat_pause_ms: Any = 0.0,
                first_heartbeat_estimate_ms: Any = 1000.0, threads: int | None = None) -> None:
    """Akka's phi-accrual window of the selected agents' history rings into ``out``.

    Arguments as for ``interval_stats`` (``lo`` and ``hi`` are accepted for the kernel's
    signature and ignored: the window always reads the whole ring), the keywords as in
    Akka's detector (``threads``: as for ``interval_stats``). See the module docstring for
    what is written.
    """
    _check(ring, heads, counts, rows, lo, hi, out, start)
    _check_threads(threads)
    params = window_params(ring.shape[1], threshold, min_std_deviation_ms,
                           acceptable_heartbeat_pause_ms, first_heartbeat_estimate_ms)
    n = heads.shape[0]
    if n == 0:
        return
    R, H = ring.shape
    _check_indices(heads, counts, rows, R, H)
    st = int(start)
    step = max(1, _BLOCK_RECORDS // H)
    # inf - inf and NaN records give NaN intervals, which are left out, silently.
    with np.errstate(invalid="ignore", over="ignore"):
        for b0 in range(0, n, step):
            b1 = min(n, b0 + step)
            _block(ring, heads[b0:b1], counts[b0:b1], rows[b0:b1], params,
                   out[st + b0: st + b1])
