"""95% confidence intervals of a mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import mean_ci95, normal_ci95

VALUES = [0.61, 0.58, 0.66, 0.59, 0.63]


def test_mean_ci95_by_hand() -> None:
    n = len(VALUES)
    mean = sum(VALUES) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in VALUES) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    got_mean, got_half = mean_ci95(VALUES)
    assert got_mean == pytest.approx(mean, abs=1e-15)
    assert got_half == pytest.approx(half, rel=1e-12)
    # The same interval by scipy's own route.
    lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(VALUES))
    assert got_mean - got_half == pytest.approx(lo, rel=1e-12)
    assert got_mean + got_half == pytest.approx(hi, rel=1e-12)
    # With 4 degrees of freedom the t quantile (2.776) is far from 1.96.
    assert got_half > 1.4 * normal_ci95(VALUES)[1]


def test_normal_ci95_by_hand() -> None:
    values = np.random.default_rng(0).normal(0.5, 0.1, size=600)
    mean, half = normal_ci95(values)
    assert mean == pytest.approx(values.mean(), abs=1e-15)
    assert half == pytest.approx(1.96 * values.std(ddof=1) / math.sqrt(600), rel=1e-12)
    # Many values: the t interval is barely wider.
    assert mean_ci95(values)[1] == pytest.approx(half, rel=5e-3)


@pytest.mark.parametrize("fn", [mean_ci95, normal_ci95])
def test_single_value_has_nan_half_width(fn) -> None:
    mean, half = fn([0.7])
    assert mean == 0.7 and math.isnan(half)


@pytest.mark.parametrize("fn", [mean_ci95, normal_ci95])
def test_bad_input_raises(fn) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        fn([])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn([0.5, float("nan")])
    with pytest.raises(ValueError, match="one-dimensional"):
        fn([[0.5, 0.6]])


@pytest.mark.parametrize("fn", [mean_ci95, normal_ci95])
def test_constant_values_have_zero_half_width(fn) -> None:
    assert fn([0.25, 0.25, 0.25]) == (0.25, 0.0)


def test_seed_ci95_reports_no_interval_below_three_seeds() -> None:
    from analysis.stats import MIN_SEEDS_FOR_CI, seed_ci95

    assert MIN_SEEDS_FOR_CI == 3
    mean, half = seed_ci95([0.1, 0.3])
    assert mean == pytest.approx(0.2) and math.isnan(half)  # mean_ci95 would give 1.27: no information
    assert seed_ci95([0.1, 0.3, 0.2]) == mean_ci95([0.1, 0.3, 0.2])


def test_seeds_needed_matches_the_published_paired_t_sample_sizes() -> None:
    from analysis.stats import paired_t_power, seeds_needed

    # G*Power 3.1 (t tests, means: difference from constant, two tails, alpha 0.05, power 0.8): d_z = 0.5 needs
    # n = 34 (actual power 0.808), d_z = 0.8 needs 15 and d_z = 1.0 needs 10.
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(0.8, 1.0) == 15 and seeds_needed(1.0, 1.0) == 10
    assert paired_t_power(0.5, 1.0, 34) == pytest.approx(0.8078, abs=5e-4)
    assert paired_t_power(0.5, 1.0, 33) < 0.8
    # Scale-free and sign-free: only |effect| / sd matters.
    assert seeds_needed(-2.0, 4.0) == seeds_needed(0.5, 1.0) == seeds_needed(50.0, 100.0)
    # More power, or a noisier effect, needs more seeds.
    assert seeds_needed(0.5, 1.0, power=0.9) > 34 and seeds_needed(0.5, 2.0) > 34
    # A noiseless effect is decided by the fewest seeds a t interval has; a zero effect by none.
    assert seeds_needed(0.3, 0.0) == 2 and seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1e-4, 1.0, most=1000) is None


def test_paired_t_power_is_the_noncentral_t_tail() -> None:
    from scipy import stats

    from analysis.stats import paired_t_power

    # By simulation: the fraction of 20,000 draws of 6 differences N(0.7, 1) whose 95% t interval lies above 0.
    rng = np.random.default_rng(0)
    draws = rng.normal(0.7, 1.0, size=(20000, 6))
    lower = draws.mean(1) - stats.t.ppf(0.975, 5) * draws.std(1, ddof=1) / np.sqrt(6)
    assert paired_t_power(0.7, 1.0, 6) == pytest.approx(float((lower > 0).mean()), abs=0.01)
    for bad in (dict(n=1), dict(sd=0.0), dict(alpha=1.0)):
        with pytest.raises(ValueError):
            paired_t_power(**{"effect": 0.5, "sd": 1.0, "n": 5, **bad})
