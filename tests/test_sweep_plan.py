"""A sweep folder written by commands asking for different seeds per method (the demo's fonts sweep: Figure 3's
methods on two seeds, Table 4's baselines on one) names the cells asked for in ``sweep.json``; readers then report
only those as unfinished (issue 20: the demo ended warning the user about cells it never meant to train)."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from cml import records
from cml.cli import main
from cml.config import preset
from cml.demo import SWEEPS
from cml.errors import RunFolderError
from cml.methods import variant_key
from cml.sweep import _spec, _write_spec, plan_sweep
from figures.runs import find_runs

TINY = ["--task", "sinusoid", "--steps", "2", "--meta-batch", "2", "--log-interval", "1", "--val-tasks", "2",
        "--test-tasks", "3", "--no-progress"]


def sweep(capsys, out, methods, seeds):
    code = main(["sweep", "--methods", methods, "--seeds", seeds, *TINY, "--out", str(out)])
    capsys.readouterr()
    assert code == 0


def states(capsys, folder):
    assert main(["runs", str(folder)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(folder))]
    return {line.split()[0].rsplit("/", 1)[-1]: line.rsplit("  ", 1)[-1].strip() for line in rows}


def test_cells_no_command_asked_for_are_not_reported_but_a_missing_asked_one_is(tmp_path, capsys):
    out = tmp_path / "s"
    sweep(capsys, out, "none,cml", "0,1")
    assert "cells" not in records.read_json(out / records.SWEEP)  # one command, the whole grid: as before
    sweep(capsys, out, "noisy", "0")
    spec = records.read_json(out / records.SWEEP)
    assert spec["methods"] == ["none", "cml", "noisy"] and spec["seeds"] == [0, 1]
    assert spec["cells"] == ["maml-s0", "maml-s1", "cml-s0", "cml-s1", "noisy-maml-s0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cells not started" warning: noisy-maml-s1 was never asked for
        assert len(find_runs([out])) == 5
    assert states(capsys, out) == dict.fromkeys(spec["cells"], "finished")

    # A cell that was asked for and has no folder (deleted here; in use: a sweep still running, or killed) is
    # still reported, as before.
    shutil.rmtree(out / "cml-s1")
    with pytest.warns(UserWarning, match=r"sweep .*: 1 of 5 cells not started \(cml-s1\)"):
        assert len(find_runs([out])) == 4
    assert states(capsys, out)["cml-s1"] == "not started"

    # Once the commands have asked for every cell of the grid, sweep.json is what one command asking for all of
    # it writes: a folder that never needed the list never holds one.
    sweep(capsys, out, "cml,noisy", "1")
    whole = tmp_path / "whole"
    sweep(capsys, whole, "none,cml,noisy", "0,1")
    assert (out / records.SWEEP).read_bytes() == (whole / records.SWEEP).read_bytes()


def test_a_damaged_cells_list_is_named(tmp_path, capsys):
    out = tmp_path / "s"
    sweep(capsys, out, "none", "0")
    spec = records.read_json(out / records.SWEEP)
    (out / records.SWEEP).write_text(json.dumps({**spec, "cells": "maml-s0"}))
    code = main(["sweep", "--methods", "none", "--seeds", "0", *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "sweep.json" in err and "cells" in err and "--restart" in err
    with pytest.raises(RunFolderError, match="cells"):
        plan_sweep(out, preset("quick", "sinusoid", "none"), ["none"], [0])
    # A grid naming no cells (a hand-edited file: MAML's legacy method name under BOIL) is named too, not a
    # traceback from the merge.
    (out / records.SWEEP).write_text(json.dumps({**spec, "bases": ["boil"], "methods": ["noisy-maml"]}))
    code = main(["sweep", "--methods", "none", "--seeds", "0", *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "does not name cml cells" in err and "noisy-maml" in err and len(err.strip().splitlines()) == 1


def test_the_demo_names_the_cells_it_trains_in_its_fonts_sweep(tmp_path):
    """The demo's plan (cml.demo.SWEEPS) is what sweep.json would record for its two fonts sweeps."""
    for task, _, parts in SWEEPS:
        folder = tmp_path / task
        folder.mkdir()
        base = preset("quick", "sinusoid", "none")  # only the names matter here; one base config per folder
        for methods, seeds in parts:
            _write_spec(folder, _spec(base, ["maml"], methods, seeds, {}, None), restart=False)
        spec = records.read_json(folder / records.SWEEP)
        asked = [f"{variant_key('maml', m)}-s{s}" for methods, seeds in parts for m in methods for s in seeds]
        if len(parts) == 1:
            assert "cells" not in spec
        else:
            assert sorted(spec["cells"]) == sorted(asked)
