"""The true dynamics of a (system, parameters) setting: its Lyapunov spectrum, from the Jacobian by the
tangent-space method, and the regime that spectrum implies.

The spectrum: the state and an orthonormal frame ``Q`` of tangent vectors evolve together,

    flows:  dx/dt = f(x),  dQ/dt = J(x) Q        maps:  x' = f(x),  Q' = J(x) Q,

and after every integrator step (flows) or every iteration (maps) ``Q`` is re-orthonormalised by
modified Gram-Schmidt, ``Q = Q' R``; the exponents are the time averages of ``ln R_jj``,

    lambda_j = (1 / T) sum ln R_jj        (flows per time unit, maps per step).

``J`` is dysts' analytic ``_jac`` where the flow has one, otherwise central differences of the
right-hand side (all maps: dysts gives them no Jacobian). The flow's tangent equations ride in the
same adaptive Dormand-Prince integrator as its state (error control on both), the frame is
re-orthonormalised after each accepted step, which keeps it well conditioned however strongly the
flow contracts. A forced system written autonomously has a phase coordinate ``z`` with
``dz/dt = omega`` and a zero row in its Jacobian: its exponent is exactly 0, so the frame evolves in
the other coordinates only (the invariant subspace ``dz = 0``) and the 0 is inserted exactly.

The run: the same initial condition and transient as ``simulate(name, params, seed=seed)`` (the
frame starts where that trajectory's transient ends), then :data:`ALIGN_PERIODS` to align the
frame, then :data:`AVERAGE_PERIODS` of averaging (maps: :data:`MAP_ALIGN_STEPS`,
:data:`MAP_AVERAGE_STEPS`). If the two halves of the average imply different regimes the orbit was
still settling, and the run is continued from where it ended (:data:`MAX_CONTINUATIONS`).

Accuracy against known answers (``tests/test_synthetic_systems.py``): logistic r=4 ln 2 to 1e-3,
Henon 0.4192 to 2e-3 (its sum ln 0.3 to 1e-9), Lorenz 0.9056 / 0 / -14.572 to ~1 % (seed scatter
0.6 %, the sum -(sigma + 1 + beta) to 1e-5), Rossler 0.0714 to ~5 %, a flow's sum equal to its mean
divergence. Cost after compilation: ~0.05-0.1 s for a typical 3-D flow, 0.01-0.03 s for a map.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit, types

from .systems import (
    DIVERGED, FD_RELATIVE_STEP, MAX_STEPS_PER_PERIOD, MIN_STEP_FRACTION, NON_FINITE, OK, STEP_UNDERFLOW,
    WORK_BOUND, JacFunction, RhsFunction, SimulationError, _derivative, _dopri5_trial, _outside, attractor_scale,
    compiled_jacobian, compiled_rhs, initial_state, params_vector, resolve_params, run_flow, run_map, step_factor,
    system_info, transient_samples,
)

#: Flows: time scales (:func:`time_scale`) to align the tangent frame before averaging, and to
#: average over. Over 400 Lorenz's lambda1 scatters by ~0.6 % between seeds, Rossler's by ~3 %.
ALIGN_PERIODS = 20.0
AVERAGE_PERIODS = 400.0
#: The tangent run's relative tolerance: exponents are time averages, and at 1e-6 they agree with
#: 1e-8 runs within their seed-to-seed scatter, at 2.5x fewer steps than ``systems.RTOL``.
LYAPUNOV_RTOL = 1e-6
#: Maps: steps to align the frame, and to average over (logistic r=4: ~0.1 % scatter).
MAP_ALIGN_STEPS = 100
MAP_AVERAGE_STEPS = 200_000

#: The regime tolerance: an exponent within ``tol`` of 0 counts as zero, with ``tol`` this amount
#: per time scale for flows (``tol = FLOW_ZERO_TOLERANCE / time_scale`` per time unit) and per step
#: for maps. Flows: about 3x the error of a zero exponent after :data:`AVERAGE_PERIODS` (it decays
#: as 1/T), and well below lambda1 of typical chaos (Lorenz 1.36, Rossler 0.42 per period). Maps: the
#: exponents of periodic and quasiperiodic orbits converge as 1/N (error ~1e-5 after
#: :data:`MAP_AVERAGE_STEPS`), so only chaos weaker than ~0.003 per step can be mistaken for a torus.
FLOW_ZERO_TOLERANCE = 0.01
MAP_ZERO_TOLERANCE = 0.001
#: Maps: an orbit whose last :data:`_MOTION_STEPS` iterates move less than this (relative to the
#: attractor scale) is a single point: ``fixed_point`` rather than ``periodic``.
FIXED_POINT_MOTION = 1e-8
_MOTION_STEPS = 100

REGIMES = ("fixed_point", "periodic", "quasiperiodic", "chaotic", "hyperchaotic")
Regime = Literal["fixed_point", "periodic", "quasiperiodic", "chaotic", "hyperchaotic"]

#: The kernels' extra status: Gram-Schmidt met a zero or non-finite column.
FRAME_COLLAPSED = 5

_VECTOR = types.float64[::1]
_MATRIX = types.float64[:, ::1]


@njit(cache=True)
def _orthonormalise(y, offset, m, r):
    """Modified Gram-Schmidt on the columns of the ``m x m`` frame stored row-major at
    ``y[offset:]``, in place: ``Q_old = Q_new R`` with ``R`` (upper triangular) written to ``r``.
    Returns False if a column collapsed (a zero or non-finite norm)."""
    for j in range(m):
        for i in range(j):
            dot = 0.0
            for row in range(m):
                dot += y[offset + row * m + i] * y[offset + row * m + j]
            r[i, j] = dot
            for row in range(m):
                y[offset + row * m + j] -= dot * y[offset + row * m + i]
        norm = 0.0
        for row in range(m):
            norm += y[offset + row * m + j] ** 2
        norm = math.sqrt(norm)
        if not (norm > 0.0 and math.isfinite(norm)):
            return False
        r[j, j] = norm
        for row in range(m):
            y[offset + row * m + j] /= norm
    return True


@njit(cache=True)
def _reframe_derivative(k0, offset, m, r):
    """After ``Q_new = Q_old R^-1`` the tangent derivative ``J Q_new`` is ``(J Q_old) R^-1``: solve
    ``X R = K`` column by column in place, so the last stage of the accepted step is reused (FSAL)."""
    for j in range(m):
        for row in range(m):
            value = k0[offset + row * m + j]
            for i in range(j):
                value -= k0[offset + row * m + i] * r[i, j]
            k0[offset + row * m + j] = value / r[j, j]


@njit(types.int64(RhsFunction, JacFunction, types.boolean, types.int64[::1], _VECTOR, _VECTOR, types.float64,
                  types.float64, types.float64, types.float64, _VECTOR, types.int64, types.float64, _VECTOR,
                  types.float64, types.boolean[::1], _VECTOR, _MATRIX, _VECTOR), cache=True, nogil=True)
def _flow_spectrum(rhs, jac, has_jac, active, state, params, t0, align, average, rtol, atol, max_steps, h_min,
                   center, radius, checked, fd_scale, sums, info):
    """The tangent-space run of a flow from ``(t0, state)``: ``align`` time units to align the frame,
    then ``average`` time units summing ``ln R_jj`` (one per active coordinate) into ``sums[0]`` over
    the first half and ``sums[1]`` over the second. ``state`` is left at the end of the run. Returns a
    status; ``info`` gets ``[time reached, steps, first half's time, second half's time]``."""
    d = state.shape[0]
    m = active.shape[0]
    size = d + m * m
    y = np.zeros(size)
    y[:d] = state
    for j in range(m):
        y[d + j * m + j] = 1.0
    tolerance = np.empty(size)
    tolerance[:d] = atol
    tolerance[d:] = rtol          # frame entries are O(1) after every orthonormalisation
    k1, k2, k3, k4, k5, k6, k7 = (np.empty(size), np.empty(size), np.empty(size), np.empty(size), np.empty(size),
                                  np.empty(size), np.empty(size))
    trial, jacobian, probe, plus, minus = np.empty(size), np.zeros((d, d)), np.empty(d), np.empty(d), np.empty(d)
    r = np.zeros((m, m))
    _derivative(rhs, jac, has_jac, active, m, d, y, t0, params, fd_scale, k1, jacobian, probe, plus, minus)
    t, h, steps, status = t0, (align + average) * 1e-5, 0, OK
    # the steps land exactly on the start of the averaging, its middle and its end
    boundaries = (t0 + align, t0 + align + 0.5 * average, t0 + align + average)
    part = 0
    while part < 3:
        boundary = boundaries[part]
        if steps >= max_steps:
            status = WORK_BOUND
            break
        if h < h_min:
            status = STEP_UNDERFLOW
            break
        last = t + h >= boundary
        h_try = boundary - t if last else h
        error = _dopri5_trial(rhs, jac, has_jac, active, m, d, y, t, h_try, params, fd_scale, rtol, tolerance,
                              k1, k2, k3, k4, k5, k6, k7, trial, jacobian, probe, plus, minus)
        steps += 1
        if not error <= 1.0:   # also a nan error: a trial that left the domain
            h = h_try * step_factor(error, True)
            continue
        t = boundary if last else t + h_try
        for i in range(size):
            y[i] = trial[i]
            k1[i] = k7[i]
        if not _orthonormalise(y, d, m, r):
            status = FRAME_COLLAPSED
            break
        _reframe_derivative(k1, d, m, r)
        if part > 0:
            info[1 + part] += h_try
            for j in range(m):
                sums[part - 1, j] += math.log(r[j, j])
        status = _outside(y, checked, center, radius)
        if status != OK:
            break
        proposed = h_try * step_factor(error, False)
        h = max(h, proposed) if last else proposed
        if last:
            part += 1
    for i in range(d):
        state[i] = y[i]
    info[0], info[1] = t, steps
    return status


@njit(types.int64(RhsFunction, _VECTOR, _VECTOR, types.int64, types.int64, _VECTOR, types.float64,
                  types.boolean[::1], _VECTOR, _MATRIX, _VECTOR), cache=True, nogil=True)
def _map_spectrum(rhs, x, params, align, average, center, radius, checked, fd_scale, sums, info):
    """The tangent-space run of a map from ``x``: ``align`` iterations, then ``average`` iterations
    summing ``ln R_jj`` (floored at ln 1e-300, for superstable points where ``J`` is singular) into
    ``sums[0]`` over the first half and ``sums[1]`` over the second; ``J`` by central differences.
    ``x`` is left at the end of the run. Returns a status; ``info`` gets ``[iterations, largest move
    relative to the scale over the last iterations]``."""
    d = x.shape[0]
    y = np.zeros(d + d * d)
    y[:d] = x
    q = np.zeros(d * d)
    for j in range(d):
        y[d + j * d + j] = 1.0
    jacobian = np.zeros((d, d))
    nxt, probe, plus, minus = np.empty(d), np.empty(d), np.empty(d), np.empty(d)
    r = np.zeros((d, d))
    motion = 0.0
    total = align + average
    half = align + average // 2
    status = OK
    done = 0
    for step in range(total):
        for i in range(d):
            probe[i] = y[i]
        for j in range(d):
            h = FD_RELATIVE_STEP * max(abs(y[j]), fd_scale[j])
            h = (y[j] + h) - y[j]
            probe[j] = y[j] + h
            rhs(probe, 0.0, params, plus)
            probe[j] = y[j] - h
            rhs(probe, 0.0, params, minus)
            probe[j] = y[j]
            for i in range(d):
                jacobian[i, j] = (plus[i] - minus[i]) / (2.0 * h)
        rhs(probe, 0.0, params, nxt)
        for idx in range(d * d):
            q[idx] = y[d + idx]
        for row in range(d):
            for col in range(d):
                value = 0.0
                for kk in range(d):
                    value += jacobian[row, kk] * q[kk * d + col]
                y[d + row * d + col] = value
        if step >= total - _MOTION_STEPS:
            for i in range(d):
                motion = max(motion, abs(nxt[i] - y[i]) / fd_scale[i])
        for i in range(d):
            y[i] = nxt[i]
        done = step + 1
        status = _outside(y, checked, center, radius)
        if status != OK:
            break
        # a singular J (a superstable point, J = 0 exactly) annihilates a column: keep its old
        # direction, which Gram-Schmidt then measures as a vanishing stretch (the floored log)
        for j in range(d):
            norm = 0.0
            for row in range(d):
                norm += y[d + row * d + j] ** 2
            if not norm > 0.0:
                for row in range(d):
                    y[d + row * d + j] = q[row * d + j] * 1e-300
        if not _orthonormalise(y, d, d, r):
            status = FRAME_COLLAPSED
            break
        if step >= align:
            for j in range(d):
                sums[0 if step < half else 1, j] += math.log(max(r[j, j], 1e-300))
    for i in range(d):
        x[i] = y[i]
    info[0], info[1] = done, motion
    return status


@dataclass(frozen=True)
class Truth:
    """The true dynamics of one setting.

    ``spectrum`` the Lyapunov exponents, descending (flows per time unit, maps per step);
    ``largest`` its first; ``regime`` from :func:`classify_regime` with ``tolerance`` (the same
    units). ``settled``: the two halves of the averaging gave the same regime (False: the orbit
    was still changing, after :data:`MAX_CONTINUATIONS` continuations; the labels are then
    uncertain). ``settled_after``: where the averaging that gave the spectrum began, in
    ``simulate``'s ``transient`` units (default periods for flows, steps for maps), so that
    ``simulate(..., transient=truth.settled_after)`` gives windows of the labelled dynamics even
    where a long transient outlived :data:`TRANSIENT_PERIODS`. ``analytic_jacobian``: dysts'
    ``_jac`` was used (else central differences). ``orbit_motion`` (maps): the settled orbit's
    largest step relative to the attractor scale, ~0 for a fixed point; nan for flows."""

    system: str
    params: dict[str, float]
    spectrum: np.ndarray
    largest: float
    regime: Regime
    tolerance: float
    settled: bool
    settled_after: float
    analytic_jacobian: bool
    orbit_motion: float


#: A run whose two halves disagree on the regime is continued (the frame re-aligned, a fresh
#: average) from where it ended, at most this many times: a transient outlasting the transient.
MAX_CONTINUATIONS = 2


def _params_key(name: str, params: Mapping[str, float] | None) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(resolve_params(name, params).items()))


_FAILURES = {
    NON_FINITE: "the state became non-finite",
    DIVERGED: "the orbit diverged",
    WORK_BOUND: "the work bound was exhausted",
    STEP_UNDERFLOW: "the step size collapsed",
    FRAME_COLLAPSED: "the tangent frame collapsed",
}


def _failure(name: str, params: Mapping[str, float], status: int, where: str) -> SimulationError:
    return SimulationError(name, params, f"{_FAILURES[status]} in the Lyapunov run ({where})")


def _map_run(name, params, state):
    """One map run from ``state`` (advanced in place): ``(first half, second half, whole, motion)``."""
    scale = attractor_scale(name)
    sums, report = np.zeros((2, state.size)), np.zeros(2)
    status = _map_spectrum(compiled_rhs(name, params), state, params_vector(name, params), MAP_ALIGN_STEPS,
                           MAP_AVERAGE_STEPS, scale.mean, scale.radius, scale.checked, scale.scale, sums, report)
    if status != OK:
        raise _failure(name, params, status, f"step {int(report[0])}")
    halves = (MAP_AVERAGE_STEPS // 2, MAP_AVERAGE_STEPS - MAP_AVERAGE_STEPS // 2)
    return sums[0] / halves[0], sums[1] / halves[1], sums.sum(axis=0) / MAP_AVERAGE_STEPS, float(report[1])


def time_scale(name: str) -> float:
    """The time scale of a system, the unit of its regime tolerance and of the length of its
    Lyapunov run: dysts' default period for a flow (in time units), 1 step for a map.

    (dysts' period is the dominant Fourier period. For a few flows, e.g. DequanLi with a period of
    0.084 against a Lyapunov time of ~1.4, that is far shorter than the time their dynamics needs, so
    their 400-period run is short and their spectrum less accurate; using the Lyapunov time dysts
    publishes instead would make weakly chaotic ones like ForcedVanDerPol 20x slower.)"""
    info = system_info(name)
    return 1.0 if info.kind == "map" else float(info.period)


def _flow_run(name, params, state, t0, active, jac, analytic):
    """One flow run from ``(t0, state)`` (advanced in place): ``(first half, second half, whole,
    time reached)``, the forcing phase's exact 0 appended."""
    info = system_info(name)
    scale = attractor_scale(name)
    tau = time_scale(name)
    max_steps = int(MAX_STEPS_PER_PERIOD * (ALIGN_PERIODS + AVERAGE_PERIODS) * tau / info.period) + 10_000
    sums, report = np.zeros((2, active.size)), np.zeros(4)
    status = _flow_spectrum(compiled_rhs(name, params), jac, analytic, active, state, params_vector(name, params),
                            t0, ALIGN_PERIODS * tau, AVERAGE_PERIODS * tau, LYAPUNOV_RTOL,
                            LYAPUNOV_RTOL * scale.scale, max_steps, MIN_STEP_FRACTION * info.period, scale.mean,
                            scale.radius, scale.checked, scale.scale, sums, report)
    if status != OK:
        raise _failure(name, params, status, f"t={report[0]:.6g} after {int(report[1])} steps")
    extra = [0.0] if active.size < info.dimension else []   # the forcing phase: exactly zero
    first = np.append(sums[0] / report[2], extra)
    second = np.append(sums[1] / report[3], extra)
    whole = np.append(sums.sum(axis=0) / (report[2] + report[3]), extra)
    return first, second, whole, float(report[0])


@functools.lru_cache(maxsize=8192)
def _truth(name: str, key: tuple[tuple[str, float], ...], seed: int) -> Truth:
    params = dict(key)
    info = system_info(name)
    period, tau = info.period or 1.0, time_scale(name)
    state = initial_state(name, seed)
    motion = math.nan
    if info.kind == "map":
        position = transient_samples(info, 1, None)
        state = run_map(name, params, state, 1, position - 1)[-1].copy() if position else state
    else:
        points = 50
        skip = transient_samples(info, points, None)
        state = run_flow(name, params, state, 1, period / points, skip)[0].copy()
        position = skip * (period / points)
        phase = info.forcing.phase_index if info.forcing is not None else -1
        active = np.array([i for i in range(info.dimension) if i != phase], dtype=np.int64)
        jac, analytic = compiled_jacobian(name, params)
    point = None
    for _ in range(1 + MAX_CONTINUATIONS):
        start = position
        if info.kind == "map":
            first, second, whole, motion = _map_run(name, params, state)
            position += MAP_ALIGN_STEPS + MAP_AVERAGE_STEPS
            point = motion < FIXED_POINT_MOTION
        else:
            first, second, whole, position = _flow_run(name, params, state, position, active, jac, analytic)
        settled = (classify_regime(first, info.kind, tau, orbit_is_point=point)
                   == classify_regime(second, info.kind, tau, orbit_is_point=point))
        if settled:
            break
    spectrum = np.sort(whole)[::-1].copy()
    spectrum.setflags(write=False)
    begun = (start + MAP_ALIGN_STEPS) if info.kind == "map" else (start + ALIGN_PERIODS * tau) / period
    return Truth(system=name, params=params, spectrum=spectrum, largest=float(spectrum[0]),
                 regime=classify_regime(spectrum, info.kind, tau, orbit_is_point=point),
                 tolerance=regime_tolerance(info.kind, tau), settled=settled, settled_after=float(begun),
                 analytic_jacobian=info.kind == "flow" and analytic, orbit_motion=motion)


def truth(name: str, params: Mapping[str, float] | None = None, *, seed: int = 0) -> Truth:
    """The :class:`Truth` of a setting (spectrum, largest exponent, regime), computed once per
    ``(name, resolved params, seed)`` and cached. Raises :class:`SimulationError` like ``simulate``."""
    cached = _truth(name, _params_key(name, params), int(seed))
    return dataclasses.replace(cached, params=dict(cached.params))   # the caller's own dict


def lyapunov_spectrum(name: str, params: Mapping[str, float] | None = None, *, seed: int = 0) -> np.ndarray:
    """The Lyapunov spectrum of a setting, sorted descending: flows per time unit, maps per step
    (see the module docstring for the method). Cached per ``(name, params, seed)``; a fresh copy is
    returned. Raises :class:`SimulationError` for a setting that cannot be simulated."""
    return truth(name, params, seed=seed).spectrum.copy()


def regime_tolerance(kind: Literal["flow", "map"], scale: float) -> float:
    """The zero tolerance in the spectrum's units: ``FLOW_ZERO_TOLERANCE / scale`` per time unit for
    a flow (``scale`` its :func:`time_scale`), ``MAP_ZERO_TOLERANCE`` per step for a map."""
    if kind == "flow":
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"a flow's scale is its time scale, a positive number, not {scale!r}")
        return FLOW_ZERO_TOLERANCE / scale
    if kind == "map":
        return MAP_ZERO_TOLERANCE
    raise ValueError(f"kind must be 'flow' or 'map', not {kind!r}")


def classify_regime(spectrum, kind: Literal["flow", "map"], scale: float, *,
                    orbit_is_point: bool | None = None) -> Regime:
    """The regime a Lyapunov spectrum implies, with exponents within ``tol``
    (:func:`regime_tolerance`) of 0 counted as zero.

    A flow's attractor other than a fixed point carries one zero exponent, the flow direction (a
    forced system written autonomously: the forcing phase, whose exponent is exactly 0 and which
    then is the flow direction's). So for flows: ``lambda1 < -tol`` is a ``fixed_point``; otherwise
    the exponent closest to 0 is set aside as that trivial one, and the rest decide: two or more
    ``> tol`` hyperchaotic, one chaotic, else any ``|lambda| <= tol`` quasiperiodic (a torus), else
    periodic (a limit cycle; for a forced system, a response locked to the drive).

    Maps have no trivial exponent: two or more ``> tol`` hyperchaotic, one chaotic, ``lambda1``
    within ``tol`` of 0 quasiperiodic, else (``lambda1 < -tol``) ``fixed_point`` when
    ``orbit_is_point`` (the settled orbit no longer moves, which the spectrum cannot tell) and
    ``periodic`` otherwise (also when ``orbit_is_point`` is None: a fixed point is a period-1 orbit).
    """
    values = np.sort(np.asarray(spectrum, dtype=np.float64).ravel())[::-1]
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"a spectrum must be a non-empty array of finite numbers, not {spectrum!r}")
    tol = regime_tolerance(kind, scale)
    if kind == "flow":
        if values[0] < -tol:
            return "fixed_point"
        values = np.delete(values, int(np.argmin(np.abs(values))))
    positive = int(np.sum(values > tol))
    if positive >= 2:
        return "hyperchaotic"
    if positive == 1:
        return "chaotic"
    if values.size and np.any(np.abs(values) <= tol):
        return "quasiperiodic"
    if kind == "map" and orbit_is_point:
        return "fixed_point"
    return "periodic"
