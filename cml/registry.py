"""Finding a table's rows: every module of a package that defines the row attribute (torch-free, like the tables)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def row_modules(package: str, path: list[str], attribute: str) -> list[ModuleType]:
    """The modules of ``package`` (its ``__path__`` is ``path``), by name, each checked to define ``attribute``.

    Raises:
        TypeError: naming a module of the package that does not define it.
    """
    modules = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        module = importlib.import_module(f"{package}.{info.name}")
        if not hasattr(module, attribute):
            raise TypeError(f"{package.replace('.', '/')}/{info.name}.py defines no {attribute}")
        modules.append(module)
    return modules


def ordered(names: list[str], first: list[str]) -> list[str]:
    """``names`` with those in ``first`` first, in that order, then the others by name."""
    return sorted(names, key=lambda n: (first.index(n) if n in first else len(first), n))


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``.

    Raises:
        KeyError: ``unknown <what> <name>; choose one of: ...``, naming the table's keys.
    """
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}") from None
