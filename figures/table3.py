"""Table 3: few-shot node classification. Per graph and N-way K-shot setting, each base learner's test accuracy
alone and with CML, the paired gain per seed and its mean (as :mod:`figures.table1`), and the paper's published
value beside the run's where the run's data set and setting are the paper's (:func:`cml.paper.matching`).

A run is on one of the paper's data sets only when its ``--data`` file was given as it (``--graph-split``,
:meth:`cml.tasks.TaskFamily.paper_dataset`); the generated graph and its stand-ins of the paper's shapes
(``graph-standin-*``) are labelled so on the page and never set beside the paper's numbers. Settings are told apart
by the graph as well as by N and K (runs on two graph files of the same task are two settings), which
:class:`figures.runs.Setting` alone does not do.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Callable, NamedTuple

from matplotlib.figure import Figure

from cml.errors import FigureInputError
from cml.paper import PAPER, PaperValue, matching
from cml.tasks import TaskFamily, get_task

from . import style
from .runs import Run, as_runs
from .summary import POLICY, policy_note
from .table1 import BaseRow, rows as table1_rows
from .tables import draw_table, markdown_table, table_height

__all__ = ["Graph3", "Row3", "FAMILIES", "rows", "markdown", "figure", "report_pages", "CAPTION"]

#: The task families Table 3 is about: those of the paper's Table 3 values (node classification).
FAMILIES: tuple[TaskFamily, ...] = tuple(dict.fromkeys(get_task(v.task).family for v in PAPER if v.table == "3"))
#: The paper's bases in its Table 3 order (G-Meta, then AMM-GNN), read from its values; other bases follow.
PAPER_ORDER: tuple[str, ...] = tuple(dict.fromkeys(v.base for v in PAPER if v.table == "3"))


class Graph3(NamedTuple):
    """What makes Table 3 runs comparable: the task, the graph (the paper's data set, a file, or generated) and the
    N-way K-shot shape.

    Attributes:
        task: the task (``graph``, a stand-in ``graph-standin-citeseer``).
        dataset: the paper's data set the run is on (``citeseer``; :meth:`TaskFamily.paper_dataset`), else None.
        data: the ``--data`` file, else None (the generated graph, or a stand-in).
        ways, shots: N and K.
    """

    task: str
    dataset: str | None
    data: str | None
    ways: int
    shots: int

    @property
    def label(self) -> str:
        """``CiteSeer (graph --data cs.npz), 2-way 1-shot``, ``graph-standin-citeseer, 2-way 1-shot``."""
        where = self.task if self.data is None else f"{self.task} --data {self.data}"
        name = _dataset_label(self.dataset)
        return f"{name + ' (' + where + ')' if name else where}, {self.ways}-way {self.shots}-shot"

    @property
    def note(self) -> str:
        """What the graph is, and whether the paper's numbers apply."""
        if self.dataset is not None:
            return f"the paper's data set {_dataset_label(self.dataset)}: its Table 3 values are beside the run's"
        if self.data is not None:
            return "a graph of your own (no --graph-split): not the paper's data, no paper values beside it"
        standin = getattr(get_task(self.task), "standin", None)
        if standin:
            from cml.tasks.graph import PAPER_GRAPHS

            g = PAPER_GRAPHS[standin]
            return (f"a generated stand-in of {g.label}'s shape ({g.classes} classes, split "
                    f"{'/'.join(map(str, g.split))}), not {g.label} (not the paper's data): no paper values beside it")
        return "the generated graph: not the paper's data, no paper values beside it"


def _dataset_label(dataset: str | None) -> str:
    if dataset is None:
        return ""
    from cml.tasks.graph import PAPER_GRAPHS

    graph = PAPER_GRAPHS.get(dataset)
    return graph.label if graph is not None else dataset


@dataclass(frozen=True)
class Row3:
    """One base learner's row of Table 3: the runs' values (:class:`figures.table1.BaseRow`) and the paper's.

    Attributes:
        runs: the base alone and with CML, per seed, and the paired gains.
        paper_alone, paper_cml: the paper's Table 3 value of the base alone and with CML in this setting (%),
            None where the setting is not the paper's.
    """

    runs: BaseRow
    paper_alone: PaperValue | None
    paper_cml: PaperValue | None

    @property
    def paper_gain(self) -> float | None:
        """The paper's + CML minus alone (points), where it has both."""
        if self.paper_alone is None or self.paper_cml is None:
            return None
        return self.paper_cml.value - self.paper_alone.value


def _key(run: Run) -> Graph3:
    config = run.config
    return Graph3(run.task, run.family.paper_dataset(config), config.get("data"), int(config.get("ways", 0)),
                  run.shots)


def _paper(config: dict, dataset: str | None, method: str) -> PaperValue | None:
    if dataset is None:
        return None
    found = [v for v in matching({**config, "method": method}, dataset, "acc") if v.table == "3"]
    return found[0] if found else None


def rows(source: Run | str | Iterable[Run | str]) -> dict[Graph3, list[Row3]]:
    """Per graph and setting, one row per base learner with runs alone or with CML (as Table 1 selects them), in
    the paper's order (G-Meta, AMM-GNN), then the others."""
    groups: dict[Graph3, list[Run]] = {}
    for run in as_runs(source):
        if run.family in FAMILIES:
            groups.setdefault(_key(run), []).append(run)
    out: dict[Graph3, list[Row3]] = {}
    for key, runs in sorted(groups.items(), key=lambda kv: (kv[0].task, kv[0].dataset or "", kv[0].data or "",
                                                             kv[0].ways, kv[0].shots)):
        base_rows = [r for table in table1_rows(runs).values() for r in table]
        base_rows.sort(key=lambda r: (PAPER_ORDER.index(r.base) if r.base in PAPER_ORDER else len(PAPER_ORDER), 0))
        config = runs[0].config
        alone, with_cml = _paired_methods(runs)
        out[key] = [Row3(r, _paper({**config, "base": r.base}, key.dataset, alone),
                         _paper({**config, "base": r.base}, key.dataset, with_cml)) for r in base_rows]
    return out


def _paired_methods(runs: Sequence[Run]) -> tuple[str, str]:
    """The method names of the base alone and of CML, as the runs' cells name them (read from the method table by
    what a method does, never by name)."""
    from .runs import adds_nothing, cooperates
    from cml.methods import METHOD_TABLE

    alone = next(m.name for m in METHOD_TABLE.values() if adds_nothing(m))
    with_cml = next(m.name for m in METHOD_TABLE.values() if cooperates(m))
    return alone, with_cml


def _fmt(values, scale: float = 100.0) -> str:
    """The mean across seeds (± its CI with 3+ seeds), then each seed's value when fewer than 3."""
    if not values.n:
        return "–"
    text = values.mean_text(scale, ".2f")
    if values.n < 3:
        text += " (" + ", ".join(f"s{s}: {scale * values.values[s]:.2f}" for s in values.seeds) + ")"
    return text


def _gain(row: BaseRow) -> str:
    g = row.gains()
    if not g.n:
        return "–"
    text = f"{100 * g.mean:+.2f}"
    return text + f" ± {100 * g.ci95:.2f}" if g.has_interval else text


def _per_seed(row: BaseRow, sep: str) -> str:
    g = row.gains()
    return sep.join(f"s{s}: {100 * g.values[s]:+.2f}" for s in g.seeds) or "–"


def _paper_text(v: PaperValue | None) -> str:
    return "–" if v is None else f"{v.value:.2f}"


def _cells(row: Row3, sep: str = "\n") -> list[str]:
    r = row.runs
    gain = row.paper_gain
    return [r.label, _fmt(r.alone), _fmt(r.cml), _gain(r), _per_seed(r, sep), str(len(r.paired_seeds)),
            _paper_text(row.paper_alone), _paper_text(row.paper_cml), "–" if gain is None else f"{gain:+.2f}"]


def _header(sep: str = "\n") -> list[str]:
    return ["base", f"alone{sep}(acc. %)", f"+ CML{sep}(acc. %)", f"paired gain{sep}(points)", "gain per seed",
            f"paired{sep}seeds", f"paper{sep}alone", f"paper{sep}+ CML", f"paper{sep}gain"]


CAPTION = ("alone: the base learner by itself; + CML: with the co-learner (φ dropped at test time). A value cell is "
           "the mean across seeds, with fewer than 3 seeds followed by each seed's value. Paired gain: + CML minus "
           "alone on the same seed (the same test tasks and initial ψ, θ), then its mean. paper: the published Table 3 "
           "value (mean of 5 runs, no interval printed), shown only where the run's graph is the paper's data set "
           "(--data FILE --graph-split NAME) and its N-way K-shot is the paper's; a generated stand-in is never "
           "matched. " + POLICY)


def markdown(source: Run | str | Iterable[Run | str]) -> str:
    """Table 3 as markdown, one table per graph and setting (the README's), with what the graph is under each."""
    blocks = []
    for key, table in rows(source).items():
        if not table:
            continue
        head = _header(" ")
        lines = [f"**{key.label}** ({key.note})", "", *markdown_table(head, [_cells(r, "; ") for r in table])]
        lines += ["", f"{policy_note(min(len(r.runs.paired_seeds) for r in table))}. {POLICY}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def figure(source: Run | str | Iterable[Run | str], figsize: tuple[float, float] = style.PAGE) -> Figure:
    """Table 3 on a report page: one table per graph and setting, what each graph is, the caption, and where the
    page has room the paired gains as a dot plot (each seed, the mean, the 95% CI across 3+ seeds, the paper's gain
    as a star where it applies).

    Raises:
        FigureInputError: if no node-classification run is of a base alone or with CML.
    """
    tables = {k: t for k, t in rows(source).items() if t}
    if not tables:
        raise FigureInputError("Table 3 needs node-classification runs of a base learner alone and with CML "
                               "(--task graph-standin-citeseer --bases gmeta,amm-gnn --methods none,cml)")
    widths = [0.10, 0.15, 0.15, 0.13, 0.15, 0.07, 0.08, 0.08, 0.09]
    fontsize = 7.4
    with style.figure_style():
        fig = Figure(figsize=figsize)
        fig.suptitle("Table 3: few-shot node classification, each base alone and with CML", fontsize=13, y=0.975,
                     fontweight="bold")
        top = 0.935
        drawn: dict[Graph3, list[Row3]] = {}
        for key, table in tables.items():
            cells = [_cells(r) for r in table]
            header = _header()
            need = 0.05 + table_height(figsize[1], cells, header, fontsize)
            if top - need < 0.22:
                fig.text(0.06, top - 0.01, f"{key.label}: does not fit on this page; see figures.table3.markdown",
                         fontsize=8, va="top")
                top -= 0.025
                continue
            seeds = min(len(r.runs.paired_seeds) for r in table)
            fig.text(0.06, top, f"{key.label} ({policy_note(seeds)})", fontsize=9.5, va="top", fontweight="bold")
            fig.text(0.06, top - 0.016, "\n".join(textwrap.wrap(key.note, 130)), fontsize=7, va="top", color="0.3")
            top = draw_table(fig, top - 0.035, header, cells, widths, fontsize=fontsize, width=0.88) - 0.025
            drawn[key] = table
        caption = textwrap.wrap(CAPTION, 125)
        fig.text(0.06, top, "\n".join(caption), fontsize=7.4, va="top", linespacing=1.4)
        chart_top = top - len(caption) * 7.4 * 1.4 / (72 * figsize[1]) - 0.06
        charted = {k: t for k, t in drawn.items() if any(r.runs.gains().n for r in t)}
        if chart_top > 0.25 and charted:
            n = len(charted)
            height = min(chart_top - 0.08, 0.3)  # a dot plot needs no more; the page's foot stays empty
            for i, (key, table) in enumerate(charted.items()):
                ax = fig.add_axes((0.1 + i * 0.86 / n, chart_top - height, 0.86 / n - 0.07, height))
                _gain_chart(ax, table, key)
    return fig


def _gain_chart(ax, table: list[Row3], key: Graph3) -> None:
    """One setting's paired gains: each seed (open), the mean (filled), its 95% CI with 3+ seeds, the paper's
    gain (star) where the setting is the paper's."""
    colour = style.method_style(next(r.runs.with_cml for r in table if r.runs.with_cml is not None)).colour \
        if any(r.runs.with_cml is not None for r in table) else "0.2"
    for i, row in enumerate(table):
        gains = row.runs.gains()
        if gains.n:
            ax.scatter([i] * gains.n, [100 * gains.values[s] for s in gains.seeds], s=20, facecolor="white",
                       edgecolor=colour, zorder=3)
            if gains.has_interval:
                ax.errorbar([i], [100 * gains.mean], yerr=[100 * gains.ci95], fmt="none", ecolor=colour, capsize=4,
                            elinewidth=1.2)
            ax.scatter([i], [100 * gains.mean], s=40, color=colour, zorder=4)
        if row.paper_gain is not None:
            ax.scatter([i + 0.18], [row.paper_gain], marker="*", s=70, color="0.25", zorder=4)
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    ax.set_xticks(range(len(table)), [r.runs.label for r in table], fontsize=7)
    ax.set_xlim(-0.6, len(table) - 0.3)
    ax.set_ylabel("gain of + CML (points)", fontsize=7.5)
    ax.set_title("\n".join(textwrap.wrap(f"{key.label}", 40)) + "\nopen: a seed; filled: mean"
                 + ("; ★ paper" if any(r.paper_gain is not None for r in table) else ""), fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="0.9", lw=0.6)


def report_pages(runs: Sequence[Run]) -> list[tuple[str, Callable[[], Figure], Sequence[Run]]]:
    """The report's Table 3 page (one ``(contents line, builder, runs)`` entry) when ``runs`` hold
    node-classification runs; none otherwise."""
    graph = [r for r in runs if r.family in FAMILIES]
    if not graph:
        return []
    return [("Table 3: node classification, each base alone and with CML", lambda: figure(graph), graph)]
