"""Reliability, the second fault matrix (issue 19): no silent wrong number, no followed link, no traceback.

One test (or one table of cases) per numbered case of the issue, ``test_NN_...``: 1-7 a wrong number or lost data
with exit 0, 8-12 symbolic links and aliases, 13-24 tracebacks where one line is promised, 25-30 checks and
messages that fell short. Every test failed on the code before the issue (the README's "Reliability" says how
that was checked). Case 28 (Ray's agents outliving a killed driver) starts Ray and is in
``tests/test_sweep_engines.py`` with the other Ray tests.

Runs are tiny sinusoid runs (a dozen outer steps, a few test tasks); processes that must die are forks of the test
process (:func:`test_reliability.fork_main`), and every wait on one is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from cml import records
from cml.cli import main
from test_reliability import _enospc_on, cli, comparable, one_line_error, snapshot

ROOT = Path(__file__).resolve().parents[1]
# A tiny CML sinusoid run with every record (metrics, validation, dynamics, checkpoints, test, representations,
# fits): 12 outer steps, a checkpoint every 4.
RUN = ["--method", "cml", "--task", "sinusoid", "--steps", "12", "--meta-batch", "2", "--log-interval", "4",
       "--checkpoint-interval", "4", "--val-interval", "6", "--val-tasks", "2", "--test-tasks", "3",
       "--record-interval", "4", "--record-tasks", "2", "--no-progress"]
NAME = "run"


def train(capsys, out: Path, *extra) -> tuple[int, str, str]:
    return cli(capsys, "train", *RUN, "--out", out, "--name", NAME, *extra)


def sweep_argv(out: Path, *extra) -> list:
    return ["sweep", "--task", "sinusoid", "--methods", "maml", "--seeds", "0", "--out", out, "--steps", "6",
            "--meta-batch", "2", "--log-interval", "3", "--checkpoint-interval", "3", "--val-tasks", "2",
            "--test-tasks", "3", "--record-interval", "3", "--record-tasks", "2", "--no-progress", *extra]


def fork(argv, before=None, out: Path | None = None) -> int:
    """``main(argv)`` in a forked child (stdout and stderr into ``out``, else /dev/null); returns its PID."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            torch.set_num_threads(1)
            sys.stdout = sys.stderr = open(out or os.devnull, "w", buffering=1)
            if before is not None:
                before()
            code = main([str(a) for a in argv])
        except BaseException:  # noqa: BLE001 - the child reports a traceback, as `python -m cml` would
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    return pid


def wait_for(pid: int, timeout: float) -> int | str:
    """The child's exit code, its signal's name, or "timeout" (the child is then killed): a bounded wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "timeout"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run (12 steps) every test copies."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["train", *RUN, "--out", str(out), "--name", NAME]) == 0
    return out / NAME


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run, in ``tmp_path/runs``."""
    shutil.copytree(finished, tmp_path / "runs" / NAME)
    return tmp_path / "runs" / NAME


@pytest.fixture(scope="module")
def extended(finished, tmp_path_factory) -> Path:
    """The finished run extended with ``--resume --steps 400`` and killed (SIGKILL) right after its metrics line of
    step 20 (the last checkpoint is of step 16). The resume's rewrite of metrics.jsonl is its first write."""
    run_dir = tmp_path_factory.mktemp("extended") / NAME
    shutil.copytree(finished, run_dir)

    def kill_at_the_second_metrics_line():
        os.environ[records.FAULT_ENV] = "metrics.jsonl:3:done"

    pid = fork(["train", *RUN, "--out", run_dir.parent, "--name", NAME, "--resume", "--steps", "400"],
               before=kill_at_the_second_metrics_line)
    assert wait_for(pid, 120) == "SIGKILL"
    return run_dir


@pytest.fixture(scope="module")
def sweep_ref(tmp_path_factory) -> Path:
    """A finished one-cell sweep with recording (maml, seed 0, 6 steps)."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    assert main([str(a) for a in sweep_argv(out)]) == 0
    return out


def no_traceback(code: int, err: str) -> None:
    assert "Traceback" not in err and "Error:" not in err.replace("error:", ""), err


def pdf_text(path: Path) -> str:
    import pypdf

    return "\n".join(" ".join((p.extract_text() or "").split()) for p in pypdf.PdfReader(str(path)).pages)


def write_synthetic_run(folder: Path, config: dict, test: dict) -> None:
    folder.mkdir(parents=True)
    (folder / records.CONFIG).write_text(json.dumps(config))
    (folder / records.TEST).write_text(json.dumps(test))


# == 1-7: silent wrong results or lost data ===================================================================

def test_01_a_sweep_rerun_with_other_steps_is_refused_and_the_aggregate_pools_only_the_sweeps_cells(tmp_path,
                                                                                                    capsys):
    out = tmp_path / "sweep"
    assert cli(capsys, *sweep_argv(out))[0] == 0
    before = snapshot(out)
    # The command: more seeds, ten times the steps, into the same folder.
    line = one_line_error(*cli(capsys, *sweep_argv(out, "--seeds", "1", "--steps", "60"))[::2])
    assert "steps 60" in line and "(sweep.json: 6)" in line and "another --out" in line
    assert snapshot(out) == before and not (out / "maml-s1").exists()
    # A cell trained with other settings (here: 12 steps) that reaches the folder anyway (copied in by hand) is
    # named, never pooled: the mean over "2 seeds" would mix a 6-step and a 12-step run.
    other = tmp_path / "other"
    assert cli(capsys, *sweep_argv(other, "--seeds", "1", "--steps", "12"))[0] == 0
    shutil.copytree(other / "maml-s1", out / "maml-s1")
    spec = records.read_json(out / records.SWEEP)
    records.write_json(out / records.SWEEP, {**spec, "seeds": [0, 1]})
    code, printed, err = cli(capsys, *sweep_argv(out))
    assert code == 0, err
    entry = records.read_json(out / records.AGGREGATE)["maml"]
    alone = records.read_json(out / "maml-s0" / records.TEST)["mse"]
    assert entry["seeds"] == 1 and entry["mse"]["values"] == [alone]
    assert [d["run"] for d in entry["dropped"]] == ["maml-s1"]
    assert "steps 12 (the sweep's 6)" in entry["dropped"][0]["why"]
    assert "not pooled into maml: maml-s1" in printed


def test_02_an_extended_run_killed_keeps_no_stale_result_and_report_refuses_one(extended, tmp_path, capsys,
                                                                              finished):
    # The end records of the 12-step run are gone as soon as the run is extended: nothing claims to be its result.
    for name in (records.TEST, records.REPRESENTATIONS, records.FITS):
        assert not (extended / name).exists(), name
    assert records.read_json(extended / records.CONFIG)["steps"] == 400
    code, _, err = cli(capsys, "report", extended, "-o", tmp_path / "report.pdf")
    assert code == 0, err
    text = pdf_text(tmp_path / "report.pdf")
    stale = records.read_json(finished / records.TEST)["mse"]
    assert f"{stale:.4f}" not in text and "no finished run" in text
    # A stale test.json put back (a copy, or a run killed by an older version) is refused, naming both steps.
    run_dir = tmp_path / NAME
    shutil.copytree(extended, run_dir)
    shutil.copy(finished / records.TEST, run_dir / records.TEST)
    line = one_line_error(*cli(capsys, "report", run_dir, "-o", tmp_path / "stale.pdf")[::2])
    assert str(run_dir / records.TEST) in line and "step 12" in line and "400 steps" in line and "--resume" in line
    assert not (tmp_path / "stale.pdf").exists()


@pytest.mark.parametrize("files", [
    {"notes.txt": "my notes", "metrics.jsonl": '{"step": 1, "loss": 3}\n'},
    {"config.json": '{"lr": 3}', "metrics.jsonl": '{"step": 1, "loss": 3}\n'},
], ids=["other files", "another program's config.json"])
def test_03_train_into_a_folder_that_is_not_a_cml_run_is_refused(tmp_path, capsys, files):
    folder = tmp_path / NAME
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    before = snapshot(tmp_path)
    line = one_line_error(*train(capsys, tmp_path)[::2])
    assert f"{folder} is not a cml run folder" in line and "--out/--name" in line
    assert snapshot(tmp_path) == before


def test_04_a_damaged_last_line_of_a_finished_runs_metrics_is_not_dropped(run, capsys, tmp_path):
    metrics = run / records.METRICS
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the line of step 12, cut
    before = snapshot(run)
    line = one_line_error(*train(capsys, run.parent, "--resume")[::2])
    assert str(metrics) in line and "step 12" in line and "--restart" in line
    assert snapshot(run) == before
    # The report reads a finished run's records whole: the cut line is damage, not a write in progress.
    line = one_line_error(*cli(capsys, "report", run, "-o", tmp_path / "r.pdf")[::2])
    assert str(metrics) in line


def test_05_a_deleted_record_of_a_sweep_cell_is_refused_and_restart_writes_it_again(sweep_ref, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_ref, out)
    (out / "maml-s0" / records.DYNAMICS).unlink()
    line = one_line_error(*cli(capsys, *sweep_argv(out))[::2])
    assert str(out / "maml-s0" / records.DYNAMICS) in line and "does not exist" in line and "--restart" in line
    code, _, err = cli(capsys, *sweep_argv(out, "--restart"))
    assert code == 0, err
    assert comparable(out / "maml-s0") == comparable(sweep_ref / "maml-s0")
    assert cli(capsys, *sweep_argv(out))[0] == 0  # finished now: not tested again
    assert len(list(out.glob("maml-s0" + records.ASIDE + "*"))) == 1


def _ablation_sweep(root: Path) -> Path:
    """The issue's grid, as records: --grid gamma=0,0.5 --grid inner_lr=0.01,0.05 --seeds 0,1 (test MSE made up)."""
    folder = root / "ablation"
    folder.mkdir(parents=True)
    grid = {"gamma": [0.0, 0.5], "inner_lr": [0.01, 0.05]}
    records.write_json(folder / records.SWEEP, {"base": {"task": "sinusoid"}, "bases": ["maml"], "methods": ["cml"],
                                                "seeds": [0, 1], "preset": "quick", "grid": records.grid_spec(grid)})
    for gamma in grid["gamma"]:
        for lr in grid["inner_lr"]:
            for seed in (0, 1):
                mse = 1.0 + 10 * lr + gamma + 0.01 * seed  # inner_lr 0.05 is 0.4 worse than 0.01 on every cell
                config = {"base": "maml", "method": "cml", "task": "sinusoid", "seed": seed, "shots": 10,
                          "steps": 30, "gamma": gamma, "inner_lr": lr, "co_learner": "linear"}
                cell = records.run_folder_name("cml", seed, grid={"gamma": gamma, "inner_lr": lr})
                write_synthetic_run(folder / cell, config, {"step": 30, "mse": mse, "mse_ci95": 0.1,
                                                            "mse_dagger": mse + 1, "mse_before": 5.0, "tasks": 10,
                                                            "params": {"train": 2, "test": 1}})
    return folder


def test_06_the_ablation_draws_each_other_grid_axis_apart_and_never_counts_it_as_seeds(tmp_path):
    from figures import ablation
    from figures.report import write_report
    from figures.runs import find_runs

    folder = _ablation_sweep(tmp_path)
    numbers = ablation.cells(find_runs([folder]))
    for points in numbers["lines"].values():
        for p in points.values():
            assert len(p["test"]["values"]) == 2 and p["test"]["ci95"] is None  # two seeds each: no interval
    assert set(numbers["lines"]) == {("maml", "linear", ("inner_lr", 0.01)), ("maml", "linear", ("inner_lr", 0.05))}
    for (_, _, (_, lr)), points in numbers["lines"].items():
        for gamma, p in points.items():
            assert p["test"]["values"] == pytest.approx([1.0 + 10 * lr + gamma, 1.01 + 10 * lr + gamma])
    assert numbers["other_fields"] == ["inner_lr"]
    text = pdf_text(write_report([folder], tmp_path / "report.pdf"))
    assert "linear (inner_lr=0.01) 0 2 seeds 1.1000, 1.1100" in text
    assert "linear 0 4" not in text and "1.3050" not in text  # the pooled "4 seeds" of the issue, its mean


def test_06_runs_of_one_cell_with_other_settings_are_not_pooled_as_seeds_on_any_page(tmp_path, recwarn):
    from figures.report import write_report
    from figures.runs import find_runs, group_by_method

    root = tmp_path / "runs"
    for seed, steps, mse in ((0, 30, 1.0), (1, 30, 1.2), (2, 300, 0.1)):
        config = {"base": "maml", "method": "none", "task": "sinusoid", "seed": seed, "shots": 10, "steps": steps}
        write_synthetic_run(root / f"maml-s{seed}", config, {"step": steps, "mse": mse, "mse_ci95": 0.1,
                                                             "mse_before": 5.0, "tasks": 10,
                                                             "params": {"train": 2, "test": 1}})
    runs = find_runs([root])
    (cell_runs,) = group_by_method(runs).values()
    assert [r.seed for r in cell_runs] == [0, 1]
    assert any("maml-s2" in str(w.message) and "steps 300 (the cell's other runs: 30)" in str(w.message)
               for w in recwarn.list)
    text = pdf_text(write_report([root], tmp_path / "report.pdf"))
    assert "Not pooled" in text and "maml-s2" in text and "steps 300" in text
    assert "MAML 2 1.1000" in text  # the mean of the two 30-step seeds, over 2 seeds
    assert "0.7667" not in text  # the mean of all three


def test_07_evaluate_says_when_the_checkpoint_is_not_the_final_one(extended, capsys):
    from cml.trainer import load_checkpoint

    step = load_checkpoint(extended)["step"]
    assert step == 16
    code, out, err = cli(capsys, "evaluate", extended, "--tasks", "2", "--no-progress")
    assert code == 0, err
    (line,) = out.splitlines()
    assert f"checkpoint of step {step} of the run's 400: the run has not finished" in line and "test MSE" in line


# == 8-12: symbolic links and aliases ==========================================================================

def test_08_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "runs"
    out.mkdir()
    (out / f".{NAME}.lock").symlink_to(victim)
    line = one_line_error(*train(capsys, out)[::2])
    assert str(out / f".{NAME}.lock") in line and "symbolic link" in line
    assert victim.read_text() == "precious" and not (out / NAME).exists()


@pytest.mark.parametrize("command", ["resume", "report"])
def test_09_a_record_that_is_a_link_is_never_written_or_read_through(run, tmp_path, capsys, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    if command == "resume":  # a dangling link: an append would create its target outside the run folder
        (run / records.DYNAMICS).unlink()
        (run / records.DYNAMICS).symlink_to(outside / "dynamics.jsonl")
        argv = ["train", *RUN, "--out", run.parent, "--name", NAME, "--resume", "--steps", "16"]
        name = records.DYNAMICS
    else:  # a test.json that is another run's: a report must not show it as this run's
        (outside / "test.json").write_bytes((run / records.TEST).read_bytes())
        (run / records.TEST).unlink()
        (run / records.TEST).symlink_to(outside / "test.json")
        argv = ["report", run, "-o", tmp_path / "r.pdf"]
        name = records.TEST
    before = snapshot(outside)
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert str(run / name) in line and "symbolic link" in line
    assert snapshot(outside) == before


def test_10_a_tensorboard_folder_that_is_a_link_is_refused_and_the_linked_events_kept(run, tmp_path, capsys):
    other = tmp_path / "other-logs"
    other.mkdir()
    (other / "events.out.tfevents.1.host.1").write_bytes(b"someone else's events")
    (run / "tensorboard").symlink_to(other)
    line = one_line_error(*cli(capsys, "tensorboard", run)[::2])
    assert str(run / "tensorboard") in line and "symbolic link" in line
    assert (other / "events.out.tfevents.1.host.1").read_bytes() == b"someone else's events"


def test_11_two_names_of_one_folder_share_one_lock(run, capsys):
    alias = run.parent / "alias"
    alias.symlink_to(run)
    assert records.lock_path(alias) == records.lock_path(run)
    before = snapshot(run)
    with records.FolderLock(run):
        line = one_line_error(*cli(capsys, "train", *RUN, "--out", run.parent, "--name", "alias", "--resume",
                                   "--steps", "16")[::2])
    assert f"PID {os.getpid()}" in line and socket.gethostname() in line
    assert snapshot(run) == before


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "a/b", "ABSOLUTE"])
def test_12_name_is_one_folder_name_inside_out(tmp_path, capsys, name):
    out = tmp_path / "deep" / "runs"
    name = str(tmp_path / "absolute") if name == "ABSOLUTE" else name
    line = one_line_error(*train(capsys, out, "--name", name)[::2])
    assert "--name" in line and "inside --out" in line
    assert [p.name for p in tmp_path.iterdir()] == [] or not any(tmp_path.rglob(records.CONFIG))


# == 13-24: tracebacks where one line is promised ===============================================================

@pytest.fixture
def small_fs(tmp_path):
    """An 8 KB tmpfs (a disk that fills for real: a report's PDF fills it inside a compressed stream, where matplotlib
    used to raise zlib.error), or a read-only one: ``small_fs(read_only)`` mounts it."""
    mounted = []

    def mount(read_only: bool = False) -> Path:
        point = tmp_path / ("ro" if read_only else "full")
        point.mkdir()
        opts = "size=8k" + (",ro" if read_only else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True).returncode:
            pytest.skip("needs to mount a tmpfs (root, or CAP_SYS_ADMIN): the only way to fill a disk for real")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_13_a_full_disk_while_the_report_writes_its_pdf_is_one_line(finished, small_fs, capsys):
    full = small_fs()
    line = one_line_error(*cli(capsys, "report", finished, "-o", full / "report.pdf")[::2])
    assert "disk full" in line and str(full / "report.pdf") in line
    assert list(full.iterdir()) == []  # no half report, no temp file


def _huge_int_in(path: Path, key: str) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(value).replace(json.dumps(key) + ": ", json.dumps(key) + ": " + "7" * 5000 + ", "
                                              '"_": ', 1))


@pytest.mark.parametrize("where, command", [
    ("config.json", "resume"), ("config.json", "report"), ("test.json", "report"), ("test.json", "tensorboard"),
    ("--config", "train"),
])
def test_14_an_integer_of_thousands_of_digits_is_one_line(run, tmp_path, capsys, where, command):
    if where == "--config":
        config = tmp_path / "c.json"
        config.write_text('{"task": "sinusoid", "method": "cml", "seed": ' + "9" * 5000 + "}")
        argv = ["train", "--config", config, "--out", tmp_path / "new", "--no-progress"]
        named = str(config)
    else:
        _huge_int_in(run / where, "steps" if where == "config.json" else "tasks")
        argv = {"resume": ["train", *RUN, "--out", run.parent, "--name", NAME, "--resume"],
                "report": ["report", run, "-o", tmp_path / "r.pdf"], "tensorboard": ["tensorboard", run]}[command]
        named = str(run / where)
    code, _, err = cli(capsys, *argv)
    line = one_line_error(code, err)
    assert named in line and "5000 digits" in line


@pytest.mark.parametrize("record, change, command, key", [
    ("test.json", lambda r: {**r, "mse": "abc"}, "report", "mse"),
    ("test.json", lambda r: {k: v for k, v in r.items() if k != "params"}, "report", "params"),
    ("test.json", lambda r: {k: v for k, v in r.items() if k != "step"}, "tensorboard", "step"),
    ("representations.json", lambda r: {**r, "cka": "x"}, "report", "cka"),
    ("representations.json", lambda r: {**r, "cka": "x"}, "tensorboard", "cka"),
])
def test_15_a_record_of_wrong_types_is_one_line_naming_the_file_and_key(run, tmp_path, capsys, record, change,
                                                                        command, key):
    path = run / record
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    argv = ["report", run, "-o", tmp_path / "r.pdf"] if command == "report" else ["tensorboard", run]
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert str(path) in line and f"{key} must be" in line


@pytest.mark.parametrize("change, key", [({"seeds": ["a"]}, "seeds"), ({"bases": "maml"}, "bases"),
                                         ({"methods": [1]}, "methods")])
def test_16_a_sweep_json_of_wrong_types_is_one_line_and_restart_moves_it_aside(sweep_ref, tmp_path, capsys,
                                                                               change, key):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_ref, out)
    spec = out / records.SWEEP
    spec.write_text(json.dumps({**json.loads(spec.read_text()), **change}))
    for argv in (sweep_argv(out), ["report", out, "-o", tmp_path / "r.pdf"]):
        line = one_line_error(*cli(capsys, *argv)[::2])
        assert str(spec) in line and f"{key} must be" in line
    code, _, err = cli(capsys, *sweep_argv(out, "--restart"))
    assert code == 0, err
    assert records.read_json(spec)["seeds"] == [0] and len(list(out.glob("sweep.json" + records.ASIDE + "*"))) == 1


def test_16_a_cell_test_json_without_params_is_not_finished_and_is_written_again(sweep_ref, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_ref, out)
    test = out / "maml-s0" / records.TEST
    test.write_text(json.dumps({k: v for k, v in json.loads(test.read_text()).items() if k != "params"}))
    code, _, err = cli(capsys, *sweep_argv(out))
    assert code == 0, err
    assert records.read_json(test)["params"] == records.read_json(sweep_ref / "maml-s0" / records.TEST)["params"]
    assert records.read_json(out / records.AGGREGATE)["maml"]["params"]["train"] > 0


@pytest.mark.parametrize("where", ["record", "lock"])
def test_17_a_record_or_lock_path_that_is_a_folder_is_one_line(sweep_ref, tmp_path, capsys, where):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_ref, out)
    if where == "record":
        path = out / "maml-s0" / records.TEST
        path.unlink()
        path.mkdir()
        (path / "keep").write_text("a folder of the user's")
    else:
        path = out / ".maml-s0.lock"
        path.mkdir()
        (out / "maml-s0" / records.TEST).unlink()  # not finished: the cell must be locked to be resumed
    line = one_line_error(*cli(capsys, *sweep_argv(out))[::2])
    assert str(path) in line and "a folder" in line
    assert path.is_dir()


@pytest.mark.parametrize("window", [[{"meta_loss": "abc", "co_loss": 1.0, "meta_acc": None, "co_acc": None,
                                      "grad_norm_psi": 1.0}], "abc", [1, 2]])
def test_18_a_checkpoint_whose_window_holds_strings_is_one_line(run, capsys, window):
    path = run / records.CHECKPOINT
    state = torch.load(path, weights_only=True)
    torch.save({**state, "window": window}, path)
    before = snapshot(run)
    line = one_line_error(*train(capsys, run.parent, "--resume", "--steps", "16")[::2])
    assert str(path) in line and "window" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("case", ["train --out read-only", "report -o read-only", "--name of 251 characters",
                                  "--out under a file", "report -o under a file"])
def test_19_a_path_that_cannot_be_written_is_one_line(finished, small_fs, tmp_path, capsys, case):
    if "read-only" in case:
        ro = small_fs(read_only=True)
        argv = (["train", *RUN, "--out", ro / "runs"] if case.startswith("train") else
                ["report", finished, "-o", ro / "report.pdf"])
        expect = ["read-only", str(ro)]
    elif case.startswith("--name"):
        argv = ["train", *RUN, "--out", tmp_path / "runs", "--name", "n" * 251]
        expect = ["--name", "251 bytes"]
    else:
        (tmp_path / "afile").write_text("x")
        argv = (["train", *RUN, "--out", tmp_path / "afile" / "runs"] if case.startswith("--out") else
                ["report", finished, "-o", tmp_path / "afile" / "r.pdf"])
        expect = [str(tmp_path / "afile"), "is a file"]
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert all(e in line for e in expect), line


@pytest.mark.parametrize("content, named", [
    ('{"task": "fonts", "method": "cml", "data": "a\\u0000b"}', "NUL"),
    ('{"task": "sinusoid", "method": "cml", "data": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
])
def test_20_a_config_file_with_a_nul_byte_or_deep_nesting_is_one_line(tmp_path, capsys, content, named):
    config = tmp_path / "c.json"
    config.write_text(content)
    line = one_line_error(*cli(capsys, "train", "--config", config, "--out", tmp_path / "runs", "--no-progress")[::2])
    assert str(config) in line and named in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags", [["--task", "sinusoid", "--hidden", "100000000000"],
                                   ["--task", "fonts", "--filters", "1000000"],
                                   ["--task", "fonts", "--image-size", "1000000"]],
                         ids=["hidden 1e11", "filters 1e6", "image size 1e6"])
def test_21_a_model_or_image_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path, flags):
    # In a child with a bounded wait: before the estimate, the fonts were rendered at that size (for ever).
    err = tmp_path / "err.txt"
    argv = ["train", "--method", "cml", *flags, "--data", tmp_path / "cache", "--out", tmp_path / "runs",
            "--no-progress"]
    if flags[1] == "sinusoid":
        argv.remove("--data")
        argv.remove(tmp_path / "cache")
    assert wait_for(fork(argv, out=err), 60) == 2
    line = one_line_error(2, err.read_text())
    assert flags[2] in line and ("needs at least" in line or "more elements than an index" in line)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing rendered, no folder


def test_21_the_fonts_say_before_rendering_at_a_new_size(tmp_path, monkeypatch, capsys):
    from cml.data import fonts

    def render(*args, **kwargs):
        raise RuntimeError("stop: the test only needs what is said before rendering")

    monkeypatch.setattr(fonts, "render_fonts", render)
    with pytest.raises(RuntimeError, match="stop"):
        fonts.load_fonts_data(100, cache=tmp_path)
    assert "fonts: rendering the data set at 100x100 px" in capsys.readouterr().err


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR chunk (8-bit grayscale) and IEND: what PIL reads to decide it is too large."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def test_22_a_decompression_bomb_png_is_a_data_error_naming_the_file(tmp_path):
    from PIL import Image

    from cml.data import load_folder_pool
    from cml.errors import DataError

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "data" / cls / f"{i}.png")
    bomb = tmp_path / "data" / "a" / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))
    pool = load_folder_pool(tmp_path / "data", 28)
    with pytest.raises(DataError, match="too large to decode") as caught:
        pool.images(pool.names.index("a"))
    assert str(bomb) in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["train", *RUN, "--steps", "40", "--out", str(out), "--name", NAME]) == 0
    return out / NAME


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_23_sigint_and_sigterm_finish_the_step_say_where_and_resume_exactly(uninterrupted, tmp_path, sig, code):
    from cml.trainer import Trainer, load_checkpoint

    def slow_steps():  # in the child: a step takes 50 ms, so that the signal lands mid-run
        original = Trainer.outer_step

        def step(self, record):
            time.sleep(0.05)
            return original(self, record)

        Trainer.outer_step = step

    err = tmp_path / "err.txt"
    argv = ["train", *RUN, "--steps", "40", "--out", tmp_path, "--name", NAME]
    pid = fork(argv, before=slow_steps, out=err)
    deadline = time.monotonic() + 60
    while not (tmp_path / NAME / records.METRICS).exists():  # training has started
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(pid, sig)
    assert wait_for(pid, 60) == code
    text = err.read_text()
    assert "Traceback" not in text, text
    (line,) = [l for l in text.splitlines() if l.startswith("interrupted")]
    step = load_checkpoint(tmp_path / NAME)["step"]  # the step it stopped at has its checkpoint
    assert line == f"interrupted at step {step} of 40; rerun the same command (or --resume) to continue"
    assert 0 < step < 40
    assert [r["step"] for r in records.read_jsonl(tmp_path / NAME / records.METRICS)][-1] <= step
    assert main([str(a) for a in argv + ["--resume"]]) == 0
    assert comparable(tmp_path / NAME) == comparable(uninterrupted)


def test_23_a_ray_worker_that_died_is_one_line_naming_the_cell():
    ray = pytest.importorskip("ray")
    from cml.errors import UserError
    from cml.ray_engine import _raise_cell_error

    with pytest.raises(UserError) as caught:
        _raise_cell_error("maml-s0", ray.exceptions.ActorDiedError())
    message = str(caught.value)
    assert message.startswith("cell maml-s0: its Ray worker died") and "rerun the same command" in message
    assert "\n" not in message


def test_24_a_closed_pipe_ends_quietly():
    # The reader is gone before cml prints: what `cml params | head -1` does to its last lines.
    child = subprocess.Popen([sys.executable, "-m", "cml", "params", "--task", "sinusoid"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    try:
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert child.returncode == 128 + signal.SIGPIPE


# == 25-30: checks and messages that fell short =================================================================

@pytest.mark.parametrize("flags, field", [
    (["--head-inner-lr", "1e39"], "head_inner_lr"),
    (["--base", "maml++", "--method", "none", "--cosine-lr", "--min-meta-lr", "1e39"], "min_meta_lr"),
    ("config", "min_meta_lr"),
])
def test_25_step_sizes_beyond_float32_are_refused(tmp_path, capsys, flags, field):
    if flags == "config":
        config = tmp_path / "c.json"
        config.write_text('{"task": "sinusoid", "method": "none", "base": "maml++", "cosine_lr": true, '
                          '"min_meta_lr": 1e300}')
        flags = ["--config", config]
    else:
        flags = ["--task", "sinusoid", *(["--method", "cml"] if "--method" not in flags else []), *flags]
    line = one_line_error(*cli(capsys, "train", *flags, "--steps", "2", "--out", tmp_path / "runs",
                               "--no-progress")[::2])
    assert field in line and "largest float32" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_26_a_checkpoint_with_nan_weights_is_named(run, capsys, command):
    path = run / records.CHECKPOINT
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, path)
    argv = (["evaluate", run, "--tasks", "2", "--no-progress"] if command == "evaluate" else
            ["train", *RUN, "--out", run.parent, "--name", NAME, "--resume", "--steps", "16"])
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert str(path) in line and "non-finite weights" in line and name in line and "--inner-lr" not in line


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write is for")
def test_27_a_full_disk_reports_the_space_free_once_its_own_temp_file_is_gone(tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage

    def usage(folder):  # "no space" while a temp file of ours is there, 5000 bytes once it is removed
        left = 0 if list(Path(folder).glob(".*.tmp")) else 5000
        return real(folder)._replace(free=left)

    monkeypatch.setattr(records.shutil, "disk_usage", usage)
    _enospc_on(monkeypatch, records.TEST, 2)  # the second half of test.json
    line = one_line_error(*train(capsys, tmp_path)[::2])
    assert "4.9 KB is free" in line and "--resume" in line  # a checkpoint exists: --resume works


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write is for")
def test_27_a_full_disk_before_the_first_checkpoint_does_not_advise_resume(tmp_path, capsys, monkeypatch):
    _enospc_on(monkeypatch, records.CONFIG)
    line = one_line_error(*train(capsys, tmp_path)[::2])
    assert "disk full" in line and "--resume" not in line and "starts afresh" in line
    monkeypatch.undo()
    code, _, err = train(capsys, tmp_path)  # the advice works: the same command
    assert code == 0, err


def test_27_a_lock_naming_a_live_pid_is_not_said_to_be_no_longer_running(tmp_path, capsys):
    lock = records.lock_path(tmp_path / NAME)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": "earlier"}))
    with pytest.warns(UserWarning) as caught:
        code, _, err = train(capsys, tmp_path, "--steps", "4")
    assert code == 0, err
    (message,) = [str(w.message) for w in caught if "took over the lock" in str(w.message)]
    assert f"PID {os.getpid()} is running but is not writing this folder" in message
    assert "no longer running" not in message


def test_29_cml_tensorboard_takes_the_run_folders_lock(run, capsys):
    with records.FolderLock(run):
        line = one_line_error(*cli(capsys, "tensorboard", run)[::2])
    assert f"PID {os.getpid()}" in line and str(run) in line
    assert not (run / "tensorboard").exists()
    code, _, err = cli(capsys, "tensorboard", run)
    assert code == 0, err and (run / "tensorboard").is_dir()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_30_a_task_too_large_for_memory_is_refused_with_its_estimate(run, tmp_path, capsys, command):
    queries = "1000000000000"  # 10^12 query points: terabytes on any machine
    argv = (["train", *RUN, "--queries", queries, "--out", tmp_path / "new", "--name", NAME] if command == "train"
            else ["evaluate", run, "--queries", queries, "--tasks", "2", "--no-progress"])
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert "needs at least" in line and "TB" in line and "is available" in line and f"--queries {queries}" in line
    assert not (tmp_path / "new").exists()


def test_30_the_estimate_is_checked_against_the_memory_there_is(tmp_path, capsys, monkeypatch):
    from cml import memory

    monkeypatch.setattr(memory, "available", lambda device: 2 ** 30)  # a machine with 1 GB free
    line = one_line_error(*train(capsys, tmp_path, "--queries", "10000000")[::2])  # 10^7 points: about 3 GB
    assert "needs at least 3.0 GB" in line and "1.0 GB is available" in line
    monkeypatch.setattr(memory, "available", lambda device: 2 ** 40)
    assert train(capsys, tmp_path, "--queries", "10")[0] == 0
