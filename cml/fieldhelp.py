"""Help text of the config flags, generated from the one place each field is documented.

A field's description is its entry in the ``Attributes:`` section of the :class:`cml.config.Config` docstring
(Google style; one entry may name several fields: ``ways, shots, queries: ...``). Its default is what the
presets resolve it to, and its allowed values are :data:`cml.config.FIELD_CHOICES`. ``python -m cml train
--help`` prints all three for every flag; a field missing from the docstring is an error here, so a new field
cannot reach the CLI undocumented (``tests/test_cli_help.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

from .config import BASES, FIELD_ALIASES, FIELD_CHOICES, METHODS, PRESETS, TASKS, Config, needs_data_path, preset

__all__ = ["attribute_docs", "preset_defaults", "field_help"]

_ENTRY = re.compile(r"^(?P<names>[A-Za-z_][\w, ]*?):\s+(?P<text>.*)$")


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of ``cls``'s Google-style docstring.

    Args:
        cls: a class whose docstring has an ``Attributes:`` section of ``name: text`` entries (continuation
            lines indented deeper; ``a, b: text`` documents ``a`` and ``b`` alike).

    Returns:
        Each documented name's text, continuation lines joined, RST literals (````x````) and roles
        (``:mod:`x```) shown as ``x``.

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
    # RST literals (``x``) and roles (:mod:`x`) print as their text.
    return {n: re.sub(r"(?::\w+:)?`{1,2}([^`]*)`{1,2}", r"\1", text) for n, text in docs.items()}


#: The task groups the presets are written for, in the order help texts name them.
def _groups() -> dict[str, tuple[str, ...]]:
    images = tuple(t for t in TASKS if t not in ("sinusoid", "graph"))
    return {"sinusoid": ("sinusoid",), "image tasks": images, "graph": ("graph",)}


def _task_group(tasks: list[str]) -> str:
    """Names a set of tasks by the preset groups it covers whole (``image tasks``), the rest by name, in the
    order of :data:`cml.config.TASKS`."""
    if set(tasks) == set(TASKS):
        return "every task"
    names: list[str] = []
    for group, members in _groups().items():
        present = [t for t in members if t in tasks]
        names += [group] if present and len(present) == len(members) else present
    return ", ".join(names)


def _show(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _by_task(values: dict[str, Any]) -> str:
    """``{task: value}`` as one text: the value alone if every task agrees, else ``value (tasks), ...``."""
    by_value: dict[str, list[str]] = {}
    for t in TASKS:
        by_value.setdefault(_show(values[t]), []).append(t)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{v} ({_task_group(ts)})" for v, ts in by_value.items())


@functools.lru_cache(maxsize=2)
def _resolved(every: bool = False) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """``{(preset, task, method, base): config values}``: every method on the ``maml`` base and every base with
    the ``none`` method (what the help describes), or with ``every`` all pairs (what the tests check)."""
    none, maml = METHODS[0], inspect.signature(preset).parameters["base"].default
    pairs = ([(m, b) for m in METHODS for b in BASES] if every else
             list(dict.fromkeys([(m, maml) for m in METHODS] + [(none, b) for b in BASES])))
    names = [f.name for f in dataclasses.fields(Config)]
    # Every task that needs a data path gets a dummy one to validate; the path itself is never read.
    return {(p, t, m, b): {n: getattr(cfg, n) for n in names}
            for p in PRESETS for t in TASKS for m, b in pairs
            for cfg in [preset(p, t, m, base=b, data="DATA" if needs_data_path(t) else None)]}


def preset_defaults() -> dict[str, str]:
    """A copy of :func:`_preset_defaults` (computed once per process: the parser asks for it per flag group)."""
    return dict(_preset_defaults())


@functools.lru_cache(maxsize=1)
def _preset_defaults() -> dict[str, str]:
    """``{field: text}``: the value each preset gives a field, by task group, and where it differs by method
    (on the ``maml`` base) and by base learner (with ``--method none``).

    E.g. ``"--preset quick: 3000 (sinusoid), 600 (image tasks), 300 (graph); --preset paper: ..."``,
    ``"1 (...); --base maml++: 2 (...)"``, or a single value where every preset, task, method and base agrees.
    The base's own default (``maml``) is :func:`cml.config.preset`'s. A value that depended on the method and
    the base together (not on one of them) would be misdescribed: ``tests/test_cli_help.py`` checks that the
    presets have none.
    """
    resolved = _resolved()
    fields = [f.name for f in dataclasses.fields(Config) if f.name not in ("base", "method", "task")]
    none, maml = METHODS[0], inspect.signature(preset).parameters["base"].default
    out: dict[str, str] = {"base": maml}
    for name in fields:
        def value(p: str, t: str, m: str, b: str, name: str = name) -> Any:  # this iteration's field
            v = resolved[(p, t, m, b)][name]
            return None if name == "data" else v  # the dummy path stands for "the user's"

        if len({repr(value(*k)) for k in resolved}) == 1:
            out[name] = _show(value(*next(iter(resolved))))
            continue
        texts: dict[str, str] = {}
        for p in PRESETS:
            baseline = {t: value(p, t, none, maml) for t in TASKS}
            text = _by_task(baseline)
            for m in METHODS:
                per_task = {t: value(p, t, m, maml) for t in TASKS}
                if per_task != baseline:
                    text += f"; --method {m}: {_by_task(per_task)}"
            for b in BASES:
                per_task = {t: value(p, t, none, b) for t in TASKS}
                if per_task != baseline:
                    text += f"; --base {b}: {_by_task(per_task)}"
            texts[p] = text
        out[name] = (next(iter(texts.values())) if len(set(texts.values())) == 1 else
                     " | ".join(f"--preset {p}: {text}" for p, text in texts.items()))
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
        text += f" One of: {', '.join(FIELD_CHOICES[name])}"
        if name in FIELD_ALIASES:
            text += f" (older names, still read: {', '.join(FIELD_ALIASES[name])})"
        text += "."
    if name in defaults:
        text += f" Default: {defaults[name]}."
    return text.replace("%", "%%")  # argparse formats help strings with %
