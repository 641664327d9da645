"""The γ × co-learner ablation: test accuracy and CML† against the co-learner's weight γ, one line per
co-learner type, with the base learner alone (MAML) as the reference line.

Drawn from the runs of a sweep with a ``--grid gamma=...`` (and usually ``--grid co_learner=linear,conv``), e.g.::

    python -m cml sweep --task fonts --methods cml --grid gamma=0,0.5,1 --grid co_learner=linear,conv \\
        --seeds 0,1,2 --out runs/ablation

Interval policy (:mod:`figures.summary`, as in every figure here): with at least
:data:`analysis.stats.MIN_SEEDS_FOR_CI` seeds a point is the mean
across seeds and its band the 95% Student-t interval; with fewer, each seed is drawn as its own point and no
interval is drawn (a t-interval from two seeds is too wide to read, and from one it does not exist).

The reference line is the base learner alone: its runs if the records hold them (``--methods none,cml``),
else the γ = 0 cells, which are the base learner exactly (γ = 0 removes the co-learner's loss from the outer
objective; ``tests/test_gradients.py``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.stats import seed_ci95
from cml.errors import FigureInputError

from . import paper_values, style
from .summary import policy_note
from .runs import Run, adds_nothing, as_runs, group_by_setting

__all__ = ["GRID_FIELD", "has_gamma_grid", "cells", "figure"]

#: The gridded field on the x axis.
GRID_FIELD = "gamma"
#: The paper's tables whose values the ablation's points are compared with (γ; the co-learner's structure).
PAPER_TABLES = ("5", "7", "8")
# One look per co-learner type: Okabe-Ito colours, line styles and markers that survive grayscale.
CO_LEARNER_STYLES = {"linear": dict(color="#0072B2", linestyle="-", marker="o"),
                     "conv": dict(color="#D55E00", linestyle="--", marker="s")}
_REFERENCE_COLOUR = "0.3"


def has_gamma_grid(runs: Sequence[Run]) -> bool:
    """Whether the runs hold a γ grid: runs of a sweep whose ``--grid`` varies ``gamma``."""
    return any(GRID_FIELD in r.grid for r in runs)


def _co_order(co: str) -> tuple[int, str]:
    """Co-learner types in the config's order (linear, then conv), unknown ones after."""
    from cml.config import CO_LEARNERS  # not at import: figures load only records and the two tables

    return (CO_LEARNERS.index(co) if co in CO_LEARNERS else len(CO_LEARNERS), co)


def _metric(run: Run, dagger: bool) -> float | None:
    test = run.test()
    key = run.family.metric + ("_dagger" if dagger else "")
    value = test.get(key)
    if value is None:
        return None
    return 100.0 * float(value) if run.family.classification else float(value)  # accuracies in %


def _summary(values: Sequence[float]) -> dict[str, Any]:
    # The reporting policy (figures.summary): no interval across fewer than MIN_SEEDS_FOR_CI seeds.
    mean, ci = seed_ci95(values)
    return {"mean": mean, "ci95": ci if math.isfinite(ci) else None, "values": list(values)}


def _other_fields(runs: Sequence[Run]) -> list[str]:
    """The config fields other than γ, the co-learner, the seed, the cell and the result-neutral fields whose values
    differ among ``runs``: another --grid axis (``inner_lr``), or runs of two sweeps. Each of their combinations
    is a line of its own: pooling them would count one configuration's seeds as another's."""
    from cml import records

    skip = {GRID_FIELD, "co_learner", "seed", "base", "method", *records.RESULT_NEUTRAL}
    keys = dict.fromkeys(k for r in runs for k in r.config if k not in skip)
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def _rest_text(rest: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rest)


def cells(runs: Sequence[Run]) -> dict[str, Any]:
    """The numbers the ablation figure draws.

    Args:
        runs: runs of one setting, among them a γ grid of a co-learner method (CML).

    Returns:
        ``{"lines": {(base, co_learner, *rest): {gamma: {"test": s, "dagger": s}}}, "reference": {"test": s,
        "source": str}, "references": {rest: reference}, "seeds": int, "other_fields": [field, ...]}``, each ``s``
        a ``{"mean", "ci95", "values"}`` summary across seeds (``ci95`` None with fewer than
        :data:`MIN_SEEDS_FOR_CI` seeds). ``rest`` is the tuple of ``(field, value)`` of the other fields whose
        values differ among the runs (another --grid axis: ``(("inner_lr", 0.01),)``), empty when there are none:
        every line is then keyed ``(base, co_learner)``, and ``reference`` is the one reference line (None where
        there is none, or one per ``rest``); ``runs``: the gridded runs. A point whose setting the paper reports
        also holds ``paper_test`` and ``paper_dagger``: the paper's value (Tables 5, 7, 8) and the run's
        difference.

    Raises:
        FigureInputError: if no run has a γ grid, or no co-learner run of the grid has finished.
    """
    runs = as_runs(runs)
    gridded = [r for r in runs if GRID_FIELD in r.grid and r.cell.spec.dagger and r.has("test.json")]
    if not gridded:
        raise FigureInputError("the ablation needs a sweep with --grid gamma=... of a co-learner method "
                               "(--methods cml) whose cells have finished")
    alone_runs = [r for r in runs if adds_nothing(r.cell.spec) and r.has("test.json")]
    others = _other_fields(gridded)

    def rest_of(r: Run) -> tuple[tuple[str, Any], ...]:
        return tuple((k, r.config.get(k)) for k in others)

    per: dict[tuple, dict[float, dict[str, list[float]]]] = {}
    seen: dict[tuple, set[int]] = {}
    first: dict[tuple, Run] = {}  # a run of each point: the setting the paper is matched at

    def order(r: Run) -> tuple:
        return (r.base, _co_order(str(r.config["co_learner"])), repr(rest_of(r)), float(r.config["gamma"]), r.seed)

    for run in sorted(gridded, key=order):
        key = (run.base, str(run.config["co_learner"]), *rest_of(run))
        gamma = float(run.config["gamma"])
        if run.seed in seen.setdefault((*key, gamma), set()):  # the same seed twice (two folders): count it once
            continue
        seen[(*key, gamma)].add(run.seed)
        first.setdefault((*key, gamma), run)
        point = per.setdefault(key, {}).setdefault(gamma, {"test": [], "dagger": []})
        for name, dagger in (("test", False), ("dagger", True)):
            value = _metric(run, dagger)
            if value is not None:
                point[name].append(value)
    lines = {k: {g: {key: _summary(v) for key, v in p.items() if v} for g, p in sorted(pts.items())}
             for k, pts in per.items()}
    # The paper's values of Tables 5, 7 and 8 (γ, the co-learner's structure) at each point's setting.
    for key, pts in lines.items():
        for g, p in pts.items():
            run = first[(*key, g)]
            for name, suffix in (("test", ""), ("dagger", "_dagger")):
                found = paper_values.values_for(run, run.family.metric + suffix, PAPER_TABLES)
                if found and name in p:
                    p[f"paper_{name}"] = paper_values.cell_text(found, p[name]["mean"] / 100.0, " ")
    references = {}
    for rest in dict.fromkeys(rest_of(r) for r in gridded):
        alone = [r for r in alone_runs if rest_of(r) == rest]
        source = "the base learner's runs"
        if not alone:
            # The γ = 0 cells are the base learner exactly; one co-learner's, so that no seed counts twice.
            zero = [r for r in gridded if float(r.config["gamma"]) == 0.0 and rest_of(r) == rest]
            first_co = min((str(r.config["co_learner"]) for r in zero), default=None, key=_co_order)
            alone = [r for r in zero if str(r.config["co_learner"]) == first_co]
            source = f"the γ = 0 cells ({first_co} co-learner), which are the base learner exactly"
        by_seed: dict[int, float] = {}
        for r in alone:
            v = _metric(r, False)
            if v is not None:
                by_seed.setdefault(r.seed, v)  # one value per seed
        references[rest] = {**_summary(list(by_seed.values())), "source": source} if by_seed else None
    seeds = len({r.seed for r in gridded})
    return {"lines": lines, "reference": references.get(()) if not others else None, "references": references,
            "seeds": seeds, "other_fields": others, "runs": gridded}


def _line_name(key: tuple, base_labels: dict[str, str], suffix: str = " co-learner") -> str:
    base, co, *rest = key
    extra = [base_labels[base]] if len(base_labels) > 1 else []
    extra += [_rest_text(rest)] if rest else []
    return f"{co}{suffix}" + (f" ({'; '.join(extra)})" if extra else "")


def _draw_panel(ax, numbers: dict[str, Any], key: str, ylabel: str, base_labels: dict[str, str]) -> None:
    rests = list(dict.fromkeys(tuple(k[2:]) for k in numbers["lines"]))
    for line_key, points in numbers["lines"].items():
        co = line_key[1]
        gammas = [g for g, p in points.items() if key in p]
        if not gammas:
            continue
        kw = dict(CO_LEARNER_STYLES.get(co, dict(color="0.5", linestyle=":", marker="^")))
        if len(rests) > 1:  # one look per co-learner; the other fields' combinations by marker and line style
            i = rests.index(tuple(line_key[2:]))
            kw.update(marker="osD^vP*X"[i % 8], linestyle=("-", "--", "-.", ":")[i % 4])
        name = _line_name(line_key, base_labels)
        means = np.array([points[g][key]["mean"] for g in gammas])
        cis = [points[g][key]["ci95"] for g in gammas]
        if all(c is not None and math.isfinite(c) for c in cis):
            ax.plot(gammas, means, label=name, lw=1.8, markersize=5, **kw)
            ax.fill_between(gammas, means - np.array(cis), means + np.array(cis), color=kw["color"], alpha=0.18, lw=0)
        else:
            # Fewer seeds than MIN_SEEDS_FOR_CI: every seed, and the mean joining them, no interval.
            ax.plot(gammas, means, label=f"{name} (mean of {len(points[gammas[0]][key]['values'])} seeds)",
                    lw=1.2, markersize=0, color=kw["color"], linestyle=kw["linestyle"])
            for g in gammas:
                vals = points[g][key]["values"]
                ax.plot([g] * len(vals), vals, linestyle="none", marker=kw["marker"], color=kw["color"],
                        markersize=4, alpha=0.8)
    for rest, ref in numbers["references"].items():
        if ref is None:
            continue
        label = "MAML (base learner alone)" + (f", {_rest_text(rest)}" if rest else "")
        ax.axhline(ref["mean"], color=_REFERENCE_COLOUR, linestyle=":", lw=1.4, label=label)
        if ref["ci95"] is not None and math.isfinite(ref["ci95"]):
            ax.axhspan(ref["mean"] - ref["ci95"], ref["mean"] + ref["ci95"], color=_REFERENCE_COLOUR, alpha=0.1, lw=0)
        else:
            for v in ref["values"]:
                ax.axhline(v, color=_REFERENCE_COLOUR, linestyle=":", lw=0.6, alpha=0.6)
    ax.set_xlabel("γ (weight of the co-learner's loss)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def figure(runs: Sequence[Run] | Any) -> Figure:
    """Test accuracy (a) and CML† accuracy (b) against γ, one line per co-learner type; MSE for sinusoid.

    Args:
        runs: runs of one setting (or folders), holding a γ grid of CML (see the module docstring).

    Raises:
        FigureInputError: if the runs mix settings or hold no finished γ grid.
    """
    from cml.bases import get_base

    runs = as_runs(runs)
    settings = group_by_setting(runs)
    if len(settings) > 1:
        raise FigureInputError(f"the ablation draws one setting; got {', '.join(s.label for s in settings)}")
    setting = next(iter(settings))
    numbers = cells(runs)
    base_labels = {key[0]: get_base(key[0]).label for key in numbers["lines"]}
    regression = not setting.family.classification
    what = "test MSE" if regression else "test accuracy (%)"
    seeds = numbers["seeds"]
    interval = policy_note(seeds)
    with style.figure_style():
        fig = Figure(figsize=style.PAGE)
        axes = [fig.add_axes((0.08, 0.62, 0.40, 0.28)), None]
        # Own y axes: CML† at γ = 0 is an untrained head (near chance), which would flatten panel (a).
        axes[1] = fig.add_axes((0.57, 0.62, 0.40, 0.28))
        _draw_panel(axes[0], numbers, "test", what, base_labels)
        axes[0].set_title("(a) meta-learner θ (the test-time model)")
        _draw_panel(axes[1], numbers, "dagger", what, base_labels)
        axes[1].set_title("(b) CML†: predicting with the co-learner φ")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.565), ncol=3, fontsize=8,
                   frameon=False)
        fig.suptitle(f"γ × co-learner ablation, {setting.label}\n{seeds} seeds; {interval}", fontsize=10, y=0.97)
        _table(fig.add_axes((0.08, 0.22, 0.89, 0.29)), numbers, regression, base_labels)
    return fig


def _table(ax, numbers: dict[str, Any], regression: bool, base_labels: dict[str, str]) -> None:
    """The drawn numbers: mean ± 95% CI across seeds (each seed's value when there are too few seeds)."""
    fmt = ".4f" if regression else ".2f"

    def text(s: dict[str, Any] | None) -> str:
        if s is None:
            return "—"
        if s["ci95"] is not None and math.isfinite(s["ci95"]):
            return f"{s['mean']:{fmt}} ± {s['ci95']:{fmt}}"
        return "seeds " + ", ".join(f"{v:{fmt}}" for v in s["values"])

    paper = any(k.startswith("paper_") for pts in numbers["lines"].values() for p in pts.values() for k in p)

    def paper_text(p: dict[str, Any]) -> list[str]:
        if not paper:
            return []
        cells = [p.get(f"paper_{k}", ("–", "–")) for k in ("test", "dagger")]
        return [f"{cells[0][0].split(' (')[0]} / {cells[1][0].split(' (')[0]}", f"{cells[0][1]} / {cells[1][1]}"]

    rows = []
    for key, points in numbers["lines"].items():
        for gamma, p in points.items():
            rows.append([_line_name(key, base_labels, ""), f"{gamma:g}",
                         str(len(p["test"]["values"])) if "test" in p else "0", text(p.get("test")),
                         text(p.get("dagger")), *paper_text(p)])
    for rest, ref in numbers["references"].items():
        if ref is not None:
            rows.append(["MAML reference" + (f" ({_rest_text(rest)})" if rest else ""), "—", str(len(ref["values"])),
                         text(ref), "—", *(["—", "—"] if paper else [])])
    ref = next((r for r in numbers["references"].values() if r is not None), None)
    metric = "test MSE" if regression else "accuracy (%)"
    ax.axis("off")
    labels = ["co-learner", "γ", "seeds", f"θ {metric}", f"CML† {metric}"]
    widths = [0.2, 0.08, 0.08, 0.32, 0.32]
    if paper:
        labels += ["paper θ / CML†\n(Tables 5, 7, 8)", "run − paper"]
        widths = [0.14, 0.06, 0.06, 0.21, 0.21, 0.17, 0.15]
    t = ax.table(cellText=rows, colLabels=labels, loc="upper center", cellLoc="center", colWidths=widths)
    t.auto_set_font_size(False)
    t.set_fontsize(7.5)
    t.scale(1, 1.15)
    for (i, _), c in t.get_celld().items():
        c.set_edgecolor("0.75")
        if i == 0:
            c.set_facecolor("0.92")
            c.set_text_props(weight="bold")
    note = "" if paper else " " + paper_values.no_match_note(numbers.get("runs", []), PAPER_TABLES)
    if ref is not None or note:
        title = f"mean ± 95% CI across seeds; MAML reference: {ref['source']}." if ref is not None else ""
        ax.set_title("\n".join(textwrap.wrap(title + note, 150)), fontsize=7.5, color="0.35", loc="left")
