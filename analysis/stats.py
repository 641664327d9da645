"""Means with 95% confidence intervals, as reported for few-shot accuracies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["MIN_SEEDS_FOR_CI", "mean_ci95", "normal_ci95", "seed_ci95"]

#: The fewest seeds over which a Student-t interval is reported. With 2 the t quantile is 12.7: two runs of a
#: cosine give intervals like 0.04 ± 1.58, wider than the quantity's range, which inform no one. Below this,
#: figures and tables show each seed's value and no interval, and say so.
MIN_SEEDS_FOR_CI = 3


def _as_values(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {v.shape}")
    if v.size == 0:
        raise ValueError("values must be non-empty")
    # NaN is refused rather than propagated: a NaN here (e.g. an undefined cosine) must be dropped by the
    # caller on purpose, not silently turn a whole table cell into NaN.
    if not np.isfinite(v).all():
        raise ValueError(f"values contains NaN or infinite entries ({int((~np.isfinite(v)).sum())} of {v.size})")
    return v


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% Student-t confidence interval.

    half-width = t_{0.975, n-1} * sd / sqrt(n), sd with ddof=1. For few values (e.g. a handful of seeds),
    where the normal quantile would be too narrow.

    Args:
        values: (n,) observations, n >= 1, all finite.

    Returns:
        ``(mean, half_width)``; the interval is mean +/- half_width. For n = 1 the half-width is NaN: the
        sample standard deviation and the t quantile with 0 degrees of freedom are undefined.

    Raises:
        ValueError: if ``values`` is empty, not one-dimensional, or holds NaN or infinity.

    References:
        Student (1908), "The Probable Error of a Mean", Biometrika 6.
    """
    v = _as_values(values)
    n = v.size
    mean = float(v.mean())
    if n == 1:
        return mean, math.nan
    return mean, float(_st.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))


def normal_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% normal-approximation confidence interval: 1.96 * sd / sqrt(n).

    The convention of few-shot papers for accuracy over many test tasks (e.g. 600 or more), where the
    t and normal quantiles agree to a few parts in a thousand.

    Args:
        values: (n,) observations, n >= 1, all finite.

    Returns:
        ``(mean, half_width)`` with sd of ddof=1; for n = 1 the half-width is NaN (sd undefined).

    Raises:
        ValueError: if ``values`` is empty, not one-dimensional, or holds NaN or infinity.
    """
    v = _as_values(values)
    mean = float(v.mean())
    if v.size == 1:
        return mean, math.nan
    return mean, float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


def seed_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean across seeds and its Student-t 95% half-width, under the reporting policy.

    Args:
        values: (n,) one value per seed, all finite.

    Returns:
        ``(mean, half_width)`` as :func:`mean_ci95`, except that the half-width is NaN with fewer than
        :data:`MIN_SEEDS_FOR_CI` seeds: no interval is reported then.
    """
    mean, ci = mean_ci95(values)
    return mean, ci if len(values) >= MIN_SEEDS_FOR_CI else math.nan
