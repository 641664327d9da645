"""Table 4: is CML's gain just more parameters? MAML, More-MAML, CL, CML and CML† with their parameter
counts at train and at test time and their test accuracy with a 95% confidence interval.

CML† is CML evaluated through its co-learner phi (``acc_dagger``); it keeps phi at test time, so its test
count is ``params.test_dagger``. With several seeds the interval is the Student-t 95% CI across the seeds'
test accuracies (as in ``aggregate.json``); with one seed it is that run's normal 95% CI over its test tasks,
and the table says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analysis.stats import mean_ci95
from cml import records

from . import style
from .runs import Run, Setting, as_runs, group_by_method, group_by_setting

__all__ = ["Row", "TABLE4_METHODS", "rows", "rows_from_aggregate", "markdown", "figure"]

#: The paper's Table 4 rows (CML† follows CML when CML is present).
TABLE4_METHODS = ("maml", "more-maml", "cl", "cml")


@dataclass(frozen=True)
class Row:
    """One table row.

    Attributes:
        method: ``maml`` ... ``cml``, or ``cml-dagger`` for CML†.
        params_train, params_test: parameter counts at train and at test time.
        metric: ``acc`` (classification, a fraction) or ``mse`` (sinusoid).
        mean, ci95: the test metric and its 95% CI half-width (NaN when none can be given).
        seeds: seeds behind the mean.
        ci_over: what the interval is over: ``"3 seeds"`` or ``"600 tasks"``.
    """

    method: str
    params_train: int
    params_test: int
    metric: str
    mean: float
    ci95: float
    seeds: int
    ci_over: str

    @property
    def label(self) -> str:
        return style.label(self.method)

    def value_text(self) -> str:
        """``"71.68 ± 1.23"`` (accuracy in %) or ``"0.4123 ± 0.0210"`` (MSE)."""
        scale, fmt = (100.0, ".2f") if self.metric == "acc" else (1.0, ".4f")
        ci = "n/a" if not math.isfinite(self.ci95) else format(scale * self.ci95, fmt)
        return f"{format(scale * self.mean, fmt)} ± {ci}"

    @property
    def header(self) -> str:
        return "accuracy (%) ± 95% CI" if self.metric == "acc" else "test MSE ± 95% CI"


def _metric_of(setting: Setting) -> str:
    return "mse" if setting.is_regression else "acc"


def _row(method: str, key: str, tests: Sequence[dict[str, Any]], metric: str) -> Row:
    values = [t[metric] for t in tests if t.get(metric) is not None]
    if not values:
        raise ValueError(f"no {metric} in the test.json of {method}")
    params = tests[0]["params"]
    test_count = params.get("test_dagger", params["train"]) if key == "cml-dagger" else params["test"]
    if len(values) > 1:
        mean, ci = mean_ci95(values)
        over = f"{len(values)} seeds"
    else:
        mean = values[0]
        ci = tests[0].get(f"{metric}_ci95")
        ci = math.nan if ci is None else float(ci)
        over = f"{tests[0].get('tasks', '?')} tasks"
    return Row(key, int(params["train"]), int(test_count), metric.split("_")[0], float(mean), float(ci),
               len(values), over)


def rows(source: Run | str | Path | Iterable[Run | str | Path], methods: Sequence[str] | None = None) -> list[Row]:
    """Table rows from the ``test.json`` of each run (one setting).

    Args:
        source: run or sweep folders (or :class:`Run` objects) of one setting.
        methods: methods to list, in order (default: :data:`TABLE4_METHODS` present); a ``cml-dagger`` row
            follows ``cml`` when its runs recorded CML†.

    Raises:
        ValueError: if the runs mix settings or none of ``methods`` is present.
        MissingRecordError: if a run has not finished (no ``test.json``).
    """
    runs = as_runs(source)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise ValueError(f"Table 4 lists one setting at a time; got {', '.join(s.label for s in settings)}")
    metric = _metric_of(next(iter(settings)))
    by_method = group_by_method(runs)
    wanted = [m for m in (methods or TABLE4_METHODS) if m in by_method]
    if not wanted:
        raise ValueError(f"Table 4: none of {', '.join(methods or TABLE4_METHODS)} among the runs "
                         f"({', '.join(by_method)})")
    out = []
    for m in wanted:
        tests = [r.test() for r in by_method[m]]
        out.append(_row(m, m, tests, metric))
        if m == "cml" and all(t.get(f"{metric}_dagger") is not None for t in tests):
            out.append(_row(m, "cml-dagger", tests, f"{metric}_dagger"))
    return out


def rows_from_aggregate(aggregate: dict[str, Any] | str | Path, methods: Sequence[str] | None = None) -> list[Row]:
    """Table rows from a sweep's ``aggregate.json`` (a path to it or its sweep folder, or its contents).

    With one seed, ``aggregate.json`` holds no interval (its CI is across seeds): the row's CI is NaN; use
    :func:`rows` on the run folders for the across-task interval.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if none of ``methods`` is in it.
    """
    if not isinstance(aggregate, dict):
        path = Path(aggregate)
        aggregate = records.read_json(path / records.AGGREGATE if path.is_dir() else path)
    metric = "acc" if any("acc" in e for e in aggregate.values()) else "mse"
    wanted = [m for m in (methods or TABLE4_METHODS) if m in aggregate]
    if not wanted:
        raise ValueError(f"Table 4: none of {', '.join(methods or TABLE4_METHODS)} in aggregate.json "
                         f"({', '.join(aggregate)})")
    out = []
    for m in wanted:
        entry = aggregate[m]
        params = entry["params"]
        for key, name in ((m, metric), ("cml-dagger", f"{metric}_dagger")):
            if key == "cml-dagger" and (m != "cml" or name not in entry):
                continue
            cell = entry[name]
            ci = cell.get("ci95")
            test_count = params.get("test_dagger", params["train"]) if key == "cml-dagger" else params["test"]
            out.append(Row(key, int(params["train"]), int(test_count), metric, float(cell["mean"]),
                           math.nan if ci is None else float(ci), int(entry["seeds"]), f"{entry['seeds']} seeds"))
    return out


def _columns(table: Sequence[Row]) -> list[str]:
    return ["method", "params (train)", "params (test)", table[0].header, "CI over"]


def _cells(r: Row) -> list[str]:
    return [r.label, f"{r.params_train:,}", f"{r.params_test:,}", r.value_text(), r.ci_over]


def markdown(table: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured markdown table (the best mean in bold)."""
    if not table:
        raise ValueError("no rows to format")
    best = _best(table)
    cols = _columns(table)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---", "---:", "---:", "---:", "---"]) + "|"]
    for i, r in enumerate(table):
        cells = _cells(r)
        if i == best:
            cells[3] = f"**{cells[3]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(table: Sequence[Row]) -> int:
    means = [r.mean for r in table]
    return max(range(len(means)), key=lambda i: means[i]) if table[0].metric == "acc" else \
        min(range(len(means)), key=lambda i: means[i])


def figure(source: Sequence[Row] | Run | str | Path | Iterable[Run | str | Path], title: str | None = None) -> Figure:
    """Table 4 drawn as a matplotlib table (for the report and notebooks).

    Args:
        source: rows from :func:`rows` / :func:`rows_from_aggregate`, or folders to build them from.
        title: the figure's title (default: "Table 4" with the setting when known).
    """
    items = list(source) if not isinstance(source, (Run, str, Path)) else [source]
    if items and all(isinstance(r, Row) for r in items):
        table, setting_label = items, None
    else:
        runs = as_runs(items)
        table = rows(runs)
        setting_label = runs[0].setting.label
    if not table:
        raise ValueError("no rows to draw")
    best = _best(table)
    with style.figure_style():
        fig = Figure(figsize=(8.0, 0.45 * len(table) + 1.3), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        cells = [_cells(r) for r in table]
        t = ax.table(cellText=cells, colLabels=_columns(table), loc="center", cellLoc="center",
                     colLoc="center", colWidths=[0.16, 0.16, 0.16, 0.32, 0.16])
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.scale(1, 1.5)
        for (i, j), cell in t.get_celld().items():
            cell.set_edgecolor("0.75")
            if i == 0:
                cell.set_text_props(weight="bold")
                cell.set_facecolor("0.92")
            elif i - 1 == best and j == 3:
                cell.set_text_props(weight="bold")
        fig.suptitle(title or ("Table 4: parameters and test performance" +
                               (f", {setting_label}" if setting_label else "")), fontsize=11)
    return fig
