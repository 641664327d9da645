"""`--help` of train and sweep: every flag has a description, and every config flag's help is generated from the
Config docstring with its default and allowed values."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from cml.cli import build_parser
from cml.config import FIELD_CHOICES, Config
from cml.fieldhelp import attribute_docs, field_help, preset_defaults


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


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
    text = parser.format_help()  # argparse renders every help string (a stray % would raise here)
    assert "Default: --preset quick: 600 (image tasks), 3000 (sinusoid)" in " ".join(text.split()) or \
        "Default: --preset quick: 3000 (sinusoid), 600 (image tasks)" in " ".join(text.split())


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
    assert "noisy-maml: 0.5" in defaults["noise_std"]  # a method-specific preset value
    assert "84 (miniimagenet, flower)" in defaults["image_size"]  # a task-specific one
