"""Accuracy of the largest Lyapunov exponent at its default parameters (the fit region chosen from
the divergence curve, :func:`pipeline.metrics.dynamics.divergence_fit`): the textbook systems at
the window store's length (1024) and at 4096 samples, the fit-region rule on synthetic curves, and
a held-out subset of the dysts flows against their published exponents.

The rule's constants were chosen on the even-indexed systems of dysts' sorted list of flows; the
dysts check here uses odd-indexed (held-out) ones only. Where a target is missed the test says so
with ``xfail(strict=True)`` and the measured value, so that an improvement shows up too.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics.dynamics import (DivergencePlan, default_trajectory_len, divergence_fit, largest_lyapunov,
                                           lyapunov_and_dimension)
from nw2.pipeline.metrics.embedding import resolve_embedding

LN2 = math.log(2)


@pytest.fixture(scope="module")
def lorenz_4096():
    return systems.lorenz(4096)


def _signal(name, n, lorenz_4096):
    if name == "lorenz":
        return lorenz_4096[:n], 100.0
    return (systems.logistic(n) if name == "logistic" else systems.henon(n)), 1.0


#: (system, samples, truth, relative tolerance) with the measured ratio to the truth in brackets.
#: Targets: logistic and Henon within 15% per step, Lorenz x at 100 Hz within 20% per second.
TEXTBOOK = [
    ("logistic", 4096, LN2, 0.15),      # [0.895; the fixed 20-step fit gave 0.235]
    ("henon", 4096, 0.4204, 0.15),      # [0.945; 0.600]
    ("lorenz", 1024, 0.9056, 0.20),     # [1.095; 1.973]
    ("lorenz", 4096, 0.9056, 0.20),     # [1.128; 1.836]
]

#: At 1024 samples the maps miss the 15% target: with the default emb_dim=10 the nearest
#: neighbours of 1024 points are so far apart that the curve is never steeper than 0.44 per step
#: on the logistic map (0.33 on Henon), whatever the fit region; these bounds guard the measured
#: [0.721 and 0.822 of the truth].
SHORT_MAPS = [("logistic", 1024, LN2, 0.35), ("henon", 1024, 0.4204, 0.22)]


@pytest.mark.parametrize("name, n, truth, rtol", TEXTBOOK)
def test_textbook_systems_at_defaults(lorenz_4096, name, n, truth, rtol):
    x, fs = _signal(name, n, lorenz_4096)
    assert largest_lyapunov(x, fs) == pytest.approx(truth, rel=rtol)


@pytest.mark.parametrize("name, n, truth, rtol", SHORT_MAPS)
def test_maps_at_1024_samples_measured(name, n, truth, rtol):
    x, fs = _signal(name, n, None)
    assert largest_lyapunov(x, fs) == pytest.approx(truth, rel=rtol)


@pytest.mark.xfail(strict=True, reason="target missed at 1024 samples: logistic 0.72, Henon 0.82 of the "
                                       "truth (the emb_dim=10 curve is never steep enough; see SHORT_MAPS)")
@pytest.mark.parametrize("name", ["logistic", "henon"])
def test_maps_at_1024_samples_target(name):
    truth = LN2 if name == "logistic" else 0.4204
    x, fs = _signal(name, 1024, None)
    assert largest_lyapunov(x, fs) == pytest.approx(truth, rel=0.15)


def test_default_improves_on_the_fixed_fit(lorenz_4096):
    """The former default (20 steps from k = 0) against the fit region chosen from the curve."""
    for name, n, truth, _ in TEXTBOOK:
        x, fs = _signal(name, n, lorenz_4096)
        fixed = largest_lyapunov(x, fs, trajectory_len=default_trajectory_len(n, resolve_embedding(x, fs)))
        assert abs(largest_lyapunov(x, fs) / truth - 1) < abs(fixed / truth - 1), name


def test_periodic_and_noise_at_defaults():
    tone = systems.sine(2000, fs=100.0, freq=math.sqrt(2))
    assert abs(largest_lyapunov(tone, 100.0)) < 0.01
    assert largest_lyapunov(systems.white_noise(1024), 100.0) > 5.0  # noise diverges at once


def test_shared_pass_equals_single_function_at_defaults(lorenz_4096):
    for x, fs in ((lorenz_4096, 100.0), (systems.logistic(1024), 1.0), (systems.white_noise(700), 100.0)):
        assert lyapunov_and_dimension(x, fs)[0] == largest_lyapunov(x, fs)


# --- the fit-region rule on synthetic curves --------------------------------------------------

def test_fit_finds_the_linear_region_before_saturation():
    # y rises at 0.05 per step to k = 100, then stays flat: the fit stays inside the rise
    plan = DivergencePlan(step=2, n_points=151, period=20)
    k = np.arange(plan.n_points) * plan.step
    y = np.minimum(0.05 * k, 5.0) - 3.0
    slope, first, last = divergence_fit(k, y, plan)
    assert slope == pytest.approx(0.05, rel=1e-12)
    assert last <= 0.8 * 100 and last - first >= 0.5 * plan.period


def test_fit_averages_oscillations_over_half_a_period():
    # a linear trend with a ripple of the signal's period: no window shorter than half a period
    plan = DivergencePlan(step=1, n_points=400, period=40)
    k = np.arange(plan.n_points, dtype=float)
    y = 0.01 * k + 0.02 * np.sin(2 * np.pi * k / plan.period)
    slope, first, last = divergence_fit(k, y, plan)
    assert last - first >= plan.period / 2
    # a least-squares slope is below the steepest derivative: the ripple adds less than 0.02 * 2 pi / 40
    assert 0.01 < slope < 0.01 + 0.02 * 2 * np.pi / plan.period


def test_fit_of_a_flat_curve_is_flat_and_skips_non_finite():
    plan = DivergencePlan(step=1, n_points=50, period=4)
    k = np.arange(50)
    y = np.full(50, -2.0)
    y[[0, 7]] = -np.inf  # steps at which every distance was zero
    slope, first, _ = divergence_fit(k, y, plan)
    assert slope == 0.0 and first == 1
    with pytest.raises(Undefined) as why:
        divergence_fit(k[:3], np.array([-np.inf, 1.0, -np.inf]), plan)
    assert why.value.kind == "degenerate_fit"


# --- dysts flows: held-out subset -------------------------------------------------------------

#: 20 odd-indexed (held-out) flows of dysts' sorted list: every third of those that integrate in
#: under a second. x coordinate, 3000 points, 50 per period; LSODA at rtol = atol = 1e-9 (dysts'
#: default Radau at 1e-12 takes ~1 min per system; the same statistics).
DYSTS_HELD_OUT = ("AnishchenkoAstakhov", "Blasius", "CaTwoPlus", "Chua", "DequanLi", "ForcedFitzHughNagumo",
                  "Halvorsen", "HyperCai", "HyperRossler", "ItikBanksTumor", "Lorenz96", "MooreSpiegel",
                  "PanXuZhou", "Rossler", "ShimizuMorioka", "SprottE", "SprottJerk", "SprottO",
                  "StickSlipOscillator", "TurchinHanski")


@pytest.fixture(scope="module")
def dysts_flows():
    """``[(exponent per sample, published per sample, sample interval)]``, before and after."""
    pytest.importorskip("dysts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dysts.flows

        rows = []
        for name in DYSTS_HELD_OUT:
            model = getattr(dysts.flows, name)()
            traj = model.make_trajectory(3000, pts_per_period=50, resample=True, method="LSODA",
                                         rtol=1e-9, atol=1e-9)
            if traj is None or not np.all(np.isfinite(traj)) or model.maximum_lyapunov_estimated is None:
                continue
            x = np.ascontiguousarray(traj[:, 0])
            dt = model.period / 50
            fixed = largest_lyapunov(x, 1.0, trajectory_len=default_trajectory_len(x.size, resolve_embedding(x, 1.0)))
            rows.append((largest_lyapunov(x, 1.0), fixed, model.maximum_lyapunov_estimated * dt, dt))
    assert len(rows) >= 18
    return np.array(rows)


def _scores(est, truth, dt):
    rel = np.abs(est - truth) / truth
    return float(np.median(rel)), float(np.mean(rel <= 0.25)), float(spearmanr(est / dt, truth / dt)[0])


def test_dysts_held_out_measured(dysts_flows):
    """Measured on this subset: median relative error 0.43 (fixed 20-step fit 0.46), within 25%:
    0.40 (0.20), Spearman per time unit 0.80 (0.87). On all 67 held-out flows integrated this way:
    0.43 / 0.40 / 0.82 (before 0.57 / 0.19 / 0.83); docs/metrics.md has the whole table."""
    new, fixed, truth, dt = dysts_flows.T
    med, within, rho = _scores(new, truth, dt)
    med_fixed, within_fixed, _ = _scores(fixed, truth, dt)
    assert med <= 0.5 and med <= med_fixed
    assert within >= 0.35 and within > within_fixed
    assert rho >= 0.7


@pytest.mark.xfail(strict=True, reason="dysts targets missed (median error <= 30%, Spearman >= 0.9): measured "
                                       "0.43 and 0.80 on this subset; the Rosenstein curve of the x coordinate "
                                       "is far below the published exponent on many flows")
def test_dysts_held_out_targets(dysts_flows):
    new, _, truth, dt = dysts_flows.T
    med, _, rho = _scores(new, truth, dt)
    assert med <= 0.30 and rho >= 0.9
