"""`--help`: every flag of every command has a description, and every config flag's help is generated from the
Config docstring with its default (per preset, task group, method and base learner) and allowed values."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from cml.cli import build_parser
from cml.config import BASES, FIELD_ALIASES, FIELD_CHOICES, METHODS, PRESETS, TASKS, Config
from cml.fieldhelp import _resolved, attribute_docs, field_help, preset_defaults


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _commands(parser: argparse.ArgumentParser, name: str = "cml"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _commands(p, f"{name} {sub}")


def test_no_flag_of_any_command_lacks_help():
    missing = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}"
               for name, parser in _commands(build_parser()) for a in parser._actions
               if a.dest != "help" and not isinstance(a, argparse._SubParsersAction)
               and not (a.help and a.help.strip())]
    assert not missing, f"flags without help: {missing}"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_no_flag_lacks_help(command):
    parser = _subparser(command)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    missing = [a.option_strings[0] for a in flags if not (a.help and a.help.strip())]
    assert not missing, f"{command} flags without help: {missing}"
    config_flags = {a.dest: a for a in flags if a.dest in {f.name for f in dataclasses.fields(Config)}}
    assert len(config_flags) >= 30
    docs = attribute_docs(Config)
    for name, action in config_flags.items():
        # The docstring's words, then the allowed values and the default.
        assert docs[name].split(".")[0] in action.help, name
        assert "Default: " in action.help or action.required, name  # --method and --task have no default
        for choice in FIELD_CHOICES.get(name, ()):
            assert choice in action.help, (name, choice)
    text = " ".join(parser.format_help().split())  # argparse renders every help string (a stray % would raise)
    assert "Default: --preset quick: 3000 (sinusoid), 600 (image tasks), 300 (graph)" in text
    for name in ("base", "method") if command == "train" else ():  # the axes: every allowed and still-read value
        action = next(a for a in parser._actions if a.dest == name)
        assert all(v in action.help for v in FIELD_CHOICES[name] + FIELD_ALIASES.get(name, ())), name


def test_every_config_field_is_documented_once_in_the_docstring():
    docs = attribute_docs(Config)
    fields = {f.name for f in dataclasses.fields(Config)}
    assert set(docs) == fields  # nothing undocumented, nothing documented that does not exist


def test_docstring_parser_reads_grouped_and_continued_entries():
    class Example:
        """Example.

        Attributes:
            a, b: first line,
                continued ``here``.
            c: one line.

        Raises:
            Nothing: not an attribute.
        """

    assert attribute_docs(Example) == {"a": "first line, continued here.", "b": "first line, continued here.",
                                       "c": "one line."}

    class Undocumented:
        """No attributes."""

    with pytest.raises(ValueError, match="no 'Attributes:' section"):
        attribute_docs(Undocumented)
    with pytest.raises(KeyError, match="document it there"):
        field_help("not_a_field")


def test_defaults_come_from_the_presets():
    defaults = preset_defaults()
    assert defaults["seed"] == "0" and defaults["first_order"] == "false" and defaults["data"] == "none"
    assert defaults["noise_std"] == "0.0; --method noisy: 0.5"  # a method-specific preset value
    assert "84 (miniimagenet, flower)" in defaults["image_size"]  # a task-specific one
    assert defaults["msl"] == "false; --base maml++: true"  # base-specific ones
    assert defaults["sharp_rho_upper"] == "0.0; --base sharp-maml: 0.05"
    assert "--base maml++: 1 (sinusoid), 5 (image tasks, graph)" in defaults["inner_steps"]
    assert defaults["hidden"] == "40 (sinusoid, image tasks), 64 (graph)"  # the graph task's own group
    assert defaults["base"] == "maml"


def test_preset_values_vary_by_method_or_by_base_never_by_both_together():
    # preset_defaults describes a value as the maml base's per method, or the none method's per base; a preset
    # value that depended on a (method, base) pair jointly would be misdescribed.
    none, maml = METHODS[0], "maml"
    resolved = _resolved(every=True)
    for name in (f.name for f in dataclasses.fields(Config) if f.name not in ("base", "method", "task", "data")):
        for p in PRESETS:
            for t in TASKS:
                plain = resolved[(p, t, none, maml)][name]
                for m in METHODS:
                    for b in BASES:
                        by_method = resolved[(p, t, m, maml)][name]
                        by_base = resolved[(p, t, none, b)][name]
                        assert by_method == plain or by_base == plain, (name, p, t, m, b)
                        expected = by_method if by_method != plain else by_base
                        assert resolved[(p, t, m, b)][name] == expected, (name, p, t, m, b)
