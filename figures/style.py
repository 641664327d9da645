"""One look for every figure: seaborn's paper style, a fixed colour per method, and line styles and markers
that keep methods apart when a figure is printed in grayscale.

Colours are the Okabe-Ito palette (Okabe & Ito, 2008), safe for the common colour-vision deficiencies. A
method keeps its colour, line style, marker and hatch in every figure, so a reader learns them once.
Pairs of Okabe-Ito colours of similar lightness (orange and sky blue, for instance) differ in line style and
marker, which survive grayscale printing.

Figures are built as bare :class:`matplotlib.figure.Figure` objects, never through ``pyplot``: no backend and
no display are needed (tests, servers, the report CLI), nothing is left open in pyplot's figure manager, and
a notebook still shows them (``display(fig)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure

__all__ = [
    "PAGE",
    "MethodStyle",
    "METHOD_STYLES",
    "BLOCK_COLOURS",
    "CLASS_COLOURS",
    "CLASS_MARKERS",
    "method_style",
    "label",
    "line_kwargs",
    "figure_style",
    "save",
]


#: The one page size of the report (A4 portrait, inches): text pages and figures alike are laid out for it, so
#: a printed or zoomed report keeps one scale from page to page.
PAGE: tuple[float, float] = (8.27, 11.69)


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn.

    Attributes:
        label: the name printed in legends and tables.
        colour: line and bar colour (hex).
        linestyle: matplotlib line style, distinct per method for grayscale prints.
        marker: marker, distinct per method.
        hatch: bar hatch, distinct per method.
    """

    label: str
    colour: str
    linestyle: Any
    marker: str
    hatch: str


# Okabe-Ito: blue #0072B2, vermillion #D55E00, orange #E69F00, sky blue #56B4E9, bluish green #009E73,
# reddish purple #CC79A7. CML gets the solid line: it is the method every figure is about.
METHOD_STYLES: dict[str, MethodStyle] = {
    "maml": MethodStyle("MAML", "#0072B2", (0, (6, 2)), "o", ""),
    "noisy-maml": MethodStyle("noisy-MAML", "#E69F00", (0, (1, 1.5)), "^", ".."),
    "more-maml": MethodStyle("More-MAML", "#56B4E9", (0, (6, 2, 1, 2)), "D", "xx"),
    "cl": MethodStyle("CL", "#009E73", (0, (3, 1, 1, 1, 1, 1)), "v", "\\\\"),
    "cml": MethodStyle("CML", "#D55E00", "-", "s", "//"),
    "cml-dagger": MethodStyle("CML†", "#CC79A7", (0, (4, 1.5, 1, 1.5)), "P", "++"),
}

#: Per-block lines (a sequential blue-to-yellow ramp: its lightness alone orders the blocks in grayscale).
BLOCK_COLOURS: tuple[str, ...] = ("#0d0887", "#7e03a8", "#cc4778", "#f89540", "#b8a800")

#: Classes in t-SNE maps: colour and marker both change with the class, so classes stay apart in grayscale.
# (Black fifth: the usual 5-way task gets five colours of clearly different hue and lightness.)
CLASS_COLOURS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#000000", "#56B4E9",
                                  "#D55E00", "#F0E442", "#999999", "#882255")
CLASS_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def method_style(method: str) -> MethodStyle:
    """The style of ``method``: a cell's variant key (``cml``, ``noisy-maml``, ``boil_cml``...; see
    :func:`cml.methods.variant_key`), or ``<variant>-dagger`` for a co-learner evaluated with phi.

    A cell on another base learner takes its method's colour, line and marker, and the label "BOIL + CML".

    Raises:
        KeyError: for a name that is neither a styled method nor a base learner's cell, naming the known ones.
    """
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    from cml.bases import BASE_TABLE
    from cml.methods import LEGACY_BASE, display_name, split_variant, variant_key

    dagger = method.endswith("-dagger")
    key = method[: -len("-dagger")] if dagger else method
    try:
        base, addon = split_variant(key, tuple(BASE_TABLE))
    except KeyError:
        raise KeyError(f"no style for method {method!r}; known: {', '.join(METHOD_STYLES)} and "
                       f"<base>_<method> cells of {', '.join(BASE_TABLE)}") from None
    own = METHOD_STYLES["cml-dagger" if dagger else variant_key(LEGACY_BASE, addon)]
    label = display_name(BASE_TABLE[base].label, base, addon) + ("†" if dagger else "")
    return MethodStyle(label, own.colour, own.linestyle, own.marker, own.hatch)


def label(method: str) -> str:
    """The printed name of ``method`` (``noisy-maml`` -> ``noisy-MAML``)."""
    return method_style(method).label


def line_kwargs(method: str, points: int = 0, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``Axes.plot`` for one method's line.

    Args:
        method: the method.
        points: number of points on the line; markers are spaced to about eight per line so they mark the
            method without hiding the curve.
        **overrides: anything to change (e.g. ``lw``).
    """
    s = method_style(method)
    kw: dict[str, Any] = dict(color=s.colour, linestyle=s.linestyle, marker=s.marker, label=s.label,
                              lw=2.0 if s.colour == METHOD_STYLES["cml"].colour else 1.6, markersize=4.5,
                              markevery=max(1, points // 8) if points else None)
    kw.update(overrides)
    return kw


@contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's ``paper`` context and ``ticks`` style, for the duration of drawing one figure.

    A context manager rather than a global setting: importing :mod:`figures` must not restyle a user's
    other plots.
    """
    rc = {
        "pdf.fonttype": 42,  # TrueType in PDFs: text stays selectable and extractable (the report's tests)
        "ps.fonttype": 42,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 100,
        "savefig.dpi": 200,
    }
    with sns.axes_style("ticks"), sns.plotting_context("paper"), mpl.rc_context(rc):
        yield


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Writes ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (creating the folder) and returns both paths.

    Args:
        fig: the figure.
        stem: output path without suffix, e.g. ``figures/out/fig3``; a suffix given is replaced.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix) if stem.suffix in (".png", ".pdf") else Path(f"{stem}{suffix}")
        with mpl.rc_context({"pdf.fonttype": 42}):
            fig.savefig(path, bbox_inches="tight", metadata=_metadata(fig, suffix))
        paths.append(path)
    return paths


def _metadata(fig: Figure, suffix: str) -> dict[str, str]:
    title = " ".join(fig.get_suptitle().split())  # one line: PDF and PNG titles do not break
    if suffix == ".pdf":
        return {"Title": title, "Creator": "cml figures"}
    return {"Title": title, "Software": "cml figures"}
