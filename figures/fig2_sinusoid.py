"""Figure 2: sinusoid fits after adaptation, MAML against CML, one column per number of shots.

Each panel shows one test sine curve (ground truth), the K support points the model adapts on, and the
predictions of each method after its test-time inner steps; the predictions before adaptation (the
meta-learned initialisation) and CML† (CML's co-learner phi after adaptation) can be added. The curves come
from ``fits.npz``, which the recorder draws with a generator derived from the seed alone, so runs of
different methods with the same seed fit the same three curves.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from cml import records
from cml.errors import FigureInputError

from . import style
from .runs import Cell, Run, adds_nothing, as_runs, cells_where, cooperates, group_by_method

__all__ = ["figure", "select", "default_methods", "DRAWN"]

#: What Figure 2 draws by default, on :data:`figures.runs.PAPER_BASE`: the base learner alone and CML, the first
#: cell (in legend order) of each; with the paper's name for each, for messages.
DRAWN = (("maml", adds_nothing), ("cml", cooperates))


def default_methods(runs: Sequence[Run]) -> tuple[list[Cell], list[str]]:
    """The cells Figure 2 draws when none are named, and the names of those :data:`DRAWN` finds none of: for each,
    the first such cell among ``runs``."""
    found = [(name, cells_where({r.cell for r in runs}, wanted)) for name, wanted in DRAWN]
    return [cells[0] for _, cells in found if cells], [name for name, cells in found if not cells]


def select(runs: Sequence[Run], methods: Sequence[Cell] | None = None,
           seed: int | None = None) -> dict[int, dict[Cell, Run]]:
    """The run drawn for each shots value and cell: ``{shots: {cell: run}}``, shots ascending.

    Args:
        runs: runs of any tasks; only sinusoid runs are used.
        methods: cells to draw; every shots value needs each of them. Default: :func:`default_methods`, which
            must find the base learner alone and CML.
        seed: the seed to draw; default the lowest seed that every cell has at that shots value.

    Raises:
        FigureInputError: if there is no sinusoid run, or a shots value lacks a cell or the seed.
    """
    sin = [r for r in runs if r.family.end_record == records.FITS]  # the runs that recorded fitted curves
    if not sin:
        tasks = sorted({r.task for r in runs})
        raise FigureInputError(f"Figure 2 needs sinusoid runs; got only {', '.join(tasks)} runs. Train them with "
                               f"`python -m cml sweep --task sinusoid --methods maml,cml --record-interval 5 ...`")
    lacking: list[str] = []
    if methods is None:
        methods, lacking = default_methods(sin)
    out: dict[int, dict[Cell, Run]] = {}
    for shots in sorted({r.shots for r in sin}):
        by_method = group_by_method([r for r in sin if r.shots == shots])
        absent = [str(m) for m in methods if m not in by_method] + lacking
        if absent:
            raise FigureInputError(f"Figure 2: no {', '.join(absent)} run at {shots} shots (found "
                                   f"{', '.join(map(str, by_method))}); train the missing method(s) at --shots {shots}")
        common = set.intersection(*({r.seed for r in by_method[m]} for m in methods))
        if seed is not None and seed not in common:
            raise FigureInputError(f"Figure 2: seed {seed} is not trained for every method at {shots} shots "
                                   f"(common seeds: {sorted(common) or 'none'})")
        if not common:
            raise FigureInputError(f"Figure 2: the methods share no seed at {shots} shots; train them with the same "
                                   f"--seeds")
        chosen = seed if seed is not None else min(common)
        out[shots] = {m: next(r for r in by_method[m] if r.seed == chosen) for m in methods}
    return out


def _grid_mse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2))


def figure(
    source: Run | str | Iterable[Run | str],
    methods: Sequence[Cell] | None = None,
    curves: Sequence[int] = (0, 1, 2),
    seed: int | None = None,
    show_before: bool = False,
    show_dagger: bool = False,
    figsize: tuple[float, float] = style.PAGE,
) -> Figure:
    """Figure 2: one column per shots value present, one row per test curve.

    Args:
        source: run or sweep folders (or :class:`Run` objects); sinusoid runs with ``fits.npz``.
        methods: cells whose adapted predictions are drawn (default: the base learner alone and CML on MAML,
            :func:`default_methods`).
        curves: which of the three recorded test curves to draw (one row each).
        seed: the seed whose runs are drawn (default: the lowest shared one, per shots value).
        show_before: also draw each method's prediction before adaptation (thin, dotted, faded).
        show_dagger: also draw CML† (the co-learner phi after adaptation) of each drawn method whose co-learner's
            predictions are reported (:attr:`cml.methods.Method.dagger`).
        figsize: the page size (default: the report's page).

    Returns:
        The figure; each panel is titled with its shots value and carries each method's mean squared error
        on the 200-point grid.

    Raises:
        FigureInputError: see :func:`select`; or a curve index outside the recorded ones.
        MissingRecordError: if a run has no ``fits.npz``.
    """
    chosen = select(as_runs(source), methods, seed)
    methods = list(next(iter(chosen.values())))
    curves = list(curves)
    if not curves:
        raise ValueError("curves must name at least one recorded test curve (0, 1 or 2)")
    fits = {shots: {m: run.fits() for m, run in cells.items()} for shots, cells in chosen.items()}
    n_rec = min(f["truth"].shape[0] for cells in fits.values() for f in cells.values())
    bad = [c for c in curves if not 0 <= c < n_rec]
    if bad:
        raise FigureInputError(f"curves {bad} are not recorded; fits.npz holds curves 0..{n_rec - 1}")
    shots_values = list(fits)
    # A column per shots value, a row per curve: on the portrait page, the curves stack.
    nrows, ncols = len(curves), len(shots_values)
    with style.figure_style():
        fig = Figure(figsize=figsize, layout="constrained")
        style.page_margins(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        for j, shots in enumerate(shots_values):
            cells = fits[shots]
            ref = cells[methods[0]]
            for m, f in cells.items():
                if not (np.allclose(f["truth"], ref["truth"]) and np.allclose(f["support_x"], ref["support_x"])):
                    warnings.warn(f"Figure 2: {chosen[shots][m].path} fitted other test curves than "
                                  f"{chosen[shots][methods[0]].path}; drawing each against the first run's curve",
                                  stacklevel=2)
            x = ref["x"]
            for i, c in enumerate(curves):
                row, col = i, j
                ax = axes[row, col]
                truth = ref["truth"][c]
                ax.plot(x, truth, color="black", lw=1.4, label="ground truth", zorder=3)
                notes = []
                for m in methods:
                    f = cells[m]
                    if show_before:
                        ax.plot(x, f["before"][c], **style.line_kwargs(
                            m, lw=1.0, alpha=0.6, linestyle=":", marker=None,
                            label=f"{style.label(m)} before adaptation"))
                    ax.plot(x, f["after"][c],
                            **style.line_kwargs(m, len(x), label=f"{style.label(m)} after adaptation"))
                    notes.append(f"{style.label(m)} {_grid_mse(f['after'][c], truth):.2f}")
                    if show_dagger and m.spec.dagger and "after_dagger" in f:
                        dagger = style.label(m, dagger=True)
                        ax.plot(x, f["after_dagger"][c], **style.line_kwargs(
                            m, len(x), dagger=True, label=f"{dagger} (φ) after adaptation"))
                        notes.append(f"{dagger} {_grid_mse(f['after_dagger'][c], truth):.2f}")
                ax.scatter(ref["support_x"][c], ref["support_y"][c], marker="^", s=34, color="black",
                           edgecolor="white", linewidth=0.5, zorder=5, label="support points")
                # The error goes in the title, not over the curves.
                ax.set_title(f"{shots} shots, test curve {c + 1}\nMSE: " + ", ".join(notes), fontsize=8.5)
                if row == nrows - 1:
                    ax.set_xlabel("x")
                if col == 0:
                    ax.set_ylabel("y")
                ax.margins(x=0)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        style.bottom_legend(fig, handles, labels, ncol=min(len(labels), 3 if ncols == 1 else 4))
        run0 = next(iter(chosen.values()))[methods[0]]
        steps = run0.config.get("test_inner_steps")
        fig.suptitle(f"Figure 2: sinusoid regression after {steps} inner steps (seed {run0.seed}; MSE on the "
                     f"plotted grid)", fontsize=11)
    return fig
