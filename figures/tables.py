"""Tables drawn on a report page: cells of several lines, each row as tall as its tallest cell.

Used by the results pages and Table 4, so that both look alike and both fit the page (:data:`style.PAGE`).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

__all__ = ["draw_table", "table_height", "markdown_table"]

_LINE = 1.45  # line height in font sizes
_PAD = 0.9  # extra height per row, in lines (cell padding above and below)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines: the header, its rule, one line per row (cells as given)."""
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]


def _lines(cell: str) -> int:
    return cell.count("\n") + 1


def table_height(page_height: float, rows: Sequence[Sequence[str]], header: Sequence[str],
                 fontsize: float) -> float:
    """The height, as a fraction of a page ``page_height`` inches tall, that :func:`draw_table` gives these rows."""
    line = fontsize * _LINE / (page_height * 72.0)
    return sum(line * (max(map(_lines, r)) + _PAD) for r in [header, *rows])


def draw_table(fig: Figure, top: float, header: Sequence[str], rows: Sequence[Sequence[str]],
               col_widths: Sequence[float], fontsize: float = 7.5, left: float = 0.06, width: float = 0.88,
               bold: set[tuple[int, int]] | None = None) -> float:
    """Draws a table whose top edge is at ``top`` (figure fraction); returns its bottom edge.

    Args:
        fig: the page.
        top: the table's top, as a fraction of the page height.
        header: column names (may hold line breaks).
        rows: cell texts (may hold line breaks); every row as long as ``header``.
        col_widths: column widths, fractions of ``width`` (summing to 1).
        fontsize: text size in points.
        left, width: horizontal extent, as fractions of the page width.
        bold: ``(row, column)`` cells (rows counted from 1, below the header) set in bold.
    """
    if any(len(r) != len(header) for r in rows) or len(col_widths) != len(header):
        raise ValueError("every row and col_widths must have one entry per column")
    height = table_height(fig.get_figheight(), rows, header, fontsize)
    ax = fig.add_axes((left, top - height, width, height))
    ax.axis("off")
    line = fontsize * _LINE / (fig.get_figheight() * 72.0) / height  # one line, in axes units
    table = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), cellLoc="center", loc="upper left",
                     colWidths=list(col_widths))
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (i, j), cell in table.get_celld().items():
        texts = header if i == 0 else rows[i - 1]
        cell.set_height(line * (max(map(_lines, texts)) + _PAD))
        cell.set_edgecolor("0.75")
        cell.get_text().set_linespacing(_LINE / 1.2)  # matplotlib's linespacing is relative to 1.2 em
        if i == 0:
            cell.set_facecolor("0.92")
            cell.set_text_props(weight="bold")
        elif bold and (i, j) in bold:
            cell.set_text_props(weight="bold")
    return top - height
