"""Reliability: SIGKILL at random points then resume, one writer per folder, damaged files, a full disk, config fuzzing.

The training processes killed here are forks of the test process (torch already imported, so each starts in
milliseconds), killed with a real SIGKILL: either from outside after a random delay, or from inside a record
write by the ``CML_TEST_KILL`` hook of :mod:`cml.records` (half a file written, or all of it but not renamed).
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cml import records
from cml.cli import main
from cml.config import Config, ConfigError
from cml.trainer import load_checkpoint

# A tiny noisy-maml sinusoid run (noise: the noise generator's state must survive every kill too) with every
# record: metrics, validation, gradient dynamics, checkpoints, test, representations and fitted curves.
RUN = ["--method", "noisy-maml", "--task", "sinusoid", "--steps", "40", "--meta-batch", "2", "--log-interval", "5",
       "--checkpoint-interval", "10", "--val-interval", "20", "--val-tasks", "3", "--test-tasks", "4",
       "--record-interval", "10", "--record-tasks", "3", "--no-progress"]
NAME = "run"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def train(capsys, out: Path, *extra) -> tuple[int, str, str]:
    return cli(capsys, "train", *RUN, "--out", out, "--name", NAME, *extra)


def fork_main(argv, kill: str | None = None, before=None) -> int:
    """Runs ``main(argv)`` in a forked child; returns its PID. ``kill``: a ``CML_TEST_KILL`` spec."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            torch.set_num_threads(1)
            sys.stdout = sys.stderr = open(os.devnull, "w")
            if kill:
                os.environ[records.FAULT_ENV] = kill
            if before is not None:
                before()
            code = main([str(a) for a in argv])
        finally:
            os._exit(code)
    return pid


def wait(pid: int) -> int | str:
    """The child's exit code, or ``"SIGKILL"``."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return "SIGKILL"
    return os.WEXITSTATUS(status)


def comparable(run_dir: Path) -> dict:
    """Every record of a run, without wall-clock times (which differ between any two runs)."""
    out = {}
    for name in ("metrics.jsonl", "val.jsonl", "dynamics.jsonl"):
        out[name] = [{k: v for k, v in r.items() if k != "time"} for r in records.read_jsonl(run_dir / name)]
    for name in ("config.json", "representations.json"):
        out[name] = records.read_json(run_dir / name)
    out["test.json"] = {k: v for k, v in records.read_json(run_dir / "test.json").items() if k != "train_time"}
    out["fits.npz"] = {k: v.tolist() for k, v in records.load_npz(run_dir / "fits.npz").items()}
    state = load_checkpoint(run_dir)
    out["checkpoint"] = {"step": state["step"], "model": {k: v.tolist() for k, v in state["model"].items()},
                         "noise_gen": state["noise_gen"].tolist(), "train_gen": state["train_gen"].tolist()}
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(code: int, err: str) -> str:
    """The CLI's error line, asserting the contract: exit code 2, one line, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end identical to."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["train", *RUN, "--out", str(out), "--name", NAME]) == 0
    return out / NAME


# -- SIGKILL at random points, then resume ---------------------------------------------------------------

# Kills inside record writes, in an order in which each is reached from whatever state the previous kills
# left (every spec names a write that is still ahead of a run resumed from any checkpoint before step 30).
HOOKED_KILLS = [
    "config.json:1:written",      # the first write of a fresh run, complete but not renamed
    "metrics.jsonl:2:partial",    # half a JSON line appended
    "checkpoint.pt:1:partial",    # half a checkpoint in its temp file
    "checkpoint.pt:2:written",    # a whole checkpoint in its temp file, not renamed
    "val.jsonl:1:partial",
    "dynamics.jsonl:1:partial",
    "checkpoint.pt:1:partial",
    "test.json:1:written",        # training done, the test not yet renamed into place
    "fits.npz:1:partial",         # the recorder's arrays, half written
    "representations.json:1:written",
]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_ends_identical_to_an_uninterrupted_run(tmp_path, reference):
    rng = random.Random(10)
    out = tmp_path / "cut"
    run_dir = out / NAME
    kills = [("timed", rng.uniform(0.0, 0.25)) for _ in range(2)] + [("hook", h) for h in HOOKED_KILLS] + \
            [("timed", rng.uniform(0.0, 0.2)) for _ in range(2)]
    killed = 0
    for kind, what in kills + [("none", None)]:
        before = load_checkpoint(run_dir) if (run_dir / records.CHECKPOINT).exists() else None
        argv = ["train", *RUN, "--out", out, "--name", NAME] + (["--resume"] if before is not None else [])
        pid = fork_main(argv, kill=what if kind == "hook" else None)
        if kind == "timed":
            time.sleep(what)
            os.kill(pid, signal.SIGKILL)  # may land anywhere, or after the child finished
        result = wait(pid)
        if kind == "hook":
            assert result == "SIGKILL", f"{what} was not reached"
        if kind == "none":
            assert result == 0
        killed += result == "SIGKILL"
        if before is not None:  # a kill never costs the last good checkpoint
            after = load_checkpoint(run_dir)
            assert after["step"] >= before["step"]
            assert all(torch.isfinite(v).all() for v in after["model"].values())
    assert killed >= len(HOOKED_KILLS)
    assert comparable(run_dir) == comparable(reference)
    assert not list(run_dir.glob(".*.tmp")), "a killed writer's temp files outlived the next start"
    assert not records.lock_path(run_dir).exists()


def sweep_argv(out: Path, *extra) -> list:
    return ["sweep", "--task", "sinusoid", "--methods", "maml", "--seeds", "0", "--out", out, "--steps", "20",
            "--meta-batch", "2", "--log-interval", "5", "--checkpoint-interval", "10", "--val-interval", "10",
            "--val-tasks", "3", "--test-tasks", "4", "--record-interval", "5", "--record-tasks", "3",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "ref"
    assert main([str(a) for a in sweep_argv(out)]) == 0
    return out


@pytest.mark.parametrize("kill", ["test.json:1:done", "fits.npz:1:partial", "representations.json:1:written"])
def test_sweep_killed_between_test_json_and_its_recorder_finishes_the_cell_on_rerun(tmp_path, reference_sweep,
                                                                                    kill):
    out = tmp_path / "sweep"
    assert wait(fork_main(sweep_argv(out), kill=kill)) == "SIGKILL"
    assert (out / "maml-s0" / "test.json").is_file()
    assert wait(fork_main(sweep_argv(out))) == 0
    assert comparable(out / "maml-s0") == comparable(reference_sweep / "maml-s0")
    agg, ref = records.read_json(out / "aggregate.json"), records.read_json(reference_sweep / "aggregate.json")
    assert agg["maml"]["mse"] == ref["maml"]["mse"]


def test_sweep_cell_without_its_recorders_files_is_not_finished(tmp_path, reference_sweep, capsys):
    # The state a kill between test.json and the recorder leaves, made by hand (no kill hook needed).
    out = tmp_path / "sweep"
    shutil.copytree(reference_sweep, out)
    for name in ("representations.json", "fits.npz"):
        (out / "maml-s0" / name).unlink()
    code, _, err = cli(capsys, *sweep_argv(out))
    assert code == 0, err
    assert comparable(out / "maml-s0") == comparable(reference_sweep / "maml-s0")


def test_sweep_rerun_writes_a_truncated_test_json_again(tmp_path, reference_sweep, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(reference_sweep, out)
    test_json = out / "maml-s0" / "test.json"
    good = test_json.read_bytes()
    test_json.write_bytes(good[: len(good) // 2])
    code, _, err = cli(capsys, *sweep_argv(out))
    assert code == 0, err
    assert records.read_json(test_json) | {"train_time": 0} == json.loads(good) | {"train_time": 0}


# -- one writer per folder ------------------------------------------------------------------------------

def test_second_writer_is_refused_and_the_first_writers_records_are_untouched(tmp_path, capsys):
    from cml.trainer import Trainer

    go = tmp_path / "go"

    def pause_mid_run():  # in the child only: after step 10, wait until the second writer has tried
        original = Trainer.outer_step

        def step(self, record):
            deadline = time.monotonic() + 30
            while self.step >= 10 and not go.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return original(self, record)

        Trainer.outer_step = step

    argv = ["train", *RUN, "--out", tmp_path, "--name", NAME]
    pid = fork_main(argv, before=pause_mid_run)
    run_dir = tmp_path / NAME
    deadline = time.monotonic() + 30
    while not (run_dir / "metrics.jsonl").exists():
        assert time.monotonic() < deadline, "the first writer never started"
        time.sleep(0.02)
    code, _, err = cli(capsys, "train", *RUN, "--out", tmp_path, "--name", NAME, "--seed", "1", "--steps", "30")
    go.touch()
    line = one_line_error(code, err)
    assert f"PID {pid}" in line and socket.gethostname() in line and str(run_dir) in line
    assert wait(pid) == 0
    assert [r["step"] for r in records.read_jsonl(run_dir / "metrics.jsonl")] == list(range(5, 41, 5))
    assert records.read_json(run_dir / "config.json")["seed"] == 0
    assert records.read_json(run_dir / "test.json")["step"] == 40
    assert not records.lock_path(run_dir).exists()


def test_a_killed_writers_lock_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / NAME

    def hold_and_die():
        records.FolderLock(run_dir).acquire()
        os.kill(os.getpid(), signal.SIGKILL)

    pid = fork_main(["--help"], before=hold_and_die)
    assert wait(pid) == "SIGKILL"
    assert str(pid) in records.lock_path(run_dir).read_text()  # the stale lock names its dead holder
    with pytest.warns(UserWarning, match=f"took over the lock of PID {pid}"):
        code, _, err = train(capsys, tmp_path, "--steps", "10")
    assert code == 0, err
    assert not records.lock_path(run_dir).exists()


def test_a_sweep_folder_has_one_writer(tmp_path, capsys):
    out = tmp_path / "sweep"
    with records.FolderLock(out):
        code, _, err = cli(capsys, *sweep_argv(out))
    assert f"PID {os.getpid()}" in one_line_error(code, err)
    assert not (out / "sweep.json").exists()


# -- damaged and foreign files: one line, exit 2, nothing good changed --------------------------------------

@pytest.fixture(scope="module")
def sinusoid_run(reference) -> Path:
    return reference


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A tiny image run with its t-SNE features (synthetic classes, no data set needed)."""
    from cml.recording import Recorder
    from cml.trainer import Trainer
    from test_trainer import image_cfg, synthetic_splits

    run_dir = tmp_path_factory.mktemp("image") / NAME
    recorder = Recorder(run_dir)
    trainer = Trainer(image_cfg("maml", record_interval=3), run_dir, splits=synthetic_splits(), recorder=recorder)
    trainer.train()
    trainer.finish_recording()
    return run_dir


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _config_with(run_dir: Path, **changes) -> None:
    path = run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _other_method_checkpoint(run_dir: Path) -> None:
    # A checkpoint whose config says cml, dropped into this noisy-maml run folder.
    state = torch.load(run_dir / records.CHECKPOINT, weights_only=True)
    state["config"] = {**state["config"], "method": "cml", "noise_std": 0.0}
    torch.save(state, run_dir / records.CHECKPOINT)


def _foreign_weights(run_dir: Path) -> None:
    # The run's own settings, another architecture's weights (as if copied from a run with --hidden 80).
    state = torch.load(run_dir / records.CHECKPOINT, weights_only=True)
    state["model"] = {k: torch.zeros(*(2 * s for s in v.shape)) for k, v in state["model"].items()}
    torch.save(state, run_dir / records.CHECKPOINT)


RESUME = ("train", *RUN, "--out", "{parent}", "--name", NAME, "--resume")
REPORT = ("report", "{parent}", "-o", "{tmp}/report.pdf")
EVALUATE = ("evaluate", "{run}", "--tasks", "2", "--no-progress")

# (case, fixture, file damaged, how, command). Every case names the damaged file in one line with exit code 2.
DAMAGED = [
    ("config not UTF-8, resume", "sinusoid_run", "config.json", lambda r: (r / "config.json").write_bytes(b"\xff\xfe{"),
     RESUME),
    ("config not UTF-8, report", "sinusoid_run", "config.json", lambda r: (r / "config.json").write_bytes(b"\xff\xfe{"),
     REPORT),
    ("config a JSON list, resume", "sinusoid_run", "config.json", lambda r: (r / "config.json").write_text("[1, 2]"),
     RESUME),
    ("config a JSON list, report", "sinusoid_run", "config.json", lambda r: (r / "config.json").write_text("[1, 2]"),
     REPORT),
    ("config ways five, resume", "sinusoid_run", "config.json", lambda r: _config_with(r, ways="five"), RESUME),
    ("config ways five, report", "sinusoid_run", "config.json", lambda r: _config_with(r, ways="five"), REPORT),
    ("test.json truncated, report", "sinusoid_run", "test.json", lambda r: _truncate(r / "test.json"), REPORT),
    ("representations.json truncated, report", "image_run", "representations.json",
     lambda r: _truncate(r / "representations.json"), REPORT),
    ("fits.npz truncated, report", "sinusoid_run", "fits.npz", lambda r: _truncate(r / "fits.npz"), REPORT),
    ("features.npz truncated, report", "image_run", "features.npz", lambda r: _truncate(r / "features.npz"), REPORT),
    ("metrics.jsonl damaged mid-file, resume", "sinusoid_run", "metrics.jsonl",
     lambda r: (r / "metrics.jsonl").write_text('{"step": 5}\n{"st\n{"step": 15}\n'), RESUME),
    ("checkpoint truncated, resume", "sinusoid_run", records.CHECKPOINT, lambda r: _truncate(r / records.CHECKPOINT),
     RESUME),
    ("checkpoint with other keys, resume", "sinusoid_run", records.CHECKPOINT,
     lambda r: torch.save({"weights": torch.zeros(3)}, r / records.CHECKPOINT), RESUME),
    ("checkpoint with other keys, evaluate", "sinusoid_run", records.CHECKPOINT,
     lambda r: torch.save({"weights": torch.zeros(3)}, r / records.CHECKPOINT), EVALUATE),
    ("checkpoint of another method, resume", "sinusoid_run", records.CHECKPOINT, _other_method_checkpoint, RESUME),
    ("checkpoint with foreign weights, resume", "sinusoid_run", records.CHECKPOINT, _foreign_weights, RESUME),
    ("checkpoint with foreign weights, evaluate", "sinusoid_run", records.CHECKPOINT, _foreign_weights, EVALUATE),
]


@pytest.mark.parametrize("case, fixture, filename, damage, command", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_damaged_file_is_one_line_naming_it_and_changes_nothing_good(request, tmp_path, capsys, case, fixture,
                                                                     filename, damage, command):
    parent = tmp_path / "runs"
    run_dir = parent / NAME
    shutil.copytree(request.getfixturevalue(fixture), run_dir)
    damage(run_dir)
    before = snapshot(parent)
    argv = [a.format(parent=parent, run=run_dir, tmp=tmp_path) for a in command]
    line = one_line_error(*cli(capsys, *argv)[::2])
    assert str(run_dir / filename) in line, line
    assert snapshot(parent) == before, "a good file was changed"
    assert not (tmp_path / "report.pdf").exists()


def test_damaged_sweep_json_is_named_and_restart_moves_it_aside(tmp_path, reference_sweep, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(reference_sweep, out)
    _truncate(out / "sweep.json")
    before = snapshot(out)
    line = one_line_error(*cli(capsys, *sweep_argv(out))[::2])
    assert str(out / "sweep.json") in line and "--restart" in line
    assert snapshot(out) == before
    code, _, err = cli(capsys, *sweep_argv(out, "--restart"))
    assert code == 0, err
    assert records.read_json(out / "sweep.json")["methods"] == ["maml"]
    aside = list(out.glob("sweep.json" + records.ASIDE + "*"))
    assert len(aside) == 1 and aside[0].read_bytes() == before["sweep.json"]  # kept, not deleted
    assert (out / "maml-s0" / "test.json").read_bytes() == before["maml-s0/test.json"]  # the finished cell kept


def test_damaged_cell_checkpoint_in_a_sweep_and_restart(tmp_path, reference_sweep, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(reference_sweep, out)
    (out / "maml-s0" / "representations.json").unlink()  # unfinished: the cell must be resumed
    _truncate(out / "maml-s0" / records.CHECKPOINT)
    line = one_line_error(*cli(capsys, *sweep_argv(out))[::2])
    assert str(out / "maml-s0" / records.CHECKPOINT) in line and "--restart" in line
    code, _, err = cli(capsys, *sweep_argv(out, "--restart"))
    assert code == 0, err
    assert comparable(out / "maml-s0") == comparable(reference_sweep / "maml-s0")
    assert len(list(out.glob("maml-s0" + records.ASIDE + "*"))) == 1


def test_damaged_checkpoints_advice_works_and_keeps_the_old_folder(tmp_path, capsys, reference):
    run_dir = tmp_path / NAME
    shutil.copytree(reference, run_dir)
    _truncate(run_dir / records.CHECKPOINT)
    damaged = snapshot(run_dir)
    line = one_line_error(*train(capsys, tmp_path, "--resume")[::2])
    assert "--restart" in line
    code, _, err = train(capsys, tmp_path, "--restart")
    assert code == 0, err
    assert comparable(run_dir) == comparable(reference)
    (aside,) = tmp_path.glob(NAME + records.ASIDE + "*")
    assert snapshot(aside) == damaged
    from figures.runs import find_runs

    assert [r.path for r in find_runs([tmp_path])] == [run_dir]  # what was moved aside is not reported
    code, _, err = train(capsys, tmp_path)  # without a flag: the advice names both ways on
    assert "--resume" in one_line_error(code, err) and "--restart" in err


def test_report_output_naming_a_folder_is_one_line(tmp_path, capsys, reference):
    (tmp_path / "out").mkdir()
    line = one_line_error(*cli(capsys, "report", reference, "-o", tmp_path / "out")[::2])
    assert str(tmp_path / "out") in line and "report.pdf" in line


# -- a full disk at each write site -----------------------------------------------------------------------

def _enospc_on(monkeypatch, name: str, nth: int = 1) -> None:
    """``os.write`` fails with ENOSPC from its ``nth`` call on the file ``name`` (or its temp files) on.

    Records write each file in two halves (two calls): ``nth=3`` fails the second file's first half, ``nth=4``
    its second half, after the first half was written.
    """
    real, seen = os.write, {"n": 0}

    def write(fd, data):
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if target == name or target.startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] >= nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


TRAIN_SITES = [("config.json", 1), ("metrics.jsonl", 2), ("val.jsonl", 1), ("dynamics.jsonl", 4),
               (records.CHECKPOINT, 3), ("test.json", 1), ("representations.json", 1), ("fits.npz", 1),
               (records.lock_path(Path(NAME)).name, 1)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write is for")
@pytest.mark.parametrize("name, nth", TRAIN_SITES, ids=[s[0] for s in TRAIN_SITES])
def test_full_disk_while_training_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch,
                                                                           name, nth):
    run_dir = tmp_path / NAME
    _enospc_on(monkeypatch, name, nth)
    line = one_line_error(*train(capsys, tmp_path)[::2])
    assert "disk full" in line and str(run_dir if name != records.lock_path(run_dir).name else tmp_path) in line
    assert not list(tmp_path.rglob(".*.tmp"))
    if (run_dir / records.CHECKPOINT).exists():
        state = load_checkpoint(run_dir)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    if name == records.CHECKPOINT:
        assert load_checkpoint(run_dir)["step"] == 10  # the last good one
    if name.endswith(".jsonl") and (run_dir / name).exists():
        assert (run_dir / name).read_bytes().endswith(b"\n") or (run_dir / name).stat().st_size == 0
    monkeypatch.undo()  # space freed: the advice (rerun, with --resume once a checkpoint exists) finishes the run
    code, _, err = train(capsys, tmp_path, *(["--resume"] if (run_dir / records.CHECKPOINT).exists() else []))
    assert code == 0, err


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write is for")
@pytest.mark.parametrize("name", ["sweep.json", "aggregate.json"])
def test_full_disk_while_sweeping_is_one_line(tmp_path, capsys, monkeypatch, name):
    out = tmp_path / "sweep"
    _enospc_on(monkeypatch, name)
    line = one_line_error(*cli(capsys, *sweep_argv(out))[::2])
    assert "disk full" in line and str(out) in line and name in line
    assert not list(out.rglob(".*.tmp"))


# -- values that used to be accepted or printed as NaN --------------------------------------------------

@pytest.mark.parametrize("flags, field", [
    (["--method", "cml", "--task", "sinusoid", "--gamma", "inf"], "gamma"),
    (["--method", "noisy-maml", "--task", "sinusoid", "--noise-std", "inf"], "noise_std"),
    (["--method", "noisy-maml", "--task", "sinusoid", "--noise-std", "nan"], "noise_std"),
    (["--method", "maml", "--task", "sinusoid", "--meta-lr", "1e39"], "meta_lr"),
    (["--method", "maml", "--task", "fonts", "--ways", "1"], "ways"),
])
def test_config_refuses_non_finite_scales_huge_steps_and_one_way(tmp_path, capsys, flags, field):
    line = one_line_error(*cli(capsys, "train", *flags, "--out", tmp_path, "--no-progress")[::2])
    assert field in line
    assert not any(tmp_path.iterdir())


def test_noise_that_overflows_stops_before_a_checkpoint_holds_it(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "--method", "noisy-maml", "--task", "sinusoid", "--noise-std", "3e38",
                       "--noise-mode", "absolute", "--steps", "3", "--checkpoint-interval", "1", "--out", tmp_path,
                       "--name", NAME, "--no-progress")
    line = one_line_error(code, err)
    assert "non-finite weights" in line and "outer step 1" in line and "noise" in line
    assert not (tmp_path / NAME / records.CHECKPOINT).exists()


def test_one_test_task_reports_the_ci_as_unavailable(tmp_path, capsys):
    code, out, err = train(capsys, tmp_path, "--test-tasks", "1", "--steps", "5", "--record-interval", "0")
    assert code == 0, err
    assert "nan" not in out.lower() and "CI unavailable: 1 task)" in out and "over 1 task " in out
    assert records.read_json(tmp_path / NAME / "test.json")["mse_ci95"] is None


def test_a_folder_the_user_may_not_write_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    # Tests run as root here, where chmod does not deny anything: the denial is injected where the lock is made.
    def denied(self):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked" / ".run.lock"))

    monkeypatch.setattr(records.FolderLock, "__enter__", denied)
    code, _, err = cli(capsys, "train", *RUN, "--out", tmp_path / "locked", "--name", NAME)
    line = one_line_error(code, err)
    assert "permission denied" in line and str(tmp_path / "locked") in line and "--out" in line


def test_resume_cannot_shorten_a_run(tmp_path, capsys, reference):
    shutil.copytree(reference, tmp_path / NAME)
    before = snapshot(tmp_path / NAME)
    line = one_line_error(*train(capsys, tmp_path, "--resume", "--steps", "10")[::2])
    assert "--steps 10" in line and "40 steps" in line
    assert snapshot(tmp_path / NAME) == before


def test_leftover_temp_files_are_removed_on_the_next_start(tmp_path, capsys, reference):
    run_dir = tmp_path / NAME
    shutil.copytree(reference, run_dir)
    (run_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"x" * 1000)
    (run_dir / ".test.json.k1ll3d.tmp").write_text("{")
    code, _, err = train(capsys, tmp_path, "--resume")
    assert code == 0, err
    assert not list(run_dir.glob(".*.tmp"))


# -- the config: any dict builds a valid config or is a ConfigError naming a field ------------------------

FIELDS = [f.name for f in __import__("dataclasses").fields(Config)]
_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["cml", "maml", "noisy-maml", "sinusoid", "omniglot",
                                                           "fonts", "linear", "conv", "relative", "blocks", "cpu"]),
                    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                         max_size=2))
_keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=10), st.integers())


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.dictionaries(_keys, _values, max_size=6),
    # Mostly valid: a valid config with a few fields changed reaches the checks that run last.
    st.builds(lambda base, changes: {**base, **changes},
              st.sampled_from([Config().to_dict(), Config(method="maml", task="fonts").to_dict(),
                               Config(method="noisy-maml", noise_std=0.1).to_dict()]),
              st.dictionaries(st.sampled_from(FIELDS), _values, max_size=3)),
    st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.none(), st.integers()),
))
def test_config_from_any_dict_is_valid_or_a_config_error_naming_a_field(values):
    try:
        cfg = Config.from_dict(values)
    except ConfigError as e:
        message = str(e)
        if isinstance(values, dict):
            named = [k for k in map(str, values) if k in message] + [f for f in FIELDS if f in message]
            assert named, message
        else:
            assert "mapping" in message
        return
    # A config that builds holds values of its declared types, within range, and survives a round trip.
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for name in ("gamma", "noise_std", "inner_lr", "meta_lr"):
        assert math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0
    assert not cfg.family.classification or cfg.ways >= 2
    assert all(isinstance(getattr(cfg, f), int) and getattr(cfg, f) >= 1
               for f in ("ways", "shots", "queries", "steps", "test_tasks"))
