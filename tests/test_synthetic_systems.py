"""The synthetic data source: the dysts registry, the integrator, the true Lyapunov spectra against
known answers, the regimes and the ready sweeps."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from nw2.pipeline.synthetic.sweeps import READY_SWEEPS, Sweep, parse_sweep
from nw2.pipeline.synthetic.systems import (
    ParameterError, SimulationError, UnknownSystem, compiled_rhs, excluded_systems, params_vector, resolve_params,
    simulate, system_info, system_names,
)
from nw2.pipeline.synthetic.truth import (
    REGIMES, classify_regime, lyapunov_spectrum, regime_tolerance, time_scale, truth,
)

LORENZ = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}


# --- the registry -------------------------------------------------------------------------------

def test_names_are_sorted_split_by_kind_and_exclude_what_cannot_be_run():
    flows, maps, every = system_names("flow"), system_names("map"), system_names()
    assert every == tuple(sorted(flows + maps)) and not set(flows) & set(maps)
    assert {"Lorenz", "Rossler", "Duffing", "ForcedVanDerPol"} <= set(flows)
    assert {"Logistic", "Henon", "DuffingMap"} <= set(maps)   # dysts' Duffing map, renamed
    excluded = excluded_systems()
    for delay in ("MackeyGlass", "IkedaDelay", "SprottDelay"):
        assert delay not in every and "delay" in excluded[delay]
    assert "array-valued" in excluded["BickleyJet"] and "SkewProduct" in excluded
    assert "Lorenz96" in excluded and not set(excluded) & set(every)
    with pytest.raises(ValueError):
        system_names("delay")


def test_system_info_carries_dysts_metadata():
    lorenz = system_info("Lorenz")
    assert (lorenz.kind, lorenz.dimension, lorenz.period, lorenz.forcing) == ("flow", 3, 1.5008, None)
    assert lorenz.params == {"beta": 2.667, "rho": 28.0, "sigma": 10.0}
    assert set(lorenz.annotated) == {"maximum_lyapunov_estimated", "correlation_dimension",
                                     "kaplan_yorke_dimension"}
    henon = system_info("Henon")
    assert (henon.kind, henon.dimension, henon.period, henon.params) == ("map", 2, None, {"a": 1.4, "b": 0.3})
    duffing = system_info("Duffing").forcing
    assert (duffing.phase_index, duffing.amplitude, duffing.waveform) == (2, ("gamma",), "cos")
    assert duffing.frequency == "omega"
    assert system_info("ForcedVanDerPol").forcing.amplitude == ("a",)


def test_every_forcing_phase_advances_at_its_frequency():
    for name in system_names("flow"):
        info = system_info(name)
        if info.forcing is None:
            continue
        out = np.empty(info.dimension)
        state = np.linspace(0.3, 0.9, info.dimension)
        compiled_rhs(name)(state, 0.0, params_vector(name, info.params), out)
        assert out[info.forcing.phase_index] == pytest.approx(info.forcing.angular_frequency(info.params)), name
        assert info.forcing.phase_index in info.unbounded


def test_unknown_names_and_parameters_are_refused_helpfully():
    with pytest.raises(UnknownSystem, match="did you mean Lorenz"):
        system_info("Lorentz")
    with pytest.raises(UnknownSystem, match="delay differential equation"):
        system_info("MackeyGlass")
    assert resolve_params("Lorenz", {"rho": 99.65}) == {"beta": 2.667, "rho": 99.65, "sigma": 10.0}
    with pytest.raises(ParameterError, match=r"Lorenz has no parameter 'r'.*beta, rho, sigma"):
        resolve_params("Lorenz", {"r": 1.0})
    with pytest.raises(ParameterError, match="finite"):
        resolve_params("Lorenz", {"rho": math.nan})
    with pytest.raises(ParameterError, match="number"):
        resolve_params("Lorenz", {"rho": "big"})


# --- simulate -----------------------------------------------------------------------------------

def test_simulate_is_deterministic_and_sampled_at_the_default_period():
    first = simulate("Lorenz", {"rho": 35.0}, 500, points_per_period=25, seed=3)
    again = simulate("Lorenz", {"rho": 35.0}, 500, points_per_period=25, seed=3)
    other = simulate("Lorenz", {"rho": 35.0}, 500, points_per_period=25, seed=4)
    assert first.values.shape == (500, 3) and first.values.dtype == np.float64
    assert first.values.tobytes() == again.values.tobytes()
    assert not np.allclose(first.values, other.values)
    assert first.dt == pytest.approx(1.5008 / 25) and first.forcing is None
    henon = simulate("Henon", None, 100)
    assert henon.dt == 1.0 and henon.values.shape == (100, 2)
    assert np.allclose(henon.values[1:, 0], 1 - 1.4 * henon.values[:-1, 0] ** 2 + henon.values[:-1, 1])


def test_forced_systems_return_their_forcing():
    trajectory = simulate("Duffing", {"gamma": 0.3}, 400)
    phase = trajectory.values[:, 2]
    assert np.allclose(np.diff(phase), 1.4 * trajectory.dt)          # d phase/dt = omega
    assert np.allclose(trajectory.forcing, 0.3 * np.cos(phase))


def test_integration_matches_a_tight_reference_solution():
    # One default period of Lorenz from the first sample, against DOP853 at rtol 1e-12.
    trajectory = simulate("Lorenz", LORENZ, 51, transient=0)
    sigma, rho, beta = LORENZ["sigma"], LORENZ["rho"], LORENZ["beta"]
    reference = solve_ivp(lambda t, s: [sigma * (s[1] - s[0]), s[0] * (rho - s[2]) - s[1], s[0] * s[1] - beta * s[2]],
                          (0.0, 50 * trajectory.dt), trajectory.values[0], method="DOP853", rtol=1e-12, atol=1e-12,
                          t_eval=np.arange(51) * trajectory.dt)
    error = np.abs(reference.y.T - trajectory.values).max() / trajectory.values.std()
    assert error < 1e-5


def test_bad_settings_raise_one_line_simulation_errors():
    for name, params, why in [("Henon", {"a": 2.0}, "diverged"), ("Logistic", {"r": 4.5}, "diverged"),
                              ("Lorenz", {"sigma": -10.0}, None)]:
        with pytest.raises(SimulationError, match=why) as caught:
            simulate(name, params, 2000)
        message = str(caught.value)
        key, value = next(iter(params.items()))
        assert "\n" not in message and message.startswith(name + "(") and f"{key}={value:g}" in message
    with pytest.raises(ValueError):
        simulate("Lorenz", {}, 0)


def test_every_system_simulates_at_default_parameters_or_says_why():
    failures = {}
    for name in system_names():
        try:
            trajectory = simulate(name, None, 2000)
            assert trajectory.values.shape == (2000, system_info(name).dimension)
            assert np.isfinite(trajectory.values).all()
        except SimulationError as error:
            failures[name] = str(error)
    print(f"\n{len(system_names())} systems, {len(failures)} raise SimulationError at default parameters")
    for name, message in failures.items():
        print("  ", message)
    assert len(failures) <= 5


# --- the truth: known answers -------------------------------------------------------------------

def test_maps_known_lyapunov_exponents():
    assert lyapunov_spectrum("Logistic", {"r": 4.0})[0] == pytest.approx(math.log(2), abs=0.005)
    henon = lyapunov_spectrum("Henon", {"a": 1.4, "b": 0.3})
    assert henon[0] == pytest.approx(0.4192, abs=0.005)               # Sprott 2003
    assert henon.sum() == pytest.approx(math.log(0.3), abs=1e-6)      # det J = -b everywhere
    for r, regime in [(3.2, "periodic"), (3.83, "periodic"), (2.8, "fixed_point"), (3.9, "chaotic")]:
        assert truth("Logistic", {"r": r}).regime == regime, r
    # period 2: lambda = ln|f'(x1) f'(x2)| / 2, the multiplier 4 + 2r - r^2 = 0.16 at r = 3.2
    assert lyapunov_spectrum("Logistic", {"r": 3.2})[0] == pytest.approx(math.log(0.16) / 2, abs=1e-4)


def test_lorenz_known_spectrum_and_divergence():
    spectrum = lyapunov_spectrum("Lorenz", LORENZ)
    assert spectrum[0] == pytest.approx(0.9056, rel=0.03)
    assert abs(spectrum[1]) < regime_tolerance("flow", time_scale("Lorenz"))
    assert spectrum[2] == pytest.approx(-14.5723, abs=0.05)
    assert spectrum.sum() == pytest.approx(-(10.0 + 1.0 + 8.0 / 3.0), rel=1e-4)   # div f is constant
    assert truth("Lorenz", LORENZ).regime == "chaotic"
    for rho in (99.65, 160.0):                                       # Sparrow's periodic windows
        periodic = truth("Lorenz", {**LORENZ, "rho": rho})
        assert periodic.regime == "periodic" and abs(periodic.largest) < periodic.tolerance, rho


def test_rossler_known_spectrum_and_mean_divergence():
    params = {"a": 0.2, "b": 0.2, "c": 5.7}
    spectrum = lyapunov_spectrum("Rossler", params)
    assert spectrum[0] == pytest.approx(0.0714, abs=0.01)
    assert abs(spectrum[1]) < 0.005 and spectrum[2] == pytest.approx(-5.394, abs=0.05)
    # the sum equals the mean divergence a + <x> - c along the orbit
    mean_x = simulate("Rossler", params, 20_000).values[:, 0].mean()
    assert spectrum.sum() == pytest.approx(0.2 + mean_x - 5.7, rel=0.01)


def test_forced_spectrum_has_the_exact_phase_zero_and_damping_sum():
    duffing = truth("Duffing")
    assert 0.0 in duffing.spectrum and duffing.regime == "chaotic" and duffing.analytic_jacobian
    assert duffing.spectrum.sum() == pytest.approx(-0.1, abs=1e-3)   # div f = -delta


def test_truth_is_cached_and_returns_copies():
    first = lyapunov_spectrum("Henon")
    first[0] = 99.0
    assert lyapunov_spectrum("Henon")[0] != 99.0
    assert truth("Henon").spectrum is truth("Henon", {"a": 1.4}).spectrum   # one cached computation


def test_published_dysts_estimates_roughly_agree():
    # dysts' maximum_lyapunov_estimated are crude (short runs, one ic): report, only require that
    # most chaotic flows of a sample come out chaotic and within a factor of 2.5.
    sample = ["Lorenz", "Chen", "Halvorsen", "SprottB", "Rucklidge", "Lorenz84", "HyperXu", "QiChen"]
    rows = []
    for name in sample:
        published = system_info(name).annotated["maximum_lyapunov_estimated"]
        rows.append((name, published, truth(name).largest))
    print("\nsystem       dysts  ours")
    for name, published, ours in rows:
        print(f"{name:12s} {published:.3f} {ours:.3f}")
    agree = [0.4 < ours / published < 2.5 for _, published, ours in rows]
    assert sum(agree) >= len(sample) - 1


def test_classify_regime_rules():
    period = 1.5
    assert classify_regime([0.9, 0.001, -14.5], "flow", period) == "chaotic"
    assert classify_regime([0.0, -1.0, -2.0], "flow", period) == "periodic"
    assert classify_regime([-0.1, -0.2, -3.0], "flow", period) == "fixed_point"
    assert classify_regime([0.001, -0.002, -1.0], "flow", period) == "quasiperiodic"
    assert classify_regime([0.2, 0.05, 0.0, -5.0], "flow", period) == "hyperchaotic"
    assert classify_regime([0.12, 0.0, -0.22], "flow", 7.45) == "chaotic"        # forced: the phase zero
    assert classify_regime([0.69], "map", 1.0) == "chaotic"
    assert classify_regime([-0.9], "map", 1.0) == "periodic"
    assert classify_regime([-0.2], "map", 1.0, orbit_is_point=True) == "fixed_point"
    assert classify_regime([0.0, -0.3], "map", 1.0) == "quasiperiodic"
    assert set(REGIMES) == {"fixed_point", "periodic", "quasiperiodic", "chaotic", "hyperchaotic"}
    with pytest.raises(ValueError):
        classify_regime([math.nan], "map", 1.0)


# --- sweeps -------------------------------------------------------------------------------------

def test_parse_sweep_reads_a_spec_and_names_problems():
    sweep = parse_sweep("Duffing", {"gamma": [0.1, 0.5], "omega": 1.2, "steps": 5})
    assert sweep == Sweep("Duffing", "gamma", 0.1, 0.5, 5, {"omega": 1.2})
    assert np.allclose(sweep.values(), [0.1, 0.2, 0.3, 0.4, 0.5])
    assert sweep.settings()[0] == {**system_info("Duffing").params, "gamma": 0.1, "omega": 1.2}
    assert parse_sweep("Lorenz", {"rho": [24, 250], "steps": 3, "fixed": {"beta": 2.5}}).fixed == {"beta": 2.5}
    with pytest.raises(ParameterError, match=r"no parameter 'gama'.*'steps' must be"):
        parse_sweep("Duffing", {"gama": [0.1, 0.5], "steps": 0})
    with pytest.raises(ParameterError, match="only one parameter may have a range"):
        parse_sweep("Duffing", {"gamma": [0.1, 0.5], "omega": [1, 2], "steps": 4})
    with pytest.raises(ParameterError, match="no parameter has a"):
        parse_sweep("Duffing", {"steps": 4})
    with pytest.raises(ParameterError, match=r"\[lo, hi\]"):
        parse_sweep("Duffing", {"gamma": [0.1], "steps": 4})


def test_ready_sweeps_cover_the_named_bifurcations():
    assert {"Logistic", "Henon", "Rossler", "Lorenz", "Duffing"} <= set(READY_SWEEPS)
    assert {s.param for s in READY_SWEEPS["Duffing"]} == {"gamma", "omega"}
    for system, sweeps in READY_SWEEPS.items():
        for sweep in sweeps:
            assert sweep.system == system and len(sweep.values()) == sweep.steps


#: A subsample of every ready sweep that crosses its regimes (the full sweeps' counts are in the
#: report of the module; running them all takes minutes).
SUBSAMPLE = 5


def test_every_ready_sweep_crosses_regimes():
    for sweeps in READY_SWEEPS.values():
        for sweep in sweeps:
            settings = sweep.settings()
            picks = np.unique(np.linspace(0, len(settings) - 1, SUBSAMPLE).round().astype(int))
            counts = collections.Counter()
            for index in picks:
                simulate(sweep.system, settings[index], 2000)       # no SimulationError
                counts[truth(sweep.system, settings[index]).regime] += 1
            print(f"\n{sweep.system} {sweep.param} {sweep.lo:g}..{sweep.hi:g}: {dict(counts)}", end="")
            assert len(counts) >= 2, (sweep, counts)
