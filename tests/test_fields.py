"""Typed config fields (cml.fields): every supported annotation, added to a copy of Config, builds and is read
the same way from CLI text, --grid text and JSON; the one parser's mistakes name the field, the value and what it
takes; the metadata's task families agree with the presets."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Literal

import pytest

from cml import records
from cml.cli import given_fields, read_config_file
from cml.config import TASK_FAMILIES, Config, ConfigError, task_family
from cml.fieldhelp import _resolved
from cml.fields import check_keys, coerce, field_types, info, option, parse_text, show, split_list
from cml.sweep import parse_grid


@dataclasses.dataclass(frozen=True)
class Extended(Config):
    """Config with a field of every supported annotation (as the next features would add them)."""

    proto_temperature: int | None = option(None, "a prototypical loss's temperature", group="method")
    scale: float | None = option(None, "a scale", group="method")
    note: str | None = option(None, "a note", group="records")
    flag: bool = option(False, "a switch", group="model")
    label: str = option("plain", "a label", group="records")
    mode: Literal["fast", "exact"] = option("fast", "how", group="engine and run")
    level: Literal[1, 2, 3] = option(1, "a level", group="model")
    pick: Literal["a", "b"] | None = option(None, "a choice or none", group="model")
    widths: tuple[int, ...] = option((64, 64), "widths of the blocks", group="model")
    ratios: tuple[float, ...] | None = option(None, "ratios, or none", group="model")
    pair: tuple[float, str] = option((0.5, "x"), "a number and a name", group="model")


# One non-default value of each new field, as Python values, as CLI/--grid text and as JSON.
VALUES = dict(proto_temperature=3, scale=0.25, note="hello", flag=True, label="other", mode="exact", level=3, pick="b",
              widths=(32, 16, 8), ratios=(0.1, 0.9), pair=(2.0, "y"))
TEXTS = dict(proto_temperature="3", scale="0.25", note="hello", flag="true", label="other", mode="exact", level="3",
             pick="b", widths="32,16,8", ratios="[0.1,0.9]", pair="2,y")


def test_every_supported_annotation_is_resolved_from_its_type_not_its_spelling():
    types = field_types(Extended)
    assert types["proto_temperature"] == int | None and types["widths"] == tuple[int, ...]
    assert types["mode"] == Literal["fast", "exact"] and types["pair"] == tuple[float, str]
    cfg = Extended()  # the field the old string tables could not read ('int | None') builds
    assert cfg.proto_temperature is None and cfg.widths == (64, 64) and cfg.level == 1
    assert Extended(**VALUES).to_dict() == {**Config().to_dict(), **VALUES}
    assert Config().to_dict() == {k: v for k, v in Extended().to_dict().items() if k in Config().to_dict()}


def test_json_values_build_it_and_a_config_round_trips(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**VALUES, "task": "sinusoid", "method": "cml"}))  # tuples are JSON lists
    values = read_config_file(path, cls=Extended)
    assert values["widths"] == [32, 16, 8]
    cfg = Extended.from_dict(values)
    assert cfg.widths == (32, 16, 8) and cfg.pair == (2.0, "y") and cfg.ratios == (0.1, 0.9)
    assert all(getattr(cfg, k) == v for k, v in VALUES.items())
    # Written and read back (a run's config.json): the same config, tuples again.
    assert Extended.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.replace(level=2).level == 2 and type(cfg.replace(level=2)) is Extended
    # Config itself does not know the new keys: the one unknown-key check says so, naming the file.
    with pytest.raises(ConfigError, match=r"--config .*config.json: unknown key\(s\) flag, label, level, mode"):
        read_config_file(path)


def test_cli_text_builds_it():
    # argparse keeps a config flag's value as text (bool flags are already booleans); given_fields types it.
    args = argparse.Namespace(**{f.name: None for f in dataclasses.fields(Extended)})
    for name, text in TEXTS.items():
        setattr(args, name, True if name == "flag" else text)
    given = given_fields(args, cls=Extended)
    assert given == VALUES
    assert Extended.from_dict({**Extended().to_dict(), **given}) == Extended(**VALUES)
    # "none" is None wherever the type allows it, so a flag can set a field back to null.
    args.proto_temperature, args.ratios, args.pick = "none", "null", "None"
    assert {k: given_fields(args, cls=Extended)[k] for k in ("proto_temperature", "ratios", "pick")} == \
        dict(proto_temperature=None, ratios=None, pick=None)


def test_grid_text_builds_it():
    grid = parse_grid(["proto_temperature=none,2", "widths=[1,2],[3],[]", "mode=fast,exact", "level=1,3",
                       "pair=[0.5,b]", "ratios=none,[0.1,0.2]", "flag=true,false", "pick=a,none"], cls=Extended)
    assert grid == {"proto_temperature": [None, 2], "widths": [(1, 2), (3,), ()], "mode": ["fast", "exact"],
                    "level": [1, 3], "pair": [(0.5, "b")], "ratios": [None, (0.1, 0.2)], "flag": [True, False],
                    "pick": ["a", None]}
    start = Extended()
    for point in records.grid_points(grid):
        cfg = start.replace(**point)
        assert all(getattr(cfg, k) == v for k, v in point.items())
    # A tuple value names its cell folder by its items, and sweep.json gives tuples back.
    assert records.cell_name("cml", {"widths": (1, 2), "level": 3}) == "cml-widths_1,2-level_3"
    spec = json.loads(json.dumps({"grid": records.grid_spec({"widths": [(1, 2), (3,)]})}))
    assert records.spec_grid(spec) == {"widths": [(1, 2), (3,)]}


@pytest.mark.parametrize("name", list(VALUES) + [f.name for f in dataclasses.fields(Config)])
def test_a_value_shown_as_the_cli_writes_it_parses_back(name):
    for value in (getattr(Extended(), name), VALUES.get(name, getattr(Extended(), name))):
        assert parse_text(Extended, name, show(value), f"--{name}") == value


@pytest.mark.parametrize("where, name, text, message", [
    ("--grid level=4", "level", "4", "--grid level=4: unknown level '4'; choose one of: 1, 2, 3"),
    ("--mode", "mode", "quick", "--mode: unknown mode 'quick'; choose one of: fast, exact"),
    ("--widths", "widths", "[1,x]", "--widths: widths takes comma-separated integers, got '[1,x]'"),
    ("--pair", "pair", "1", "--pair: pair takes comma-separated 2 values (a finite number, a string), got '1'"),
    ("--proto-temperature", "proto_temperature", "2.5",
     "--proto-temperature: proto_temperature takes an integer or none, got '2.5'"),
    ("--scale", "scale", "inf", "--scale: scale takes a finite number or none, got 'inf'"),
    ("--flag", "flag", "maybe", "--flag: flag takes true or false, got 'maybe'"),
    ("--ratios", "ratios", "[0.1,nan]", "--ratios: ratios takes comma-separated finite numbers or none"),
])
def test_bad_text_names_the_flag_the_field_and_what_it_takes(where, name, text, message):
    with pytest.raises(ConfigError) as info_:
        parse_text(Extended, name, text, where)
    assert str(info_.value).startswith(message)


@pytest.mark.parametrize("changes, message", [
    (dict(widths=3), "widths must be a list of integers, got 3"),
    (dict(widths=[1, 2.5]), "widths must be a list of integers, got [1, 2.5]"),
    (dict(pair=[1.0]), "pair must be a list of 2 values (a number, a string), got [1.0]"),
    (dict(level=True), "level must be one of 1, 2, 3, got True"),  # a bool is not the int 1
    (dict(level=4), "unknown level 4; choose one of: 1, 2, 3"),
    (dict(pick="c"), "unknown pick 'c'; choose one of: a, b"),
    (dict(proto_temperature=1.5), "proto_temperature must be an integer or null, got 1.5"),
    (dict(note=3), "note must be a string or null, got 3"),
])
def test_bad_json_values_name_the_field(changes, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Extended.from_dict({**Extended().to_dict(), **changes})


def test_one_unknown_key_check_and_one_choice_check_for_every_source(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: unknown key\(s\) 3, gama; known keys: backend"):
        check_keys(Config, {"gama": 1, 3: 2, "seed": 0}, "config")
    with pytest.raises(ConfigError, match=r"^unknown co_learner 'x'; choose one of: linear, conv, mlp$"):
        Config(co_learner="x")
    with pytest.raises(ConfigError, match=r"^--co-learner: unknown co_learner 'x'; choose one of: linear, conv, mlp$"):
        parse_text(Config, "co_learner", "x", "--co-learner")
    with pytest.raises(ConfigError, match=r"^--grid co_learner=x: unknown co_learner 'x'"):
        parse_grid(["co_learner=x"])
    assert coerce("gamma", float, 1) == 1 and isinstance(coerce("gamma", float, 1), int)  # config.json unchanged


def test_grid_lists_split_outside_brackets():
    assert split_list("[1,2],3, (4,5) ,") == ["[1,2]", "3", "(4,5)", ""]
    assert split_list("a") == ["a"]


def test_a_field_of_one_task_family_is_left_at_its_default_by_every_other_familys_presets():
    # The metadata's task families are true of the presets: no preset sets a field for a family that ignores it.
    defaults = Config()
    for f in dataclasses.fields(Config):
        families = info(Config, f.name).tasks
        assert set(families) <= set(TASK_FAMILIES), f.name
        if not families:
            continue
        for (p, t, m, b), values in _resolved(every=True).items():
            if task_family(t) not in families:
                assert values[f.name] == getattr(defaults, f.name), (f.name, p, t, m, b)
