"""Figure 3: why CML works, seen in its learning dynamics, panel by panel as the paper draws it (Section 4.4).

(a) convergence: validation accuracy and loss against the outer step (sinusoid: validation MSE after adaptation and
    the training query loss) of MAML with a random co-learner (a co-learner never updated, its loss in the outer
    objective: the paper's "MAML with random noise") and CML; plain MAML and Gaussian-noise MAML (the user's
    baseline) are drawn too, labelled, when the runs hold them;
(b) the cosine similarity of the meta-learner's and the co-learner's gradients on psi, cos(∇ψ L_meta, ∇ψ γL_co),
    per block, CL and CML as separate lines; the last conv block (the paper's panel: its 4th conv layer) is
    emphasised, and the zero line drawn (Theorem 3.2's precondition: positive at every block);
(c) psi's gradient norm per block, MAML, CL and CML, in two rows: the outer meta-gradient (before noisy-MAML's
    noise) and the inner loop's support-set gradient (the paper's text does not settle which it drew; see
    :func:`cml.recording.inner_gradient_record`);
(d) linear CKA between each layer's query representations before and after adaptation, from the first block to the
    head's output (the logits), MAML, CL and CML: 1 is unchanged, lower means adaptation changed it more.

:func:`pages` draws (a)-(b) and (c)-(d) on two report pages; :func:`figure` draws any of them on one figure. Each
panel's caption names the runs, seeds and records it draws and the paper's sentence it checks; a method the panel
needs but the runs lack is named there with the command that trains it (:func:`figures.runs.command_adding`), and a
record older runs lack (the inner-loop norms, the head-output CKA) is said to be missing where it would be drawn.

Intervals follow :mod:`figures.summary`: with 3 or more seeds per method, lines are the mean across seeds at each
recorded step and shaded bands the 95% Student-t confidence interval across seeds (:func:`analysis.stats.seed_ci95`);
with 2, each seed is drawn as a thin line beside the mean and there is no band; with one seed, (a)'s bands are the
run's own 95% CI over validation tasks and (b)-(c) have no band. (d) is a dot plot (its axis spans the values, not 0
to 1, because the differences that matter can be in the second and third decimal): a mean with its across-seed
interval (clipped at 1, CKA's maximum) with 3+ seeds, else each seed's value. Records: ``val.jsonl``,
``metrics.jsonl``, ``dynamics.jsonl`` and ``representations.json`` (train with ``--record-interval K``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.stats import MIN_SEEDS_FOR_CI, seed_ci95
from cml import records
from cml.errors import FigureInputError
from cml.methods import Method

from . import style
from .claims import STATEMENTS, block_order
from .runs import (Cell, MissingRecordError, Run, adds_nothing, as_runs, branches, cells_where, command_adding,
                   cooperates, group_by_method, group_by_setting, layer_label, method_named, never_trained,
                   sweep_folders)
from .summary import policy_note

__all__ = [
    "Band",
    "PANELS",
    "band",
    "cka_summary",
    "figure",
    "layer_label",
    "pages",
]


@dataclass(frozen=True)
class Role:
    """A method a panel draws, chosen by what its row does (on :data:`figures.runs.PAPER_BASE`).

    Attributes:
        name: the paper's name for it.
        wanted: the test of a method's row.
        required: the paper's panel draws it (a panel names a required method the runs lack, with its command);
            an optional one is drawn, labelled, when present.
    """

    name: str
    wanted: Callable[[Method], bool]
    required: bool = True


_MAML = Role("MAML", adds_nothing)
_RANDOM = Role("MAML + random co-learner", never_trained)
_NOISY = Role("noisy-MAML", lambda m: m.gradient_noise, required=False)
_CL = Role("CL", branches)
_CML = Role("CML", cooperates)

#: Per panel, the methods it draws: the paper's, and (a)'s labelled extras.
PANELS: dict[str, tuple[Role, ...]] = {
    "a": (Role("MAML", adds_nothing, required=False), _RANDOM, _NOISY, _CML),
    "b": (_CL, _CML),
    "c": (_MAML, _CL, _CML),
    "d": (_MAML, _CL, _CML),
}
#: Per panel, the claims (:data:`figures.claims.STATEMENTS`) whose sentences it checks.
_CHECKS = {"a": ("3a-random", "3a-noise"), "b": ("3b-below-cl", "3b-positive"), "c": ("3c-outer", "3c-inner"),
           "d": ("3d-maml-head", "3d-cml-last")}
_CAPTION_SIZE = 7.2  # points
_CAPTION_WIDTH = 138  # characters per caption line at that size across the page


@dataclass(frozen=True)
class Band:
    """A curve across seeds.

    Attributes:
        steps: (n,) outer steps.
        mean: (n,) mean across seeds.
        lo, hi: (n,) lower and upper 95% bounds (NaN where no interval: 2 seeds, or one without its own CI).
        seeds: how many seeds each point averages (the smallest over the curve).
        per_seed: (seeds, n) each seed's curve, drawn when there is no interval across seeds.
    """

    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seeds: int
    per_seed: np.ndarray


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    # Trailing mean over `window` records: the value at a step only uses records up to that step.
    if window <= 1 or len(values) < window:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    return (c[window:] - c[:-window]) / window


def band(per_seed: Sequence[dict[int, float]], smooth: int = 1,
         own_ci: Sequence[dict[int, float]] | None = None) -> Band:
    """Mean across seeds, and its 95% CI across seeds where the policy allows one, at the steps every seed recorded.

    Args:
        per_seed: one ``{step: value}`` per seed (non-finite values are dropped: an undefined cosine).
        smooth: trailing rolling mean over this many records, applied per seed before averaging.
        own_ci: with a single seed, that seed's own 95% CI half-width per step (e.g. over validation
            tasks) to draw as the band; ignored with several seeds.

    Returns:
        The curve; with fewer than :data:`analysis.stats.MIN_SEEDS_FOR_CI` seeds (and more than one) its
        bounds are NaN and ``per_seed`` is what to draw.

    Raises:
        FigureInputError: if no seed has a value, or the seeds share no recorded step.
    """
    cleaned = [{s: v for s, v in d.items() if v is not None and math.isfinite(v)} for d in per_seed]
    cleaned = [d for d in cleaned if d]
    if not cleaned:
        raise FigureInputError("no finite values to draw")
    steps = sorted(set.intersection(*(set(d) for d in cleaned)))
    if not steps:
        raise FigureInputError("the seeds share no recorded step (different --record-interval or --val-interval?)")
    if smooth < 1:
        raise ValueError(f"smooth must be a positive number of records, got {smooth}")
    values = np.array([_rolling(np.array([d[s] for s in steps]), smooth) for d in cleaned])  # (seeds, n)
    x = np.array(steps[len(steps) - values.shape[1]:])
    if len(cleaned) == 1:
        mean = values[0]
        if own_ci is not None and own_ci[0]:
            ci = _rolling(np.array([own_ci[0].get(s, math.nan) for s in steps], dtype=float), smooth)
            return Band(x, mean, mean - ci, mean + ci, 1, values)
        nan = np.full_like(mean, math.nan)
        return Band(x, mean, nan, nan, 1, values)
    stats = [seed_ci95(values[:, i]) for i in range(values.shape[1])]
    mean = np.array([m for m, _ in stats])
    ci = np.array([c for _, c in stats])
    return Band(x, mean, mean - ci, mean + ci, len(cleaned), values)


def _draw(ax: Axes, b: Band, method: Cell, **overrides) -> None:
    colour = overrides.get("color", style.method_style(method).colour)
    if b.seeds > 1 and not np.isfinite(b.lo).any():
        # No interval across so few seeds: show each seed, thin, behind the mean.
        ms = style.method_style(method)
        # A single point is no line: it gets an open marker, as the seeds in (d).
        point = dict(marker=ms.marker, markerfacecolor="white", markersize=4) if len(b.steps) == 1 else {}
        for curve in b.per_seed:
            ax.plot(b.steps, curve, color=colour, lw=0.8, alpha=0.8 if point else 0.5, linestyle=ms.linestyle,
                    label="_seed", zorder=1, **point)
    ax.plot(b.steps, b.mean, **style.line_kwargs(method, len(b.steps), **overrides))
    if np.isfinite(b.lo).any():
        if len(b.steps) == 1:  # a band of one point has no width: draw it as an interval bar
            ax.errorbar(b.steps, b.mean, yerr=[b.mean - b.lo, b.hi - b.mean], fmt="none", ecolor=colour, alpha=0.5,
                        elinewidth=4)
        else:
            ax.fill_between(b.steps, b.lo, b.hi, color=colour, alpha=0.18, lw=0)


def _step_axis(ax: Axes) -> None:
    # Outer steps are whole numbers: a run with one record must not get ticks at 1.95.
    lo, hi = ax.get_xlim()
    if hi - lo < 2:
        middle = round((lo + hi) / 2)
        ax.set_xlim(middle - 1, middle + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5, min_n_ticks=1))
    ax.set_xlabel("outer step")


def _smooth_note(smooth: int) -> str:
    # On a line of its own: a y-label as long as the panel is tall would run into the panel's title.
    return f"\n(rolling mean, {smooth} records)" if smooth > 1 else ""


def _empty(ax: Axes, text: str) -> None:
    # An empty panel says what is missing instead of showing blank axes.
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


# -- (a) convergence ------------------------------------------------------------------------------------


def _panel_a(axes: Sequence[Axes], by_method: dict[Cell, list[Run]], methods: Sequence[Cell], smooth: int,
             regression: bool) -> None:
    ax_left, ax_right = axes
    last, points = 0, 0
    for m in methods:
        runs = by_method[m]
        vals = [r.val() for r in runs]
        # Validations are few and already averaged over tasks: never smoothed. The training loss is.
        if regression:
            left = band([{v["step"]: v.get("mse") for v in val} for val in vals], 1,
                        [{v["step"]: v.get("mse_ci95") for v in val} for val in vals])
            metrics = [r.metrics() for r in runs]
            right = band([{x["step"]: x.get("meta_loss") for x in ms} for ms in metrics], smooth)
        else:
            left = band([{v["step"]: _pct(v.get("acc")) for v in val} for val in vals], 1,
                        [{v["step"]: _pct(v.get("acc_ci95")) for v in val} for val in vals])
            right = band([{v["step"]: v.get("loss") for v in val} for val in vals], 1,
                         [{v["step"]: v.get("loss_ci95") for v in val} for val in vals])
        _draw(ax_left, left, m)
        _draw(ax_right, right, m)
        last = max(last, int(left.steps.max()))
        points = max(points, len(left.steps))
    if points == 1:
        # A single validation (at the end of training): put it on the whole training axis, and say so.
        ax_left.set_xlim(0, last * 1.05)
        ax_left.text(0.5, 0.04, "one validation, at the end;\nset --val-interval for a curve", ha="center",
                     va="bottom", transform=ax_left.transAxes, fontsize=7, color="0.35")
        if not regression:
            ax_right.set_xlim(0, last * 1.05)
    # Bands from few seeds can leave the metric's range; the axes keep to it.
    if not regression:
        lo, hi = ax_left.get_ylim()
        ax_left.set_ylim(max(lo, 0.0), min(hi, 100.0))
    for ax in axes:
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.0))
    note = _smooth_note(smooth)
    if regression:
        ax_left.set_ylabel("validation MSE after adaptation")
        ax_right.set_ylabel("training query loss (MSE)" + note)
        ax_left.set_title("(a) validation MSE")
        ax_right.set_title("(a) training loss")
    else:
        ax_left.set_ylabel("validation accuracy (%)")
        ax_right.set_ylabel("validation loss (cross-entropy)")
        ax_left.set_title("(a) validation accuracy")
        ax_right.set_title("(a) validation loss")
    for ax in axes:
        _step_axis(ax)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x




# -- (b) and (c): per block --------------------------------------------------------------------------------------


def _blocks(runs: Iterable[Run], key: str) -> list[str]:
    """The blocks of a per-block record in model order (records store keys sorted: block10 after block9)."""
    names = {b for r in runs for rec in r.dynamics() for b in (rec.get(key) or {})}
    return sorted(names, key=block_order)


def _panel_blocks(axes: Sequence[Axes], by_method: dict[Cell, list[Run]], methods: Sequence[Cell], smooth: int,
                  blocks_key: str, blocks: Sequence[str]) -> list[Cell]:
    """Each method's per-block curves; returns the methods that had the record."""
    drawn = []
    for m in methods:
        dyn = [r.dynamics() for r in by_method[m]]
        for ax, block in zip(axes, blocks):
            per = [{d["step"]: (d.get(blocks_key) or {}).get(block) for d in recs} for recs in dyn]
            if any(any(v is not None for v in p.values()) for p in per):
                _draw(ax, band(per, smooth), m)
                if m not in drawn:
                    drawn.append(m)
    for ax in axes:
        _step_axis(ax)
    return drawn


def _check_dynamics(by_method: dict[Cell, list[Run]], methods: Sequence[Cell], key: str) -> None:
    for m in methods:
        for r in by_method[m]:
            recs = r.dynamics()
            if not any(rec.get(key) is not None for rec in recs):
                raise MissingRecordError(r.path, f"{key} in dynamics.jsonl",
                                         "only methods with a co-learner (cml, cl) record gradient cosines"
                                         if key == "cos_blocks" else None)


def _lacking(by_method: dict[Cell, list[Run]], methods: Sequence[Cell], key: str) -> list[Run]:
    """The runs among ``methods`` whose dynamics.jsonl has no ``key`` (written before it was recorded)."""
    return [r for m in methods for r in by_method[m] if not any(rec.get(key) is not None for rec in r.dynamics())]


# -- (d) CKA ----------------------------------------------------------------------------------------------


def cka_summary(runs: Sequence[Run], debiased: bool = False) -> dict[str, tuple[float, float, int, list[float]]]:
    """Per layer: (mean, 95% CI half-width, seeds, per-seed values) of CKA before vs after adaptation.

    The mean is over the seeds' per-run means (each over the run's recorded tasks); the half-width is the
    Student-t interval across them, NaN with fewer than 3 seeds (:func:`analysis.stats.seed_ci95`). Layers
    where CKA was undefined for every task are left out.
    """
    reps = [r.representations() for r in runs]
    key = "cka_debiased" if debiased else "cka"
    layers = list(dict.fromkeys(layer for rep in reps for layer in rep.get("layers", rep.get(key, {}))))
    out: dict[str, tuple[float, float, int, list[float]]] = {}
    for layer in layers:
        cells = [rep.get(key, {}).get(layer) for rep in reps]
        means = [c["mean"] for c in cells if c and c.get("mean") is not None and math.isfinite(c["mean"])]
        if means:
            mean, ci = seed_ci95(means)
            out[layer] = (mean, ci, len(means), means)
    return out


def _panel_d(ax: Axes, by_method: dict[Cell, list[Run]], methods: Sequence[Cell], debiased: bool) -> None:
    summaries = {m: cka_summary(by_method[m], debiased) for m in methods}
    layers = list(dict.fromkeys(layer for s in summaries.values() for layer in s))
    offset = 0.7 / max(len(methods), 1)
    x = np.arange(len(layers))
    extent: list[float] = []
    labels: list[tuple[float, float, str, str]] = []
    for k, m in enumerate(methods):
        s = style.method_style(m)
        for i, layer in enumerate(layers):
            if layer not in summaries[m]:
                continue
            mean, ci, n, values = summaries[m][layer]
            pos = x[i] + offset * (k - (len(methods) - 1) / 2)
            if math.isfinite(ci):
                # CKA is at most 1: the interval is cut there rather than drawn past the possible.
                lo, hi = mean - ci, min(mean + ci, 1.0)
                ax.errorbar(pos, mean, yerr=[[mean - lo], [hi - mean]], fmt="none", ecolor=s.colour, elinewidth=1.2,
                            capsize=3)
                extent += [lo, hi]
            else:
                ax.scatter([pos] * n, values, s=16, facecolor="white", edgecolor=s.colour, linewidth=1.0,
                           marker=s.marker, zorder=3, label=s.label)
                extent += list(values)
            if n > 1:  # one seed's mean is the seed itself: its open marker alone, as the legend says
                ax.scatter([pos], [mean], s=34, color=s.colour, marker=s.marker, zorder=4, label=s.label)
            extent.append(mean)
            labels.append((pos, max(mean, *(values if not math.isfinite(ci) else [min(mean + ci, 1.0)])),
                           f"{mean:.3f}", s.colour))
    if extent:
        lo, hi = min(extent), max(extent)
        span = max(hi - lo, 0.004)
        ax.set_ylim(lo - 0.08 * span, hi + 0.3 * span)  # room above for the value labels
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_yticks([t for t in ax.get_yticks() if lo - 0.08 * span <= t <= 1.0])  # no tick past CKA's maximum
        for pos, top, text, _colour in labels:
            ax.text(pos, top + 0.03 * span, text, rotation=90, ha="center", va="bottom", fontsize=7, color="black")
    ax.axhline(1.0, color="0.6", lw=0.7, ls="--", zorder=0)
    ax.set_xticks(x, [layer_label(layer, layers).replace(" = ", "\n= ") for layer in layers])
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylabel(("debiased linear CKA" if debiased else "linear CKA") + ", before vs after")
    ax.set_title(("debiased CKA" if debiased else "CKA") + " per layer", fontsize=9)
    ax.set_xlabel("layer (dashed: CKA 1, representation unchanged)")




# -- captions ----------------------------------------------------------------------------------------------------


def _seed_list(runs: Sequence[Run]) -> str:
    return ",".join(str(r.seed) for r in runs)


def _caption(panel: str, by_method: dict[Cell, list[Run]], drawn: Sequence[Cell], absent: Sequence[str],
             what: str, notes: Sequence[str] = ()) -> str:
    """A panel's caption: what it draws from which records, the methods and seeds, what the runs lack (with the
    command that trains it), and the paper's sentence it checks."""
    methods = "; ".join(f"{style.label(m)} (seeds {_seed_list(by_method[m])})" for m in drawn) or "none"
    found = list(dict.fromkeys(STATEMENTS[k].quote for k in _CHECKS[panel]))
    quotes = "; ".join(q for q in found if not any(q != other and q in other for other in found))
    figure_ = STATEMENTS[_CHECKS[panel][0]].figure
    parts = [f"({panel}) {what}", f"Methods: {methods}."]
    parts += [f"Missing: {a}." for a in absent]
    parts += list(notes)
    parts.append(f"Checks the paper's {figure_}: {quotes} (claims {', '.join(_CHECKS[panel])} on the claims page).")
    return "\n".join(textwrap.fill(p, _CAPTION_WIDTH, break_long_words=False, break_on_hyphens=False,
                                   subsequent_indent="  ") for p in parts)


def _caption_axes(sub: SubFigure, gs, text: str) -> None:
    ax = sub.add_subplot(gs)
    ax.axis("off")
    ax.text(0.0, 1.0, text, transform=ax.transAxes, va="top", ha="left", fontsize=_CAPTION_SIZE, linespacing=1.3)


def _lines(text: str) -> int:
    return text.count("\n") + 1


# -- the figure ----------------------------------------------------------------------------------------------


@dataclass
class _Selection:
    """What one panel draws: its methods present, and the sentences for those it lacks."""

    cells: list[Cell]
    absent: list[str]


def _select(panel: str, by_method: dict[Cell, list[Run]], runs: Sequence[Run], methods: Sequence[Cell] | None,
            co_only: bool = False) -> _Selection:
    if methods is not None:
        cells = [m for m in methods if m in by_method and (not co_only or m.spec.co_learner)]
        return _Selection(cells, [])
    cells, absent = [], []
    for role in PANELS[panel]:
        found = cells_where(by_method, role.wanted)
        if found:
            cells.append(found[0])
        elif role.required:
            method = method_named(role.wanted)
            command = command_adding(runs, method) if method else "no method of cml.methods plays it"
            absent.append(f"{role.name} (method {method}): train it with {command}")
    return _Selection(sorted(cells, key=lambda c: c.sort_key), absent)


def _panel_title(sub: SubFigure, text: str) -> None:
    sub.suptitle(text, fontsize=9, fontweight="bold", x=0.01, ha="left")


def _draw_a(sub: SubFigure, by_method, sel: _Selection, smooth: int, regression: bool) -> str:
    gs = sub.add_gridspec(2, 2, height_ratios=[1, 0.001])
    axes = [sub.add_subplot(gs[0, 0]), sub.add_subplot(gs[0, 1])]
    if sel.cells:
        _panel_a(axes, by_method, sel.cells, smooth, regression)
    else:
        for ax in axes:
            _empty(ax, "none of the panel's methods among the runs")
    _panel_title(sub, "(a) convergence: MAML with a random co-learner and CML" +
                 (" (MAML and noisy-MAML when present)" if not sel.absent else ""))
    what = ("validation MSE after adaptation (val.jsonl) and the training query loss (metrics.jsonl) against the "
            "outer step" if regression else
            "validation accuracy and loss after adaptation (val.jsonl) against the outer step")
    return _caption("a", by_method, sel.cells, sel.absent, what)


def _draw_b(sub: SubFigure, by_method, sel: _Selection, smooth: int, blocks: Sequence[str]) -> str:
    n = max(len(blocks), 1)
    # The last block is the paper's panel (its 4th conv layer): wider, framed.
    gs = sub.add_gridspec(2, n, height_ratios=[1, 0.001], width_ratios=[1] * (n - 1) + [1.5])
    axes = [sub.add_subplot(gs[0, i]) for i in range(n)]
    for ax in axes[1:]:
        ax.sharey(axes[0])
    if sel.cells and blocks:
        _panel_blocks(axes, by_method, sel.cells, smooth, "cos_blocks", blocks)
    else:
        _empty(axes[0], "no co-learner method (CL, CML) among the runs")
    for i, (ax, name) in enumerate(zip(axes, blocks or ["–"])):
        ax.axhline(0, color="0.2", lw=1.0, ls="-", zorder=0)
        last = i == len(axes) - 1
        ax.set_title(f"{name}: the paper's panel" if last and len(axes) > 1 else name,
                     fontweight="bold" if last else "normal", fontsize=9)
        if last:
            for side in ax.spines.values():
                side.set_linewidth(1.6)
            ax.set_facecolor("#fffbe6")
        # A cosine lives in [-1, 1]; the axis shows all of it, whatever the spread between seeds.
        ax.set_ylim(-1.05, 1.05)
    axes[0].set_ylabel("cos(∇ψ L_meta, ∇ψ γL_co)" + _smooth_note(smooth))
    _panel_title(sub, "(b) gradient similarity of the meta- and co-learner on ψ, per block (zero line: Theorem "
                      "3.2's precondition)")
    what = ("cosine similarity of the meta-learner's and the co-learner's gradients on each block of ψ against the "
            "outer step (dynamics.jsonl cos_blocks); CL's co-learner is its second branch, CML's the co-learner φ.")
    return _caption("b", by_method, sel.cells, sel.absent, what)


def _draw_c(sub: SubFigure, by_method, sel: _Selection, smooth: int, blocks: Sequence[str], log_norm: bool) -> str:
    n = max(len(blocks), 1)
    gs = sub.add_gridspec(3, n, height_ratios=[1, 1, 0.001])
    rows = [[sub.add_subplot(gs[r, i]) for i in range(n)] for r in range(2)]
    notes = []
    for r, (key, name, unit) in enumerate((("grad_norm_blocks", "outer meta-gradient", "outer meta-gradient\n‖∇ψ L‖₂"),
                                           ("inner_grad_norm_blocks", "inner-loop support gradient",
                                            "inner-loop support\ngradient ‖∇ψ L_S‖₂"))):
        axes = rows[r]
        lacking = _lacking(by_method, sel.cells, key)
        if lacking:
            notes.append(f"{name}: not recorded in {', '.join(sorted({str(x.path) for x in lacking}))} "
                         f"(dynamics.jsonl has no {key}: written before it was recorded; train again with "
                         f"--record-interval K).")
        methods = [m for m in sel.cells if not any(x in by_method[m] for x in lacking)]
        if methods and blocks:
            _panel_blocks(axes, by_method, methods, smooth, key, blocks)
        if not methods:
            _empty(axes[0], f"{name}: not recorded for these runs")
            for ax in axes[1:]:
                ax.axis("off")  # one message for the row, not empty axes beside it
        for ax, block in zip(axes, blocks or ["–"]):
            ax.set_title(block, fontsize=9)
            if log_norm:
                ax.set_yscale("log")
            elif ax.has_data():
                ax.set_ylim(bottom=0)  # norms are non-negative; the band's lower bound may not be
            if r == 0:
                ax.set_xlabel("")
        axes[0].set_ylabel(unit + (" (log)" if log_norm else "") + _smooth_note(smooth))
    _panel_title(sub, "(c) gradient norm of ψ per block: outer meta-gradient (top), inner-loop support-set "
                      "gradient (bottom)")
    what = ("top: the norm of ψ's meta-gradient per block (dynamics.jsonl grad_norm_blocks, before noisy-MAML's "
            "noise); bottom: the norm of the inner loop's support-set gradient on ψ per block at the meta-parameters, "
            "mean over the step's tasks (inner_grad_norm_blocks); both against the outer step.")
    return _caption("c", by_method, sel.cells, sel.absent, what, notes)


def _draw_d(sub: SubFigure, by_method, sel: _Selection, debiased: bool) -> str:
    gs = sub.add_gridspec(2, 2 if debiased else 1, height_ratios=[1, 0.001])
    axes = [sub.add_subplot(gs[0, i]) for i in range(2 if debiased else 1)]
    notes = []
    if sel.cells:
        _panel_d(axes[0], by_method, sel.cells, debiased=False)
        if debiased:
            _panel_d(axes[1], by_method, sel.cells, debiased=True)
        old = [r for m in sel.cells for r in by_method[m]
               if records.OUTPUT_LAYER not in r.representations().get("cka", {})]
        if old:
            notes.append(f"head output: not recorded in {', '.join(sorted({str(r.path) for r in old}))} "
                         f"(representations.json without the head-output CKA: written before it was recorded; "
                         f"train again with --record-interval K).")
    else:
        _empty(axes[0], "none of MAML, CL, CML among the runs")
    _panel_title(sub, "(d) CKA of the query representations before vs after adaptation, block 1 to the head's output")
    what = ("linear CKA (left; right: debiased) between each layer's query representations before and after "
            "adaptation, mean over the recorded test tasks (representations.json); 1: unchanged.")
    return _caption("d", by_method, sel.cells, sel.absent, what, notes)


def figure(
    source: Run | str | Iterable[Run | str],
    methods: Sequence[Cell] | None = None,
    smooth: int = 1,
    debiased_cka: bool = True,
    log_norm: bool = False,
    panels: str = "abcd",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Figure 3's ``panels`` for the runs of one setting (one task, ways and shots).

    Args:
        source: run or sweep folders (or :class:`Run` objects) of one setting; several seeds per method
            give bands.
        methods: cells to draw in every panel (default: the paper's per panel, :data:`PANELS`, those present on
            :data:`figures.runs.PAPER_BASE`). Panel (b) draws only methods with a co-learner.
        smooth: trailing rolling mean over this many records for the training loss (sinusoid (a)), (b) and
            (c), written in the axis labels; validation curves are never smoothed.
        debiased_cka: add a panel with the debiased CKA beside the plain one.
        log_norm: logarithmic y axis for the gradient norms (c).
        panels: which panels, in order (``"ab"`` and ``"cd"`` are the report's two pages).
        figsize: the figure's size (default: the report's page for two panels, taller for more).

    Returns:
        The figure; each panel is a subfigure whose title starts with its letter.

    Raises:
        FigureInputError: if the runs mix settings, or hold none of the methods of any panel drawn.
        MissingRecordError: if a needed record is absent (``dynamics.jsonl``, its cosines for a co-learner method,
            ``representations.json``, ``val.jsonl``), naming the run folder and the flag that writes it.
    """
    if not panels or any(p not in PANELS for p in panels):
        raise ValueError(f"panels must be letters of {''.join(PANELS)}, got {panels!r}")
    runs = as_runs(source)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise FigureInputError(f"Figure 3 draws one setting at a time; got {', '.join(s.label for s in settings)}")
    setting = next(iter(settings))
    by_method = group_by_method(runs)
    selections = {p: _select(p, by_method, runs, methods, co_only=p == "b") for p in panels}
    if not any(sel.cells for sel in selections.values()):
        wanted = ", ".join(dict.fromkeys(r.name for p in panels for r in PANELS[p]))
        raise FigureInputError(f"Figure 3 ({setting.label}): none of {wanted} among the runs "
                               f"({', '.join(map(str, by_method))})")
    if "b" in selections:
        _check_dynamics(by_method, selections["b"].cells, "cos_blocks")
    block_runs = [r for p in "bc" if p in selections for m in selections[p].cells for r in by_method[m]]
    cos_blocks = _blocks([r for m in selections.get("b", _Selection([], [])).cells for r in by_method[m]],
                         "cos_blocks")
    norm_blocks = _blocks(block_runs, "grad_norm_blocks") if "c" in selections else []
    drawn = {m for sel in selections.values() for m in sel.cells}
    counts = sorted({len(by_method[m]) for m in drawn})
    heights = {"a": 1.0, "b": 1.0, "c": 1.7, "d": 1.15}
    with style.figure_style():
        size = figsize or (style.PAGE if len(panels) <= 2 else (style.PAGE[0], style.PAGE[1] * len(panels) / 2))
        fig = Figure(figsize=size, layout="constrained")
        fig.get_layout_engine().set(h_pad=0.05, hspace=0.03)
        subs = fig.subfigures(len(panels), 1, height_ratios=[heights[p] for p in panels], squeeze=False)[:, 0]
        captions = {}
        for p, sub in zip(panels, subs):
            sel = selections[p]
            if p == "a":
                captions[p] = _draw_a(sub, by_method, sel, smooth, not setting.family.classification)
            elif p == "b":
                captions[p] = _draw_b(sub, by_method, sel, smooth, cos_blocks)
            elif p == "c":
                captions[p] = _draw_c(sub, by_method, sel, smooth, norm_blocks, log_norm)
            else:
                captions[p] = _draw_d(sub, by_method, sel, debiased_cka)
        # A method in the page's legend but not drawn in a panel is named there, with why: a reader must never have
        # to guess whether a line is hidden, absent or left out.
        page_labels = _drawn_labels(fig.axes)
        for p, sub in zip(panels, subs):
            here = _drawn_labels(sub.axes)
            chosen = {style.method_style(c).label for c in selections[p].cells}
            left_out = [lab for lab in page_labels if lab not in here]
            if left_out:
                captions[p] += "\n" + textwrap.fill(
                    "Not in this panel: " + "; ".join(
                        f"{lab} (its runs lack this panel's record)" if lab in chosen else
                        f"{lab} (in the legend from another panel; this panel draws "
                        f"{', '.join(r.name for r in PANELS[p])})" for lab in left_out) + ".",
                    _CAPTION_WIDTH, break_long_words=False, break_on_hyphens=False, subsequent_indent="  ")
        # Each caption below its panel, in a row of its own as tall as its lines (the rest of the panel's height,
        # less its title and axis labels, goes to the plots).
        total = sum(heights[p] for p in panels)
        for p, sub in zip(panels, subs):
            gs = sub.axes[0].get_subplotspec().get_gridspec()
            rows, _ = gs.get_geometry()
            caption_h = (_lines(captions[p]) + 0.4) * _CAPTION_SIZE * 1.3 / 72
            plots_h = max(size[1] * heights[p] / total - caption_h - 0.75 * (rows - 1) - 0.3, 0.5)
            ratios = gs.get_height_ratios()[:-1]
            gs.set_height_ratios([*ratios, sum(ratios) * caption_h / plots_h])
            _caption_axes(sub, gs[rows - 1, :], captions[p])

        found: dict[str, object] = {}
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                found.setdefault(lab, h)
        # The methods in legend order (Cell.sort_key: the base alone and the baselines first, CML last), whichever
        # panel drew each first.
        order = [style.method_style(c).label for c in sorted(drawn, key=lambda c: c.sort_key)]
        handles = {lab: found[lab] for lab in sorted(found, key=lambda x: order.index(x) if x in order else len(order))}
        # What the marks other than the methods' lines mean, so that every mark on the page is in the legend.
        if counts and max(counts) >= MIN_SEEDS_FOR_CI:
            handles["shaded band: 95% CI across seeds (Student t);\noverlapping bands mix their colours"] = Patch(
                facecolor="0.45", alpha=0.3, lw=0)
            if "d" in panels:
                handles["(d) bar: 95% CI across seeds, cut at 1"] = Line2D([], [], color="0.3", marker="_",
                                                                           markersize=8, lw=1.2)
        if any(1 < n < MIN_SEEDS_FOR_CI for n in counts):
            handles["thin line, (d) open marker:\none seed (no interval with < 3 seeds)"] = Line2D(
                [], [], color="0.3", lw=0.8, alpha=0.6, marker="o", markerfacecolor="white", markersize=4)
        elif 1 in counts and "d" in panels:
            handles["(d) open marker: the one seed's value"] = Line2D(
                [], [], color="0.3", lw=0, marker="o", markerfacecolor="white", markersize=4)
        a_axes = subs[panels.index("a")].axes if "a" in panels else []
        banded = any(isinstance(c, PolyCollection) for ax in a_axes[:1] for c in ax.collections)
        if counts and (min(counts) == 1 and banded or any(ax.containers for ax in a_axes[:1])):
            handles["(a) band, one seed: 95% CI over\nvalidation tasks"] = Patch(facecolor="0.45", alpha=0.3, lw=0)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
                   fontsize=7.5)
        seeds_text = "/".join(map(str, counts)) or "0"
        folders = sweep_folders(runs) or sorted({r.path for r in runs})
        letters = ", ".join(f"({p})" for p in panels)
        # Each line wrapped to the page's width: with mixed seed counts the note runs past the paper's edges.
        seeds_line = (f"{seeds_text} seed{'s' if counts and max(counts) > 1 else ''} per method; "
                      f"{_lines_note(counts)}{policy_note(min(counts) if counts else 0)}")
        fig.suptitle(f"Figure 3 {letters}: learning dynamics, {setting.label}\n"
                     + textwrap.fill(f"runs: {', '.join(map(str, folders))}", 110, break_long_words=False,
                                     break_on_hyphens=False) + "\n"
                     + textwrap.fill(seeds_line, 110, break_on_hyphens=False), fontsize=9.5)
    return fig


def _drawn_labels(axes: Iterable[Axes]) -> list[str]:
    """The method labels drawn on ``axes`` (lines and markers), in drawing order; a seed's thin line is none."""
    labels: list[str] = []
    for ax in axes:
        for artist in [*ax.lines, *ax.collections]:
            lab = artist.get_label()
            if lab and not lab.startswith("_") and lab not in labels:
                labels.append(lab)
    return labels


def _lines_note(counts: Sequence[int]) -> str:
    # What a thick line is: a mean only where a method has seeds to average; one seed's line is that seed.
    if not counts or max(counts) == 1:
        return "lines: the one seed's values; "
    if min(counts) == 1:
        return "thick lines: mean across seeds (a method with one seed: its values); "
    return "thick lines: mean across seeds; "


def pages(source: Run | str | Iterable[Run | str], smooth: int = 1, **kwargs) -> list[Figure]:
    """Figure 3 on the report's two pages: (a)-(b), then (c)-(d) (see :func:`figure` for the arguments)."""
    return [figure(source, smooth=smooth, panels="ab", **kwargs), figure(source, smooth=smooth, panels="cd", **kwargs)]
