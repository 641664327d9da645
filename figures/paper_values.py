"""The paper's published numbers beside a run's, for every table page of the report.

A run's setting matches a published value when every field the value names is the run's (:func:`cml.paper.matching`:
data set, ways, shots, backbone, base, method, and the value's own setting such as γ); a run's data set is its task
family's ``paper_dataset`` of its config. The report prints the paper's value beside the run's mean, and the
difference (run − paper, in points); where no value matches, the page says so (:func:`no_match_note`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cml.paper import PAPER, PaperValue, matching

from .runs import Run

__all__ = ["cell_text", "dataset_of", "no_match_note", "values_for"]


def dataset_of(run: Run) -> str | None:
    """The data set a run is on, by the paper's name (its family's ``paper_dataset``; None: none of the paper's)."""
    return run.family.paper_dataset(run.config)


def values_for(run: Run, metric: str, tables: Sequence[str] | None = None) -> list[PaperValue]:
    """The published values of ``metric`` (a ``test.json`` key) measured in ``run``'s setting, of ``tables`` when
    given (one page shows its own table's values), in the paper's table order."""
    # The cell's names, not config.json's: older records name the method as on MAML (noisy-maml).
    config = {**run.config, "base": run.cell.base, "method": run.cell.method}
    return [v for v in matching(config, dataset_of(run), metric) if tables is None or v.table in tables]


def cell_text(values: Sequence[PaperValue], run_mean: float | None, sep: str = "\n") -> tuple[str, str]:
    """The paper's value(s) and the difference from the run's mean, as two table cells.

    Args:
        values: the matching published values (:func:`values_for`); several when tables repeat a value (Table 1's
            MAML is Table 4's): one line each, with its table.
        run_mean: the run's mean accuracy as a fraction (None: no value to compare).
        sep: between lines.

    Returns:
        ``("49.32 ± 0.37 (T1)", "-1.21")``, or ``("–", "–")`` with no value.
    """
    if not values:
        return "–", "–"
    seen: dict[float, list[str]] = {}
    for v in values:
        seen.setdefault(v.value, []).append(v.table)
    by_value = {value: next(v for v in values if v.value == value) for value in seen}
    paper = sep.join(f"{value:.2f}" + (f" ± {by_value[value].ci:.2f}" if by_value[value].ci is not None else "")
                     + f" (T{','.join(dict.fromkeys(tables))})" for value, tables in seen.items())
    if run_mean is None or not math.isfinite(run_mean):
        return paper, "–"
    diff = sep.join(f"{100 * run_mean - value:+.2f}" for value in seen)
    return paper, diff


def no_match_note(runs: Sequence[Run], tables: Sequence[str] | None = None) -> str:
    """What a page says when no published value matches its runs: the setting, what the paper reports instead,
    and where to find the commands that reproduce those."""
    setting = runs[0].setting.label if runs else "these runs"
    datasets = ", ".join(dict.fromkeys(v.dataset for v in PAPER if tables is None or v.table in tables))
    where = (f"Table{'s' if len(tables) > 1 else ''} {', '.join(tables)} report{'' if len(tables) > 1 else 's'}"
             if tables else "the paper reports")
    return (f"No published value matches {setting} ({where} {datasets}); `cml paper` prints every published value "
            f"with the command that reproduces it.")
