"""The experiment's bootstrap comparison: intervals that cover, pairing, resampling units, outcomes by direction."""

from __future__ import annotations

import numpy as np
import pytest

from nw2.workflows.experiment.stats import Interval, compare, outcome


def test_a_clear_difference_is_called_with_the_right_direction():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.5, (3, 300)), rng.normal(1.5, 0.5, (3, 300))
    lower = compare(a, b, higher_is_better=False, n_boot=500)
    assert lower.outcome == "beats" and lower.diff.hi < 0 < lower.b.mean - lower.a.mean
    assert compare(a, b, higher_is_better=True, n_boot=500).outcome == "worse"
    for iv in (lower.a, lower.b, lower.diff):
        assert iv.lo <= iv.mean <= iv.hi


def test_equal_arms_match():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 400)
    a = base + rng.normal(0, 0.05, (3, 400))
    b = base + rng.normal(0, 0.05, (3, 400))
    c = compare(a, b, higher_is_better=False, n_boot=1000)
    assert c.outcome == "matches" and c.diff.lo < 0 < c.diff.hi


def test_pairing_over_windows_narrows_the_interval():
    """The same hard and easy windows for both arms: the window-to-window spread cancels in the difference."""
    rng = np.random.default_rng(2)
    difficulty = rng.gamma(1.0, 2.0, 500)
    a = difficulty + 0.1 + rng.normal(0, 0.01, (3, 500))
    b = difficulty + rng.normal(0, 0.01, (3, 500))
    c = compare(a, b, higher_is_better=False, n_boot=1000)
    assert c.outcome == "worse"
    assert (c.diff.hi - c.diff.lo) < 0.2 * (c.a.hi - c.a.lo)


def test_seed_only_scores_and_determinism():
    c1 = compare([0.80, 0.82, 0.79], [0.70, 0.72, 0.71], higher_is_better=True, n_boot=500, seed=3)
    c2 = compare([0.80, 0.82, 0.79], [0.70, 0.72, 0.71], higher_is_better=True, n_boot=500, seed=3)
    assert c1 == c2 and c1.outcome == "beats"
    assert c1.a.mean == pytest.approx(0.80333333) and 0.79 <= c1.a.lo <= c1.a.hi <= 0.82


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="different windows"):
        compare(np.zeros((3, 4)), np.zeros((3, 5)), True)
    with pytest.raises(ValueError, match="finite"):
        compare([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], True)


@pytest.mark.parametrize("lo,hi,higher,expected", [(0.1, 0.3, True, "beats"), (0.1, 0.3, False, "worse"),
                                                   (-0.3, -0.1, False, "beats"), (-0.1, 0.1, True, "matches")])
def test_outcome_rule(lo, hi, higher, expected):
    assert outcome(Interval(0.0, lo, hi), higher) == expected


def test_units_widen_the_interval_to_what_independent_recordings_support():
    # 4 recordings of 50 windows: arm A's advantage differs by recording (two help, two hurt), the windows of
    # one recording agree. Over windows the difference looks settled; over recordings it is not.
    rng = np.random.default_rng(0)
    unit = np.repeat(np.arange(4), 50)
    effect = np.array([-0.3, -0.25, 0.1, 0.05])[unit]
    b = rng.normal(1.0, 0.01, (3, 200))
    a = b + effect + rng.normal(0, 0.01, (3, 200))
    by_window = compare(a, b, higher_is_better=False, n_boot=500)
    by_unit = compare(a, b, higher_is_better=False, n_boot=500, units=[f"rec{u}" for u in unit])
    assert by_window.diff.mean == by_unit.diff.mean
    assert by_window.outcome == "beats" and by_unit.outcome == "matches"
    assert (by_unit.diff.hi - by_unit.diff.lo) > 5 * (by_window.diff.hi - by_window.diff.lo)
    # every window its own unit is the window bootstrap, draw for draw
    same = compare(a, b, higher_is_better=False, n_boot=500, units=[f"{i:03d}" for i in range(200)])
    assert same.diff.lo == pytest.approx(by_window.diff.lo) and same.diff.hi == pytest.approx(by_window.diff.hi)
    with pytest.raises(ValueError, match="one label per window"):
        compare(a, b, higher_is_better=False, units=["x"] * 3)


def test_group_averaging_counts_every_kind_of_window_once():
    """900 windows of one kind where the arms tie, 100 of another where a is better by 1: over windows the
    difference is -0.1, over groups -0.5; units nested in groups are resampled either way."""
    rng = np.random.default_rng(4)
    kind = np.array(["common"] * 900 + ["rare"] * 100)
    # 18 units of 50 common windows, 5 of 20 rare ones (a replicate without a rare unit is rare: 0.35%)
    units = np.array([f"c{i // 50}" for i in range(900)] + [f"r{i // 20}" for i in range(100)])
    b = rng.normal(1.0, 0.1, (3, 1000))
    a = b - np.where(kind == "rare", 1.0, 0.0) + rng.normal(0, 0.01, (3, 1000))
    by_window = compare(a, b, False, n_boot=500, units=units)
    by_group = compare(a, b, False, n_boot=500, units=units, groups=kind)
    assert by_window.diff.mean == pytest.approx(-0.1, abs=0.005)
    assert by_group.diff.mean == pytest.approx(-0.5, abs=0.005)
    manual = np.mean([a[:, kind == k].mean() for k in ("common", "rare")])
    assert by_group.a.mean == pytest.approx(manual)
    assert by_group.outcome == "beats" and by_group.diff.lo <= by_group.diff.mean <= by_group.diff.hi
    # one group: the mean of group means is the plain mean
    one = compare(a, b, False, n_boot=200, units=units, groups=np.array(["g"] * 1000))
    assert one.diff.mean == pytest.approx(a.mean() - b.mean())
    with pytest.raises(ValueError, match="groups must give one label"):
        compare(a, b, False, groups=kind[:10])


def test_the_scores_figure_draws_an_interval_that_does_not_hold_its_mean():
    """A percentile interval need not hold the point estimate: with one seed the mean can lie a rounding below
    ``lo``, and matplotlib's errorbar refused that ("'yerr' must not contain negative values"), so a one-seed
    nw2 experiment crashed while writing its report."""
    from nw2.model.evaluate.summary import ScoreKey
    from nw2.workflows.experiment.report import _scores_figure
    from nw2.workflows.experiment.stats import Comparison

    mean = 0.1 + 0.2  # 0.30000000000000004
    key = ScoreKey("forecast", "model", "mse")
    below, skewed = Interval(mean, 0.3 + 1e-16 * 3, 0.31), Interval(0.2, 0.25, 0.4)
    fig = _scores_figure({}, {"grid": {key: Comparison(below, skewed, Interval(0.1, 0.0, 0.2), "matches")}}, "random")
    (ax,) = fig.axes
    drawn = sorted((float(s[0][1]), float(s[1][1])) for c in ax.collections for s in c.get_segments()
                   if s[0][0] == s[1][0])  # the vertical segments: each interval from its ends
    assert drawn == sorted([(below.lo, below.hi), (skewed.lo, skewed.hi)])
