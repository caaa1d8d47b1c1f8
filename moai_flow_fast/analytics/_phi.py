"""Phi-accrual suspicion (Hayashibara et al. 2004), in the form of Akka's
``PhiAccrualFailureDetector``, vectorised with numpy (issue 3, item 6); the window it is
judged against is rebuilt as Akka's by the ``phi_windows`` kernels (``_window_py``).

For one agent with interval history of mean ``mu`` and standard deviation ``sigma`` (ms)::

    mu'    = mu + acceptable_heartbeat_pause_ms
    sigma' = max(sigma, min_std_deviation_ms)
    y      = (elapsed_ms - mu') / sigma'
    e      = exp(-y * (1.5976 + 0.070566 * y * y))      # logistic approximation of 1 - CDF
    phi    = -log10(e / (1 + e))          if elapsed_ms > mu'
             -log10(1 - 1 / (1 + e))      otherwise

An agent with fewer than ``min_samples`` intervals is judged against the first-heartbeat
estimate instead: ``mu = first_heartbeat_estimate_ms``, ``sigma = mu / 4`` (the two
synthetic intervals mu -/+ mu/4 Akka seeds its history with). An agent that never
heartbeated (``elapsed_ms`` NaN) has phi 0.0, as in Akka.

``window_params`` checks the detector's parameters for the window kernels and turns the
threshold into the ``y`` at which phi reaches it (phi is increasing in ``y``), so that a
kernel judges "available" (Akka: ``phi < threshold``) as ``y < y_threshold``.

Numerics: both of Akka's branches equal ``log10(1 + exp(z))`` with
``z = y * (1.5976 + 0.070566 * y * y)``; it is evaluated here as the stable softplus
``(max(z, 0) + log1p(exp(-|z|))) / ln(10)``, which never overflows and agrees with Akka's
expressions wherever those are finite. Where Akka's ``exp`` underflows (y > ~21.6, phi
> ~320) Akka returns +inf; here phi keeps growing as ``z / ln(10)``. ``y`` is clipped to
+/-1e100 so that ``z`` stays finite: phi is finite for every finite elapsed time, is 0.0
(the limit) far below the mean, and is +inf only for ``elapsed_ms = +inf``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["phi", "window_params", "y_threshold"]

_A = 1.5976
_B = 0.070566
_LN10 = math.log(10.0)
_Y_MAX = 1e100          # |y| clip: z = y * (A + B*y*y) stays below ~7.1e298, finite

F64Array = npt.NDArray[np.float64]


def _real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    if not positive and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def _float_array(name: str, value: Any) -> F64Array:
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers (int or float), got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _count_array(value: Any) -> F64Array:
    a = np.asarray(value)
    if a.dtype.kind in "iu":
        c = a.astype(np.float64)
    elif a.dtype.kind == "f":
        c = a.astype(np.float64, copy=False)
        if not (np.isfinite(c) & (c == np.floor(c))).all():
            raise ValueError("count must hold whole numbers")
    else:
        raise TypeError(f"count must be integers (or whole floats), got dtype {a.dtype}")
    if (c < 0).any():
        raise ValueError("count must be >= 0")
    return c


def phi(elapsed_ms: Any, mean_ms: Any, std_ms: Any, count: Any, *,
        min_std_deviation_ms: float = 100.0, acceptable_heartbeat_pause_ms: float = 0.0,
        first_heartbeat_estimate_ms: float = 1000.0, min_samples: int = 2) -> F64Array:
    """Phi per agent; the arguments broadcast together (one element per agent).

    ``elapsed_ms``: ms since the agent's last heartbeat (NaN: never heartbeated, phi 0).
    ``mean_ms``, ``std_ms``: mean and population standard deviation of its heartbeat
    intervals (ignored, and may be NaN, where ``count < min_samples``; elsewhere finite).
    ``count``: its number of intervals. Returns float64 phi of the broadcast shape.
    Raises TypeError/ValueError naming the offending argument.
    """
    min_std = _real("min_std_deviation_ms", min_std_deviation_ms, positive=True)
    pause = _real("acceptable_heartbeat_pause_ms", acceptable_heartbeat_pause_ms,
                  positive=False)
    first = _real("first_heartbeat_estimate_ms", first_heartbeat_estimate_ms, positive=True)
    if isinstance(min_samples, (bool, np.bool_)) or not isinstance(
            min_samples, (int, np.integer)):
        raise TypeError(f"min_samples must be an int, got {type(min_samples).__name__}")
    min_n = operator.index(min_samples)
    if min_n < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_n}")
    e = _float_array("elapsed_ms", elapsed_ms)
    m = _float_array("mean_ms", mean_ms)
    s = _float_array("std_ms", std_ms)
    c = _count_array(count)
    try:
        e, m, s, c = np.broadcast_arrays(e, m, s, c)
    except ValueError:
        raise ValueError(
            f"elapsed_ms, mean_ms, std_ms and count must have broadcastable shapes, got "
            f"{e.shape}, {m.shape}, {s.shape} and {c.shape}") from None
    shape = e.shape
    e, m, s, c = (np.ravel(a) for a in (e, m, s, c))

    few = c < min_n
    used = ~few & ~np.isnan(e)
    if not np.isfinite(m[used]).all():
        raise ValueError("mean_ms must be finite where count >= min_samples")
    s_used = s[used]
    if not (np.isfinite(s_used) & (s_used >= 0)).all():
        raise ValueError("std_ms must be finite and >= 0 where count >= min_samples")

    mu = np.where(few, first, m) + pause
    sigma = np.maximum(np.where(few, first / 4.0, s), min_std)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (e - mu) / sigma                      # NaN where e is NaN
    np.clip(y, -_Y_MAX, _Y_MAX, out=y)            # NaN stays NaN
    z = y * (_A + _B * (y * y))
    out = (np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))) / _LN10
    out[np.isnan(e)] = 0.0
    out[e == np.inf] = np.inf
    return out.reshape(shape)


def y_threshold(threshold: float) -> float:
    """The ``y`` at which phi equals ``threshold`` (> 0): the root of
    ``A*y + B*y**3 = ln(10**threshold - 1)``, by Newton's method from above (the cubic is
    increasing, and convex on the root's side of 0, so the iterates fall monotonically)."""
    t = threshold * _LN10
    z = t + math.log(-math.expm1(-t))          # ln(10**threshold - 1), without overflow
    sign, z = (1.0, z) if z >= 0 else (-1.0, -z)
    y = min(z / _A, (z / _B) ** (1.0 / 3.0))   # >= the root
    for _ in range(200):
        step = (_A * y + _B * y ** 3 - z) / (_A + 3.0 * _B * y * y)
        if not step > 0:                       # converged (rounding stops the fall)
            break
        y -= step
    return float(sign * y)


def window_params(history_size: int, threshold: Any, min_std_deviation_ms: Any,
                  acceptable_heartbeat_pause_ms: Any, first_heartbeat_estimate_ms: Any
                  ) -> tuple[float, float, float, float, int]:
    """The window kernels' parameters, checked (TypeError/ValueError naming the argument):
    (first_heartbeat_estimate_ms, acceptable_heartbeat_pause_ms, min_std_deviation_ms**2,
    y_threshold(threshold), window capacity = history_size - 1, at least 1)."""
    thr = _real("threshold", threshold, positive=True)
    min_std = _real("min_std_deviation_ms", min_std_deviation_ms, positive=True)
    pause = _real("acceptable_heartbeat_pause_ms", acceptable_heartbeat_pause_ms,
                  positive=False)
    first = _real("first_heartbeat_estimate_ms", first_heartbeat_estimate_ms, positive=True)
    return first, pause, min_std * min_std, y_threshold(thr), max(int(history_size) - 1, 1)
