"""One quantity across seeds, reported under one interval policy by every table, figure and claim.

The policy (:data:`analysis.stats.MIN_SEEDS_FOR_CI`): with 3 or more seeds, the mean across seeds and its 95%
Student-t interval; with fewer, each seed's value and no interval across seeds. An interval over a run's own
test tasks is a different quantity (the precision of one run, not the spread between runs); it is shown per
seed, in its own column, never in the column of the across-seed interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from analysis.stats import MIN_SEEDS_FOR_CI, seed_ci95

__all__ = ["SeedValues", "POLICY", "policy_note", "dot_column", "DOT_LEGEND"]

#: The policy in one sentence, printed under every table and figure that uses it.
POLICY = (f"Intervals across seeds are 95% Student-t CIs, shown only with {MIN_SEEDS_FOR_CI} or more seeds; with "
          f"fewer, each seed's value is shown and no interval across seeds.")


def policy_note(seeds: int) -> str:
    """What the intervals of a figure over ``seeds`` seeds (the fewest of any method) are."""
    if seeds >= MIN_SEEDS_FOR_CI:
        return f"{seeds}+ seeds: 95% Student-t CIs across seeds"
    if seeds == 1:
        return "one seed: no interval across seeds"
    return f"fewer than {MIN_SEEDS_FOR_CI} seeds: each seed shown, no interval across seeds"


def _fmt(value: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(value) else format(value, fmt)


@dataclass(frozen=True)
class SeedValues:
    """A quantity's value per seed, with each run's own interval over its test tasks where known.

    Attributes:
        values: ``{seed: value}``, finite values only.
        task_ci: ``{seed: 95% CI half-width over that run's test tasks}`` (absent or NaN where unknown).
    """

    values: Mapping[int, float]
    task_ci: Mapping[int, float] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return seed_ci95([self.values[s] for s in self.seeds])[0] if self.values else math.nan

    @property
    def ci95(self) -> float:
        """The across-seed half-width; NaN with fewer than :data:`MIN_SEEDS_FOR_CI` seeds."""
        return seed_ci95([self.values[s] for s in self.seeds])[1] if self.values else math.nan

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.ci95)

    def mean_text(self, scale: float = 1.0, fmt: str = ".3f") -> str:
        """``"92.81 ± 1.20"`` with an interval, else ``"92.81"`` (the mean of the seeds shown beside it)."""
        if not self.values:
            return "—"
        text = _fmt(scale * self.mean, fmt)
        return f"{text} ± {_fmt(scale * self.ci95, fmt)}" if self.has_interval else text

    def seed_lines(self, scale: float = 1.0, fmt: str = ".3f", task_ci: bool = True) -> list[str]:
        """One ``"s0: 92.10 ± 2.31"`` per seed (the ± is over that run's test tasks, when known)."""
        lines = []
        for s in self.seeds:
            ci = self.task_ci.get(s, math.nan) if task_ci else math.nan
            ci_text = f" ± {_fmt(scale * ci, fmt)}" if ci is not None and math.isfinite(ci) else ""
            lines.append(f"s{s}: {_fmt(scale * self.values[s], fmt)}{ci_text}")
        return lines


#: What :func:`dot_column`'s marks mean, for a dot plot's title or caption.
DOT_LEGEND = ("open marker: one seed, its thin bar the 95% CI over that run's test tasks (where recorded); filled: the "
              f"mean across seeds, its bar the 95% Student-t CI across seeds ({MIN_SEEDS_FOR_CI}+ seeds)")


def dot_column(ax, x: float, values: SeedValues, scale: float, colour, marker: str = "o") -> None:
    """One row of a dot plot at ``x``: each seed as an open marker (with its run's own interval over test tasks as
    a thin bar, where known), left of the column's centre, and the mean across seeds as a filled marker (with the
    across-seed interval as a capped bar where the policy gives one) right of it. A single seed is its open marker
    alone: the mean of one seed is that seed, and a filled marker drawn over it would hide what it is."""
    seeds = values.seeds
    if not seeds:
        return
    # The seeds fan out a little so that equal values stay visible; all of them left of the mean.
    spread = [x - 0.14 + 0.1 * (i - (len(seeds) - 1) / 2) / max(len(seeds), 1) for i in range(len(seeds))]
    ys = [scale * values.values[s] for s in seeds]
    cis = [values.task_ci.get(s, math.nan) for s in seeds]
    for xi, y, ci in zip(spread, ys, cis):
        if ci is not None and math.isfinite(ci):
            ax.errorbar([xi], [y], yerr=[scale * ci], fmt="none", ecolor=colour, elinewidth=0.8, alpha=0.6,
                        zorder=2)
    ax.scatter(spread, ys, s=22, facecolor="white", edgecolor=colour, marker=marker, zorder=3)
    if len(seeds) < 2:
        return
    if values.has_interval:
        ax.errorbar([x + 0.1], [scale * values.mean], yerr=[scale * values.ci95], fmt="none", ecolor=colour,
                    capsize=4, elinewidth=1.3, zorder=3)
    ax.scatter([x + 0.1], [scale * values.mean], s=46, color=colour, marker=marker, zorder=4)
