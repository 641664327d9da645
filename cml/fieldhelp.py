"""Help text of the config flags, generated from each field's metadata.

A field's description is its :class:`cml.fields.FieldInfo` help (:func:`cml.config.field_description` puts the
base learner or task family it belongs to first). Its default is what the presets resolve it to, and its allowed
values are its choices (:data:`cml.config.FIELD_CHOICES`). ``python -m cml train --help`` prints all three for
every flag; a field declared without help cannot exist (:func:`cml.fields.option` requires it), so a new field
cannot reach the CLI undocumented (``tests/test_cli_help.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence
from typing import Any

from .bases import get_base
from .config import BASES, FIELD_ALIASES, FIELD_CHOICES, METHODS, PRESETS, TASKS, Config, field_description, preset
from .fields import info, show
from .tasks import TASK_TABLE

__all__ = ["preset_defaults", "field_help", "task_group"]


def _groups() -> dict[str, tuple[str, ...]]:
    """The task groups the presets are written for (one per task family), in the order help texts name them."""
    groups: dict[str, tuple[str, ...]] = {}
    for name, entry in TASK_TABLE.items():
        groups[entry.family.help_group] = groups.get(entry.family.help_group, ()) + (name,)
    return groups


def task_group(tasks: list[str]) -> str:
    """Names a set of tasks by the preset groups it covers whole (``image tasks``), the rest by name, in the
    order of :data:`cml.config.TASKS`."""
    if set(tasks) == set(TASKS):
        return "every task"
    names: list[str] = []
    for group, members in _groups().items():
        present = [t for t in members if t in tasks]
        names += [group] if present and len(present) == len(members) else present
    return ", ".join(names)


def _by_task(values: dict[str, Any], among: Sequence[str] = TASKS) -> str:
    """``{task: value}`` as one text: the value alone if every task of ``among`` has it, else ``value (tasks),
    ...`` (a value of some tasks only, those a base runs on: ``16 (graph)``). ``among``: the tasks the text speaks
    of (a preset only some tasks have, ``maml-paper``, speaks of those)."""
    by_value: dict[str, list[str]] = {}
    for t in (t for t in TASKS if t in values):
        by_value.setdefault(show(values[t]), []).append(t)
    if len(by_value) == 1 and set(values) == set(among):
        return next(iter(by_value))
    return ", ".join(f"{v} ({task_group(ts)})" for v, ts in by_value.items())


@functools.lru_cache(maxsize=2)
def _resolved(every: bool = False) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """``{(preset, task, method, base): config values}``: every method on the ``maml`` base and every base with
    the ``none`` method (what the help describes), or with ``every`` all pairs (what the tests check); a base on
    the tasks it runs on (:meth:`cml.bases.BaseLearner.runs_on`)."""
    none, maml = METHODS[0], inspect.signature(preset).parameters["base"].default
    pairs = ([(m, b) for m in METHODS for b in BASES] if every else
             list(dict.fromkeys([(m, maml) for m in METHODS] + [(none, b) for b in BASES])))
    names = [f.name for f in dataclasses.fields(Config)]
    # Every task that needs a data path gets a dummy one to validate; the path itself is never read.
    return {(p, t, m, b): {n: getattr(cfg, n) for n in names}
            for p in PRESETS for t in TASKS if p in TASK_TABLE[t].family.presets
            for m, b in pairs if get_base(b).runs_on(TASK_TABLE[t].family)
            for cfg in [preset(p, t, m, base=b, data="DATA" if TASK_TABLE[t].needs_data else None)]}


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

        # Only the tasks that read the field (its FieldInfo.tasks): another task's value is never used.
        reading = _reading(name)
        keys = [k for k in resolved if k[1] in reading]
        if len({repr(value(*k)) for k in keys}) == 1:
            out[name] = show(value(*keys[0]))
            continue
        texts: dict[str, str] = {}
        for p in PRESETS:
            tasks = [t for t in reading if (p, t, none, maml) in resolved]
            if not tasks:
                continue
            if len(tasks) < len(reading) and any(
                    all(value(p, *k[1:]) == value(q, *k[1:]) for k in keys if k[0] == p)
                    for q in PRESETS if q != p and all((q, t, none, maml) in resolved for t in reading)):
                continue  # a preset of some tasks (maml-paper) that says what a preset of every task says there
            baseline = {t: value(p, t, none, maml) for t in tasks}
            text = _by_task(baseline, tasks)
            for m in METHODS:
                per_task = {t: value(p, t, m, maml) for t in tasks}
                if per_task != baseline:
                    text += f"; --method {m}: {_by_task(per_task, tasks)}"
            for b in BASES:
                per_task = {t: value(p, t, none, b) for t in tasks if (p, t, none, b) in resolved}
                if per_task != {t: baseline[t] for t in per_task}:
                    text += f"; --base {b}: {_by_task(per_task, tasks)}"
            texts[p] = text
        out[name] = (next(iter(texts.values())) if len(set(texts.values())) == 1 else
                     " | ".join(f"--preset {p}: {text}" for p, text in texts.items()))
    return out


def _reading(name: str) -> list[str]:
    """The tasks that read a field (:attr:`cml.fields.FieldInfo.tasks`: their families; empty: every task)."""
    families = info(Config, name).tasks
    return [t for t in TASKS if not families or TASK_TABLE[t].family.name in families]


def _split_values() -> str:
    """The ``split`` values and what the default is, from the task table (:attr:`cml.tasks.TaskEntry.splits`)."""
    named = [(n, e.splits) for n, e in TASK_TABLE.items() if e.splits]
    values = "; ".join(f"{n}: {', '.join(s)}" for n, s in named)
    own = "; ".join(f"{n}'s is {s[0]}" for n, s in named)
    return (f" One of: default, or per data set {values} (a data set not named has one split). Default: each data "
            f"set's own split (the value default; {own}).")


def field_help(name: str, defaults: dict[str, str] | None = None) -> str:
    """The ``--help`` text of one config field: description, allowed values, default.

    Raises:
        KeyError: if ``name`` is not a config field.
    """
    defaults = preset_defaults() if defaults is None else defaults
    text = field_description(name).rstrip(".") + "."
    if name in FIELD_CHOICES:
        text += f" One of: {', '.join(show(c) for c in FIELD_CHOICES[name])}"
        if name in FIELD_ALIASES:
            text += f" (older names, still read: {', '.join(FIELD_ALIASES[name])})"
        text += "."
    if name == "split":  # its values are the data sets' (the task table's), not one closed set
        text += _split_values()
    elif name in defaults:
        text += f" Default: {defaults[name]}."
    return text.replace("%", "%%")  # argparse formats help strings with %
