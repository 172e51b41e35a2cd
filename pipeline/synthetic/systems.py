"""The dysts flows and maps as a deterministic data source: which systems there are, their parameters,
and ``simulate``, which integrates one from a seeded initial condition after a transient.

Flows are integrated by an adaptive Dormand-Prince 5(4) method (``rtol`` :data:`RTOL`, ``atol`` the
same relative to the attractor's standard deviation) that lands exactly on every sample time
``t_k = k * dt``; maps are iterated. Both run in typed Numba kernels that call the system's own dysts
``_rhs`` through a small generated wrapper with one fixed signature, so the kernels are compiled
once and cached on disk; a system's wrapper costs ~0.2 s to compile the first time and is cached
too (as a generated module under ``$NW2_CACHE/synthetic/wrappers``), ~10 ms to load after. Nothing
in them is threaded and nothing calls BLAS or LAPACK: the same name, parameters, ``n`` and seed give
the same bits on every run with the same Numba/LLVM and libm (the transcendental functions come from
the platform's libm; there is no fast-math).

Which dysts systems are here, and which are not (:func:`excluded_systems` says why for each):

- delay equations (infinite-dimensional) and skew products (composites, not systems of their own);
- systems whose vector field exists only as a Python ``rhs`` method on the instance (Lorenz96,
  Colpitts, ...): there is no scalar ``_rhs`` to compile, and a Python-level right-hand side would
  be ~1000x slower than the budget allows;
- systems with array-valued parameters (BickleyJet, ...): a parameter sweep needs scalars;
- a few whose ``_rhs`` Numba cannot compile (:data:`UNCOMPILABLE`).

The one dysts name used twice, ``Duffing`` (the forced oscillator flow and the Holmes map), is
``Duffing`` for the flow and ``DuffingMap`` for the map.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaError
from numba.core.registry import CPUDispatcher

from nw2.pipeline.samples import cache_dir

# ------------------------------------------------------------------------------------------------
# Settings

#: Relative tolerance of the flow integrator; the absolute tolerance is ``RTOL`` times each
#: coordinate's attractor scale. At this tolerance the integration error of a sample is far below
#: anything a window-level metric sees, and the Lyapunov exponents come out to their known values
#: (see ``truth``); halving the step count (``RTOL = 1e-6``) would move Lorenz's lambda1 by < 0.2 %.
RTOL = 1e-8
#: Flows: the transient discarded before the first sample, in periods of the system's DEFAULT
#: parameters (dysts' metadata ``period``): long enough for the slow transients near bifurcations of
#: the ready sweeps (Lorenz's pre-turbulence at rho ~ 14-24 decays within ~50 periods).
TRANSIENT_PERIODS = 100.0
#: Maps: the transient discarded before the first sample, in steps.
MAP_TRANSIENT_STEPS = 1000
#: The initial condition is dysts' default ``ic + PERTURBATION * scale * N(0, 1)`` per coordinate
#: (``scale`` the attractor's standard deviation): small, so the orbit stays in the basin of the
#: attractor dysts annotated, yet enough that seeds give independent orbits once chaos has acted.
#: (In a periodic regime the seeds differ only by the phase on the orbit, if at all.)
PERTURBATION = 0.01
#: An orbit farther than ``DIVERGENCE_FACTOR`` attractor scales from the default attractor's mean
#: (in a bounded coordinate) has diverged. Generous, since attractors grow along a sweep (Lorenz at
#: rho = 250 reaches ~30 scales); true divergence runs to inf long before it matters.
DIVERGENCE_FACTOR = 1000.0
#: The work bound: at most this many integrator steps per default period (a typical system needs
#: 50-900 at default parameters), so a stiff or singular setting fails in bounded time instead of hanging.
MAX_STEPS_PER_PERIOD = 5_000
#: A step below this fraction of the default period is a singularity (finite-time blow-up).
MIN_STEP_FRACTION = 1e-12

# ------------------------------------------------------------------------------------------------
# Errors


class UnknownSystem(ValueError):
    """A system name that is not among :func:`system_names` (the message suggests close names, or
    says why the system is excluded)."""


class ParameterError(ValueError):
    """A parameter the system does not have, or a value that is not a finite number (the message
    names the system, the parameter and the known parameters)."""


class SimulationError(Exception):
    """A setting that cannot be simulated: a non-finite state, divergence, the work bound, or a step
    size collapse. ``str(exc)`` is one line naming the system, its parameters and what went wrong."""

    def __init__(self, system: str, params: Mapping[str, float], reason: str):
        self.system, self.params, self.reason = system, dict(params), reason
        super().__init__(f"{system}({format_params(params)}): {reason}")


def format_params(params: Mapping[str, float]) -> str:
    """``a=1.4, b=0.3``: parameters as the one-line messages print them."""
    return ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(params.items()))


# ------------------------------------------------------------------------------------------------
# What a system is


@dataclass(frozen=True)
class Forcing:
    """The periodic drive of a forced system written autonomously: the phase coordinate
    ``state[phase_index]`` advances at the constant rate
    ``d phase / dt = frequency_factor * params[frequency]``, and the drive entering the equations is

        forcing(t) = prod(params[a] for a in amplitude) * waveform(phase(t)),

    e.g. Duffing ``gamma * cos(z)``, ForcedVanDerPol ``a * sin(z)``."""

    phase_index: int
    amplitude: tuple[str, ...]
    frequency: str
    waveform: Literal["cos", "sin"]
    frequency_factor: float = 1.0

    def angular_frequency(self, params: Mapping[str, float]) -> float:
        """The phase speed ``omega = frequency_factor * params[frequency]`` (radians per time unit)."""
        return self.frequency_factor * float(params[self.frequency])

    def signal(self, values: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
        """The forcing at every sample of ``values`` (shape ``(n, dimension)``)."""
        gain = math.prod(float(params[a]) for a in self.amplitude)
        wave = np.cos if self.waveform == "cos" else np.sin
        return gain * wave(values[:, self.phase_index])


@dataclass(frozen=True)
class SystemInfo:
    """One supported system. ``params`` are dysts' defaults (scalars; their sorted order is the
    order dysts passes them). ``period`` (flows) is dysts' metadata period at default parameters, in
    time units, the unit of ``points_per_period``. ``annotated`` holds dysts' published estimates
    where present (``maximum_lyapunov_estimated``, ``correlation_dimension``,
    ``kaplan_yorke_dimension``). ``unbounded`` lists coordinates that grow without bound by design
    (a forcing phase, an angle): they are exempt from the divergence check and are best dropped as
    signal channels."""

    name: str
    kind: Literal["flow", "map"]
    dimension: int
    params: dict[str, float]
    period: float | None
    annotated: dict[str, float]
    forcing: Forcing | None
    unbounded: tuple[int, ...] = ()


@dataclass(frozen=True)
class Trajectory:
    """``values`` ``(n, dimension)`` float64, every coordinate as integrated (unbounded phases
    unwrapped); ``dt`` the time units per sample (flows: ``period / points_per_period`` with the
    default-parameter period, so a sweep keeps one sampling; maps: 1.0); ``forcing`` ``(n,)`` the
    drive at the same samples for forced systems, else None."""

    values: np.ndarray
    dt: float
    forcing: np.ndarray | None = None


#: Forced systems (dysts' ``nonautonomous``) and how their drive is formed.
FORCING: dict[str, Forcing] = {
    "ArnoldWeb": Forcing(4, (), "w", "cos"),
    "DoubleGyre": Forcing(2, ("eps",), "omega", "sin"),
    "Duffing": Forcing(2, ("gamma",), "omega", "cos"),
    "ForcedBrusselator": Forcing(2, ("f",), "w", "cos"),
    "ForcedFitzHughNagumo": Forcing(2, ("f",), "omega", "sin"),
    "ForcedVanDerPol": Forcing(2, ("a",), "w", "sin"),
    "OscillatingFlow": Forcing(2, ("b",), "omega", "sin"),
    "StickSlipOscillator": Forcing(2, ("eps", "gamma"), "w", "cos"),
    "TurchinHanski": Forcing(2, ("e",), "lamb", "sin", 2.0 * math.pi),
}

#: Systems with a scalar ``_rhs`` that Numba cannot compile, and why.
UNCOMPILABLE: dict[str, str] = {
    "FluidTrampoline": "its _rhs uses np.heaviside, which Numba does not compile",
}

#: Map coordinates that are angles left unwrapped by dysts (its metadata lists none for maps).
_MAP_UNBOUNDED: dict[str, tuple[int, ...]] = {"Circle": (0,), "Chirikov": (0, 1)}

#: dysts map names that collide with a flow's, and the name they have here.
_MAP_RENAMES = {"Duffing": "DuffingMap"}

_ANNOTATIONS = ("maximum_lyapunov_estimated", "correlation_dimension", "kaplan_yorke_dimension")


@dataclass(frozen=True)
class _Entry:
    """A supported system with what the kernels need beyond :class:`SystemInfo`."""

    info: SystemInfo
    rhs: Callable              # dysts' scalar _rhs (a Numba dispatcher, or a plain function to jit)
    jac: Callable | None       # dysts' scalar _jac, when the system has one
    ic: np.ndarray
    mean: np.ndarray | None    # the default attractor's statistics (flows: dysts metadata; maps: None,
    std: np.ndarray | None     # measured on first use by attractor_scale)
    param_order: tuple[str, ...] = field(default=())


def _is_numba(function) -> bool:
    return isinstance(function, CPUDispatcher)


def _arguments(function) -> list[str]:
    return list(inspect.signature(getattr(function, "py_func", function)).parameters)


@functools.cache
def _registry() -> tuple[dict[str, _Entry], dict[str, str]]:
    """``(supported, excluded)``: supported systems by name, and the reason for every excluded one.
    Built once from dysts' classes and its metadata files."""
    import dysts.flows as dysts_flows
    import dysts.maps as dysts_maps
    from dysts.base import DATAPATH_CONTINUOUS, DATAPATH_DISCRETE, BaseDyn, DynMap, DynSys, DynSysDelay

    supported: dict[str, _Entry] = {}
    excluded: dict[str, str] = {}
    for module, path, kind in ((dysts_flows, DATAPATH_CONTINUOUS, "flow"), (dysts_maps, DATAPATH_DISCRETE, "map")):
        with open(path) as handle:
            metadata = json.load(handle)
        base = DynSys if kind == "flow" else DynMap
        for dysts_name, cls in sorted(inspect.getmembers(module, inspect.isclass)):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseDyn):
                continue
            name = _MAP_RENAMES.get(dysts_name, dysts_name) if kind == "map" else dysts_name
            reason, entry = _examine(cls, name, kind, metadata.get(dysts_name), base, DynSysDelay)
            if entry is None:
                excluded[name] = reason
            else:
                supported[name] = entry
    excluded["SkewProduct"] = "a skew product couples two systems; build it from its parts"
    return supported, excluded


def _examine(cls, name, kind, meta, base, delay_base) -> tuple[str, _Entry | None]:
    """Whether one dysts class can be supported: ``(reason it cannot, None)`` or ``("", entry)``."""
    if issubclass(cls, delay_base):
        return "a delay differential equation (infinite-dimensional state)", None
    if not issubclass(cls, base) or meta is None or "parameters" not in meta:
        return "no metadata (parameters) in dysts", None
    if name in UNCOMPILABLE:
        return UNCOMPILABLE[name], None
    params = meta["parameters"]
    arrays = sorted(k for k, v in params.items() if not isinstance(v, (int, float)) or isinstance(v, bool))
    if arrays:
        return f"array-valued parameters ({', '.join(arrays)})", None
    rhs = getattr(cls, "_rhs", None)
    if rhs is None or "_rhs" not in {k for c in cls.__mro__ for k in c.__dict__ if c.__name__ != "BaseDyn"}:
        return "the vector field is only a Python method `rhs` (no scalar _rhs to compile)", None
    if not (_is_numba(rhs) or inspect.isfunction(rhs)) or _arguments(rhs)[:1] == ["self"]:
        return "its _rhs is an instance method (it needs the dysts object)", None
    ic = np.asarray(meta.get("initial_conditions", []), dtype=np.float64).ravel()
    dimension = int(meta.get("embedding_dimension", meta.get("dimension", ic.size)))
    if ic.size != dimension or dimension == 0:
        return "no default initial condition of the system's dimension", None
    order = tuple(sorted(params))
    expected = dimension + (1 if kind == "flow" else 0) + len(order)
    arguments = _arguments(rhs)
    if len(arguments) != expected:
        wanted = f"state{' + t' if kind == 'flow' else ''} + {len(order)} parameters"
        return f"its _rhs takes {len(arguments)} arguments, not {wanted}", None
    if kind == "flow" and not meta.get("period"):
        return "no period in dysts' metadata", None
    jac = getattr(cls, "_jac", None)
    has_jac = kind == "flow" and _is_numba(jac) and len(_arguments(jac)) == expected
    annotated = {k: float(meta[k]) for k in _ANNOTATIONS if isinstance(meta.get(k), (int, float))}
    if kind == "flow":
        unbounded = tuple(int(i) for i in meta.get("unbounded_indices") or ())
        mean = np.asarray(meta.get("mean", np.zeros(dimension)), dtype=np.float64)
        std = np.asarray(meta.get("std", np.ones(dimension)), dtype=np.float64)
        if mean.shape != (dimension,) or std.shape != (dimension,) or not np.all(np.isfinite(std)):
            mean, std = np.zeros(dimension), np.ones(dimension)
    else:
        unbounded = _MAP_UNBOUNDED.get(name, ())
        mean = std = None
    info = SystemInfo(
        name=name, kind=kind, dimension=dimension, params={k: float(params[k]) for k in order},
        period=float(meta["period"]) if kind == "flow" else None, annotated=annotated,
        forcing=FORCING.get(name) if kind == "flow" else None, unbounded=unbounded)
    return "", _Entry(info, rhs, jac if has_jac else None, ic, mean, std, order)


def _entry(name: str) -> _Entry:
    supported, excluded = _registry()
    if name in supported:
        return supported[name]
    if name in excluded:
        raise UnknownSystem(f"system {name!r} is not supported: {excluded[name]}")
    lowered = {n.lower(): n for n in supported}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise UnknownSystem(f"unknown system {name!r}{hint} (system_names() lists the {len(supported)} supported)")


def system_names(kind: Literal["flow", "map", "all"] = "all") -> tuple[str, ...]:
    """The supported systems, sorted; ``kind`` selects flows, maps or both. Delay systems, skew
    products and the systems :func:`excluded_systems` lists are not among them."""
    if kind not in ("flow", "map", "all"):
        raise ValueError(f"kind must be 'flow', 'map' or 'all', not {kind!r}")
    supported, _ = _registry()
    return tuple(sorted(n for n, e in supported.items() if kind == "all" or e.info.kind == kind))


def excluded_systems() -> dict[str, str]:
    """Every dysts system that is not supported, with the reason."""
    return dict(sorted(_registry()[1].items()))


def system_info(name: str) -> SystemInfo:
    """The :class:`SystemInfo` of a supported system (its dicts are the caller's copies);
    :class:`UnknownSystem` otherwise."""
    info = _entry(name).info
    return dataclasses.replace(info, params=dict(info.params), annotated=dict(info.annotated))


def resolve_params(name: str, params: Mapping[str, float] | None) -> dict[str, float]:
    """The system's default parameters overridden by ``params`` (all as float); a parameter the
    system does not have, or a value that is not a finite real number, is a :class:`ParameterError`."""
    info = system_info(name)
    resolved = dict(info.params)
    for key, value in (params or {}).items():
        if key not in resolved:
            known = ", ".join(info.params) or "none"
            close = difflib.get_close_matches(str(key), list(info.params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"{name} has no parameter {key!r}{hint}; its parameters: {known}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name}: parameter {key!r} must be a number, not {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ParameterError(f"{name}: parameter {key!r} must be a finite number, not {value!r}")
        resolved[key] = number
    return resolved


# ------------------------------------------------------------------------------------------------
# Compiled kernels. Every system is reached through two generated wrappers of fixed signature:
#   rhs(state, t, params, out):  out[:d] = f(state[:d], t)   (maps: the next state)
#   jac(state, t, params, out):  out[:d, :d] = df/dstate     (flows with a dysts _jac)
# passed as first-class functions, so the kernels below are compiled once (and cached) for all.

_VECTOR = types.float64[::1]
_MATRIX = types.float64[:, ::1]
RHS_SIGNATURE = types.void(_VECTOR, types.float64, _VECTOR, _VECTOR)
JAC_SIGNATURE = types.void(_VECTOR, types.float64, _VECTOR, _MATRIX)
RhsFunction = types.FunctionType(RHS_SIGNATURE)
JacFunction = types.FunctionType(JAC_SIGNATURE)

#: Central-difference step relative to the coordinate's magnitude (or scale): cbrt(machine epsilon),
#: which balances the O(h^2) truncation against the O(eps/h) rounding error.
FD_RELATIVE_STEP = 6e-6

# Dormand-Prince 5(4) tableau (Hairer, Norsett & Wanner, Solving ODEs I, table 5.2).
_C2, _C3, _C4, _C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
_A21 = 1 / 5
_A31, _A32 = 3 / 40, 9 / 40
_A41, _A42, _A43 = 44 / 45, -56 / 15, 32 / 9
_A51, _A52, _A53, _A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
_A61, _A62, _A63, _A64, _A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
_A71, _A73, _A74, _A75, _A76 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
# e = b(5th order) - b(4th order): the embedded error estimate.
_E1, _E3, _E4, _E5, _E6, _E7 = 71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40

#: Step outcomes and kernel statuses.
OK, NON_FINITE, DIVERGED, WORK_BOUND, STEP_UNDERFLOW = 0, 1, 2, 3, 4
STATUS_TEXT = {
    NON_FINITE: "the state became non-finite",
    DIVERGED: "the orbit diverged (left the default attractor's scale by a factor {factor:g})",
    WORK_BOUND: "the work bound ({bound} steps) was exhausted: stiff or too fast for an explicit integrator",
    STEP_UNDERFLOW: "the step size collapsed (a singularity or finite-time blow-up)",
}


@njit(JAC_SIGNATURE, cache=True)
def _no_jacobian(state, t, params, out):
    """The placeholder passed where a system has no dysts ``_jac`` (never called then)."""
    out[:, :] = 0.0


@njit(cache=True, inline="always")
def _derivative(rhs, jac, has_jac, active, m, d, y, t, params, fd_scale, out, jacobian, probe, plus, minus):
    """The derivative of the (possibly augmented) state ``y``: ``out[:d] = f(y[:d], t)`` and, when
    ``m > 0``, the tangent dynamics ``dQ/dt = J_aa Q`` of the ``m x m`` matrix ``Q`` stored row-major
    in ``y[d:]``, ``J_aa`` the Jacobian restricted to the ``active`` coordinates: dysts' ``_jac`` if
    ``has_jac``, else central differences ``(f(y + h e_j) - f(y - h e_j)) / 2h`` with
    ``h = FD_RELATIVE_STEP * max(|y_j|, fd_scale_j)`` (one-sided where a probe leaves the domain)."""
    rhs(y, t, params, out)
    if m == 0:
        return
    if has_jac:
        jac(y, t, params, jacobian)
    else:
        for i in range(d):
            probe[i] = y[i]
        for a in range(m):
            j = active[a]
            h = FD_RELATIVE_STEP * max(abs(y[j]), fd_scale[j])
            h = (y[j] + h) - y[j]   # a step that is exact in floating point
            probe[j] = y[j] + h
            rhs(probe, t, params, plus)
            probe[j] = y[j] - h
            rhs(probe, t, params, minus)
            probe[j] = y[j]
            forward, backward = True, True
            for i in range(d):
                forward = forward and math.isfinite(plus[i])
                backward = backward and math.isfinite(minus[i])
            for i in range(d):
                # one-sided at the edge of the domain (a probe across it, e.g. p**1.25 at p < 0, is nan)
                if forward and backward:
                    jacobian[i, j] = (plus[i] - minus[i]) / (2.0 * h)
                elif forward:
                    jacobian[i, j] = (plus[i] - out[i]) / h
                else:
                    jacobian[i, j] = (out[i] - minus[i]) / h
    for r in range(m):
        row = active[r]
        for c in range(m):
            total = 0.0
            for k in range(m):
                total += jacobian[row, active[k]] * y[d + k * m + c]
            out[d + r * m + c] = total


@njit(cache=True, inline="always")
def _dopri5_trial(rhs, jac, has_jac, active, m, d, y, t, h, params, fd_scale, rtol, atol,
                  k1, k2, k3, k4, k5, k6, k7, trial, jacobian, probe, plus, minus):
    """One Dormand-Prince trial step of size ``h`` from ``(t, y)``, with ``k1 = f(t, y)`` given:
    fills ``trial`` (the 5th-order solution) and the stages ``k2..k7`` (``k7 = f(t + h, trial)``,
    the next step's ``k1`` when this one is accepted) and returns the RMS error norm
    ``sqrt(mean((err_i / (atol_i + rtol max(|y_i|, |trial_i|)))^2))``; a step is accepted when <= 1.
    ``jacobian``, ``probe``, ``plus``, ``minus`` are scratch for :func:`_derivative`. (Separate
    arrays and inlining, not views of one workspace: that halves the cost of a step.)"""
    n = y.shape[0]
    stage = trial
    for i in range(n):
        stage[i] = y[i] + h * _A21 * k1[i]
    _derivative(rhs, jac, has_jac, active, m, d, stage, t + _C2 * h, params, fd_scale, k2, jacobian, probe, plus, minus)
    for i in range(n):
        stage[i] = y[i] + h * (_A31 * k1[i] + _A32 * k2[i])
    _derivative(rhs, jac, has_jac, active, m, d, stage, t + _C3 * h, params, fd_scale, k3, jacobian, probe, plus, minus)
    for i in range(n):
        stage[i] = y[i] + h * (_A41 * k1[i] + _A42 * k2[i] + _A43 * k3[i])
    _derivative(rhs, jac, has_jac, active, m, d, stage, t + _C4 * h, params, fd_scale, k4, jacobian, probe, plus, minus)
    for i in range(n):
        stage[i] = y[i] + h * (_A51 * k1[i] + _A52 * k2[i] + _A53 * k3[i] + _A54 * k4[i])
    _derivative(rhs, jac, has_jac, active, m, d, stage, t + _C5 * h, params, fd_scale, k5, jacobian, probe, plus, minus)
    for i in range(n):
        stage[i] = y[i] + h * (_A61 * k1[i] + _A62 * k2[i] + _A63 * k3[i] + _A64 * k4[i] + _A65 * k5[i])
    _derivative(rhs, jac, has_jac, active, m, d, stage, t + h, params, fd_scale, k6, jacobian, probe, plus, minus)
    for i in range(n):
        trial[i] = y[i] + h * (_A71 * k1[i] + _A73 * k3[i] + _A74 * k4[i] + _A75 * k5[i] + _A76 * k6[i])
    _derivative(rhs, jac, has_jac, active, m, d, trial, t + h, params, fd_scale, k7, jacobian, probe, plus, minus)
    total = 0.0
    for i in range(n):
        error = h * (_E1 * k1[i] + _E3 * k3[i] + _E4 * k4[i] + _E5 * k5[i] + _E6 * k6[i] + _E7 * k7[i])
        scale = atol[i] + rtol * max(abs(y[i]), abs(trial[i]))
        total += (error / scale) ** 2
    return math.sqrt(total / n)


@njit(cache=True)
def step_factor(error, rejected):
    """The next step size over this one: ``0.9 error^(-1/5)`` clamped to [0.2, 10] (to [0.2, 1] after
    a rejection), the standard controller of a 5th-order pair."""
    if not math.isfinite(error):
        return 0.2
    factor = 10.0 if error == 0.0 else 0.9 * error ** -0.2
    return min(1.0 if rejected else 10.0, max(0.2, factor))


@njit(cache=True)
def _outside(y, checked, center, radius):
    """The status of a state: non-finite, outside ``radius`` of ``center`` in a checked coordinate,
    or OK."""
    for i in range(checked.shape[0]):
        if not math.isfinite(y[i]):
            return NON_FINITE
        if checked[i] and abs(y[i] - center[i]) > radius:
            return DIVERGED
    return OK


@njit(types.int64(RhsFunction, JacFunction, _VECTOR, _VECTOR, types.float64, types.int64, _MATRIX, types.float64,
                  _VECTOR, types.int64, types.float64, _VECTOR, types.float64, types.boolean[::1], _VECTOR),
      cache=True, nogil=True)
def _sample_flow(rhs, jac, y, params, dt, skip, out, rtol, atol, max_steps, h_min, center, radius, checked, info):
    """Integrate ``y`` (in place) from ``t = 0``, discard ``skip`` sample intervals, then store the
    state at ``t_k = (skip + k) dt`` in ``out[k]``. Each sample time is hit exactly (the step is
    clipped to it; the controller's own step is kept for the next one), so no interpolation enters
    the samples. Returns a status; ``info`` gets ``[time reached, steps taken]``."""
    d = y.shape[0]
    active = np.zeros(0, dtype=np.int64)
    k1, k2, k3, k4, k5, k6, k7 = (np.empty(d), np.empty(d), np.empty(d), np.empty(d), np.empty(d), np.empty(d),
                                  np.empty(d))
    trial, jacobian, probe, plus, minus = np.empty(d), np.zeros((d, d)), np.empty(d), np.empty(d), np.empty(d)
    _derivative(rhs, jac, False, active, 0, d, y, 0.0, params, atol, k1, jacobian, probe, plus, minus)
    t, h, steps = 0.0, dt * 0.1, 0
    for sample in range(skip + out.shape[0]):
        t_end = sample * dt
        while t < t_end:
            if steps >= max_steps:
                info[0], info[1] = t, steps
                return WORK_BOUND
            if h < h_min:
                info[0], info[1] = t, steps
                return STEP_UNDERFLOW
            last = t + h >= t_end
            h_try = t_end - t if last else h
            error = _dopri5_trial(rhs, jac, False, active, 0, d, y, t, h_try, params, atol, rtol, atol,
                                  k1, k2, k3, k4, k5, k6, k7, trial, jacobian, probe, plus, minus)
            steps += 1
            if error <= 1.0:
                t = t_end if last else t + h_try
                for i in range(d):
                    y[i] = trial[i]
                    k1[i] = k7[i]
                proposed = h_try * step_factor(error, False)
                # a step clipped to land on the sample says nothing against the controller's own step
                h = max(h, proposed) if last else proposed
            else:
                h = h_try * step_factor(error, True)
        status = _outside(y, checked, center, radius)
        if status != OK:
            info[0], info[1] = t, steps
            return status
        if sample >= skip:
            for i in range(d):
                out[sample - skip, i] = y[i]
    info[0], info[1] = t, steps
    return OK


@njit(types.int64(RhsFunction, _VECTOR, _VECTOR, types.int64, _MATRIX, _VECTOR, types.float64, types.boolean[::1],
                  _VECTOR), cache=True, nogil=True)
def _iterate_map(rhs, x, params, skip, out, center, radius, checked, info):
    """Iterate the map from ``x`` (in place): discard ``skip`` steps, then store the next
    ``out.shape[0]`` states. Returns a status; ``info`` gets ``[steps taken, 0]``."""
    d = x.shape[0]
    nxt = np.empty(d)
    total = skip + out.shape[0]
    for step in range(total):
        rhs(x, 0.0, params, nxt)
        for i in range(d):
            x[i] = nxt[i]
        status = _outside(x, checked, center, radius)
        if status != OK:
            info[0] = step + 1
            return status
        if step >= skip:
            for i in range(d):
                out[step - skip, i] = x[i]
    info[0] = total
    return OK


# ------------------------------------------------------------------------------------------------
# Per-system wrappers


def _wrapper_source(kind: str, dimension: int, n_params: int, what: str) -> str:
    state = [f"state[{i}]" for i in range(dimension)]
    arguments = ", ".join(state + (["t"] if kind == "flow" else []) + [f"params[{j}]" for j in range(n_params)])
    if what == "rhs":
        if dimension == 1:
            body = f"    out[0] = system_function({arguments})"
        else:
            body = f"    r = system_function({arguments})\n" + "\n".join(
                f"    out[{i}] = r[{i}]" for i in range(dimension))
    else:
        body = f"    r = system_function({arguments})\n" + "\n".join(
            f"    out[{i}, {j}] = r[{i}][{j}]" for i in range(dimension) for j in range(dimension))
    return f"def wrapper(state, t, params, out):\n{body}\n"


def _wrapper_module(function, body: str, what: str) -> str:
    """The source of a module defining the cached wrapper ``wrapper`` around ``function``."""
    py_func = getattr(function, "py_func", function)
    owner = py_func.__qualname__.split(".")[0]
    target = f"{owner}._rhs" if what == "rhs" else f"{owner}._jac"
    if not _is_numba(function):   # a plain scalar function (IsothermalChemical, VallisElNino)
        target = f"njit({target})"
    signature = "RHS_SIGNATURE" if what == "rhs" else "JAC_SIGNATURE"
    return (f'"""Generated by nw2.pipeline.synthetic.systems: the fixed-signature wrapper of {owner}.{what}."""\n'
            f"from numba import njit\n"
            f"from {py_func.__module__} import {owner}\n"
            f"from nw2.pipeline.synthetic.systems import {signature}\n\n"
            f"system_function = {target}\n\n\n"
            f"@njit({signature}, cache=True)\n{body}")


def _wrapper_directory() -> Path | None:
    """Where generated wrappers are written so Numba can cache them: ``$NW2_CACHE/synthetic/wrappers``
    (``~/.cache/nw2``), or None when it cannot be written (then the wrappers compile in memory)."""
    root = cache_dir() / "synthetic" / "wrappers"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def _load_wrapper_module(directory: Path, function, body: str, what: str):
    """Write (once) and import the wrapper module for ``function``, returning its ``wrapper``."""
    import dysts
    import numba

    py_func = getattr(function, "py_func", function)
    source = _wrapper_module(function, body, what)
    versions = [getattr(dysts, "__version__", ""), numba.__version__]
    key = hashlib.sha256("\0".join([inspect.getsource(py_func), source, *versions]).encode()).hexdigest()[:16]
    path = directory / f"{py_func.__qualname__.split('.')[0]}_{what}_{key}.py"
    if not path.exists():
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(source)
        os.replace(scratch, path)   # atomic: concurrent processes see the whole file or none
    module_name = f"nw2_synthetic_wrapper_{path.stem}"
    if module_name not in sys.modules:   # Numba's cache finds the module by name
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name].wrapper


@functools.cache
def _compile_wrapper(function, kind: str, dimension: int, n_params: int, what: str):
    """The fixed-signature wrapper around a dysts ``_rhs``/``_jac`` (shared by systems that share
    the function, e.g. Arneodo and Coullet).

    Compiling one costs ~0.15 s, mostly dysts' own function; so the wrapper is written as a module
    file named by a hash of everything it depends on (dysts' function source and version, Numba's
    version, the template) and compiled with ``cache=True``: later processes load it in ~10 ms. A
    changed dysts function gets a new file, so a stale cache is never used."""
    body = _wrapper_source(kind, dimension, n_params, what)
    directory = _wrapper_directory()
    if directory is not None:
        try:
            return _load_wrapper_module(directory, function, body, what)
        except (OSError, ImportError):
            pass   # an unwritable or damaged cache: compile in memory instead
    target = function if _is_numba(function) else njit(function)
    namespace = {"system_function": target}
    exec(body, namespace)   # noqa: S102 - our own template
    return njit(RHS_SIGNATURE if what == "rhs" else JAC_SIGNATURE)(namespace["wrapper"])


def compiled_rhs(name: str, params: Mapping[str, float] | None = None):
    """The compiled right-hand side wrapper of a system (a :class:`SimulationError` if Numba cannot
    compile dysts' function)."""
    entry = _entry(name)
    try:
        return _compile_wrapper(entry.rhs, entry.info.kind, entry.info.dimension, len(entry.param_order), "rhs")
    except NumbaError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SimulationError(name, params or entry.info.params, f"Numba cannot compile its _rhs ({first})") from None


def compiled_jacobian(name: str, params: Mapping[str, float] | None = None):
    """``(wrapper, True)`` around dysts' analytic ``_jac``, or ``(placeholder, False)`` when the
    system has none (or Numba cannot compile it): the caller then differences the right-hand side."""
    entry = _entry(name)
    if entry.jac is None:
        return _no_jacobian, False
    try:
        return _compile_wrapper(entry.jac, "flow", entry.info.dimension, len(entry.param_order), "jac"), True
    except NumbaError:
        return _no_jacobian, False


def params_vector(name: str, params: Mapping[str, float]) -> np.ndarray:
    """Resolved parameters as the kernels take them: in sorted-name order, dysts' convention."""
    entry = _entry(name)
    return np.array([params[k] for k in entry.param_order], dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# Scales, initial conditions, simulation


@dataclass(frozen=True)
class Scale:
    """The default attractor's ``mean`` and per-coordinate ``scale`` (its standard deviation, with a
    floor so a degenerate coordinate still gets a usable scale), the coordinates the divergence
    check watches (``checked``) and its ``radius``."""

    mean: np.ndarray
    scale: np.ndarray
    checked: np.ndarray
    radius: float


def _floored(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    # A coordinate that does not move at default parameters (a fixed-point map, a constant) still
    # needs a scale for perturbations, tolerances and difference steps.
    return np.maximum(np.abs(std), 1e-3 * np.maximum(np.abs(mean), 1.0))


@functools.cache
def attractor_scale(name: str) -> Scale:
    """The :class:`Scale` of a system's default attractor: flows from dysts' metadata ``mean``/``std``;
    maps (dysts has none) measured on 2000 steps after 1000 from the default initial condition at
    default parameters."""
    entry = _entry(name)
    info = entry.info
    checked = np.ones(info.dimension, dtype=np.bool_)
    checked[list(info.unbounded)] = False
    if info.kind == "flow":
        mean, std = entry.mean, entry.std
    else:
        out = np.empty((2000, info.dimension))
        x = entry.ic.copy()
        status = _iterate_map(compiled_rhs(name), x, params_vector(name, info.params), 1000, out,
                              np.zeros(info.dimension), np.inf, checked, np.zeros(2))
        if status != OK:
            raise SimulationError(name, info.params, "the default orbit itself is not finite")
        mean, std = out.mean(axis=0), out.std(axis=0)
    scale = _floored(mean, std)
    radius = DIVERGENCE_FACTOR * float(scale[checked].max()) if checked.any() else math.inf
    return Scale(mean.astype(np.float64), scale.astype(np.float64), checked, radius)


def initial_state(name: str, seed: int) -> np.ndarray:
    """dysts' default initial condition plus ``PERTURBATION * scale * N(0, 1)`` from
    ``np.random.default_rng(seed)`` in every coordinate but a forcing phase (which starts at dysts'
    phase, so the drive's phase is the same for every seed)."""
    entry = _entry(name)
    scale = attractor_scale(name)
    noise = np.random.default_rng(seed).standard_normal(entry.info.dimension)
    if entry.info.forcing is not None:
        noise[entry.info.forcing.phase_index] = 0.0
    return entry.ic + PERTURBATION * scale.scale * noise


def _check_count(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def run_flow(name: str, params: Mapping[str, float], state: np.ndarray, n: int, dt: float, skip: int) -> np.ndarray:
    """Integrate a flow from ``state`` (in place), discard ``skip`` samples and return the next ``n``
    (the kernel behind :func:`simulate`, also used by ``truth`` for its transient)."""
    info = system_info(name)
    scale = attractor_scale(name)
    out = np.empty((n, info.dimension))
    periods = (skip + n) * dt / info.period
    max_steps = int(MAX_STEPS_PER_PERIOD * periods) + 10_000
    report = np.zeros(2)
    status = _sample_flow(compiled_rhs(name, params), _no_jacobian, state, params_vector(name, params), dt, skip, out,
                          RTOL, RTOL * scale.scale, max_steps, MIN_STEP_FRACTION * info.period, scale.mean,
                          scale.radius, scale.checked, report)
    if status != OK:
        reason = STATUS_TEXT[status].format(factor=DIVERGENCE_FACTOR, bound=max_steps)
        raise SimulationError(name, params, f"{reason} at t={report[0]:.6g} after {int(report[1])} steps")
    return out


def run_map(name: str, params: Mapping[str, float], state: np.ndarray, n: int, skip: int) -> np.ndarray:
    """Iterate a map from ``state`` (in place), discard ``skip`` steps and return the next ``n``."""
    info = system_info(name)
    scale = attractor_scale(name)
    out = np.empty((n, info.dimension))
    report = np.zeros(2)
    status = _iterate_map(compiled_rhs(name, params), state, params_vector(name, params), skip, out, scale.mean,
                          scale.radius, scale.checked, report)
    if status != OK:
        reason = STATUS_TEXT[status].format(factor=DIVERGENCE_FACTOR, bound=0)
        raise SimulationError(name, params, f"{reason} at step {int(report[0])}")
    return out


def transient_samples(info: SystemInfo, points_per_period: float, transient: float | None) -> int:
    """The samples discarded before the first kept one: flows ``transient`` default periods
    (:data:`TRANSIENT_PERIODS` when None) at ``points_per_period``; maps ``transient`` steps
    (:data:`MAP_TRANSIENT_STEPS` when None)."""
    if transient is not None and (not math.isfinite(transient) or transient < 0):
        raise ValueError(f"transient must be a finite number >= 0, not {transient!r}")
    if info.kind == "map":
        return int(round(MAP_TRANSIENT_STEPS if transient is None else transient))
    return int(round((TRANSIENT_PERIODS if transient is None else transient) * points_per_period))


def simulate(name: str, params: Mapping[str, float] | None, n: int, *, points_per_period: float = 50,
             seed: int = 0, transient: float | None = None) -> Trajectory:
    """Simulate a system from a seeded initial condition after a transient.

    Parameters
    ----------
    name, params
        The system and parameter overrides (:func:`resolve_params`).
    n
        Samples to return.
    points_per_period
        Flows: samples per default-parameter period, ``dt = period / points_per_period``. Ignored by
        maps (one sample per step).
    seed
        Seeds the perturbation of the initial condition (:func:`initial_state`).
    transient
        Discarded first: flows in default periods (:data:`TRANSIENT_PERIODS`), maps in steps
        (:data:`MAP_TRANSIENT_STEPS`).

    Returns
    -------
    Trajectory
        The ``(n, dimension)`` samples, ``dt``, and the forcing signal for forced systems.

    Raises
    ------
    UnknownSystem, ParameterError
        For a name or parameter that does not exist.
    SimulationError
        A non-finite state, divergence (an orbit beyond :data:`DIVERGENCE_FACTOR` default attractor
        scales), the work bound (:data:`MAX_STEPS_PER_PERIOD`) or a collapsed step size.
    """
    info = system_info(name)
    resolved = resolve_params(name, params)
    n = _check_count(n, "n", 1)
    if not (isinstance(points_per_period, (int, float)) and math.isfinite(points_per_period) and points_per_period > 0):
        raise ValueError(f"points_per_period must be a positive number, not {points_per_period!r}")
    _check_count(seed, "seed", 0)
    skip = transient_samples(info, points_per_period, transient)
    state = initial_state(name, seed)
    if info.kind == "map":
        values, dt = run_map(name, resolved, state, n, skip), 1.0
    else:
        dt = info.period / points_per_period
        values = run_flow(name, resolved, state, n, dt, skip)
    forcing = info.forcing.signal(values, resolved) if info.forcing is not None else None
    return Trajectory(values=values, dt=float(dt), forcing=forcing)
