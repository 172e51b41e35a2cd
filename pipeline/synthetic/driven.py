"""Systems driven by a switching forcing whose future is known (``generator: driven``).

Each system is driven by one input ``u(t)``, piecewise constant: it holds a level for a duration drawn uniformly in
``[switch_min, switch_max]`` seconds (rounded to whole samples, at least one), then switches to a new level drawn
``N(0, forcing_sd**2)``. A switch inside a forecast horizon cannot be foretold from the past (a periodic drive
could), so these windows measure what conditioning on the known-ahead forcing is worth: the forcing is given as a
channel of its own, never noised.

Three systems, every time constant in seconds (so ``true_lyapunov`` is per second whatever ``fs``):

``oscillator``
    A damped linear oscillator ``x'' + 2 zeta w x' + w**2 x = w**2 u(t)``, ``w = 2 pi / period``: a stable
    equilibrium (steady-state gain 1) that the forcing moves. Simulated exactly: the input is constant between
    samples, so the zero-order-hold discretisation of the ODE is exact. Its largest Lyapunov exponent is the real
    part of the dominant eigenvalue of the homogeneous system (the variational equation does not see ``u``)::

        lambda = -zeta w                           (zeta < 1, underdamped)
        lambda = -w (zeta - sqrt(zeta**2 - 1))     (zeta >= 1: the slow real root)

    per second; regime ``fixed_point``.
``duffing``
    A damped twin-well Duffing oscillator ``x'' + delta x' - x + x**3 = u(t)`` in its own time, one unit of which
    is ``time_unit`` seconds; no periodic drive (the switching input is its only forcing). A level beyond
    ``2 / (3 sqrt 3) ~ 0.385`` leaves one well only, and a switch can throw the state over the barrier, so which
    well it settles in depends sensitively on the state at the switch. Integrated segment by segment (the input is
    constant on each) with ``solve_ivp`` (DOP853, ``rtol=1e-10``, ``atol=1e-12``): deterministic. No exponent is
    known in closed form for the randomly switched system: ``true_lyapunov`` and ``regime`` are null.
``dose``
    A first-order dose-response (a one-compartment pharmacokinetic-like relaxation) ``tau y' = -y + gain u(t)``:
    ``u`` the infusion rate about its mean, ``y`` the concentration. Exact zero-order hold; largest exponent
    ``-1 / tau`` per second, regime ``fixed_point``.

Sampling: ``x[k] = x(k / fs)`` and ``u[k]`` is the level on ``[k / fs, (k + 1) / fs)``: at a switch at sample
``k``, ``u[k]`` is the new level and ``x[k]`` has not felt it yet. A record starts after a burn-in
(:func:`burn_in_s`): the system started at rest (a linear one at the equilibrium of its first level, the Duffing
oscillator at the bottom of a well chosen by the seed) so the first window never begins in a start-up transient
nor on the forcing's first switch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Forcing parameters every system has (seconds; the levels' standard deviation).
_FORCING = (("forcing_sd", 1.0), ("switch_max", 1.2), ("switch_min", 0.4))


@dataclass(frozen=True)
class DrivenSystem:
    """One system: what it is and its parameters with their defaults."""

    description: str
    defaults: tuple[tuple[str, float], ...]


SYSTEMS: dict[str, DrivenSystem] = {
    # period 0.2 s: 20 samples at 100 Hz, as the interventions test's fixture; lambda = -4.71 per second
    "oscillator": DrivenSystem("damped linear oscillator x'' + 2 zeta w x' + w^2 x = w^2 u, w = 2 pi / period (s)",
                               (("period", 0.2), ("zeta", 0.15), *_FORCING)),
    # a well's small oscillations: period 2 pi / sqrt 2 = 4.4 time units = 0.44 s; levels of sd 0.4 cross the
    # barrier now and then (a few well changes per minute)
    "duffing": DrivenSystem("twin-well Duffing x'' + delta x' - x + x^3 = u, time in units of time_unit (s)",
                            (("delta", 0.2), ("forcing_sd", 0.4), ("switch_max", 1.2), ("switch_min", 0.4),
                             ("time_unit", 0.1))),
    "dose": DrivenSystem("first-order dose-response tau y' = -y + gain u, tau in seconds",
                         (("gain", 1.0), ("tau", 0.3), *_FORCING)),
}

#: nw2's ready grids (``sweeps: ready``): ``steps`` values per parameter, all combinations (as physio's).
READY_GRIDS: dict[str, dict] = {
    "oscillator": {"zeta": [0.05, 1.2], "period": [0.1, 0.5], "steps": 3},   # through critical damping
    "duffing": {"delta": [0.1, 0.6], "forcing_sd": [0.2, 0.6], "steps": 3},  # from rare to frequent well changes
    "dose": {"tau": [0.1, 2.0], "steps": 4},                                 # tau below to above the switch times
}

#: The burn-in waits this many settling times (e-foldings of the slowest decay; 5: under 1 % left) ...
SETTLING_TIMES = 5.0
#: ... but at most this many seconds (a nearly undamped system), plus one longest hold of the forcing.
MAX_SETTLE_S = 60.0
#: solve_ivp tolerances of the Duffing segments.
RTOL, ATOL = 1e-10, 1e-12


def system_names() -> tuple[str, ...]:
    return tuple(SYSTEMS)


def default_params(system: str) -> dict[str, float]:
    return dict(SYSTEMS[system].defaults)


def resolve_params(system: str, params: Mapping[str, float]) -> dict[str, float]:
    """The defaults overridden by ``params``, sorted; an unknown system or parameter is a ``ValueError`` naming it
    and the known ones. (Values are checked when the setting runs, :func:`check_params`: a bad one fails alone.)"""
    if system not in SYSTEMS:
        raise ValueError(f"unknown driven system {system!r} (known: {', '.join(SYSTEMS)})")
    known = default_params(system)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{system}: unknown parameter {unknown[0]!r} (known: {', '.join(known)})")
    return dict(sorted({**known, **{k: float(v) for k, v in params.items()}}.items()))


def check_params(system: str, params: Mapping[str, float]) -> dict[str, float]:
    """:func:`resolve_params`, and a ``ValueError`` naming the first parameter whose value cannot run."""
    p = resolve_params(system, params)
    bad = next((k for k, v in p.items() if not math.isfinite(v)), None)
    if bad is not None:
        raise ValueError(f"{system}: {bad} must be finite, not {p[bad]!r}")
    positive = {"oscillator": ("period", "zeta"), "duffing": ("delta", "time_unit"), "dose": ("tau",)}[system]
    for name in ("switch_min", *positive):
        if p[name] <= 0:
            raise ValueError(f"{system}: {name} must be positive, not {p[name]!r}")
    if p["switch_max"] < p["switch_min"]:
        raise ValueError(f"{system}: switch_max ({p['switch_max']!r}) is below switch_min ({p['switch_min']!r})")
    if p["forcing_sd"] < 0:
        raise ValueError(f"{system}: forcing_sd must be >= 0, not {p['forcing_sd']!r}")
    return p


# -- the truth --------------------------------------------------------------------------------------------
def true_lyapunov(system: str, params: Mapping[str, float]) -> float | None:
    """Largest Lyapunov exponent per second (the formulas of the module's docstring), ``None`` for ``duffing``."""
    p = check_params(system, params)
    if system == "oscillator":
        w, zeta = 2 * math.pi / p["period"], p["zeta"]
        return -zeta * w if zeta < 1 else -w * (zeta - math.sqrt(zeta * zeta - 1))
    if system == "dose":
        return -1.0 / p["tau"]
    return None


def regime(system: str, params: Mapping[str, float]) -> str | None:
    """``fixed_point`` for the linear systems (a stable equilibrium the forcing moves), ``None`` for ``duffing``."""
    return None if system == "duffing" else "fixed_point"


def burn_in_s(system: str, params: Mapping[str, float]) -> float:
    """Seconds simulated and dropped before a record: :data:`SETTLING_TIMES` settling times of the slowest
    decay (at most :data:`MAX_SETTLE_S`), plus ``switch_max`` so the record starts inside a hold."""
    p = check_params(system, params)
    if system == "duffing":
        settle = 2 * p["time_unit"] / p["delta"]  # a well's small oscillations decay as exp(-delta t / 2)
    else:
        settle = -1.0 / true_lyapunov(system, p)
    return min(SETTLING_TIMES * settle, MAX_SETTLE_S) + p["switch_max"]


# -- the forcing ------------------------------------------------------------------------------------------
def hold_samples(params: Mapping[str, float], fs: float) -> tuple[int, int]:
    """Shortest and longest hold of the forcing in samples at ``fs``: ``switch_min`` and ``switch_max`` rounded
    (at least one sample)."""
    lo = max(1, int(round(params["switch_min"] * fs)))
    return lo, max(lo, int(round(params["switch_max"] * fs)))


def forcing(params: Mapping[str, float], n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of the piecewise-constant forcing: holds of :func:`hold_samples` (uniform, inclusive), each at
    a level drawn ``N(0, forcing_sd**2)``; the draws alternate duration, level."""
    lo, hi = hold_samples(params, fs)
    u, t = np.empty(n, dtype=np.float64), 0
    while t < n:
        d = int(rng.integers(lo, hi + 1))
        u[t:t + d] = rng.normal(0.0, params["forcing_sd"])
        t += d
    return u


# -- the response -----------------------------------------------------------------------------------------
def _linear(system: str, p: Mapping[str, float]):
    """``(A, B)`` of ``state' = A state + B u`` (the observed response is ``state[0]``)."""
    if system == "oscillator":
        w, zeta = 2 * math.pi / p["period"], p["zeta"]
        return np.array([[0.0, 1.0], [-w * w, -2 * zeta * w]]), np.array([0.0, w * w])
    return np.array([[-1.0 / p["tau"]]]), np.array([p["gain"] / p["tau"]])


def _zoh(a: np.ndarray, b: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact discretisation over ``h`` of ``state' = A state + B u`` with ``u`` held constant."""
    from scipy.linalg import expm

    k = a.shape[0]
    m = np.zeros((k + 1, k + 1))
    m[:k, :k], m[:k, k] = a * h, b * h
    e = expm(m)
    return e[:k, :k], e[:k, k]


def _duffing_rhs(delta: float):
    def rhs(t, y, level):
        return [y[1], -delta * y[1] + y[0] - y[0] ** 3 + level]

    return rhs


def response(system: str, params: Mapping[str, float], u: np.ndarray, fs: float,
             state: tuple[float, ...] | None = None) -> np.ndarray:
    """The response ``x[k] = x(k / fs)`` to the forcing ``u`` (``u[k]`` held on ``[k / fs, (k + 1) / fs)``) from
    ``state`` at time 0 (oscillator and duffing ``(x, x')``, dose ``(y,)``; default: at rest, a linear system at
    the equilibrium of ``u[0]``, the Duffing oscillator at ``x = 1``)."""
    p = check_params(system, params)
    u = np.asarray(u, dtype=np.float64)
    n = u.size
    x = np.empty(n, dtype=np.float64)
    if system == "duffing":
        from scipy.integrate import solve_ivp

        y = np.array([1.0, 0.0] if state is None else state, dtype=np.float64)
        rhs, scale = _duffing_rhs(p["delta"]), 1.0 / (fs * p["time_unit"])  # time units per sample
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], n]):
            times = np.arange(a, b + 1) * scale
            sol = solve_ivp(rhs, (times[0], times[-1]), y, method="DOP853", t_eval=times, args=(float(u[a]),),
                            rtol=RTOL, atol=ATOL)
            if not sol.success:
                raise ValueError(f"duffing: the integration failed at t = {times[0] * p['time_unit']:g} s: "
                                 f"{sol.message}")
            x[a:b], y = sol.y[0, :-1], sol.y[:, -1]
        if not np.all(np.isfinite(x)):
            raise ValueError("duffing: the response is not finite")
        return x
    a, b = _linear(system, p)
    ad, bd = _zoh(a, b, 1.0 / fs)
    if state is None:  # the equilibrium of u[0]: A s + B u0 = 0
        s = np.linalg.solve(a, -b * (u[0] if n else 0.0))
    else:
        s = np.array(state, dtype=np.float64)
    if s.shape != (a.shape[0],):
        raise ValueError(f"{system}: the state has {a.shape[0]} coordinates, not {s.size}")
    if a.shape[0] == 1:  # scalar recursion: plain floats
        ad0, bd0, s0 = float(ad[0, 0]), float(bd[0]), float(s[0])
        for k in range(n):
            x[k] = s0
            s0 = ad0 * s0 + bd0 * u[k]
        return x
    (a00, a01), (a10, a11) = ad
    b0, b1 = bd
    s0, s1 = float(s[0]), float(s[1])
    for k in range(n):
        x[k] = s0
        s0, s1 = a00 * s0 + a01 * s1 + b0 * u[k], a10 * s0 + a11 * s1 + b1 * u[k]
    return x


def simulate(system: str, params: Mapping[str, float], n: int, fs: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, u)``: ``n`` samples at ``fs`` Hz of the response and of the forcing, after :func:`burn_in_s`; the
    same ``seed`` gives the same bytes (``np.random.default_rng(seed)``: the forcing, then the Duffing well)."""
    p = check_params(system, params)
    if fs <= 0 or not math.isfinite(fs):
        raise ValueError(f"{system}: fs must be positive, not {fs!r}")
    burn = int(math.ceil(burn_in_s(system, p) * fs))
    rng = np.random.default_rng(seed)
    u = forcing(p, burn + n, fs, rng)
    state = (float(rng.choice([-1.0, 1.0])), 0.0) if system == "duffing" else None
    x = response(system, p, u, fs, state)
    return np.ascontiguousarray(x[burn:]), np.ascontiguousarray(u[burn:])
