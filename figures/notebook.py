"""Paths in a notebook's parameters, read against the repository's root whatever the kernel's working folder.

Jupyter starts a notebook's kernel in the notebook's folder (``notebooks/``), papermill in the folder it is run
from (or ``--cwd``): the same ``RUNS = ["runs/demo/fonts"]`` would name a different folder in each. The notebooks
resolve their relative paths here, against the checkout the kernel runs in: the nearest folder at or above the
working folder that holds this project's ``pyproject.toml`` and ``notebooks/``; outside a checkout (a notebook
copied elsewhere), the working folder itself.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["checkout_root", "in_checkout"]


def checkout_root(start: Path | None = None) -> Path:
    """The repository root at or above ``start`` (default: the working folder), else ``start`` itself."""
    here = Path.cwd() if start is None else Path(start)
    here = here.resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks" / "build_notebooks.py").is_file():
            return folder
    return here


def in_checkout(path: str | Path, start: Path | None = None) -> Path:
    """``path`` as given if absolute, else relative to :func:`checkout_root` (``~`` expanded)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else checkout_root(start) / path
