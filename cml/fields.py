"""Typed config fields: each field's metadata, and the one value parser of the CLI, ``--grid`` and JSON.

A field of a config dataclass is declared with :func:`option`, which puts a :class:`FieldInfo` (its help text,
``--help`` group, allowed values, the task families it applies to) in the field's metadata::

    co_learner: Literal["linear", "conv"] = option("linear", "the co-learner head", group="method")

Its type is its annotation, resolved with :func:`typing.get_type_hints` (never by its spelling). The supported
annotations are ``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` (its values are the field's choices),
``tuple[X, ...]`` and ``tuple[X, Y, ...]`` of those, and ``X | None`` of any of them; :func:`field_types`
refuses any other when the class is first used, naming the field. A closed set of values is a ``Literal``; a
set read from a registry (base learners, methods, tasks, engines) is a ``str`` with ``choices=``.

Values reach a config in two forms, and both go through the one type walker here:

- text (a CLI flag's value, one value of ``--grid FIELD=v1,v2``): :func:`parse_text`. ``none``/``null`` is None
  where the type allows it; a boolean is ``true``/``yes``/``1`` or ``false``/``no``/``0``; a number must be
  finite; a tuple is its items separated by commas, optionally in brackets (``[1,2]``; in a ``--grid`` list,
  brackets keep a tuple's commas from separating grid values: ``--grid widths=[1,2],[3]``);
- Python or JSON values (``--config FILE``, ``config.json``, ``Config(...)``): :func:`coerce`, which checks the
  type and turns a JSON list into the tuple the field declares (an int stays an int in a float field, so that a
  config written back is byte for byte the file read).

Every mistake is a :class:`cml.errors.ConfigError` naming the field, the value and what it takes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from .errors import ConfigError, InternalError

__all__ = ["FieldInfo", "option", "attributes_doc", "info", "field_types", "choices", "describe", "coerce",
           "parse_text", "split_list", "check_choice", "check_keys", "show"]

#: The metadata key a field's :class:`FieldInfo` is stored under.
METADATA_KEY = "cml"
_TRUE, _FALSE, _NONE = ("true", "yes", "1"), ("false", "no", "0"), ("none", "null")
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class FieldInfo:
    """What a config field is, beyond its type and default.

    Attributes:
        help: the one description of the field (``--help`` prints it with the default and the allowed values).
        group: the ``--help`` section the flag is listed in.
        choices: the allowed values of a ``str`` field whose values come from a registry; a ``Literal`` field's
            choices are its values (leave this empty).
        aliases: older values the field still reads (listed by ``--help`` beside the choices).
        tasks: the task families (``sinusoid``, ``image``, ``graph``) the field is read for; empty: every task.
    """

    help: str
    group: str
    choices: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()


def option(default: Any, help: str, *, group: str, choices: Sequence[Any] = (), aliases: Sequence[str] = (),
           tasks: Sequence[str] = ()) -> Any:
    """A dataclass field with its :class:`FieldInfo` (the default must be immutable: configs are frozen).

    Returns:
        A :func:`dataclasses.field`, typed ``Any`` as that is, so that ``x: int = option(...)`` type-checks.
    """
    meta = FieldInfo(help=help, group=group, choices=tuple(choices), aliases=tuple(aliases), tasks=tuple(tasks))
    return dataclasses.field(default=default, metadata={METADATA_KEY: meta})


def attributes_doc(cls: type, describe_field: Callable[[str], str] | None = None) -> str:
    """A Google-style ``Attributes:`` section of every field's description, for the class docstring
    (``help(Config)``, an editor's tooltip) to say what ``--help`` says.

    Args:
        describe_field: a field's description from its name (default: its :attr:`FieldInfo.help`).
    """
    lines = ["    Attributes:"]
    for name, meta in _infos(cls).items():
        text = describe_field(name) if describe_field else meta.help
        lines += textwrap.wrap(f"{name}: {text}.", 116, initial_indent=" " * 8, subsequent_indent=" " * 12,
                               break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def info(cls: type, name: str) -> FieldInfo:
    """The :class:`FieldInfo` of field ``name`` of the dataclass ``cls``.

    Raises:
        KeyError: if ``cls`` has no field ``name``.
    """
    return _infos(cls)[name]


@functools.cache
def _infos(cls: type) -> dict[str, FieldInfo]:
    out = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(METADATA_KEY)
        if not isinstance(meta, FieldInfo):
            raise InternalError(f"{cls.__name__}.{f.name} is declared without cml.fields.option(...): give it a "
                                f"help text and a group")
        out[f.name] = meta
    return out


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``{field: type}`` of the dataclass ``cls``, from its resolved annotations, every one checked supported.

    Raises:
        InternalError: naming the field, if an annotation is not one :mod:`cml.fields` can parse, or a field has
            no :class:`FieldInfo`.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        problem = _unsupported(tp)
        if problem:
            raise InternalError(f"{cls.__name__}.{f.name}: annotation {tp!r} is not supported ({problem}); use "
                                f"bool, int, float, str, Literal[...], tuple[...] of those, or X | None")
        out[f.name] = tp
    _infos(cls)
    return out


def _optional(tp: Any) -> Any | None:
    """``X`` if ``tp`` is ``X | None`` (or ``Optional[X]``), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _tuple_items(tp: Any) -> tuple[Any, ...] | None:
    """The item types of a ``tuple[...]`` annotation (``(X, Ellipsis)`` for ``tuple[X, ...]``), else None."""
    return typing.get_args(tp) if typing.get_origin(tp) is tuple else None


def _unsupported(tp: Any, inner: bool = False) -> str:
    if tp in _SCALARS:
        return ""
    if typing.get_origin(tp) is Literal:
        bad = [a for a in typing.get_args(tp) if type(a) not in _SCALARS]
        return f"Literal values must be bool, int, float or str, not {bad[0]!r}" if bad else ""
    inner_tp = _optional(tp)
    if inner_tp is not None:
        return "nested X | None" if _optional(inner_tp) is not None else _unsupported(inner_tp, inner)
    items = _tuple_items(tp)
    if items is not None:
        if inner:
            return "a tuple inside a tuple"
        if not items or (len(items) == 2 and items[1] is Ellipsis and items[0] is Ellipsis):
            return "a tuple needs its item types"
        return next((p for p in (_unsupported(i, True) for i in items if i is not Ellipsis) if p), "")
    return "not a scalar, Literal, tuple or X | None"


def choices(cls: type, name: str) -> tuple[Any, ...]:
    """The allowed values of a field: a ``Literal``'s values (also under ``X | None``), else its
    :attr:`FieldInfo.choices` (empty: any value of its type)."""
    tp = field_types(cls)[name]
    tp = _optional(tp) or tp
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return info(cls, name).choices


def show(value: Any) -> str:
    """A value as the CLI writes it: ``true``/``false``/``none``, a tuple's items with commas, else ``str``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(show(v) for v in value)
    return str(value)


_NOUNS = {bool: ("a boolean (true/false)", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}


def describe(tp: Any, text: bool = False, plural: bool = False) -> str:
    """What a value of type ``tp`` is, in words ("an integer", "a number or null", "a list of integers").

    Args:
        text: as typed on a command line (``true or false``, ``a finite number``, ``none`` rather than ``null``).
        plural: the plural noun (for a tuple's items).
    """
    inner = _optional(tp)
    if inner is not None:
        return f"{describe(inner, text, plural)} or {'none' if text else 'null'}"
    if typing.get_origin(tp) is Literal:
        values = ", ".join(show(a) for a in typing.get_args(tp))
        return f"{'values' if plural else 'one'} of {values}"
    items = _tuple_items(tp)
    if items is not None:
        listed = "comma-separated" if text else "a list of"
        if len(items) == 2 and items[1] is Ellipsis:
            return f"{listed} {describe(items[0], text, plural=True)}"
        return f"{listed} {len(items)} values ({', '.join(describe(i, text) for i in items)})"
    if text and tp is bool:
        return "true or false"
    if text and tp is float:
        return "finite numbers" if plural else "a finite number"
    return _NOUNS[tp][1 if plural else 0]


class _Mismatch(Exception):
    """A value is not of its type (turned into a ConfigError naming the field by the public functions)."""


def check_choice(what: str, value: Any, allowed: Sequence[Any]) -> None:
    """The one choice check: ``value`` must be one of ``allowed``.

    Raises:
        ConfigError: ``unknown <what> <value>; choose one of: ...``.
    """
    # A bool is not the int 1 here: Literal[1] does not take True.
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise ConfigError(f"unknown {what} {value!r}; choose one of: {', '.join(show(a) for a in allowed)}")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    inner = _optional(tp)
    if inner is not None:
        return None if value is None else _coerce(name, inner, value)
    if typing.get_origin(tp) is Literal:
        args = typing.get_args(tp)
        if not any(_is(type(a), value) for a in args):
            raise _Mismatch
        check_choice(name, value, args)
        return value
    items = _tuple_items(tp)
    if items is not None:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        kinds = [items[0]] * len(value) if len(items) == 2 and items[1] is Ellipsis else list(items)
        if len(kinds) != len(value):
            raise _Mismatch
        return tuple(_coerce(name, k, v) for k, v in zip(kinds, value))
    if not _is(tp, value):
        raise _Mismatch
    return value


def _is(tp: type, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


#: The largest magnitude of an integer field: int64, what every count, size and seed fits in (torch's own
#: sizes included); a larger one is a typo, and Python would fail to even print one of over 4,300 digits.
INT_LIMIT = 2 ** 63 - 1


def _huge(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT


def _shown(value: Any) -> str:
    # repr() of an integer of thousands of digits raises ValueError: say how long it is instead.
    if _huge(value):
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (list, tuple)) and any(_huge(v) for v in value):
        return "a list holding an integer of more than 19 digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def coerce(name: str, tp: Any, value: Any) -> Any:
    """A Python or JSON value checked against the field's type: the value itself, or the tuple a JSON list
    stands for. A ``Literal`` value must also be one of its values; an integer must be at most
    :data:`INT_LIMIT` in magnitude, and a string must hold no NUL byte (no path or name can).

    Raises:
        ConfigError: ``<name> must be <what it takes>, got <value>``, or the choice check's message.
    """
    try:
        typed = _coerce(name, tp, value)
    except _Mismatch:
        raise ConfigError(f"{name} must be {describe(tp)}, got {_shown(value)}") from None
    for v in typed if isinstance(typed, tuple) else (typed,):
        if _huge(v):
            raise ConfigError(f"{name} must be an integer of at most 19 digits (below 2**63), got {_shown(v)}")
        if isinstance(v, str) and "\0" in v:
            raise ConfigError(f"{name} must not hold a NUL byte, got {_shown(v)}")
    return typed


def split_list(text: str) -> list[str]:
    """``text`` split at the commas outside brackets: ``"[1,2],3"`` is ``["[1,2]", "3"]`` (items stripped)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def _parse(name: str, tp: Any, text: str) -> Any:
    low = text.strip().lower()
    inner = _optional(tp)
    if inner is not None:
        return None if low in _NONE else _parse(name, inner, text)
    if typing.get_origin(tp) is Literal:
        args = typing.get_args(tp)
        for a in args:
            if show(a) == text.strip() or (isinstance(a, bool) and low in (_TRUE if a else _FALSE)):
                return a
        check_choice(name, text.strip(), args)  # raises, naming the allowed values
        raise _Mismatch
    items = _tuple_items(tp)
    if items is not None:
        body = text.strip()
        if body[:1] + body[-1:] in ("[]", "()"):
            body = body[1:-1]
        parts = [] if not body.strip() else split_list(body)
        kinds = [items[0]] * len(parts) if len(items) == 2 and items[1] is Ellipsis else list(items)
        if len(kinds) != len(parts):
            raise _Mismatch
        return tuple(_parse(name, k, p) for k, p in zip(kinds, parts))
    if tp is bool:
        if low in _TRUE + _FALSE:
            return low in _TRUE
        raise _Mismatch
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise _Mismatch from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise _Mismatch from None
        if not math.isfinite(value):
            raise _Mismatch
        return value
    return text


def parse_text(cls: type, name: str, text: str, where: str) -> Any:
    """The typed value of field ``name`` of ``cls`` from its text (a CLI flag's value, a ``--grid`` value).

    Args:
        where: what the user typed, for the message (``--gamma``, ``--grid gamma=0,abc``).

    Raises:
        ConfigError: ``<where>: <name> takes <what it takes>, got <text>``, or ``<where>: unknown <name> ...``
            for a value outside a ``Literal``'s.
    """
    tp = field_types(cls)[name]
    try:
        return _parse(name, tp, text)
    except _Mismatch:
        raise ConfigError(f"{where}: {name} takes {describe(tp, text=True)}, got {text!r}") from None
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def check_keys(cls: type, values: Mapping[Any, Any], source: str) -> None:
    """The one unknown-key check: every key of ``values`` must be a field of ``cls`` (a typo must not be ignored).

    Raises:
        ConfigError: ``<source>: unknown key(s) ...; known keys: ...``.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        # Sorted as text: a JSON object's keys are strings, a Python dict's may be anything.
        names = sorted(k if isinstance(k, str) else repr(k) for k in unknown)
        raise ConfigError(f"{source}: unknown key(s) {', '.join(names)}; known keys: {', '.join(sorted(known))}")
