"""Parameter sweeps across bifurcations: one parameter of one system from ``lo`` to ``hi`` in
``steps`` values, the others at dysts' defaults or ``fixed``; the ready ones, and a spec's.

Ready sweeps (:data:`READY_SWEEPS`), each crossing regimes by its true Lyapunov spectrum
(``tests/test_synthetic_systems.py`` checks every one has at least two):

- Logistic ``r`` 2.8-4: the fixed point (r < 3), the period-doubling cascade to r = 3.5699, chaos with
  its windows (period 3 at 3.8284-3.8415) (May 1976).
- Henon ``a`` 1.0-1.4 at ``b = 0.3``: period 4 and the rest of the cascade (chaos from a ~ 1.06),
  periodic windows (period 7 near a = 1.22-1.23), the classic attractor at 1.4 (Henon 1976).
- Rossler ``c`` 2-18 at ``a = b = 0.2``: the period-doubling route (period 2 from c = 2.83, period 4
  from 3.86, chaos from ~4.2) and the periodic windows of the chaotic range (Barrio et al. 2009).
- Lorenz ``rho`` 10-250 at ``sigma = 10, beta = 8/3`` (every 2): the stable fixed points (rho < 24.74,
  transient chaos above 13.93), chaos, and Sparrow's periodic windows 99.52-100.80, 145-166 and
  rho > 214.4 (Sparrow 1982, The Lorenz Equations).
- Duffing (the forced twin-well oscillator ``x'' + 0.1 x' - x + x^3 = gamma cos(omega t)``) in its
  forcing amplitude ``gamma`` 0.1-0.6 at ``omega = 1.4`` and in its forcing frequency ``omega`` 0.6-2
  at ``gamma = 0.35``: single-well and cross-well periodic responses, period doubling and chaos.
- ForcedVanDerPol (``x'' - mu (1 - x^2) x' + x = a sin(w t)`` at ``mu = 8.53``) in ``a`` 0-3 at
  ``w = 0.63``, and in ``w`` 0.3-1.5 at ``a = 1.2``: quasiperiodic drift between the locked (periodic)
  tongues of its devil's staircase, with chaos between some (Parlitz & Lauterborn 1987).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .systems import ParameterError, resolve_params, system_info


@dataclass(frozen=True)
class Sweep:
    """One parameter ``param`` of ``system`` at ``steps`` evenly spaced values from ``lo`` to ``hi``
    (both included), the other parameters at their defaults overridden by ``fixed``. Checked when
    made: a name or value that does not fit the system is a :class:`ParameterError`."""

    system: str
    param: str
    lo: float
    hi: float
    steps: int
    fixed: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        info = system_info(self.system)
        if self.param not in info.params:
            raise ParameterError(f"{self.system} has no parameter {self.param!r} to sweep; its parameters: "
                                 f"{', '.join(info.params)}")
        if self.param in self.fixed:
            raise ParameterError(f"{self.system}: {self.param!r} is both swept and fixed")
        resolve_params(self.system, self.fixed)
        for end in ("lo", "hi"):
            value = getattr(self, end)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterError(f"{self.system}: sweep {end} of {self.param!r} must be a finite number, "
                                     f"not {value!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ParameterError(f"{self.system}: sweep steps must be an integer >= 1, not {self.steps!r}")
        if self.steps == 1 and self.lo != self.hi:
            raise ParameterError(f"{self.system}: a one-step sweep of {self.param!r} needs lo == hi")

    def values(self) -> np.ndarray:
        """The swept values, ``np.linspace(lo, hi, steps)``."""
        return np.linspace(self.lo, self.hi, self.steps)

    def settings(self) -> list[dict[str, float]]:
        """Every setting of the sweep as complete parameters (defaults, ``fixed``, the swept value)."""
        base = resolve_params(self.system, self.fixed)
        return [{**base, self.param: float(v)} for v in self.values()]


READY_SWEEPS: dict[str, tuple[Sweep, ...]] = {
    "Logistic": (Sweep("Logistic", "r", 2.8, 4.0, 121),),
    "Henon": (Sweep("Henon", "a", 1.0, 1.4, 81, {"b": 0.3}),),
    "Rossler": (Sweep("Rossler", "c", 2.0, 18.0, 81, {"a": 0.2, "b": 0.2}),),
    "Lorenz": (Sweep("Lorenz", "rho", 10.0, 250.0, 121, {"sigma": 10.0, "beta": 8.0 / 3.0}),),
    "Duffing": (
        Sweep("Duffing", "gamma", 0.1, 0.6, 51, {"omega": 1.4}),
        Sweep("Duffing", "omega", 0.6, 2.0, 57, {"gamma": 0.35}),
    ),
    "ForcedVanDerPol": (
        Sweep("ForcedVanDerPol", "a", 0.0, 3.0, 61, {"w": 0.63}),
        Sweep("ForcedVanDerPol", "w", 0.3, 1.5, 61, {"a": 1.2}),
    ),
}


def parse_sweep(system: str, mapping: Mapping[str, object]) -> Sweep:
    """A sweep as a spec writes it: ``{PARAM: [lo, hi], "steps": K}``, any other parameter given a
    single number held fixed (``{"gamma": [0.1, 0.6], "omega": 1.2, "steps": 40}``), or the fixed
    ones under ``"fixed": {...}``. Exactly one parameter takes a ``[lo, hi]`` range.

    Raises
    ------
    ParameterError
        Naming every problem at once: no range or more than one, a range that is not two finite
        numbers, missing or bad ``steps``, a parameter the system does not have.
    """
    info = system_info(system)
    if not isinstance(mapping, Mapping):
        raise ParameterError(f"{system}: a sweep is a mapping {{PARAM: [lo, hi], steps: K}}, not {mapping!r}")
    problems: list[str] = []
    ranges: dict[str, tuple[float, float]] = {}
    fixed: dict[str, float] = {}
    steps = mapping.get("steps")
    extra = mapping.get("fixed", {})
    if not isinstance(extra, Mapping):
        problems.append(f"'fixed' must be a mapping of parameter values, not {extra!r}")
        extra = {}
    items = [(k, v) for k, v in mapping.items() if k not in ("steps", "fixed")] + list(extra.items())
    for key, value in items:
        if key not in info.params:
            problems.append(f"no parameter {key!r}")
        elif isinstance(value, (list, tuple)):
            if len(value) != 2 or not all(_is_number(v) for v in value):
                problems.append(f"the range of {key!r} must be [lo, hi] with two finite numbers, not {value!r}")
            else:
                ranges[key] = (float(value[0]), float(value[1]))
        elif _is_number(value):
            fixed[key] = float(value)
        else:
            problems.append(f"{key!r} must be a number or a [lo, hi] range, not {value!r}")
    if len(ranges) != 1 and not any("range of" in p for p in problems):
        problems.append("no parameter has a [lo, hi] range" if not ranges
                        else f"only one parameter may have a range, not {', '.join(sorted(ranges))}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        problems.append(f"'steps' must be an integer >= 1, not {steps!r}")
    if problems:
        raise ParameterError(f"{system} sweep: {'; '.join(problems)} (its parameters: {', '.join(info.params)})")
    (param, (lo, hi)), = ranges.items()
    return Sweep(system, param, lo, hi, int(steps), fixed)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(float(value)))
