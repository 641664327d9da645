"""Means with 95% confidence intervals, as reported for few-shot accuracies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["MIN_SEEDS_FOR_CI", "mean_ci95", "normal_ci95", "paired_t_power", "seed_ci95", "seeds_needed"]

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


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of a paired t-test on ``n`` pairs: the probability that the (1 - alpha) Student-t interval of the mean
    difference lies entirely on the side of ``effect``, when the true mean difference is ``effect`` and the
    differences' standard deviation is ``sd``.

    That is the claims' decision rule (a 95% interval across seeds on the claimed side): P(T > t_{1-alpha/2, n-1})
    for T noncentral t with n - 1 degrees of freedom and noncentrality |effect| / sd * sqrt(n). The two-sided
    test's power adds the negligible other tail (below 1e-6 at the powers of interest).

    Args:
        effect: the true mean paired difference (its sign is the claimed side).
        sd: the standard deviation of the paired differences, > 0.
        n: the number of pairs (seeds), >= 2.
        alpha: 1 - the interval's level.

    Raises:
        ValueError: for n < 2, sd <= 0, a non-finite value or alpha outside (0, 1).

    References:
        Cohen (1988), *Statistical Power Analysis for the Behavioral Sciences*, ch. 2 (paired samples: d_z).
    """
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got n={n}")
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd <= 0:
        raise ValueError(f"effect and sd must be finite and sd > 0, got effect={effect}, sd={sd}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    df = n - 1
    critical = _st.t.ppf(1 - alpha / 2, df)
    return float(_st.nct.sf(critical, df, abs(effect) / sd * math.sqrt(n)))


def seeds_needed(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05, most: int = 100_000) -> int | None:
    """The fewest seeds (pairs) at which :func:`paired_t_power` reaches ``power``, for an observed mean paired
    difference ``effect`` and spread ``sd``.

    Args:
        effect: the observed mean of the paired differences.
        sd: their observed standard deviation (ddof=1).
        power: the power wanted (0.8: 80%).
        alpha: 1 - the interval's level.
        most: give up above this many.

    Returns:
        The number of seeds, >= 2 (2 when even two suffice: ``sd`` == 0 with a non-zero effect); None when no number
        up to ``most`` does (a zero effect never does).

    Raises:
        ValueError: for a non-finite effect or sd, sd < 0, or power outside (0, 1).
    """
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        raise ValueError(f"effect and sd must be finite and sd >= 0, got effect={effect}, sd={sd}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if effect == 0:
        return None
    if sd == 0:
        return 2
    # Power grows with n: double to bracket the answer, then bisect.
    lo, hi = 1, 2
    while paired_t_power(effect, sd, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if lo >= most:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_t_power(effect, sd, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi if hi <= most else None
