"""The paper's numbers as data (cml/paper.py): transcribed from the published tables (checked against the project's
copy of them, shared/paper/cml-uai2024.md), and matched to a run only when its setting is the value's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cml.paper import METRICS, PAPER, TABLES, matching

PAPER_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "cml-uai2024.md"


def _sections() -> dict[str, str]:
    if not PAPER_FILE.is_file():
        pytest.skip(f"the paper's tables are not at {PAPER_FILE}")
    text = PAPER_FILE.read_text()
    parts = re.split(r"^## Table (\d+)", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts) - 1, 2)}


def test_every_value_is_in_its_table_as_printed():
    sections = _sections()
    assert set(sections) == set(TABLES)
    for v in PAPER:
        printed = f"{v.value:.2f}" + (f" ± {v.ci:.2f}" if v.ci is not None else "")
        assert printed in sections[v.table], (v.table, v.row, printed)


def test_every_number_of_each_table_is_transcribed():
    sections = _sections()
    for table, text in sections.items():
        printed = re.findall(r"(?<!± )(?<![\d.])(\d{2}\.\d{2})", text)  # the accuracies, not their ±
        values = {f"{v.value:.2f}" for v in PAPER if v.table == table}
        assert printed and not [p for p in printed if p not in values], table
    rows = [(v.table, v.row, v.dataset, v.ways, v.shots) for v in PAPER]
    assert len(rows) == len(set(rows))  # no value twice
    assert {v.metric for v in PAPER} - {"unstated"} <= set(METRICS)


def test_a_value_matches_only_a_run_of_its_setting():
    cml_5w1s = {"task": "miniimagenet", "ways": 5, "shots": 1, "base": "maml", "method": "cml", "gamma": 1.0}
    found = {(v.table, v.metric, v.value) for v in matching(cml_5w1s, "miniimagenet")}
    assert ("1", "acc", 49.32) in found and ("1", "acc_dagger", 50.35) in found and ("5", "acc", 49.32) in found
    assert ("5", "acc", 49.07) not in found  # Table 5's gamma 0.2 value needs gamma 0.2
    assert ("5", "acc", 49.07) in {(v.table, v.metric, v.value)
                                   for v in matching({**cml_5w1s, "gamma": 0.2}, "miniimagenet")}
    assert not matching({**cml_5w1s, "shots": 5, "ways": 20}, "miniimagenet")
    assert not matching({**cml_5w1s, "backbone": "resnet12"}, "miniimagenet")  # Table 9 has no MiniImagenet
    resnet = matching({"ways": 5, "shots": 5, "base": "maml", "method": "cml", "backbone": "resnet12"}, "flower")
    assert [v.value for v in resnet] == [81.15]
    graph = matching({"task": "graph", "ways": 2, "shots": 1, "base": "gmeta", "method": "cml"}, "citeseer")
    assert [v.value for v in graph] == [61.17]
    assert not matching({"task": "fonts", "ways": 5, "shots": 1, "base": "maml", "method": "cml"}, "fonts")
