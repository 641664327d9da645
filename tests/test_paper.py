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


def test_cml_paper_prints_every_value_with_a_command_that_builds_its_cell(capsys):
    from cml.cli import _config_from_args, build_parser, main
    from cml.paper import reproduce

    assert main(["paper"]) == 0
    out = capsys.readouterr().out
    for table in TABLES:
        assert f"Table {table}: {TABLES[table]}" in out
    runnable = 0
    for v in PAPER:
        command, what = reproduce(v)
        line = f"{v.value:.2f}" + (f" ± {v.ci:.2f}" if v.ci is not None else "")
        assert line in out and f"  {v.row} — " in out
        if command is None:
            assert f"not runnable here: {what}" in out
            continue
        runnable += 1
        assert command in out and f"read {v.metric} in its test.json" in what
        # The command, parsed by the CLI's own parser, builds a config whose setting is exactly the value's.
        argv = command.split()[3:]  # after "python -m cml"
        args = build_parser().parse_args(argv)
        cfg = _config_from_args(args)
        assert v in matching(cfg.to_dict(), cfg.family.paper_dataset(cfg.to_dict()), v.metric), v
        assert (cfg.task, cfg.ways, cfg.shots, cfg.base, cfg.method) == (v.task, v.ways, v.shots, v.base, v.method)
        # It passes every check a run makes before it reads the data (a graph split needs its --data file).
        assert main([*argv, "--dry-run"]) == 0, command
    assert runnable >= len([v for v in PAPER if v.table in ("1", "2", "4", "5")]) - 2  # Table 4's "CL" rows
    # The values this suite cannot run say why, and never print a command.
    unstated = next(v for v in PAPER if v.metric == "unstated")
    assert reproduce(unstated) == (None, "the paper does not say which prediction this row reports; no cell "
                                         "reproduces it")


def test_cml_paper_names_what_a_cell_lacks():
    from dataclasses import replace

    from cml.paper import reproduce

    base = next(v for v in PAPER if v.table == "1" and v.method == "cml" and v.shots == 1)
    assert reproduce(replace(base, base="protomaml"))[1].startswith("base learner 'protomaml' is not in this suite")
    assert reproduce(replace(base, setting={"no_such_field": 3})) == (
        None, "this suite's config has no no_such_field field yet (the value is measured at no_such_field=3)")
    assert "choices" in reproduce(replace(base, setting={"co_learner": "transformer"}))[1]
    command, _ = reproduce(replace(base, setting={"gamma": 0.2, "first_order": True}))
    assert command is not None and command.endswith("--preset paper --gamma 0.2 --first-order")


def test_cml_paper_one_table_and_a_bad_table(capsys):
    from cml.cli import main

    assert main(["paper", "--table", "2"]) == 0
    out = capsys.readouterr().out
    assert "Table 2:" in out and "Table 1:" not in out and "--task omniglot" in out and "--task flower" in out
    assert main(["paper", "--table", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --table 6: the paper has no Table 6; its tables: 1, 2, 3, 4, 5, 7, 8, 9")


def test_cml_paper_needs_no_torch():
    import subprocess
    import sys

    code = "import sys; from cml.cli import main; main(['paper']); print('torch' in sys.modules, file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stderr.strip() == "False" and "Table 9" in done.stdout
