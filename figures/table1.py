"""Table 1: CML as a plug-in. For each base learner, test accuracy without and with CML (and CML†), mean ±
95% CI across seeds, the paired difference per seed, and the number of seeds; and the claim "CML improves
<base>" per base, decided by the paired difference's 95% CI across seeds.

Seeds pair the two cells: the same seed draws the same test tasks and the same initial psi and theta for the
base alone and for the base with CML, so their difference per seed is the unit of replication. With fewer than
two paired seeds a difference is shown but no interval, and the claim is "insufficient evidence".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from analysis.stats import mean_ci95
from cml import records

from . import style
from .claims import Claim
from .runs import BASE_ORDER, Run, Setting, as_runs, group_by_setting

__all__ = ["BaseRow", "rows", "markdown", "figure", "claims"]


@dataclass(frozen=True)
class BaseRow:
    """One base learner's row.

    Attributes:
        base: the base learner (``maml``, ``boil``...).
        label: its printed name.
        alone, cml, dagger: per seed, the test metric of the base alone, with CML, and CML† (phi's predictions).
        metric: ``acc`` (a fraction) or ``mse``.
    """

    base: str
    label: str
    alone: dict[int, float]
    cml: dict[int, float]
    dagger: dict[int, float]
    metric: str

    @property
    def paired_seeds(self) -> list[int]:
        return sorted(set(self.alone) & set(self.cml))

    def differences(self) -> list[float]:
        """CML minus the base alone, per paired seed (for MSE, base minus CML: positive is always better)."""
        sign = 1.0 if self.metric == "acc" else -1.0
        return [sign * (self.cml[s] - self.alone[s]) for s in self.paired_seeds]

    def difference(self) -> tuple[float, float]:
        """Mean paired difference and its Student-t 95% CI half-width (NaN with fewer than two seeds)."""
        d = self.differences()
        if not d:
            return math.nan, math.nan
        if len(d) == 1:
            return d[0], math.nan
        return mean_ci95(d)


def _summary(values: dict[int, float]) -> tuple[float, float]:
    v = list(values.values())
    if not v:
        return math.nan, math.nan
    if len(v) == 1:
        return v[0], math.nan
    return mean_ci95(v)


def rows(source: Run | str | Iterable[Run | str]) -> dict[Setting, list[BaseRow]]:
    """Per setting, one row per base learner that has runs of the base alone or with CML."""
    from cml.bases import BASE_TABLE

    out: dict[Setting, list[BaseRow]] = {}
    for setting, runs in group_by_setting(as_runs(source)).items():
        metric = "mse" if setting.is_regression else "acc"
        by_base: dict[str, dict[str, dict[int, float]]] = {}
        for run in runs:
            if run.addon not in ("none", "cml") or not run.has(records.TEST):
                continue
            test = run.test()
            cells = by_base.setdefault(run.base, {"none": {}, "cml": {}, "dagger": {}})
            if test.get(metric) is not None:
                cells[run.addon].setdefault(run.seed, float(test[metric]))
            if run.addon == "cml" and test.get(f"{metric}_dagger") is not None:
                cells["dagger"].setdefault(run.seed, float(test[f"{metric}_dagger"]))
        order = sorted(by_base, key=lambda b: (BASE_ORDER.index(b) if b in BASE_ORDER else len(BASE_ORDER), b))
        out[setting] = [BaseRow(b, BASE_TABLE[b].label if b in BASE_TABLE else b, by_base[b]["none"],
                                by_base[b]["cml"], by_base[b]["dagger"], metric) for b in order]
    return out


def _fmt(mean: float, ci: float, metric: str) -> str:
    if not math.isfinite(mean):
        return "–"
    scale, fmt = (100.0, ".2f") if metric == "acc" else (1.0, ".4f")
    text = format(scale * mean, fmt)
    return text + (f" ± {format(scale * ci, fmt)}" if math.isfinite(ci) else "")


def _cells(row: BaseRow) -> list[str]:
    diff, ci = row.difference()
    per_seed = ", ".join(_fmt(d, math.nan, row.metric).lstrip() for d in row.differences()) or "–"
    return [row.label, _fmt(*_summary(row.alone), row.metric), _fmt(*_summary(row.cml), row.metric),
            _fmt(*_summary(row.dagger), row.metric), _fmt(diff, ci, row.metric), per_seed,
            str(len(row.paired_seeds))]


def _header(metric: str) -> list[str]:
    unit = "acc. %" if metric == "acc" else "MSE"
    return ["base", f"alone ({unit})", f"+ CML ({unit})", f"+ CML† ({unit})", "paired gain", "gain per seed", "seeds"]


def markdown(source: Run | str | Iterable[Run | str]) -> str:
    """Table 1 as markdown, one table per setting (the README's table)."""
    blocks = []
    for setting, table in rows(source).items():
        if not table:
            continue
        head = _header(table[0].metric)
        lines = [f"**{setting.label}**", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def figure(source: Run | str | Iterable[Run | str]) -> Figure:
    """Table 1 as an A4-wide figure page: one table per setting.

    Raises:
        ValueError: if no run is of a base alone or a base with CML.
    """
    tables = {s: t for s, t in rows(source).items() if t}
    if not tables:
        raise ValueError("Table 1 needs runs of a base learner alone and with CML (--methods none,cml)")
    n_rows = sum(len(t) + 3 for t in tables.values())
    fig = Figure(figsize=(8.27, max(3.0, 1.2 + 0.32 * n_rows)))
    fig.suptitle("Table 1: CML as a plug-in to each base learner", fontsize=12, fontweight="bold")
    top = 0.90
    height = 0.80 / max(1, len(tables))
    for setting, table in tables.items():
        ax = fig.add_axes((0.03, top - height, 0.94, height))
        ax.axis("off")
        ax.set_title(setting.label, fontsize=10, loc="left")
        t = ax.table(cellText=[_cells(r) for r in table], colLabels=_header(table[0].metric), loc="upper center",
                     cellLoc="center")
        t.auto_set_font_size(False)
        t.set_fontsize(8)
        t.scale(1.0, 1.4)
        top -= height
    fig.text(0.03, 0.02, "Mean ± Student-t 95% CI across seeds; paired gain: + CML minus alone per seed (MSE: alone "
                         "minus + CML), its mean ± 95% CI. No interval with one seed.", fontsize=7)
    return fig


def claims(source: Run | str | Iterable[Run | str]) -> list[Claim]:
    """"CML improves <base>" for every base with paired seeds: supported when the paired gain's 95% CI lies
    above 0, not supported otherwise, insufficient evidence with fewer than two paired seeds."""
    out = []
    for setting, table in rows(source).items():
        for row in table:
            seeds = row.paired_seeds
            text = f"CML improves {row.label}: better test performance with the co-learner than without"
            if not seeds:
                continue
            diff, ci = row.difference()
            unit = "points" if row.metric == "acc" else "MSE"
            scale = 100.0 if row.metric == "acc" else 1.0
            if len(seeds) < 2:
                out.append(Claim(f"improves-{row.base}", text, None,
                                 f"gain {scale * diff:+.2f} {unit} on one seed ({seeds[0]}); a single seed is not a "
                                 f"claim", seeds, setting.label))
                continue
            supported = diff - ci > 0
            where = "above 0" if supported else ("below 0" if diff + ci < 0 else "includes 0")
            out.append(Claim(f"improves-{row.base}", text, bool(supported),
                             f"paired gain {scale * diff:+.2f} ± {scale * ci:.2f} {unit} (95% CI across "
                             f"{len(seeds)} seeds, {where})", seeds, setting.label))
    return out
