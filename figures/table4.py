"""Table 4: is CML's gain just more parameters? MAML, More-MAML, CL, CML and CML† with their parameter
counts at train and at test time and their test accuracy (sinusoid: MSE).

CML† is CML evaluated through its co-learner phi (``acc_dagger``); it keeps phi at test time, so its test
count is ``params.test_dagger``. Intervals follow :mod:`figures.summary`: the mean across seeds with its 95%
Student-t CI when there are 3 or more seeds, and in a separate column each seed's value with that run's 95% CI
over its test tasks. A value is bold only when its interval across seeds clears every other row's.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from cml import records
from cml.errors import FigureInputError

from cml.methods import Method

from . import style
from .runs import Cell, Run, Setting, adds_nothing, as_runs, cell_of, cells_where, group_by_method, group_by_setting
from .summary import POLICY, SeedValues
from .tables import draw_table

__all__ = ["Row", "in_table4", "rows", "rows_from_aggregate", "markdown", "best_row", "figure"]


def in_table4(method: Method) -> bool:
    """The paper's Table 4 rows, on :data:`figures.runs.PAPER_BASE`: MAML, More-MAML, CL and CML (the base learner
    alone, with extra capacity, with a co-learner of either kind); CML† follows CML."""
    return adds_nothing(method) or method.extra_capacity or (method.co_learner and not method.frozen)


@dataclass(frozen=True)
class Row:
    """One table row.

    Attributes:
        cell: the (base, method) pair.
        params_train, params_test: parameter counts at train and at test time.
        metric: ``acc`` (classification, a fraction) or ``mse`` (sinusoid).
        values: the test metric per seed, with each run's 95% CI over its test tasks.
        dagger: the row of the cell's co-learner predictions (CML† for CML).
    """

    cell: Cell
    params_train: int
    params_test: int
    metric: str
    values: SeedValues
    dagger: bool = False

    @property
    def label(self) -> str:
        return style.label(self.cell, self.dagger)

    @property
    def mean(self) -> float:
        return self.values.mean

    @property
    def ci95(self) -> float:
        """95% CI half-width across seeds; NaN with fewer than 3 seeds (see :mod:`figures.summary`)."""
        return self.values.ci95

    @property
    def seeds(self) -> int:
        return self.values.n

    @property
    def _scale_fmt(self) -> tuple[float, str]:
        return (100.0, ".2f") if self.metric == "acc" else (1.0, ".4f")

    def value_text(self) -> str:
        """The mean across seeds, ``"71.68 ± 1.23"`` with 3+ seeds, else ``"71.68"``."""
        return self.values.mean_text(*self._scale_fmt)

    def seed_text(self, sep: str = "\n") -> str:
        """Each seed's value with its run's 95% CI over test tasks, one per line."""
        return sep.join(self.values.seed_lines(*self._scale_fmt))

    @property
    def header(self) -> str:
        return "accuracy (%)" if self.metric == "acc" else "test MSE"


def _metric_of(setting: Setting) -> str:
    return setting.family.metric


def _row(cell: Cell, runs: Sequence[Run], metric: str, dagger: bool = False) -> Row:
    tests = {r.seed: r.test() for r in runs}
    values = {s: float(t[metric]) for s, t in tests.items() if t.get(metric) is not None}
    if not values:
        raise FigureInputError(f"no {metric} in the test.json of {cell}")
    task_ci = {s: float(tests[s][f"{metric}_ci95"]) for s in values if tests[s].get(f"{metric}_ci95") is not None}
    params = next(iter(tests.values()))["params"]
    test_count = params.get("test_dagger", params["train"]) if dagger else params["test"]
    return Row(cell, int(params["train"]), int(test_count), metric.split("_")[0], SeedValues(values, task_ci), dagger)


def rows(source: Run | str | Path | Iterable[Run | str | Path], methods: Sequence[Cell] | None = None) -> list[Row]:
    """Table rows from the ``test.json`` of each run (one setting).

    Args:
        source: run or sweep folders (or :class:`Run` objects) of one setting.
        methods: cells to list, in order (default: those :func:`in_table4` selects, in legend order); a CML† row
            follows each cell whose co-learner's predictions are reported (:attr:`cml.methods.Method.dagger`)
            when its runs recorded them.

    Raises:
        FigureInputError: if the runs mix settings or none of ``methods`` is present.
        MissingRecordError: if a run has not finished (no ``test.json``).
    """
    runs = as_runs(source)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise FigureInputError(f"Table 4 lists one setting at a time; got {', '.join(s.label for s in settings)}")
    metric = _metric_of(next(iter(settings)))
    by_method = group_by_method(runs)
    wanted = cells_where(by_method, in_table4) if methods is None else [m for m in methods if m in by_method]
    if not wanted:
        named = "maml, more-maml, cl, cml" if methods is None else ", ".join(map(str, methods))
        raise FigureInputError(f"Table 4: none of {named} among the runs ({', '.join(map(str, by_method))})")
    out = []
    for m in wanted:
        out.append(_row(m, by_method[m], metric))
        if m.spec.dagger and all(r.test().get(f"{metric}_dagger") is not None for r in by_method[m]):
            out.append(_row(m, by_method[m], f"{metric}_dagger", dagger=True))
    return out


def rows_from_aggregate(aggregate: str | Path, methods: Sequence[Cell] | None = None) -> list[Row]:
    """Table rows from a sweep's ``aggregate.json`` (a path to it or to its sweep folder).

    ``aggregate.json`` keeps each cell's values in the order of the sweep's seeds that finished; the seeds
    are read from ``sweep.json`` beside it. It holds no interval over test tasks: use :func:`rows` on the run
    folders for those. The cells of a ``--grid`` are left out (they differ in more than the method).

    Raises:
        FileNotFoundError: if a file is missing.
        FigureInputError: if none of ``methods`` is in it.
    """
    path = Path(aggregate)
    folder = path if path.is_dir() else path.parent
    aggregate = records.read_json(folder / records.AGGREGATE)
    seeds = records.read_json(folder / records.SWEEP)["seeds"]
    metric = "acc" if any("acc" in e for e in aggregate.values()) else "mse"
    # The cells of a grid differ in more than the method; a cell whose every run was left out has no values.
    entries = {cell_of(e, folder / records.AGGREGATE, name=key): e for key, e in aggregate.items()
               if "grid" not in e and e["seeds"]}
    wanted = cells_where(entries, in_table4) if methods is None else [m for m in methods if m in entries]
    if not wanted:
        named = "maml, more-maml, cl, cml" if methods is None else ", ".join(map(str, methods))
        raise FigureInputError(f"Table 4: none of {named} in aggregate.json ({', '.join(aggregate)})")
    out = []
    for m in wanted:
        entry = entries[m]
        params = entry["params"]
        # The values are the pooled runs' in seed order: runs the aggregate left out (entry "dropped") are not.
        left_out = {d["run"] for d in entry.get("dropped", [])}
        finished = [s for s in seeds if (folder / records.run_folder_name(m.variant, s) / records.TEST).is_file()
                    and records.run_folder_name(m.variant, s) not in left_out]
        for dagger, name in ((False, metric), (True, f"{metric}_dagger")):
            if dagger and (not m.spec.dagger or name not in entry):
                continue
            values = dict(zip(finished, map(float, entry[name]["values"])))
            test_count = params.get("test_dagger", params["train"]) if dagger else params["test"]
            out.append(Row(m, int(params["train"]), int(test_count), metric, SeedValues(values), dagger))
    return out


def _columns(table: Sequence[Row], sep: str = "\n") -> list[str]:
    head = table[0].header
    # "± 95% CI" in the header only where some row has 3+ seeds (and so an interval).
    mean = ("mean ± 95% CI across seeds" if any(r.values.has_interval for r in table) else
            f"mean across seeds{sep}(no CI: < 3 seeds)")
    return ["method", f"params{sep}(train)", f"params{sep}(test)", f"{head}:{sep}{mean}",
            f"{head} per seed{sep}(± 95% CI over its test tasks)", "seeds"]


def _cells(r: Row, sep: str = "\n") -> list[str]:
    return [r.label, f"{r.params_train:,}", f"{r.params_test:,}", r.value_text(), r.seed_text(sep), str(r.seeds)]


def markdown(table: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured markdown table (a best value in bold only under :func:`best_row`'s rule)."""
    if not table:
        raise ValueError("no rows to format")
    best = best_row(table)
    rule = "|" + "|".join(["---", "---:", "---:", "---:", "---", "---:"]) + "|"
    lines = ["| " + " | ".join(_columns(table, " ")) + " |", rule]
    for i, r in enumerate(table):
        cells = _cells(r, "; ")
        if i == best:
            cells[3] = f"**{cells[3]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_row(table: Sequence[Row]) -> int | None:
    """The row to bold: the best mean, only if every row has an interval across seeds (3+ seeds) and the best
    row's interval lies clear of every other row's. None otherwise: a lead inside the noise is not a win."""
    if not table or not all(r.values.has_interval for r in table):
        return None
    higher = table[0].metric == "acc"
    order = sorted(range(len(table)), key=lambda i: table[i].mean, reverse=higher)
    best, rest = table[order[0]], [table[i] for i in order[1:]]
    if higher:
        clear = all(best.mean - best.ci95 > r.mean + r.ci95 for r in rest)
    else:
        clear = all(best.mean + best.ci95 < r.mean - r.ci95 for r in rest)
    return order[0] if clear else None


CAPTION = (
    "params (train) counts every parameter trained, the co-learner φ included; params (test) those used at test "
    "time (φ is dropped, so CML costs what MAML costs). CML† is CML predicting with φ after adaptation, which keeps "
    "φ at test time. " + POLICY + " The per-seed column gives each run's value with its own 95% CI over its test "
    "tasks (normal approximation): the precision of one run, not the spread between runs. A value is in bold only "
    "when its interval across seeds lies clear of every other row's; otherwise none is."
)


def figure(source: Sequence[Row] | Run | str | Path | Iterable[Run | str | Path], title: str | None = None,
           figsize: tuple[float, float] = style.PAGE) -> Figure:
    """Table 4 drawn on a page (for the report and notebooks): the table, then a caption saying what the
    counts and intervals are.

    Args:
        source: rows from :func:`rows` / :func:`rows_from_aggregate`, or folders to build them from.
        title: the figure's title (default: "Table 4" with the setting when known).
        figsize: the page size (default: the report's page).
    """
    items = list(source) if not isinstance(source, (Run, str, Path)) else [source]
    if items and all(isinstance(r, Row) for r in items):
        table, setting_label = items, None
    else:
        runs = as_runs(items)
        table = rows(runs)
        setting_label = runs[0].setting.label
    if not table:
        raise FigureInputError("no rows to draw")
    best = best_row(table)
    with style.figure_style():
        fig = Figure(figsize=figsize)
        fig.suptitle(title or ("Table 4: parameters and test performance" +
                               (f", {setting_label}" if setting_label else "")), fontsize=13, y=0.975,
                     fontweight="bold")
        bold = {(best + 1, 3)} if best is not None else set()
        bottom = draw_table(fig, 0.93, _columns(table), [_cells(r) for r in table],
                            [0.12, 0.12, 0.12, 0.26, 0.29, 0.09], fontsize=8, width=0.86, bold=bold)
        caption = textwrap.wrap(CAPTION, 118)
        fig.text(0.06, bottom - 0.02, "\n".join(caption), fontsize=7.8, va="top", linespacing=1.45)
        chart_top = bottom - 0.02 - len(caption) * 7.8 * 1.45 / (72 * figsize[1]) - 0.06
        if chart_top > 0.3:
            _chart(fig.add_axes((0.12, 0.1, 0.8, chart_top - 0.1)), table)
    return fig


def _chart(ax, table: Sequence[Row]) -> None:
    """The table's values as a dot plot: each seed (open), the mean (filled), the interval across seeds (3+)."""
    scale = 100.0 if table[0].metric == "acc" else 1.0
    for i, r in enumerate(table):
        s = style.method_style(r.cell, r.dagger)
        values = [scale * r.values.values[k] for k in r.values.seeds]
        ax.scatter([i] * len(values), values, s=22, facecolor="white", edgecolor=s.colour, marker=s.marker, zorder=3)
        if r.values.has_interval:
            ax.errorbar([i], [scale * r.mean], yerr=[scale * r.ci95], fmt="none", ecolor=s.colour, capsize=4,
                        elinewidth=1.3)
        ax.scatter([i], [scale * r.mean], s=46, color=s.colour, marker=s.marker, zorder=4)
    ax.set_xticks(range(len(table)), [f"{r.label}\n{r.params_test:,} params\nat test time" for r in table])
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_ylabel(f"{table[0].header}" + (" (higher is better)" if table[0].metric == "acc" else
                                          " (lower is better)"))
    ax.set_title("The table's values: each seed (open marker), the mean (filled) and, with 3+ seeds, "
                 "the 95% CI across seeds", fontsize=9)
    ax.grid(axis="y", color="0.9", lw=0.6)
