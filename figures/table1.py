"""Table 1: CML as a plug-in. For each base learner, test accuracy without and with CML (and CML†), the paired
difference per seed and its mean, and the number of seeds; and the claim "CML improves <base>" per base,
decided by the paired difference's 95% CI across seeds.

Seeds pair the two cells: the same seed draws the same test tasks and the same initial psi and theta for the
base alone and for the base with CML, so their difference per seed is the unit of replication. Intervals follow
the report's policy (:mod:`figures.summary`): with 3 or more seeds, means with their 95% Student-t CI across
seeds; with fewer, each seed's value, no interval, and the claim is "undecided".
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from analysis.stats import MIN_SEEDS_FOR_CI
from cml import records
from cml.errors import FigureInputError

from . import paper_values, style
from .claims import Claim, _decimals, _few_seeds
from .runs import (BASE_ORDER, Cell, Run, Setting, adds_nothing, as_runs, config_difference, config_groups, cooperates,
                   group_by_setting, pooled)
from .summary import POLICY, SeedValues, dot_column, policy_note
from .tables import draw_table, markdown_table, table_height

__all__ = ["BaseRow", "rows", "markdown", "figure", "claims", "CAPTION"]


@dataclass(frozen=True)
class BaseRow:
    """One base learner's row.

    Attributes:
        base: the base learner (``maml``, ``boil``...).
        label: its printed name.
        alone, cml, dagger: the test metric of the base alone, with CML, and CML† (phi's predictions), per seed
            with each run's 95% CI over its test tasks.
        metric: ``acc`` (a fraction) or ``mse``.
        with_cml: the cell of the base with CML (None if the runs hold none).
        paper: per column (``alone``, ``with`` CML, ``dagger``), the paper's Table 1 value at the runs' setting and the
            run's difference (:func:`figures.paper_values.cell_text`); absent where none matches.
    """

    base: str
    label: str
    alone: SeedValues
    cml: SeedValues
    dagger: SeedValues
    metric: str
    with_cml: Cell | None = None
    paper: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def paired_seeds(self) -> list[int]:
        return sorted(set(self.alone.values) & set(self.cml.values))

    def gains(self) -> SeedValues:
        """CML minus the base alone, per paired seed (for MSE, base minus CML: positive is always better)."""
        sign = 1.0 if self.metric == "acc" else -1.0
        return SeedValues({s: sign * (self.cml.values[s] - self.alone.values[s]) for s in self.paired_seeds})

    def differences(self) -> list[float]:
        """The paired gains in seed order."""
        g = self.gains()
        return [g.values[s] for s in g.seeds]

    def difference(self) -> tuple[float, float]:
        """Mean paired gain and its 95% CI half-width across seeds (NaN below 3 seeds; both NaN without any)."""
        g = self.gains()
        return (g.mean, g.ci95) if g.n else (math.nan, math.nan)


def rows(source: Run | str | Iterable[Run | str]) -> dict[Setting, list[BaseRow]]:
    """Per setting, one row per base learner that has runs of the base alone or with CML (the methods
    :func:`figures.runs.adds_nothing` and :func:`figures.runs.cooperates` select)."""
    from cml.bases import BASE_TABLE

    out: dict[Setting, list[BaseRow]] = {}
    for setting, runs in group_by_setting(as_runs(source)).items():
        runs, _ = pooled(runs)  # seeds of a cell whose configs differ in more than the seed are never pooled
        metric = setting.family.metric
        # base -> [alone, with CML, CML†], each ({seed: value}, {seed: that run's CI over its test tasks})
        by_base: dict[str, list[tuple[dict[int, float], dict[int, float]]]] = {}
        with_cml: dict[str, Cell] = {}
        first: dict[tuple[str, str], Run] = {}  # a run of each (base, column): the setting the paper is matched at
        for cell in {r.cell for r in runs}:
            groups = config_groups([r for r in runs if r.cell == cell])
            if len(groups) > 1 and (adds_nothing(cell.spec) or cooperates(cell.spec)):
                raise FigureInputError(f"Table 1 ({setting.label}): {cell.label} runs of {len(groups)} configs "
                                       f"({' / '.join(config_difference(groups))}); a row pools seeds of one config: "
                                       f"give the folders of one")
        for run in runs:
            alone, cml = adds_nothing(run.cell.spec), cooperates(run.cell.spec)
            if not (alone or cml) or not run.has(records.TEST):
                continue
            test = run.test()
            columns = by_base.setdefault(run.base, [({}, {}), ({}, {}), ({}, {})])
            if cml:
                with_cml.setdefault(run.base, run.cell)
            targets = [(columns[0] if alone else columns[1], metric)]
            first.setdefault((run.base, alone), run)
            if cml and run.cell.spec.dagger:
                targets.append((columns[2], f"{metric}_dagger"))
            for column, key in targets:
                if test.get(key) is not None and run.seed not in column[0]:
                    column[0][run.seed] = float(test[key])
                    if test.get(f"{key}_ci95") is not None:
                        column[1][run.seed] = float(test[f"{key}_ci95"])
        order = sorted(by_base, key=lambda b: (BASE_ORDER.index(b) if b in BASE_ORDER else len(BASE_ORDER), b))
        table = []
        for b in order:
            values = [SeedValues(*column) for column in by_base[b]]
            paper = {}
            for name, key, v, alone in (("alone", metric, values[0], True), ("with", metric, values[1], False),
                                        ("dagger", f"{metric}_dagger", values[2], False)):
                run = first.get((b, alone))
                found = paper_values.values_for(run, key, ("1",)) if run is not None else []
                if found:
                    paper[name] = paper_values.cell_text(found, v.mean if v.n else None, " ")
            table.append(BaseRow(b, BASE_TABLE[b].label if b in BASE_TABLE else b, *values, metric, with_cml.get(b),
                                 paper))
        out[setting] = table
    return out


def _scale_fmt(metric: str) -> tuple[float, str]:
    return (100.0, ".2f") if metric == "acc" else (1.0, ".4f")


def _value(values: SeedValues, metric: str, sep: str) -> str:
    """The mean across seeds (± its CI with 3+ seeds); with fewer seeds, each seed's value below it."""
    if not values.n:
        return "–"
    seeds = values.seed_lines(*_scale_fmt(metric), task_ci=False)
    if values.n == 1:
        return seeds[0]
    text = values.mean_text(*_scale_fmt(metric))
    return f"mean {text}{sep}" + sep.join(seeds) if values.n < MIN_SEEDS_FOR_CI else text


def _gain_per_seed(row: BaseRow, sep: str) -> str:
    g = row.gains()
    if not g.n:
        return "–"
    scale, fmt = _scale_fmt(row.metric)
    return sep.join(f"s{s}: {scale * g.values[s]:+{fmt}}" for s in g.seeds)


def _cells(row: BaseRow, sep: str = "\n") -> list[str]:
    gains = row.gains()
    scale, fmt = _scale_fmt(row.metric)
    mean_gain = "–" if not gains.n else f"{scale * gains.mean:+{fmt}}"
    if gains.has_interval:
        mean_gain += f" ± {scale * gains.ci95:{fmt}}"
    def with_paper(column: str, values: SeedValues) -> str:
        text = _value(values, row.metric, sep)
        if column in row.paper:
            paper, diff = row.paper[column]
            text += f"{sep}paper {paper.split(' (')[0]} (run − paper {diff})"
        return text

    return [row.label, with_paper("alone", row.alone), with_paper("with", row.cml), with_paper("dagger", row.dagger),
            mean_gain, _gain_per_seed(row, sep), str(len(row.paired_seeds))]


#: The unit of a paired gain, per metric; signed so that positive is CML better (never "reduction": a negative
#: value of a word that names a direction reads as its opposite).
GAIN_UNIT = {"acc": "points", "mse": "MSE, alone − with CML"}


def direction(gain: float) -> str:
    """The direction of a paired gain in words (positive is CML better, for either metric)."""
    return "CML better" if gain > 0 else "CML worse" if gain < 0 else "no difference"


def _header(metric: str, sep: str = "\n") -> list[str]:
    unit = "acc. %" if metric == "acc" else "MSE"
    gain = GAIN_UNIT[metric].replace(", ", ",\n") if sep == "\n" else GAIN_UNIT[metric]
    return ["base", f"alone{sep}({unit})", f"+ CML{sep}({unit})", f"+ CML†{sep}({unit})",
            f"paired gain{sep}({gain})", "gain per seed", f"paired{sep}seeds"]


CAPTION = ("alone: the base learner by itself; + CML: with the co-learner (φ dropped at test time); + CML†: "
           "predicting with φ. A value cell is the mean across seeds, with fewer than 3 seeds followed by each seed's "
           "value (one seed: that value alone). Paired gain: + CML minus alone on the same seed (MSE: alone minus "
           "+ CML; positive is better), then its mean. " + POLICY)


def markdown(source: Run | str | Iterable[Run | str]) -> str:
    """Table 1 as markdown, one table per setting (the README's table), with the interval policy under it."""
    blocks = []
    for setting, table in rows(source).items():
        if not table:
            continue
        head = _header(table[0].metric, " ")
        lines = [f"**{setting.label}**", "", *markdown_table(head, [_cells(r, "; ") for r in table])]
        lines += ["", f"{policy_note(min(len(r.paired_seeds) for r in table))}. {POLICY}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def figure(source: Run | str | Iterable[Run | str], figsize: tuple[float, float] = style.PAGE) -> Figure:
    """Table 1 on a report page (:data:`style.PAGE`): one table per setting, the caption, and where the page has
    room the paired gains as a dot plot (each seed, the mean, and with 3+ seeds the 95% CI across seeds).

    Raises:
        FigureInputError: if no run is of a base alone or a base with CML.
    """
    tables = {s: t for s, t in rows(source).items() if t}
    if not tables:
        raise FigureInputError("Table 1 needs runs of a base learner alone and with CML (--methods none,cml)")
    widths = [0.13, 0.15, 0.15, 0.15, 0.16, 0.16, 0.10]
    fontsize = 8.0
    with style.figure_style():
        fig = Figure(figsize=figsize)
        fig.suptitle("Table 1: CML as a plug-in to each base learner", fontsize=13, y=0.975, fontweight="bold")
        top = 0.93
        drawn = {}
        for setting, table in tables.items():
            cells = [_cells(r) for r in table]
            header = _header(table[0].metric)
            # A page holds what fits; a setting that does not is named, not drawn over the caption.
            if top - 0.03 - table_height(figsize[1], cells, header, fontsize) < 0.2:
                fig.text(0.06, top - 0.01, f"{setting.label}: does not fit on this page; see Table 1 in the "
                                           f"notebook (figures.table1.markdown)", fontsize=8, va="top")
                top -= 0.03
                continue
            seeds = min(len(r.paired_seeds) for r in table)
            fig.text(0.06, top, f"{setting.label} ({policy_note(seeds)})", fontsize=10, va="top",
                     fontweight="bold")
            top = draw_table(fig, top - 0.025, header, cells, widths, fontsize=fontsize, width=0.86) - 0.035
            drawn[setting] = table
        matched = any(r.paper for t in drawn.values() for r in t)
        caption = textwrap.wrap(CAPTION + (" paper: the paper's Table 1 value at the row's setting, and run − paper in "
                                           "points." if matched else " " + paper_values.no_match_note(
                                               as_runs(source), ("1",))), 118)
        fig.text(0.06, top, "\n".join(caption), fontsize=7.8, va="top", linespacing=1.45)
        chart_top = top - len(caption) * 7.8 * 1.45 / (72 * figsize[1]) - 0.07
        if chart_top > 0.3 and drawn:
            n = len(drawn)
            for i, (setting, table) in enumerate(drawn.items()):
                ax = fig.add_axes((0.1 + i * 0.86 / n, 0.1, 0.86 / n - 0.08, chart_top - 0.1))
                _gain_chart(ax, table, setting.label)
    return fig


def _gain_chart(ax, table: list[BaseRow], title: str) -> None:
    """The paired gains of one setting: each seed (open), the mean (filled), the 95% CI across 3+ seeds."""
    scale = _scale_fmt(table[0].metric)[0]
    # The gains are CML's: drawn in its colour (every base's cell with CML has it).
    colour = style.method_style(next(r.with_cml for r in table if r.with_cml is not None)).colour
    for i, row in enumerate(table):
        gains = row.gains()
        if not gains.n:
            continue
        dot_column(ax, i, gains, scale, colour)
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    ax.set_xticks(range(len(table)), [r.label for r in table])
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_ylabel("paired gain of + CML (" + GAIN_UNIT[table[0].metric] + ")")
    ax.set_title(f"{title}: open = one seed, filled = mean of 2+,\nbar = 95% CI across 3+ seeds; above 0: CML better",
                 fontsize=8.5)
    ax.grid(axis="y", color="0.9", lw=0.6)


def claims(source: Run | str | Iterable[Run | str]) -> list[Claim]:
    """"CML improves <base>" for every base with paired seeds: supported when the paired gain's 95% CI across
    3 or more seeds lies above 0, contradicted when it lies below 0, undecided (``None``) when it includes 0 or
    with fewer than :data:`analysis.stats.MIN_SEEDS_FOR_CI` paired seeds (each seed's gain quoted)."""
    out = []
    for setting, table in rows(source).items():
        for row in table:
            seeds = row.paired_seeds
            text = f"CML improves {row.label}: better test performance with the co-learner than without"
            if not seeds:
                continue
            unit = GAIN_UNIT[row.metric]
            scale, fmt = _scale_fmt(row.metric)
            least = int(fmt[1:-1])  # the table's decimals, more where a value would print as zero
            gains = row.gains()
            if len(seeds) < MIN_SEEDS_FOR_CI:
                d = _decimals(*(scale * g for g in gains.values.values()), least=least)
                per = ", ".join(f"seed {s}: {scale * gains.values[s]:+.{d}f} ({direction(gains.values[s])})"
                                for s in gains.seeds)
                evidence = (f"{_few_seeds(seeds)} Gain of CML over {row.label} alone ({unit}), {per}."
                            if len(seeds) > 1 else
                            f"single seed: not a claim. Gain of CML over {row.label} alone on seed {seeds[0]}: "
                            f"{scale * gains.values[seeds[0]]:+.{d}f} {unit} ({direction(gains.values[seeds[0]])}). "
                            f"Train --seeds 0,1,2 (or more) to test the claim.")
                out.append(Claim(f"improves-{row.base}", text, None, evidence, seeds, setting.label))
                continue
            diff, ci = scale * gains.mean, scale * gains.ci95
            d = _decimals(diff, ci, least=least)
            # Supported above 0, contradicted below 0; an interval that includes 0 refutes nothing: undecided.
            supported = True if diff - ci > 0 else (False if diff + ci < 0 else None)
            where = {True: "above 0", False: "below 0", None: "includes 0"}[supported]
            out.append(Claim(f"improves-{row.base}", text, supported,
                             f"paired gain {diff:+.{d}f} ± {ci:.{d}f} {unit} (95% CI across {len(seeds)} seeds, "
                             f"{where}; mean: {direction(diff)})", seeds, setting.label))
    return out
