"""One look for every figure: seaborn's paper style, a fixed colour per method, and line styles and markers
that keep methods apart when a figure is printed in grayscale.

Colours are the Okabe-Ito palette (Okabe & Ito, 2008), safe for the common colour-vision deficiencies. A
method keeps its colour, line style, marker and hatch in every figure, so a reader learns them once.
Pairs of Okabe-Ito colours of similar lightness (orange and sky blue, for instance) differ in line style and
marker, which survive grayscale printing. A method without a hand-picked look (one added to
:data:`cml.methods.METHOD_TABLE` later) gets one from a fixed fallback cycle, the same in every figure and
every run, distinct in line style and marker from the hand-picked ones.

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

from cml.methods import METHOD_TABLE

from .runs import Cell

__all__ = [
    "PAGE",
    "MARGIN",
    "page_margins",
    "bottom_legend",
    "Look",
    "MethodStyle",
    "METHOD_LOOKS",
    "DAGGER_LOOK",
    "FALLBACK_LOOKS",
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
#: The report's page margin in inches on every side, as its text pages keep (0.06 of the page's width).
MARGIN = 0.5


def page_margins(fig, margin: float = MARGIN) -> None:
    """Keeps a constrained-layout figure's axes, labels and legend ``margin`` inches inside each edge of the page,
    as the report's text pages are (a plot whose tick labels touch the paper's edge reads as cut off)."""
    width, height = fig.get_size_inches()
    fig.get_layout_engine().set(rect=(margin / width, margin / height, 1 - 2 * margin / width,
                                      1 - 2 * margin / height))


def bottom_legend(fig, handles, labels, margin: float = MARGIN, **kwargs):
    """A legend centred at the foot of a :func:`page_margins` page, inside its bottom margin, with the layout's
    rectangle raised above it (matplotlib's "outside lower center" places it on the paper's edge)."""
    width, height = fig.get_size_inches()
    legend = fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, margin / height), **kwargs)
    tall = legend.get_window_extent().height / fig.dpi + 0.08  # inches, with a little air above it
    fig.get_layout_engine().set(rect=(margin / width, (margin + tall) / height, 1 - 2 * margin / width,
                                      1 - (2 * margin + tall) / height))
    return legend


@dataclass(frozen=True)
class Look:
    """How one method's lines, markers and bars are drawn.

    Attributes:
        colour: line and bar colour (hex).
        linestyle: matplotlib line style, distinct per method for grayscale prints.
        marker: marker, distinct per method.
        hatch: bar hatch, distinct per method.
        width: line width; the method every figure is about is drawn thicker.
    """

    colour: str
    linestyle: Any
    marker: str
    hatch: str
    width: float = 1.6


@dataclass(frozen=True)
class MethodStyle:
    """How one cell is drawn: its :class:`Look` and its printed name.

    Attributes:
        label: the name printed in legends and tables.
        colour, linestyle, marker, hatch, width: as :class:`Look`.
    """

    label: str
    colour: str
    linestyle: Any
    marker: str
    hatch: str
    width: float = 1.6


# Okabe-Ito: blue #0072B2, vermillion #D55E00, orange #E69F00, sky blue #56B4E9, bluish green #009E73,
# reddish purple #CC79A7. CML gets the solid line: it is the method every figure is about. A cell on another base
# learner takes its method's look ("BOIL + CML" is drawn as CML is).
METHOD_LOOKS: dict[str, Look] = {
    "none": Look("#0072B2", (0, (6, 2)), "o", ""),
    "noisy": Look("#E69F00", (0, (1, 1.5)), "^", ".."),
    "more": Look("#56B4E9", (0, (6, 2, 1, 2)), "D", "xx"),
    "cl": Look("#009E73", (0, (3, 1, 1, 1, 1, 1)), "v", "\\\\"),
    # The random co-learner (Figure 3a's baseline): black, beside MAML's blue and CML's vermillion.
    "random": Look("#000000", (0, (1, 2, 4, 2)), "x", "|"),
    "cml": Look("#D55E00", "-", "s", "//", width=2.0),
}
#: A co-learner's own predictions (CML†).
DAGGER_LOOK = Look("#CC79A7", (0, (4, 1.5, 1, 1.5)), "P", "++")
#: Looks for methods without one above, taken in :data:`cml.methods.METHOD_TABLE` order: black, grey and yellow
#: first (the Okabe-Ito colours the hand-picked looks leave free), then the palette again, each with a line style
#: and a marker no hand-picked look uses.
FALLBACK_LOOKS: tuple[Look, ...] = (
    Look("#000000", (0, (2, 2)), "X", "--"),
    Look("#999999", (0, (8, 2, 2, 2)), "*", "||"),
    Look("#F0E442", (0, (5, 1)), "<", "oo"),
    Look("#0072B2", (0, (1, 3)), ">", "**"),
    Look("#D55E00", (0, (8, 3)), "h", "O"),
    Look("#009E73", (0, (2, 1, 2, 4)), "p", "-|"),
    Look("#E69F00", (0, (4, 1, 1, 1, 1, 1, 1, 1)), "d", "+x"),
    Look("#CC79A7", (0, (1, 1, 4, 1)), "8", ".o"),
)

#: Per-block lines (a sequential blue-to-yellow ramp: its lightness alone orders the blocks in grayscale).
BLOCK_COLOURS: tuple[str, ...] = ("#0d0887", "#7e03a8", "#cc4778", "#f89540", "#b8a800")

#: Classes in t-SNE maps: colour and marker both change with the class, so classes stay apart in grayscale.
# (Black fifth: the usual 5-way task gets five colours of clearly different hue and lightness.)
CLASS_COLOURS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#000000", "#56B4E9",
                                  "#D55E00", "#F0E442", "#999999", "#882255")
CLASS_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _look(cell: Cell, dagger: bool) -> Look:
    if dagger:
        return DAGGER_LOOK
    if cell.method in METHOD_LOOKS:
        return METHOD_LOOKS[cell.method]
    unstyled = [m for m in METHOD_TABLE if m not in METHOD_LOOKS]
    return FALLBACK_LOOKS[unstyled.index(cell.method) % len(FALLBACK_LOOKS)]


def method_style(cell: Cell, dagger: bool = False) -> MethodStyle:
    """The style of ``cell``: its method's look and the cell's printed name ("BOIL + CML").

    Args:
        cell: the (base, method) pair.
        dagger: the co-learner's own predictions (CML†): their look, and "†" after the name.
    """
    look = _look(cell, dagger)
    return MethodStyle(cell.label + ("†" if dagger else ""), look.colour, look.linestyle, look.marker, look.hatch,
                       look.width)


def label(cell: Cell, dagger: bool = False) -> str:
    """The printed name of ``cell`` ("noisy-MAML", "BOIL + CML", "CML†" with ``dagger``)."""
    return method_style(cell, dagger).label


def line_kwargs(cell: Cell, points: int = 0, dagger: bool = False, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``Axes.plot`` for one cell's line.

    Args:
        cell: the cell.
        points: number of points on the line; markers are spaced to about eight per line so they mark the
            method without hiding the curve.
        dagger: the co-learner's own predictions (CML†).
        **overrides: anything to change (e.g. ``lw``).
    """
    s = method_style(cell, dagger)
    kw: dict[str, Any] = dict(color=s.colour, linestyle=s.linestyle, marker=s.marker, label=s.label, lw=s.width,
                              markersize=4.5, markevery=max(1, points // 8) if points else None)
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
