"""Table 4: is CML's gain just more parameters? The paper's rows (:data:`ROWS`) with their parameter counts at train
and at test time and their test accuracy (sinusoid: MSE), the paper's value beside each where the setting matches.

The rows, each a cell and a key of its runs' ``test.json``, labelled by its source:

- MAML, More-MAML: ``acc``; CL⋆ (CL predicting with its meta-learner θ): CL's ``acc``; CML: ``acc``;
- CL† (CL predicting with its co-learner φ): CL's ``acc_dagger``; CL† without adaptation: ``acc_dagger_noadapt``;
- CML† as the official code evaluates it (ψ and θ adapted with the meta-learner's loss, φ read on the adapted
  features): CML's ``acc_dagger``; CML† as the paper's Eq. (9) defines it (ψ adapted alone with φ's support loss,
  predicting with φ): ``acc_dagger_eq9``.

A row is shown only when every run of its cell holds its key; the page says which rows older records lack. The
paper's "CL" row (both heads kept at test) says no prediction it reports, and has no row here. A φ row keeps φ at
test time: its test count is ``params.test_dagger``. Runs of one cell whose configs differ in anything but the seed
are separate rows (:func:`figures.runs.group_by_config`). Intervals follow :mod:`figures.summary`: the mean across
seeds with its 95% Student-t CI when there are 3 or more seeds, and in a separate column each seed's value with that
run's 95% CI over its test tasks. A value is bold only when its interval across seeds clears every other row's.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from cml import records
from cml.errors import FigureInputError

from cml.methods import Method

from . import paper_values, style
from .runs import (Cell, Run, Setting, adds_nothing, as_runs, branches, cell_of, cells_where, config_difference,
                   cooperates, group_by_config, group_by_setting)
from .summary import DOT_LEGEND, POLICY, SeedValues, dot_column
from .tables import draw_table

__all__ = ["ROWS", "Row", "RowKind", "in_table4", "rows", "rows_from_aggregate", "markdown", "best_row", "figure"]


def in_table4(method: Method) -> bool:
    """The paper's Table 4 cells, on :data:`figures.runs.PAPER_BASE`: MAML, More-MAML, CL and CML (the base learner
    alone, with extra capacity, with a co-learner of either kind)."""
    return adds_nothing(method) or method.extra_capacity or (method.co_learner and not method.frozen)


@dataclass(frozen=True)
class RowKind:
    """One kind of Table 4 row: which cells, which ``test.json`` key, and how it is named.

    Attributes:
        wanted: the cells whose runs give the row (a test of the method's row).
        suffix: the key after the task's metric (``""``: ``acc``; ``"_dagger"``: ``acc_dagger``).
        name: the printed name, or None for the cell's own ("MAML", "More-MAML").
        source: where the row comes from (the paper's row, the key), for the caption.
        phi: the prediction is the co-learner's (φ kept at test time).
    """

    wanted: Callable[[Method], bool]
    suffix: str
    name: str | None
    source: str
    phi: bool = False


#: The rows, in the paper's order (its "CL" row, which names no prediction, has none here).
ROWS: tuple[RowKind, ...] = (
    RowKind(adds_nothing, "", None, "the paper's MAML row"),
    RowKind(lambda m: m.extra_capacity, "", None, "the paper's More-MAML row"),
    RowKind(lambda m: m.gradient_noise, "", None, "not in the paper's Table 4 (the user's Gaussian baseline)"),
    RowKind(branches, "", "CL⋆ (meta-learner)", "the paper's CL⋆: CL predicting with its meta-learner θ (acc)"),
    RowKind(cooperates, "", None, "the paper's CML row"),
    RowKind(branches, "_dagger", "CL† (co-learner)",
            "the paper's CL†: CL predicting with its co-learner φ, adapted as CML† in the official code (acc_dagger)",
            phi=True),
    RowKind(branches, "_dagger_noadapt", "CL† without adaptation",
            "the paper's CL† without adaptation: φ on the unadapted features (acc_dagger_noadapt)", phi=True),
    RowKind(cooperates, "_dagger", "CML† (official code)",
            "the paper's CML† as the official code evaluates it: ψ, θ adapted with the meta-learner's loss, φ on the "
            "adapted features (acc_dagger)", phi=True),
    RowKind(cooperates, "_dagger_eq9", "CML† (Eq. 9)",
            "CML† as the paper's Eq. (9) defines it: ψ adapted alone with φ's support loss, predicting with φ "
            "(acc_dagger_eq9)", phi=True),
)


@dataclass(frozen=True)
class Row:
    """One table row.

    Attributes:
        cell: the (base, method) pair.
        params_train, params_test: parameter counts at train and at test time.
        metric: ``acc`` (classification, a fraction) or ``mse`` (sinusoid).
        values: the test metric per seed, with each run's 95% CI over its test tasks.
        dagger: the row of the cell's co-learner predictions (CML† for CML).
        name: the printed name when not the cell's own ("CL⋆ (meta-learner)").
        key: the ``test.json`` key of the values (``acc_dagger_eq9``).
        source: where the row comes from (:attr:`RowKind.source`).
        paper: the paper's value(s) at the runs' setting and the run's difference
            (:func:`figures.paper_values.cell_text`).
    """

    cell: Cell
    params_train: int
    params_test: int
    metric: str
    values: SeedValues
    dagger: bool = False
    name: str | None = None
    key: str = ""
    source: str = ""
    paper: tuple[str, str] = ("–", "–")

    @property
    def label(self) -> str:
        return self.name or style.label(self.cell, self.dagger)

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


def _row(cell: Cell, runs: Sequence[Run], metric: str, dagger: bool = False, kind: RowKind | None = None,
         suffix: str = "") -> Row:
    tests = {r.seed: r.test() for r in runs}
    values = {s: float(t[metric]) for s, t in tests.items() if t.get(metric) is not None}
    if not values:
        raise FigureInputError(f"no {metric} in the test.json of {cell}")
    task_ci = {s: float(tests[s][f"{metric}_ci95"]) for s in values if tests[s].get(f"{metric}_ci95") is not None}
    params = next(iter(tests.values()))["params"]
    test_count = params.get("test_dagger", params["train"]) if dagger else params["test"]
    values_ = SeedValues(values, task_ci)
    paper = paper_values.cell_text(paper_values.values_for(runs[0], metric, ("4",)),
                                   values_.mean if metric.startswith("acc") else None)
    name = (kind.name if kind is not None else None)
    if suffix:
        name = f"{name or style.label(cell, dagger)} [{suffix}]"
    return Row(cell, int(params["train"]), int(test_count), metric.split("_")[0], values_, dagger, name, metric,
               kind.source if kind is not None else "", paper)


def _has(runs: Sequence[Run], key: str) -> bool:
    return all(r.test().get(key) is not None for r in runs)


def missing_rows(source: Run | str | Path | Iterable[Run | str | Path]) -> list[str]:
    """The rows of :data:`ROWS` whose cells the runs hold but whose ``test.json`` key they lack (records written
    before the key existed), each as ``"CML† (Eq. 9): acc_dagger_eq9"``."""
    runs = as_runs(source)
    metric = _metric_of(runs[0].setting)
    out = []
    for kind in ROWS:
        for cell in cells_where({r.cell for r in runs}, kind.wanted):
            group = [r for r in runs if r.cell == cell and r.has("test.json")]
            if group and not _has(group, metric + kind.suffix):
                out.append(f"{kind.name or style.label(cell)}: {metric + kind.suffix}")
    return list(dict.fromkeys(out))


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
    by_config = group_by_config(runs)
    wanted = cells_where(by_config, in_table4) if methods is None else [m for m in methods if m in by_config]
    if not wanted:
        named = "maml, more-maml, cl, cml" if methods is None else ", ".join(map(str, methods))
        raise FigureInputError(f"Table 4: none of {named} among the runs ({', '.join(map(str, by_config))})")
    out = []
    for kind in ROWS:
        for m in wanted:
            if not kind.wanted(m.spec):
                continue
            groups = by_config[m]
            # A cell's runs of several configs: one row per config, named by what differs.
            names = config_difference(groups) if len(groups) > 1 else [""] * len(groups)
            for group, suffix in zip(groups, names):
                if _has(group, metric + kind.suffix):
                    out.append(_row(m, group, metric + kind.suffix, dagger=kind.phi, kind=kind, suffix=suffix))
    if methods is not None:  # the caller's order
        out.sort(key=lambda r: methods.index(r.cell))
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
    for kind in ROWS:
        for m in wanted:
            entry = entries[m]
            name = f"{metric}{kind.suffix}"
            if not kind.wanted(m.spec) or name not in entry:
                continue
            params = entry["params"]
            # The values are the pooled runs' in seed order: runs the aggregate left out (entry "dropped") are not.
            left_out = {d["run"] for d in entry.get("dropped", [])}
            finished = [s for s in seeds if (folder / records.run_folder_name(m.variant, s) / records.TEST).is_file()
                        and records.run_folder_name(m.variant, s) not in left_out]
            # A seed whose reading diverged (null) has no value: the aggregate names the seeds of the values then.
            values = dict(zip(entry[name].get("value_seeds", finished), map(float, entry[name]["values"])))
            test_count = params.get("test_dagger", params["train"]) if kind.phi else params["test"]
            out.append(Row(m, int(params["train"]), int(test_count), metric, SeedValues(values), kind.phi, kind.name,
                           name, kind.source))
    if methods is not None:
        out.sort(key=lambda r: methods.index(r.cell))
    return out


def _columns(table: Sequence[Row], sep: str = "\n", paper: bool = False) -> list[str]:
    head = table[0].header
    # "± 95% CI" in the header only where some row has 3+ seeds (and so an interval).
    mean = ("mean ± 95% CI across seeds" if any(r.values.has_interval for r in table) else
            f"one seed's value{sep}(no CI across seeds)" if all(r.values.n <= 1 for r in table) else
            f"mean across seeds{sep}(no CI: < 3 seeds)")
    columns = ["method", f"params{sep}(train)", f"params{sep}(test)", f"{head}:{sep}{mean}",
               f"{head} per seed{sep}(± 95% CI over its test tasks)", "seeds"]
    return columns + ([f"paper{sep}(Table 4)", f"run −{sep}paper"] if paper else [])


def _cells(r: Row, sep: str = "\n", paper: bool = False) -> list[str]:
    # On the page (sep "\n") a long label wraps within its column; markdown keeps it on one line.
    label = textwrap.fill(r.label, 16, break_on_hyphens=False, break_long_words=False) if sep == "\n" else r.label
    cells = [label, f"{r.params_train:,}", f"{r.params_test:,}", r.value_text(), r.seed_text(sep), str(r.seeds)]
    return cells + (list(r.paper) if paper else [])


def _with_paper(table: Sequence[Row]) -> bool:
    """Whether any row's setting matches a published value (then the table gets the paper's columns)."""
    return any(r.paper[0] != "–" for r in table)


def markdown(table: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured markdown table (a best value in bold only under :func:`best_row`'s rule)."""
    if not table:
        raise ValueError("no rows to format")
    best = best_row(table)
    paper = _with_paper(table)
    rule = "|" + "|".join(["---", "---:", "---:", "---:", "---", "---:"] + ["---:"] * (2 * paper)) + "|"
    lines = ["| " + " | ".join(_columns(table, " ", paper)) + " |", rule]
    for i, r in enumerate(table):
        cells = _cells(r, "; ", paper)
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
    "time (φ is dropped, so CML costs what MAML costs; a † row keeps φ). CL⋆ is CL predicting with its meta-learner θ, "
    "CL† with its co-learner φ; CML† (official code) adapts ψ and θ with the meta-learner's loss and reads φ on the "
    "adapted features, as the authors' test_cml.py does; CML† (Eq. 9) adapts ψ alone with φ's support loss and "
    "predicts with φ, as the paper's Eq. (9) defines it. " + POLICY + " The per-seed column gives each run's value "
    "with its own 95% CI over its test tasks (normal approximation): the precision of one run, not the spread between "
    "runs. A value is in bold only when its interval across seeds lies clear of every other row's; otherwise none is. "
    "Rows of one cell whose runs differ in more than the seed are kept apart, named by the fields that differ."
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
    notes: list[str] = []
    if items and all(isinstance(r, Row) for r in items):
        table, setting_label = items, None
    else:
        runs = as_runs(items)
        table = rows(runs)
        setting_label = runs[0].setting.label
        lacking = missing_rows(runs)
        if lacking:
            notes.append("Not shown: " + "; ".join(lacking) + " (the runs' test.json lack these keys: written before "
                         "that evaluation was recorded; a run trained and tested with this version writes them).")
        if not _with_paper(table):
            notes.append(paper_values.no_match_note(runs, ("4",)))
    if not table:
        raise FigureInputError("no rows to draw")
    best = best_row(table)
    paper = _with_paper(table)
    with style.figure_style():
        fig = Figure(figsize=figsize)
        fig.suptitle(title or ("Table 4: parameters and test performance" +
                               (f", {setting_label}" if setting_label else "")), fontsize=13, y=0.975,
                     fontweight="bold")
        bold = {(best + 1, 3)} if best is not None else set()
        widths = ([0.15, 0.09, 0.09, 0.18, 0.21, 0.06, 0.12, 0.10] if paper else
                  [0.17, 0.11, 0.11, 0.24, 0.28, 0.09])
        bottom = draw_table(fig, 0.93, _columns(table, paper=paper), [_cells(r, paper=paper) for r in table],
                            widths, fontsize=7.6, width=0.88, bold=bold)
        caption = textwrap.wrap(" ".join([CAPTION, *notes]), 118)
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
        if r.dagger and not r.cell.spec.dagger:  # CL's φ rows: CL's colour, the φ marker (CML† has its own colour)
            s = dataclasses.replace(s, colour=style.method_style(r.cell).colour)
        dot_column(ax, i, r.values, scale, s.colour, s.marker)
    # Each label wrapped to its column's share of the axis, so that neighbours never overlap.
    width = max(8, 84 // len(table))
    labels = [textwrap.fill(r.label, width, break_on_hyphens=False, break_long_words=False) for r in table]
    ax.set_xticks(range(len(table)), [f"{label}\n{r.params_test:,} params\nat test time"
                                      for label, r in zip(labels, table)],
                  fontsize=8 if len(table) <= 5 else 7)
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_ylabel(f"{table[0].header}" + (" (higher is better)" if table[0].metric == "acc" else
                                          " (lower is better)"))
    ax.set_title("The table's values. " + "\n".join(textwrap.wrap(DOT_LEGEND, 100)), fontsize=8)
    ax.grid(axis="y", color="0.9", lw=0.6)
