"""Figure 3: why CML works, seen in its learning dynamics.

(a) convergence: validation accuracy and loss against the outer step (sinusoid: validation MSE after
    adaptation and the training query loss), MAML, noisy-MAML and CML;
(b) cosine similarity between the meta-learner's and the co-learner's gradients on psi, whole psi and per
    block (CML), with the zero line: below it the co-learner pushes psi somewhere the meta-learner would not;
(c) the norm of psi's meta-gradient, whole and per block, MAML, noisy-MAML and CML (before noisy-MAML's
    noise is added: the gradient the method itself produced);
(d) linear CKA between each layer's query representations before and after adaptation, MAML against CML:
    lower CKA means adaptation changes the representation more.

Panels run (a) to (d) from the top of the page down. Intervals follow :mod:`figures.summary`: with 3 or more
seeds per method, lines are the mean across seeds at each recorded step and shaded bands the 95% Student-t
confidence interval across seeds (:func:`analysis.stats.seed_ci95`); with 2, each seed is drawn as a thin line
beside the mean and there is no band; with one seed, (a)'s bands are the run's own 95% CI over validation tasks
and (b)-(c) have no band. (d) is a dot plot (its axis spans the values, not 0 to 1, because the differences
that matter are in the second and third decimal): a mean with its across-seed interval (clipped at 1, CKA's
maximum) with 3+ seeds, else each seed's value. Records: ``val.jsonl``, ``metrics.jsonl``,
``dynamics.jsonl`` and ``representations.json`` (train with ``--record-interval K``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.stats import MIN_SEEDS_FOR_CI, seed_ci95
from cml.errors import FigureInputError

from cml.methods import Method

from . import style
from .runs import (Cell, MissingRecordError, Run, adds_nothing, as_runs, cells_where, cooperates, group_by_method,
                   group_by_setting)
from .summary import policy_note

__all__ = [
    "Band",
    "band",
    "cka_summary",
    "figure",
    "layer_label",
    "draws_convergence",
    "draws_cosine",
    "draws_norm",
    "draws_cka",
]


# The paper's methods per panel, chosen by what a method does (on figures.runs.PAPER_BASE); figure(methods=...)
# overrides them.
def draws_convergence(method: Method) -> bool:
    """Panel (a): MAML, noisy-MAML and CML (the base learner alone, with gradient noise, with a co-learner)."""
    return adds_nothing(method) or method.gradient_noise or cooperates(method)


def draws_cosine(method: Method) -> bool:
    """Panel (b): CML (its co-learner's gradient on ψ is the one compared)."""
    return cooperates(method)


def draws_norm(method: Method) -> bool:
    """Panel (c): MAML, noisy-MAML and CML (as panel (a))."""
    return draws_convergence(method)


def draws_cka(method: Method) -> bool:
    """Panel (d): MAML and CML (the base learner alone and with a co-learner)."""
    return adds_nothing(method) or cooperates(method)


def layer_label(layer: str) -> str:
    """Printed name of a recorded layer: ``flat`` is the head's input."""
    return "head input" if layer == "flat" else layer


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
    return f" (rolling mean, {smooth} records)" if smooth > 1 else ""


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


# -- (b) and (c): whole psi and per block -----------------------------------------------------------------


def _blocks(dynamics: Iterable[list[dict]], key: str) -> list[str]:
    names: dict[str, None] = {}
    for dyn in dynamics:
        for rec in dyn:
            for b in rec.get(key) or {}:
                names.setdefault(b, None)
    return list(names)


def _panel_blocks(axes: Sequence[Axes], by_method: dict[Cell, list[Run]], methods: Sequence[Cell], smooth: int,
                  whole_key: str, blocks_key: str, blocks: Sequence[str]) -> None:
    for m in methods:
        dyn = [r.dynamics() for r in by_method[m]]
        whole = [{d["step"]: d.get(whole_key) for d in recs} for recs in dyn]
        if any(any(v is not None for v in w.values()) for w in whole):
            _draw(axes[0], band(whole, smooth), m)
        for ax, block in zip(axes[1:], blocks):
            per = [{d["step"]: (d.get(blocks_key) or {}).get(block) for d in recs} for recs in dyn]
            if any(any(v is not None for v in p.values()) for p in per):
                _draw(ax, band(per, smooth), m)
    for ax in axes:
        _step_axis(ax)


def _check_dynamics(by_method: dict[Cell, list[Run]], methods: Sequence[Cell], key: str) -> None:
    for m in methods:
        for r in by_method[m]:
            recs = r.dynamics()
            if not any(rec.get(key) is not None for rec in recs):
                raise MissingRecordError(r.path, f"{key} in dynamics.jsonl",
                                         "only methods with a co-learner (cml, cl) record gradient cosines"
                                         if key == "cos_psi" else None)


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
                           marker=s.marker, zorder=3)
                extent += list(values)
            ax.scatter([pos], [mean], s=34, color=s.colour, marker=s.marker, zorder=4)
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
    ax.set_xticks(x, [layer_label(layer) for layer in layers])
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylabel(("debiased linear CKA" if debiased else "linear CKA") + ", before vs after")
    ax.set_title("(d) " + ("debiased CKA" if debiased else "CKA") + " per layer")
    ax.set_xlabel("layer (dashed: CKA 1, representation unchanged)")


# -- the figure -------------------------------------------------------------------------------------------


def figure(
    source: Run | str | Iterable[Run | str],
    methods: Sequence[Cell] | None = None,
    smooth: int = 1,
    debiased_cka: bool = True,
    log_norm: bool = False,
    figsize: tuple[float, float] = style.PAGE,
) -> Figure:
    """Figure 3 for the runs of one setting (one task, ways and shots).

    Args:
        source: run or sweep folders (or :class:`Run` objects) of one setting; several seeds per method
            give bands.
        methods: cells to draw in every panel (default: the paper's per panel, those present on
            :data:`figures.runs.PAPER_BASE`: (a) and (c) MAML, noisy-MAML, CML; (b) CML; (d) MAML and CML; see
            :func:`draws_convergence` and the others). Panel (b) draws only methods with a co-learner.
        smooth: trailing rolling mean over this many records for the training loss (sinusoid (a)), (b) and
            (c), written in the axis labels; validation curves are never smoothed.
        debiased_cka: add a panel with the debiased CKA beside the plain one.
        log_norm: logarithmic y axis for the gradient norms (c).
        figsize: the page size (default: the report's page, A4 portrait; panels (a) to (d) from top to bottom).

    Returns:
        The figure; axes carry the panel letter in their titles.

    Raises:
        FigureInputError: if the runs mix settings or hold none of the panel's methods.
        MissingRecordError: if a needed record is absent (``dynamics.jsonl``, ``representations.json``,
            ``val.jsonl``), naming the run folder and the flag that writes it.
    """
    runs = as_runs(source)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise FigureInputError(f"Figure 3 draws one setting at a time; got {', '.join(s.label for s in settings)}")
    setting = next(iter(settings))
    by_method = group_by_method(runs)

    def pick(default: Callable[[Method], bool], text: str, co_only: bool = False) -> list[Cell]:
        if methods is None:
            found = cells_where(by_method, default)
            wanted = text
        else:
            found = [m for m in methods if m in by_method and (not co_only or m.spec.co_learner)]
            wanted = ", ".join(str(m) for m in methods if not co_only or m.spec.co_learner) or "no co-learner method"
        if not found:
            raise FigureInputError(f"Figure 3 ({setting.label}): none of {wanted} among the runs "
                                   f"({', '.join(map(str, by_method))})")
        return found

    # Named as the paper names them, for the message when the runs hold none.
    conv, cos = pick(draws_convergence, "maml, noisy-maml, cml"), pick(draws_cosine, "cml", True)
    norm, cka = pick(draws_norm, "maml, noisy-maml, cml"), pick(draws_cka, "maml, cml")
    _check_dynamics(by_method, cos, "cos_psi")
    dyn_all = [r.dynamics() for m in set(cos) | set(norm) for r in by_method[m]]
    cos_blocks = _blocks(dyn_all, "cos_blocks")
    norm_blocks = _blocks(dyn_all, "grad_norm_blocks")

    drawn = set(conv) | set(cos) | set(norm) | set(cka)
    counts = sorted({len(by_method[m]) for m in drawn})
    with style.figure_style():
        fig = Figure(figsize=figsize, layout="constrained")
        fig.get_layout_engine().set(h_pad=0.06, hspace=0.04)
        a_fig, b_fig, c_fig, d_fig = fig.subfigures(4, 1, height_ratios=[1.05, 1, 1, 1.15])
        a_axes = a_fig.subplots(1, 2)
        _panel_a(a_axes, by_method, conv, smooth, not setting.family.classification)

        b_axes = b_fig.subplots(1, 1 + len(cos_blocks), sharey=True, squeeze=False,
                                gridspec_kw={"width_ratios": [1.3] + [1] * len(cos_blocks)})[0]
        _panel_blocks(b_axes, by_method, cos, smooth, "cos_psi", "cos_blocks", cos_blocks)
        for ax, name in zip(b_axes, ["whole ψ", *cos_blocks]):
            ax.axhline(0, color="0.35", lw=0.8, ls="-", zorder=0)
            ax.set_title(f"(b) {name}")
            # A cosine lives in [-1, 1]; the axis shows all of it, whatever the spread between seeds.
            ax.set_ylim(-1.05, 1.05)
        b_axes[0].set_ylabel("cosine similarity" + _smooth_note(smooth))
        b_fig.suptitle("(b) cosine similarity of the meta- and co-learner gradients on ψ, cos(∇ψ L_meta, ∇ψ γL_co): "
                       "whole ψ and per block", fontsize=9)

        c_axes = c_fig.subplots(
            1, 1 + len(norm_blocks), squeeze=False, gridspec_kw={"width_ratios": [1.3] + [1] * len(norm_blocks)})[0]
        _panel_blocks(c_axes, by_method, norm, smooth, "grad_norm_psi", "grad_norm_blocks", norm_blocks)
        for ax, name in zip(c_axes, ["whole ψ", *norm_blocks]):
            ax.set_title(f"(c) {name}")
            if log_norm:
                ax.set_yscale("log")
            else:
                # Norms are non-negative; the band's lower bound may not be.
                ax.set_ylim(bottom=0)
        c_axes[0].set_ylabel("‖∇ψ L‖₂" + (" (log scale)" if log_norm else "") + _smooth_note(smooth))
        c_fig.suptitle("(c) norm of ψ's meta-gradient (before noisy-MAML's noise), whole ψ and per block", fontsize=9)

        d_axes = d_fig.subplots(1, 2 if debiased_cka else 1, squeeze=False)[0]
        _panel_d(d_axes[0], by_method, cka, debiased=False)
        if debiased_cka:
            _panel_d(d_axes[1], by_method, cka, debiased=True)

        handles: dict[str, object] = {}
        for ax in [*a_axes, *b_axes, *c_axes, *d_axes]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        # What the marks other than the methods' lines mean, so that every mark on the page is in the legend.
        if max(counts) >= MIN_SEEDS_FOR_CI:
            handles["shaded band: 95% CI across seeds (Student t);\noverlapping bands mix their colours"] = Patch(
                facecolor="0.45", alpha=0.3, lw=0)
            handles["(d) bar: 95% CI across seeds, cut at 1"] = Line2D([], [], color="0.3", marker="_", markersize=8,
                                                                       lw=1.2)
        if any(1 < n < MIN_SEEDS_FOR_CI for n in counts):
            handles["thin line, (d) open marker:\none seed (no interval with < 3 seeds)"] = Line2D(
                [], [], color="0.3", lw=0.8, alpha=0.6, marker="o", markerfacecolor="white", markersize=4)
        banded = any(isinstance(c, PolyCollection) for c in a_axes[0].collections)
        if min(counts) == 1 and banded or a_axes[0].containers:
            handles["(a) band, one seed: 95% CI over\nvalidation tasks"] = Patch(facecolor="0.45", alpha=0.3, lw=0)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
                   fontsize=7.5)
        seeds_text = "/".join(map(str, counts))
        fig.suptitle(f"Figure 3: learning dynamics, {setting.label}\n"
                     f"{seeds_text} seed{'s' if max(counts) > 1 else ''} per method; thick lines: mean across seeds\n"
                     f"{policy_note(min(counts))}", fontsize=10)
    return fig
