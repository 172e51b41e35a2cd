"""``generator: driven``: systems driven by a switching, piecewise-constant forcing whose future is known. Known
answers: the exact oscillator and dose responses against closed forms and independent integrations, the Duffing
segments against one integration of the whole span, the switch times, determinism, refusals, and an ingest whose
windows carry the response and the forcing in one group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import signal as sps
from scipy.integrate import solve_ivp

from helpers import nw2, read_all
from nw2.pipeline.synthetic import driven

FS = 100.0


def _switches(u: np.ndarray) -> np.ndarray:
    """Indices ``k`` where ``u[k]`` is a new level."""
    return np.flatnonzero(u[1:] != u[:-1]) + 1


def _whole_span(rhs, u: np.ndarray, fs: float, state, time_scale: float = 1.0) -> np.ndarray:
    """One solve_ivp over every sample of ``u`` with the input as a callable of time (held on each sample), steps
    short enough never to straddle a switch unseen: an integration that knows nothing of segments."""
    times = np.arange(u.size) / fs * time_scale  # in the system's time units
    h = time_scale / fs

    def f(t, y):
        return rhs(y, u[min(int(math.floor(t / h + 1e-9)), u.size - 1)])

    sol = solve_ivp(f, (times[0], times[-1]), np.asarray(state, float), t_eval=times, method="DOP853",
                    rtol=1e-11, atol=1e-13, max_step=h / 2)
    assert sol.success
    return sol.y[0]


# -- parameters ------------------------------------------------------------------------------------------
def test_defaults_are_filled_and_unknown_names_are_refused_with_the_known_ones():
    assert driven.system_names() == ("oscillator", "duffing", "dose")
    p = driven.resolve_params("oscillator", {"zeta": 0.3})
    assert p == {"forcing_sd": 1.0, "period": 0.2, "switch_max": 1.2, "switch_min": 0.4, "zeta": 0.3}
    assert list(p) == sorted(p)
    with pytest.raises(ValueError, match=r"^unknown driven system 'pendulum' \(known: oscillator, duffing, dose\)$"):
        driven.resolve_params("pendulum", {})
    with pytest.raises(ValueError, match=r"^duffing: unknown parameter 'omega' \(known: delta, forcing_sd, "
                                         r"switch_max, switch_min, time_unit\)$"):
        driven.resolve_params("duffing", {"omega": 1.0})


@pytest.mark.parametrize("system, params, message", [
    ("oscillator", {"zeta": 0.0}, "oscillator: zeta must be positive, not 0.0"),
    ("dose", {"tau": -1}, "dose: tau must be positive"),
    ("duffing", {"switch_min": 2.0}, "duffing: switch_max (1.2) is below switch_min (2.0)"),
    ("oscillator", {"forcing_sd": -0.1}, "oscillator: forcing_sd must be >= 0"),
    ("oscillator", {"period": float("nan")}, "oscillator: period must be finite"),
])
def test_values_that_cannot_run_are_refused(system, params, message):
    with pytest.raises(ValueError) as err:
        driven.simulate(system, params, 10, FS, 0)
    assert str(err.value).startswith(message)


def test_the_ready_grids_name_real_parameters():
    for system, grid in driven.READY_GRIDS.items():
        assert set(grid) - {"steps"} <= set(driven.default_params(system))


# -- the oscillator ---------------------------------------------------------------------------------------
def test_the_oscillator_settles_at_a_constant_forcing_gain_one():
    u = np.full(1000, 0.7)
    assert np.abs(driven.response("oscillator", {}, u, FS) - 0.7).max() < 1e-12  # starts at its equilibrium
    x = driven.response("oscillator", {}, u, FS, state=(-2.0, 1.0))
    assert abs(x[0] + 2.0) < 1e-15 and abs(x[-1] - 0.7) < 1e-12  # 10 s at 4.7 per second: e^-47 left
    x = driven.response("dose", {"gain": 2.5}, u, FS, state=(0.0,))
    assert abs(x[-1] - 1.75) < 1e-12


def test_the_oscillator_step_response_is_the_closed_form():
    zeta, period = 0.15, 0.2
    w = 2 * np.pi / period
    wd = w * np.sqrt(1 - zeta ** 2)
    u = np.r_[np.full(50, -0.5), np.full(400, 1.5)]  # at rest at -0.5, then a step of 2 at t = 0.5 s
    x = driven.response("oscillator", {"zeta": zeta, "period": period}, u, FS)
    t = np.arange(400) / FS
    step = 1 - np.exp(-zeta * w * t) * (np.cos(wd * t) + zeta / np.sqrt(1 - zeta ** 2) * np.sin(wd * t))
    assert np.abs(x[:50] + 0.5).max() < 1e-13
    assert np.abs(x[50:] - (-0.5 + 2.0 * step)).max() < 1e-10


def test_the_dose_step_response_is_the_closed_form():
    tau, gain = 0.3, 2.0
    u = np.r_[np.zeros(10), np.ones(200)]
    x = driven.response("dose", {"tau": tau, "gain": gain}, u, FS)
    t = np.arange(200) / FS
    assert np.abs(x[10:] - gain * (1 - np.exp(-t / tau))).max() < 1e-12


def test_simulate_is_the_exact_discrete_oscillator():
    """The record obeys the ZOH transfer function of the ODE (scipy's cont2discrete, not nw2's matrix
    exponential) to rounding, from whatever state it starts in, and matches lsim and a whole-span integration."""
    zeta, period = 0.3, 0.37
    x, u = driven.simulate("oscillator", {"zeta": zeta, "period": period}, 2000, FS, seed=3)
    w = 2 * np.pi / period
    b, a, _ = sps.cont2discrete(([w * w], [1, 2 * zeta * w, w * w]), 1 / FS, method="zoh")
    b = np.squeeze(b)
    assert abs(b[0]) < 1e-12  # strictly proper: x[k] has not felt u[k] yet
    residual = x[2:] + a[1] * x[1:-1] + a[2] * x[:-2] - b[1] * u[1:-1] - b[2] * u[:-2]
    assert np.abs(residual).max() < 1e-12 * max(1.0, np.abs(x).max())
    # the same forcing from rest at 0: lsim (zero-order hold) and an integration that knows no segments
    u = u[:600]
    x = driven.response("oscillator", {"zeta": zeta, "period": period}, u, FS, state=(0.0, 0.0))
    t = np.arange(u.size) / FS
    _, y, _ = sps.lsim(([w * w], [1, 2 * zeta * w, w * w]), u, t, interp=False)
    assert np.abs(x - y).max() < 1e-9
    ode = _whole_span(lambda s, v: [s[1], w * w * (v - s[0]) - 2 * zeta * w * s[1]], u, FS, (0.0, 0.0))
    assert np.abs(x - ode).max() < 1e-7


@pytest.mark.parametrize("zeta", [0.1, 0.999, 1.0, 2.5])
def test_the_true_exponent_is_the_dominant_eigenvalue_per_second(zeta):
    period = 0.4
    w = 2 * np.pi / period
    eig = np.linalg.eigvals(np.array([[0, 1], [-w * w, -2 * zeta * w]])).real.max()
    assert driven.true_lyapunov("oscillator", {"zeta": zeta, "period": period}) == pytest.approx(eig, rel=1e-6)
    assert driven.true_lyapunov("dose", {"tau": 0.25}) == -4.0
    assert driven.true_lyapunov("duffing", {}) is None
    assert driven.regime("oscillator", {}) == driven.regime("dose", {}) == "fixed_point"
    assert driven.regime("duffing", {}) is None


def test_the_oscillator_forgets_its_start_as_fast_as_the_true_exponent():
    """Two starts under one forcing converge at exp(lambda t): the exponent the rows carry."""
    params = {"zeta": 0.2, "period": 0.5}
    u = driven.forcing(driven.resolve_params("oscillator", params), 400, FS, np.random.default_rng(0))
    gap = driven.response("oscillator", params, u, FS, (1.0, 0.0)) - driven.response("oscillator", params, u, FS,
                                                                                        (0.0, 0.0))
    t = np.arange(400) / FS
    envelope = np.exp(driven.true_lyapunov("oscillator", params) * t)
    assert np.all(np.abs(gap) <= 1.03 * envelope + 1e-15)  # 1 / sqrt(1 - zeta^2) at most: 1.021
    assert np.abs(gap[300:]).max() > 0.2 * envelope[300]  # and no faster


# -- the Duffing oscillator -------------------------------------------------------------------------------
def test_the_duffing_segments_are_one_continuous_trajectory():
    params = driven.resolve_params("duffing", {"forcing_sd": 0.6})
    u = driven.forcing(params, 500, FS, np.random.default_rng(1))
    assert _switches(u).size >= 4
    x = driven.response("duffing", params, u, FS, state=(-1.0, 0.0))
    delta = params["delta"]
    whole = _whole_span(lambda s, v: [s[1], -delta * s[1] + s[0] - s[0] ** 3 + v], u, FS, (-1.0, 0.0),
                        time_scale=1 / params["time_unit"])
    assert np.abs(x - whole).max() < 1e-6
    # no jump at a switch: the step there is like its neighbours' (the force enters x'', not x)
    steps = np.abs(np.diff(x))
    for k in _switches(u):
        assert steps[k - 1] <= 1.5 * max(steps[k - 2], steps[k]) + 1e-3


def test_the_duffing_oscillator_sits_in_a_well_under_no_forcing():
    x = driven.response("duffing", {}, np.zeros(3000), FS, state=(0.5, 0.0))
    assert abs(x[-1] - 1.0) < 1e-4  # 30 s at delta 0.2 per 0.1 s: e^-30
    x, u = driven.simulate("duffing", {"forcing_sd": 0.0}, 100, FS, seed=0)
    assert np.all(u == 0) and np.abs(np.abs(x) - 1).max() < 1e-3  # the burn-in settled it in a well


# -- the forcing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fs", [100.0, 37.0])
def test_the_holds_lie_in_range_and_the_levels_have_the_given_spread(fs):
    params = driven.resolve_params("dose", {"switch_min": 0.25, "switch_max": 0.75, "forcing_sd": 2.0})
    _, u = driven.simulate("dose", params, int(2000 * fs), fs, seed=5)
    lo, hi = driven.hold_samples(params, fs)
    assert (lo, hi) == (round(0.25 * fs), round(0.75 * fs))
    holds = np.diff(_switches(u))
    assert holds.min() == lo and holds.max() == hi  # uniform over [lo, hi]: both ends are drawn in 4000 holds
    assert abs(holds.mean() - (lo + hi) / 2) < 0.05 * (lo + hi) / 2
    levels = u[np.r_[0, _switches(u)]]
    assert levels.mean() == pytest.approx(0.0, abs=0.1) and levels.std() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("system", driven.system_names())
def test_the_same_seed_gives_the_same_bytes_another_seed_others(system):
    x, u = driven.simulate(system, {}, 300, FS, seed=11)
    again = driven.simulate(system, {}, 300, FS, seed=11)
    other = driven.simulate(system, {}, 300, FS, seed=12)
    assert x.dtype == u.dtype == np.float64 and x.shape == u.shape == (300,)
    assert x.tobytes() == again[0].tobytes() and u.tobytes() == again[1].tobytes()
    assert x.tobytes() != other[0].tobytes() and u.tobytes() != other[1].tobytes()
    assert np.all(np.isfinite(x))


def test_a_record_starts_past_the_burn_in():
    """The record is the tail of a longer run: not the system at rest on the forcing's first level."""
    params = driven.resolve_params("oscillator", {})
    burn = math.ceil(driven.burn_in_s("oscillator", params) * FS)
    assert burn >= 5 / 4.71 * FS + 1.2 * FS - 1
    x, u = driven.simulate("oscillator", params, 200, FS, seed=2)
    rng = np.random.default_rng(2)
    full = driven.forcing(params, burn + 200, FS, rng)
    assert np.array_equal(full[burn:], u)
    assert np.array_equal(driven.response("oscillator", params, full, FS)[burn:], x)


# -- the generator in a spec ------------------------------------------------------------------------------
BASE = {"preprocess": {"target_fs": 100, "detrend": False}, "windows": {"length": 256, "stride": 256},
        "metrics": {"enabled": False}}
DRIVEN = {"kind": "synthetic", "generator": "driven", "systems": ["oscillator", "duffing", "pendulum"], "windows": 2,
          "noise": [0.0, 0.1], "sweeps": {"dose": {"tau": [0.2, 0.8], "steps": 2}}, "bands": 2}


def test_a_driven_source_ingests_the_response_and_its_forcing_in_one_group(tmp_path: Path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "drv", "sources": [DRIVEN], **BASE}))
    out = tmp_path / "store"
    result = nw2("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "synthetic:driven/pendulum: failed: unknown driven system 'pendulum' (known: oscillator, duffing, dose)" \
        in result.output
    rows = read_all(out).to_pylist()
    # oscillator, duffing and 2 dose settings; 2 noise levels; 2 windows; x0 and forcing
    assert len(rows) == 4 * 2 * 2 * 2
    assert {r["dataset"] for r in rows} == {"driven"}
    assert {r["system"] for r in rows} == {"driven.oscillator", "driven.duffing", "driven.dose"}
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["group_id"], []).append(r)
    assert len(groups) == 4 * 2 * 2
    for members in groups.values():
        assert sorted((r["channel"], r["role"]) for r in members) == [("forcing", "known"), ("x0", "signal")]
        assert len({(r["system_params"], r["noise"], r["subject"]) for r in members}) == 1
    osc = [r for r in rows if r["system"] == "driven.oscillator"]
    assert [r["true_lyapunov"] for r in osc] == [pytest.approx(-0.15 * 2 * np.pi / 0.2)] * len(osc)
    assert {r["regime"] for r in osc} == {"fixed_point"}
    assert all(r["true_lyapunov"] is None and r["regime"] is None for r in rows if r["system"] == "driven.duffing")
    dose = {json.loads(r["system_params"])["tau"]: r["true_lyapunov"] for r in rows if r["system"] == "driven.dose"}
    assert dose == {0.2: pytest.approx(-5.0), 0.8: pytest.approx(-1.25)}
    assert {r["subject"] for r in rows} == {"oscillator/default", "duffing/default", "dose/tau/band0", "dose/tau/band1"}
    # the forcing is never noised, the response is
    def samples(channel, noise):
        return sorted((r["system_params"], r["start_s"], r["samples"])
                      for r in rows if r["channel"] == channel and r["noise"] == noise)

    assert samples("forcing", 0.0) == samples("forcing", 0.1)
    assert samples("x0", 0.0) != samples("x0", 0.1)
    # the forcing stays piecewise constant, and switches inside windows: what a known-ahead input is for
    switching = 0
    for r in (r for r in rows if r["channel"] == "forcing"):
        u = np.asarray(r["samples"], np.float64) * r["scale"] + r["offset"]
        jumps = np.count_nonzero(np.abs(np.diff(u)) > 1e-4 * r["scale"])
        assert jumps <= 256 // 40 + 1  # holds of 40 samples at least
        switching += jumps > 0
    assert switching >= len(groups) // 2
