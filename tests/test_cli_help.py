"""`--help`: every flag of every command has a description, and every config flag's help is generated from the
field's metadata (cml.fields.FieldInfo) with its default (per preset, task group, method and base learner) and
allowed values, listed under the field's group."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from cml.cli import build_parser
from cml.config import BASES, FIELD_ALIASES, FIELD_CHOICES, METHODS, PRESETS, TASKS, Config, field_description
from cml.errors import InternalError
from cml.fieldhelp import _resolved, field_help, preset_defaults
from cml.fields import field_types, info, option


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
    for name, action in config_flags.items():
        # The field's own words, then the allowed values and the default.
        assert info(Config, name).help.split(".")[0] in action.help, name
        assert "Default: " in action.help or action.required, name  # --method and --task have no default
        for choice in FIELD_CHOICES.get(name, ()):
            assert choice in action.help, (name, choice)
    text = " ".join(parser.format_help().split())  # argparse renders every help string (a stray % would raise)
    assert "Default: --preset quick: 3000 (sinusoid), 600 (image tasks), 300 (graph)" in text
    for name in ("base", "method") if command == "train" else ():  # the axes: every allowed and still-read value
        action = next(a for a in parser._actions if a.dest == name)
        assert all(v in action.help for v in FIELD_CHOICES[name] + FIELD_ALIASES.get(name, ())), name


def test_every_config_field_has_help_and_a_group_and_is_in_the_docstring():
    lines = [line.strip() for line in Config.__doc__.splitlines()]
    for f in dataclasses.fields(Config):
        meta = info(Config, f.name)
        assert meta.help.strip() and meta.group.strip(), f.name
        # The generated Attributes section says what --help says (help(Config), an editor's tooltip).
        assert any(line.startswith(f"{f.name}: {field_description(f.name)[:40]}") for line in lines), f.name
    with pytest.raises(KeyError):
        field_help("not_a_field")


def test_a_field_without_metadata_or_with_an_unreadable_type_fails_naming_itself():
    @dataclasses.dataclass(frozen=True)
    class Bare:
        steps: int = 3

    with pytest.raises(InternalError, match="Bare.steps is declared without cml.fields.option"):
        field_types(Bare)

    @dataclasses.dataclass(frozen=True)
    class Unreadable:
        table: dict = option(None, "a mapping", group="g")

    with pytest.raises(InternalError, match="Unreadable.table: annotation .* is not supported"):
        field_types(Unreadable)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_config_flags_are_listed_under_their_group(command):
    parser = _subparser(command)
    groups = {g.title: [a.dest for a in g._group_actions] for g in parser._action_groups
              if g.title and g.title.startswith("config overrides: ")}
    for title, dests in groups.items():
        assert {info(Config, d).group for d in dests} == {title.removeprefix("config overrides: ")}, title
    listed = [d for dests in groups.values() for d in dests]
    skipped = {"base", "method", "task"} | ({"seed"} if command == "sweep" else set())
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(Config) if f.name not in skipped)
    # A field read by one base learner says which, from the base's own table row.
    assert next(a for a in parser._actions if a.dest == "msl").help.startswith("MAML++: the multi-step loss")
    assert next(a for a in parser._actions if a.dest == "hops").help.startswith("graph task: radius")


def test_defaults_come_from_the_presets():
    defaults = preset_defaults()
    assert defaults["seed"] == "0" and defaults["data"] == "none"
    # the graph bases' own (first-order inner steps), named by the tasks they run on
    assert defaults["first_order"] == "false; --base gmeta: true (graph); --base amm-gnn: true (graph)"
    assert defaults["noise_std"] == "0.0; --method noisy: 0.5"  # a method-specific preset value
    assert "84 (miniimagenet), 32 (cifar-fs, fc100, flower)" in defaults["image_size"]  # task-specific ones
    assert defaults["msl"] == "false; --base maml++: true"  # base-specific ones
    assert defaults["sharp_rho_upper"] == "0.0; --base sharp-maml: 0.05"
    assert "--base maml++: 1 (sinusoid), 5 (image tasks, graph)" in defaults["inner_steps"]
    # Only the tasks that read a field (FieldInfo.tasks): the MLP's and the GCN's width, never the Conv-4's; the
    # graph task's own group, and Tan et al.'s width under the graph bases.
    assert defaults["hidden"] == ("40 (sinusoid), 64 (graph); --base gmeta: 16 (graph); --base amm-gnn: 16 (graph)")
    assert "sinusoid" not in defaults["filters"] and "graph" not in defaults["filters"]
    assert defaults["base"] == "maml"


def test_preset_values_vary_by_method_or_by_base_never_by_both_together():
    # preset_defaults describes a value as the maml base's per method, or the none method's per base; a preset
    # value that depended on a (method, base) pair jointly would be misdescribed.
    none, maml = METHODS[0], "maml"
    resolved = _resolved(every=True)
    for name in (f.name for f in dataclasses.fields(Config) if f.name not in ("base", "method", "task", "data")):
        for p in PRESETS:
            for t in TASKS:
                if (p, t, none, maml) not in resolved:  # a preset of some tasks only (maml-paper: sinusoid)
                    continue
                plain = resolved[(p, t, none, maml)][name]
                for m in METHODS:
                    for b in (b for b in BASES if (p, t, none, b) in resolved):  # a base on the tasks it runs on
                        by_method = resolved[(p, t, m, maml)][name]
                        by_base = resolved[(p, t, none, b)][name]
                        assert by_method == plain or by_base == plain, (name, p, t, m, b)
                        expected = by_method if by_method != plain else by_base
                        assert resolved[(p, t, m, b)][name] == expected, (name, p, t, m, b)
