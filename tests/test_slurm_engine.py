"""The SLURM engine (``sweep --engine slurm``, cml/slurm_engine.py) without a cluster.

Cells run as real subprocesses through submitit's local executor (``--slurm-executor local``): the 2 x 2 grid
equals the local engine's records, submitted with ``--no-wait`` and collected by the same command; a task sent
SIGUSR2 (what SLURM sends before a time limit) is requeued and resumes from its checkpoint. The SLURM side is
checked on the submission script submitit writes, with stand-ins for ``sbatch`` and ``sacct`` on PATH that
record the call and report job states, so nothing is ever submitted.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from pathlib import Path

import pytest

from cml import records
from cml.cli import main
from cml.config import ConfigError
from cml.meta import NonFiniteLossError
from test_sweep_engines import GRID, cli, one_line_error, sweep_records

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ["--engine", "slurm", "--slurm-executor", "local"]


def submitit_or_skip():
    return pytest.importorskip("submitit", reason="submitit is not installed (requirements.txt installs it)")


def submitted_any(err: str) -> bool:
    return any(line.startswith("submitted ") for line in err.splitlines())


def jobs(out: Path) -> dict[str, str]:
    return {cell: r["job"] for cell, r in records.read_json(out / ".slurm" / "jobs.json")["cells"].items()}


def wait_until(condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


# -- the local executor: real subprocesses --------------------------------------------------------------------

# The 2 x 2 grid of the engine tests (gamma x seeds on CML), with enough steps that a task can be caught between
# its first checkpoint and its end. One run serves every property below: each task start costs seconds of
# imports (torch, scikit-learn), and a busy 2-core machine runs the suite.
STEPS = 12
SLOW_GRID = [*GRID, "--steps", str(STEPS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The grid swept by the local engine, uninterrupted."""
    out = tmp_path_factory.mktemp("local") / "grid"
    assert main([*map(str, SLOW_GRID), "--out", str(out)]) == 0
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the tasks' PIDs in /proc (Linux)")
def test_grid_with_a_task_interrupted_then_collected_equals_the_local_engine(reference, tmp_path, capsys):
    submitit_or_skip()
    out = tmp_path / "grid"
    # --time 5: under 10 minutes, so submitit takes SIGUSR2 for the time limit near (not a preemption).
    argv = [*SLOW_GRID, *LOCAL, "--time", "5", "--out", out]
    code, _, err = cli(capsys, *argv, "--no-wait")
    assert code == 0, err
    assert "submitted 4 cell(s) as local job(s)" in err and "run the same command again" in err
    submitted = jobs(out)  # a local job's id is its controller's PID
    assert sorted(submitted) == ["cml-gamma_0.5-s0", "cml-gamma_0.5-s1", "cml-gamma_1-s0", "cml-gamma_1-s1"]

    # The first cell to write a checkpoint: its task is sent what SLURM sends signal_delay_s before a time limit.
    checkpoints = {cell: out / cell / records.CHECKPOINT for cell in submitted}
    wait_until(lambda: any(p.exists() for p in checkpoints.values()), "a cell's first checkpoint")
    cell = next(c for c, p in checkpoints.items() if p.exists())
    controller = int(submitted[cell])
    tasks = children(controller)
    try:
        assert len(tasks) == 1, tasks
        os.kill(tasks[0], signal.SIGUSR2)
    except (AssertionError, ProcessLookupError):
        pytest.fail(f"cell {cell} finished before it could be interrupted; give the grid more steps")

    # The same command again: the cells still running are waited for, not submitted twice.
    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    assert not submitted_any(err) and jobs(out) == submitted
    assert f"aggregate: {out / records.AGGREGATE}" in stdout
    assert (out / records.AGGREGATE).read_bytes() == (reference / records.AGGREGATE).read_bytes()
    assert sweep_records(out) == sweep_records(reference)

    # The interrupted task was requeued in its job and resumed from the cell's checkpoint.
    log = (out / ".slurm" / f"{controller}_0_log.out").read_text()
    assert "this job is timed-out" in log and "Requeued job" in log
    assert log.count("Starting with JobEnvironment") == 2 and "Job completed successfully" in log
    errors = (out / ".slurm" / f"{controller}_0_log.err").read_text()
    step = int(errors.split(f"cell {cell}: resuming from its checkpoint at step ")[1].split()[0])
    assert 2 <= step < STEPS  # not retrained from step 0
    for other, job in submitted.items():  # every other cell ran once, in a job of its own
        if other != cell:
            assert (out / ".slurm" / f"{job}_0_log.out").read_text().count("Starting with JobEnvironment") == 1


# -- SLURM, through stand-ins for sbatch and sacct ---------------------------------------------------------------


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch, srun and sacct on PATH: sbatch records each script it is given and answers job ids 4242, 4243, ...;
    sacct prints ``sacct.txt`` (the test writes the states)."""
    submitit = submitit_or_skip()
    submitit.SlurmJob.watcher.clear()  # job ids repeat between tests: no state cached from an earlier one
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text(f"""#!/bin/sh
n=$(cat {bin_}/count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {bin_}/count
echo "$@" >> {bin_}/sbatch-calls
echo "Submitted batch job $((4241 + n))"
""")
    (bin_ / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_ / "sacct").write_text(f"#!/bin/sh\necho 'JobID|State|NodeList'\ncat {bin_}/sacct.txt 2>/dev/null\n")
    for name in ("sbatch", "srun", "sacct"):
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return bin_


def sbatch_calls(bin_: Path) -> list[str]:
    path = bin_ / "sbatch-calls"
    return path.read_text().splitlines() if path.exists() else []


def test_options_reach_the_submission_script(fake_slurm, tmp_path, capsys):
    out = tmp_path / "grid"
    code, stdout, err = cli(capsys, *GRID, "--engine", "slurm", "--no-wait", "--partition", "gpu", "--time", "90",
                            "--gpus-per-task", "1", "--cpus-per-task", "4", "--mem", "16G", "--array-parallelism",
                            "2", "--slurm-opt", "account=mylab", "--slurm-opt", "mail_user=me@lab.org",
                            "--out", out)
    assert code == 0, err
    assert "submitted 4 cell(s) as SLURM job 4242" in err
    assert len(sbatch_calls(fake_slurm)) == 1  # one array for the four cells
    script = (out / ".slurm" / "4242_submission.sh").read_text()
    lines = set(script.splitlines())
    folder = out.resolve() / ".slurm"
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G", "#SBATCH --array=0-3%2",
                 "#SBATCH --account=mylab", "#SBATCH --mail-user=me@lab.org", "#SBATCH --job-name=cml-grid",
                 f"#SBATCH --output={folder}/%A_%a_0_log.out", "#SBATCH --signal=USR2@90",
                 f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"):
        assert line in lines, (line, script)
    assert f"{sys.executable} -u -m submitit.core._submit {folder}" in script
    assert jobs(out) == {"cml-gamma_0.5-s0": "4242_0", "cml-gamma_0.5-s1": "4242_1", "cml-gamma_1-s0": "4242_2",
                         "cml-gamma_1-s1": "4242_3"}
    assert stdout.splitlines()[1] == "(no finished cell)" and records.read_json(out / records.AGGREGATE) == {}
    # Defaults: one CPU, 60 minutes, no partition, memory or GPU asked for.
    code, _, err = cli(capsys, *GRID, "--engine", "slurm", "--no-wait", "--out", tmp_path / "defaults")
    assert code == 0, err
    defaults = (tmp_path / "defaults" / ".slurm" / "4243_submission.sh").read_text()
    assert "#SBATCH --time=60" in defaults and "#SBATCH --cpus-per-task=1" in defaults
    assert "--partition" not in defaults and "--mem" not in defaults and "gpus" not in defaults


def test_rerun_submits_only_the_cells_whose_jobs_ended(fake_slurm, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = [*GRID, "--engine", "slurm", "--array-parallelism", "2", "--out", out]
    assert cli(capsys, *argv, "--no-wait")[0] == 0
    (fake_slurm / "sacct.txt").write_text("4242_[0-3]|RUNNING|node1\n")
    code, _, err = cli(capsys, *argv, "--no-wait")
    assert code == 0 and "4 cell(s) still queued or running from an earlier submission (4242)" in err, err
    assert not submitted_any(err) and len(sbatch_calls(fake_slurm)) == 1
    (fake_slurm / "sacct.txt").write_text("4242_0|FAILED|node1\n4242_1|CANCELLED by 1000|node1\n"
                                          "4242_2|RUNNING|node2\n4242_3|PENDING|\n")
    code, _, err = cli(capsys, *argv, "--no-wait")
    assert code == 0 and "submitted 2 cell(s) as SLURM job 4243" in err, err
    assert "#SBATCH --array=0-1%2" in (out / ".slurm" / "4243_submission.sh").read_text()
    assert jobs(out) == {"cml-gamma_0.5-s0": "4243_0", "cml-gamma_0.5-s1": "4243_1", "cml-gamma_1-s0": "4242_2",
                         "cml-gamma_1-s1": "4242_3"}
    # Waiting: every job ends without a result (here all FAILED): one line naming the cell, its job and its log.
    (fake_slurm / "sacct.txt").write_text("4242_[2-3]|OUT_OF_MEMORY|node2\n4243_[0-1]|TIMEOUT|node1\n"
                                          "4244_[0-3]|FAILED|node3\n")
    code, _, err = cli(capsys, *argv)
    line = one_line_error(code, err)
    assert "submitted 4 cell(s) as SLURM job 4244" in err
    assert (f"cell cml-gamma_0.5-s0: SLURM job 4244_0 ended without finishing it (FAILED); its log: "
            f"{out.resolve()}/.slurm/4244_0_0_log.err") in line
    assert "rerun the same command" in line and "3 more cell(s) failed" in line


# -- a task's error, as the driver reports it ------------------------------------------------------------------


def _ended(tmp_path: Path, outcome: str, value) -> Path:
    folder = tmp_path / ".slurm"
    folder.mkdir(parents=True)
    with open(folder / "999_0_result.pkl", "wb") as f:
        pickle.dump((outcome, value), f)
    return folder


def test_a_users_error_in_a_task_keeps_its_class_and_is_one_line(tmp_path):
    submitit_or_skip()
    from cml.slurm_engine import CellJobError, _raise_cell_error

    trace = ("Traceback (most recent call last):\n  File ...\ncml.meta.NonFiniteLossError: non-finite loss at "
             "outer step 3; lower --meta-lr or --inner-lr\n")
    folder = _ended(tmp_path, "error", trace)
    with pytest.raises(NonFiniteLossError, match=r"^cell c-s0 \(local job 999\): non-finite loss at outer step 3; "
                                                 r"lower --meta-lr or --inner-lr$"):
        _raise_cell_error("c-s0", {"job": "999", "executor": "local"}, folder, "")
    (folder / "999_0_result.pkl").unlink()
    _ended(tmp_path / "b", "error", "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out "
                                    "too many times.")
    with pytest.raises(CellJobError, match="stopped: Job not requeued because: timed-out too many times"):
        _raise_cell_error("c-s0", {"job": "999", "executor": "local"}, tmp_path / "b" / ".slurm", "")
    _ended(tmp_path / "c", "error", "Traceback ...\nZeroDivisionError: division by zero")
    with pytest.raises(RuntimeError, match="cell c-s0 failed in local job 999") as bug:  # a bug: its traceback
        _raise_cell_error("c-s0", {"job": "999", "executor": "local"}, tmp_path / "c" / ".slurm", "")
    assert "ZeroDivisionError: division by zero" in str(bug.value) and not isinstance(bug.value, ConfigError)


# -- refusals --------------------------------------------------------------------------------------------------


def test_without_submitit_the_engine_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit fails as if it were not installed
    code, _, err = cli(capsys, *GRID, "--engine", "slurm", "--out", tmp_path / "sweep")
    assert "--engine slurm needs submitit, which is not installed: pip install 'submitit>=" in one_line_error(code, err)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("flags, message", [
    (["--slurm-opt", "account"], "--slurm-opt account: expected KEY=VALUE"),
    (["--slurm-opt", "=mylab"], "expected KEY=VALUE"),
    (["--slurm-opt", "acc ount=x"], "expected KEY=VALUE"),
    (["--slurm-opt", "partition=gpu"], "partition has its own flag; use --partition"),
    (["--slurm-opt", "array=0-3"], "use --array-parallelism"),
    (["--slurm-opt", "output=log.txt"], "submitit sets --output itself"),
    (["--slurm-opt", "qos=a", "--slurm-opt", "qos=b"], "qos is given twice"),
    (["--mem", "16 GB"], "--mem '16 GB': expected SLURM's syntax"),
    (["--time", "0"], "--time must be at least 1 minute"),
    (["--cpus-per-task", "0"], "--cpus-per-task must be at least 1"),
    (["--array-parallelism", "0"], "--array-parallelism must be at least 1"),
    (["--slurm-executor", "slurm"], "sbatch is not on PATH"),
])
def test_bad_slurm_flags_are_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch, flags, message):
    submitit_or_skip()
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here, whatever machine runs the test
    code, _, err = cli(capsys, *GRID, "--engine", "slurm", *flags, "--out", tmp_path / "sweep")
    assert message in one_line_error(code, err)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("flags, engine", [(["--partition", "gpu"], []), (["--no-wait"], []),
                                           (["--slurm-opt", "qos=high"], ["--engine", "ray"]),
                                           (["--slurm-executor", "local"], ["--engine", "local"])])
def test_slurm_flags_without_the_slurm_engine_are_one_line(tmp_path, capsys, flags, engine):
    code, _, err = cli(capsys, *GRID, *engine, *flags, "--out", tmp_path / "sweep")
    assert f"{flags[0]} submits SLURM jobs; add --engine slurm or remove it" in one_line_error(code, err)
    assert not (tmp_path / "sweep").exists()
