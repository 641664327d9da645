"""Help text of the config flags, generated from the one place each field is documented.

A field's description is its entry in the ``Attributes:`` section of the :class:`cml.config.Config` docstring
(Google style; one entry may name several fields: ``ways, shots, queries: ...``). Its default is what the
presets resolve it to, and its allowed values are :data:`cml.config.FIELD_CHOICES`. ``python -m cml train
--help`` prints all three for every flag; a field missing from the docstring is an error here, so a new field
cannot reach the CLI undocumented (``tests/test_cli_help.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from .config import FIELD_CHOICES, METHODS, PRESETS, TASKS, Config, preset

__all__ = ["attribute_docs", "preset_defaults", "field_help"]

_ENTRY = re.compile(r"^(?P<names>[A-Za-z_][\w, ]*?):\s+(?P<text>.*)$")


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of ``cls``'s Google-style docstring.

    Args:
        cls: a class whose docstring has an ``Attributes:`` section of ``name: text`` entries (continuation
            lines indented deeper; ``a, b: text`` documents ``a`` and ``b`` alike).

    Returns:
        Each documented name's text, continuation lines joined, RST literals (````x````) shown as ``x``.

    Raises:
        ValueError: if the docstring has no ``Attributes:`` section or an entry cannot be parsed.
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        raise ValueError(f"{cls.__name__}'s docstring has no 'Attributes:' section") from None
    base = len(lines[start]) - len(lines[start].lstrip())
    docs: dict[str, str] = {}
    names: list[str] = []
    entry_indent: int | None = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break  # the next section
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent:
            match = _ENTRY.match(line.strip())
            if not match:
                raise ValueError(f"{cls.__name__}'s Attributes section: cannot parse {line.strip()!r}; "
                                 f"expected 'name: description'")
            names = [n.strip() for n in match["names"].split(",")]
            for n in names:
                docs[n] = match["text"].strip()
        else:
            for n in names:
                docs[n] += " " + line.strip()
    return {n: re.sub(r"``([^`]*)``", r"\1", text) for n, text in docs.items()}


def _task_group(tasks: list[str]) -> str:
    images = [t for t in TASKS if t != "sinusoid"]
    if tasks == images:
        return "image tasks"
    if tasks == list(TASKS):
        return "every task"
    return ", ".join(tasks)


def _show(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def preset_defaults() -> dict[str, str]:
    """``{field: text}``: the value each preset gives a field, by task and (where it differs) by method.

    E.g. ``"quick: 600 (image tasks), 3000 (sinusoid); paper: 30000 (image tasks), 70000 (sinusoid)"``, or a
    single value where every preset, task and method agrees.
    """
    fields = [f.name for f in dataclasses.fields(Config) if f.name not in ("method", "task")]
    # Every task but sinusoid and fonts needs a data path to validate; the path itself is never read.
    resolved = {(p, t, m): preset(p, t, m, data=None if t in ("sinusoid", "fonts") else "DATA").to_dict()
                for p in PRESETS for t in TASKS for m in METHODS}
    out: dict[str, str] = {}
    for name in fields:
        values = {k: v[name] if not (name == "data" and v[name] == "DATA") else None for k, v in resolved.items()}
        if len(set(map(repr, values.values()))) == 1:
            out[name] = _show(next(iter(values.values())))
            continue
        texts: dict[str, str] = {}
        for p in PRESETS:
            base = METHODS[0]
            by_value: dict[str, list[str]] = {}
            for t in TASKS:
                by_value.setdefault(_show(values[(p, t, base)]), []).append(t)
            text = (next(iter(by_value)) if len(by_value) == 1 else
                    ", ".join(f"{v} ({_task_group(ts)})" for v, ts in by_value.items()))
            others = {m: _show(values[(p, TASKS[0], m)]) for m in METHODS
                      if values[(p, TASKS[0], m)] != values[(p, TASKS[0], base)]}
            texts[p] = text + "".join(f", {m}: {v}" for m, v in others.items())
        out[name] = (next(iter(texts.values())) if len(set(texts.values())) == 1 else
                     "; ".join(f"--preset {p}: {text}" for p, text in texts.items()))
    return out


def field_help(name: str, docs: dict[str, str] | None = None, defaults: dict[str, str] | None = None) -> str:
    """The ``--help`` text of one config field: description, allowed values, default.

    Raises:
        KeyError: if ``name`` is not documented in the Config docstring (document it there).
    """
    docs = attribute_docs(Config) if docs is None else docs
    defaults = preset_defaults() if defaults is None else defaults
    if name not in docs:
        raise KeyError(f"config field {name!r} has no entry in the Attributes section of Config's docstring; "
                       f"document it there (it is the flag's --help)")
    text = docs[name].rstrip(".") + "."
    if name in FIELD_CHOICES:
        text += f" One of: {', '.join(FIELD_CHOICES[name])}."
    if name in defaults:
        text += f" Default: {defaults[name]}."
    return text.replace("%", "%%")  # argparse formats help strings with %
