"""Figure 4: t-SNE maps of one test task's query features (the head's input) before and after adaptation on the
task's support set, MAML in the top row and CML in the bottom row (CL between them when the runs hold it), points
coloured (and shaped) by class: the paper's Figure 4 ("t-SNE of MAML and CML on MiniImagenet after adaptation on
the support set, query set shown"; the recorder draws 15 queries per class for the map, as the paper's 5-way tasks).

Before and after share one t-SNE map per run (the recorder fits t-SNE once on both sets), so the two panels
of a row share their axes and a shift between them is real. Each panel states the silhouette score of the
*features* (not of the 2-D map) for this task, and its mean and 95% CI over the run's recorded tasks: higher
means classes are better separated.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from cml import records
from cml.errors import FigureInputError

from . import style
from .runs import (Cell, Run, adds_nothing, as_runs, branches, cells_where, command_adding, cooperates, group_by_method,
                   group_by_setting, method_named, sweep_folders)

__all__ = ["figure", "silhouette_text", "DRAWN"]

#: The rows Figure 4 draws by default, top to bottom, on :data:`figures.runs.PAPER_BASE`: the base learner alone
#: and CML, the first cell (in legend order) of each; with the paper's name for each, for messages.
DRAWN = (("maml", adds_nothing), ("cml", cooperates))
#: Drawn between them when the runs hold it (the paper's figure has MAML and CML only).
OPTIONAL = (("cl", branches),)


def silhouette_text(reps: dict, when: str) -> str:
    """The silhouette note of one panel: this task's value, and the mean ± 95% CI over the recorded tasks.

    Args:
        reps: a run's ``representations.json``.
        when: ``"before"`` or ``"after"``.
    """
    task = reps.get("tsne_task", {}).get(f"silhouette_{when}")
    lines = [f"silhouette {task:.3f} (this task)" if task is not None else "silhouette n/a (this task)"]
    summary = reps.get(f"silhouette_{when}") or {}
    mean, ci = summary.get("mean"), summary.get("ci95")
    if mean is not None and math.isfinite(mean):
        ci_text = f" ± {ci:.3f}" if ci is not None and math.isfinite(ci) else ""
        lines.append(f"mean of {reps.get('tasks', '?')} tasks: {mean:.3f}{ci_text}" +
                     (" (95% CI over tasks)" if ci_text else ""))
    return "\n".join(lines)


def figure(
    source: Run | str | Iterable[Run | str],
    methods: Sequence[Cell] | None = None,
    seed: int | None = None,
    figsize: tuple[float, float] = style.PAGE,
) -> Figure:
    """Figure 4 for the runs of one image setting.

    Args:
        source: run or sweep folders (or :class:`Run` objects) of one image task, with ``features.npz`` and
            ``representations.json`` (train with ``--record-interval K``).
        methods: one row per cell, top to bottom (default: MAML and CML, :data:`DRAWN`).
        seed: the seed drawn (default: the lowest seed every method has).
        figsize: the page size (default: the report's page).

    Returns:
        The figure: ``len(methods)`` rows x 2 columns (before, after adaptation).

    Raises:
        FigureInputError: for sinusoid runs, mixed settings, a method asked for that the runs lack, none of the
            default rows among the runs (a default row the runs lack is named in the caption instead), or a seed.
        MissingRecordError: if ``features.npz`` or ``representations.json`` is absent.
    """
    runs = as_runs(source)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise FigureInputError(f"Figure 4 draws one setting at a time; got {', '.join(s.label for s in settings)}")
    setting = next(iter(settings))
    if setting.family.end_record != records.FEATURES:
        raise FigureInputError("Figure 4 needs an image task; sinusoid runs have no class features (see Figure 2)")
    by_method = group_by_method(runs)
    if methods is None:
        found = [(name, cells_where(by_method, wanted)) for name, wanted in DRAWN]
        absent = [name for name, cells in found if not cells]
        methods = [cells[0] for _, cells in found if cells]
        extra = [cells[0] for _, wanted in OPTIONAL if (cells := cells_where(by_method, wanted))]
        methods = methods[:1] + extra + methods[1:]
        # The rows the runs hold are drawn; a paper row they lack is named, with the command that trains it at the
        # runs' own settings (a page of MAML's maps says more than a page saying CML is absent).
        missing = [f"{name} (method {method_named(wanted) or name}): train it with "
                   f"{command_adding(runs, method_named(wanted) or name)}" for name, wanted in DRAWN if name in absent]
        if not methods:
            raise FigureInputError(f"Figure 4 ({setting.label}): no {', '.join(absent)} run "
                                   f"(found {', '.join(map(str, by_method))}); train it: " + "; ".join(missing))
    else:
        missing = []
        absent = [str(m) for m in methods if m not in by_method]
        if absent:
            raise FigureInputError(f"Figure 4 ({setting.label}): no {', '.join(absent)} run "
                                   f"(found {', '.join(map(str, by_method))})")
    common = set.intersection(*({r.seed for r in by_method[m]} for m in methods))
    if seed is None:
        if not common:
            raise FigureInputError(f"Figure 4: {', '.join(map(str, methods))} share no seed; train them with the same "
                                   f"--seeds")
        seed = min(common)
    elif seed not in common:
        raise FigureInputError(f"Figure 4: seed {seed} is not trained for every method (common: "
                               f"{sorted(common) or 'none'})")
    chosen = {m: next(r for r in by_method[m] if r.seed == seed) for m in methods}
    data = {m: (r.features(), r.representations()) for m, r in chosen.items()}

    with style.figure_style():
        fig = Figure(figsize=figsize, layout="constrained")
        style.page_margins(fig)
        # The caption gets a row of its own below the maps, so that constrained layout keeps it off the legend.
        grid = fig.add_gridspec(len(methods) + 1, 2, height_ratios=[1.0] * len(methods) +
                                [0.16 * max(len(methods), 2) / 2 * (1.6 if missing else 1.0)])
        axes = np.array([[fig.add_subplot(grid[i, j]) for j in range(2)] for i in range(len(methods))])
        classes = sorted({int(c) for feats, _ in data.values() for c in np.unique(feats["labels"])})
        for i, m in enumerate(methods):
            feats, reps = data[m]
            labels = feats["labels"].astype(int)
            both = np.concatenate([feats["embed_before"], feats["embed_after"]])
            lo, hi = both.min(axis=0), both.max(axis=0)
            pad = 0.06 * (hi - lo + 1e-12)
            ax_before, ax_after = axes[i]
            # One map per run: both panels of a row show the same t-SNE coordinates.
            ax_after.sharex(ax_before)
            ax_after.sharey(ax_before)
            for ax, when in ((ax_before, "before"), (ax_after, "after")):
                emb = feats[f"embed_{when}"]
                for k, c in enumerate(classes):
                    sel = labels == c
                    ax.scatter(emb[sel, 0], emb[sel, 1], s=22, color=style.CLASS_COLOURS[k % len(style.CLASS_COLOURS)],
                               marker=style.CLASS_MARKERS[k % len(style.CLASS_MARKERS)], edgecolor="white",
                               linewidth=0.4, alpha=0.9, label=f"class {c + 1}")
                ax.set_title(f"{style.label(m)}, {when} adaptation", color=style.method_style(m).colour,
                             fontweight="bold")
                # Room at the top for the silhouette note, so it never covers points.
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1] + 0.22 * (hi[1] - lo[1]))
                ax.text(0.03, 0.97, silhouette_text(reps, when), transform=ax.transAxes, va="top", ha="left",
                        fontsize=8, bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.7", alpha=0.9))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel("t-SNE 1")
                ax.set_ylabel("t-SNE 2")
                for side in ("top", "right"):
                    ax.spines[side].set_visible(True)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        style.bottom_legend(fig, handles, labels, ncol=min(len(labels), 10), title="query class")
        labels0 = data[methods[0]][0]["labels"]
        points, per_class = int(labels0.shape[0]), int(labels0.shape[0]) // max(len(np.unique(labels0)), 1)
        trained = chosen[methods[0]].config.get("queries")
        # The map draws its own task, with more queries than training may have used: say both.
        queries = (f"{points} query points, {per_class} per class, drawn for this map"
                   + (f" (the runs trained and tested with {trained} per class)" if trained != per_class else ""))
        fig.suptitle(f"Figure 4: t-SNE of head-input features, {setting.label}, seed {seed}\n{queries};\n"
                     f"silhouette scores are computed in feature space, not on the map", fontsize=10)
        folders = sweep_folders(list(chosen.values())) or [r.path for r in chosen.values()]
        caption = (f"Runs: {', '.join(map(str, folders))}: " + "; ".join(
            f"{style.label(m)} seed {seed} ({by_method[m][0].cell.variant}, seeds trained "
            f"{','.join(str(r.seed) for r in by_method[m])})" for m in methods)
            + ". Records: features.npz (one test task of the record stream: adapted on its support set, its query "
              "set embedded before and after, one joint t-SNE map per run) and representations.json (silhouettes "
              "over the recorded tasks). Checks the paper's Figure 4: \"t-SNE of MAML and CML on MiniImagenet after "
              "adaptation on the support set, query set shown\"." + "".join(f" Missing: {m}." for m in missing))
        cap = fig.add_subplot(grid[len(methods), :])
        cap.axis("off")
        cap.text(0.0, 1.0, "\n".join(textwrap.wrap(caption, 135, break_long_words=False, break_on_hyphens=False)),
                 transform=cap.transAxes, fontsize=7.2, va="top", ha="left", linespacing=1.3)
    return fig
