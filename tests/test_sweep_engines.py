"""Sweeps beyond one process: --grid, --config, the recorded command (rerunning it reproduces every config), the
end-of-sweep summary, the Ray engine (same records as the local engine), and a driver killed mid-sweep.

Cells are tiny sinusoid runs (a few outer steps, a few test tasks). The Ray test starts one Ray cluster of 2
CPUs through the CLI, in a fresh interpreter whose working directory is outside the checkout and whose
PYTHONPATH is empty, so that its workers can only import cml through the engine's runtime environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from cml import records
from cml.cli import main
from cml.sweep import parse_grid
from cml.trainer import load_checkpoint
from figures.runs import find_runs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "4", "--test-tasks", "5", "--val-tasks", "2", "--meta-batch", "2", "--log-interval", "2",
        "--no-progress"]
# What Ray raises when its own cluster did not come up in time (on an overloaded machine).
RAY_STARTUP_TIMEOUT = "The current node timed out during startup"
# The 2 x 2 grid of the engine tests: gamma x seeds on CML.
GRID = ["sweep", "--task", "sinusoid", "--methods", "cml", "--grid", "gamma=0.5,1", "--seeds", "0,1",
        "--checkpoint-interval", "2", *TINY]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def run_records(run_dir: Path) -> dict:
    """Every record of a run folder, without wall-clock times (which differ between any two runs)."""
    out = {}
    for path in sorted(run_dir.iterdir()):
        if path.suffix == ".jsonl":
            out[path.name] = [{k: v for k, v in r.items() if k != "time"} for r in records.read_jsonl(path)]
        elif path.suffix == ".json":
            out[path.name] = {k: v for k, v in records.read_json(path).items() if k != "train_time"}
        elif path.suffix == ".npz":
            out[path.name] = {k: v.tolist() for k, v in records.load_npz(path).items()}
    state = load_checkpoint(run_dir)
    out["checkpoint"] = {"step": state["step"], "model": {k: v.tolist() for k, v in state["model"].items()}}
    return out


def sweep_records(folder: Path) -> dict:
    """Every cell's records and aggregate.json; Ray Tune's own folder is not a record."""
    cells = {p.name: run_records(p) for p in sorted(folder.iterdir()) if (p / records.CONFIG).is_file()}
    return {"cells": cells, "aggregate": records.read_json(folder / records.AGGREGATE),
            "sweep": records.read_json(folder / records.SWEEP)}


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> Path:
    """The 2 x 2 grid swept by the local engine: the reference for the Ray engine and the killed driver."""
    out = tmp_path_factory.mktemp("local") / "grid"
    assert main([*map(str, GRID), "--out", str(out)]) == 0
    return out


# -- --grid ------------------------------------------------------------------------------------------------


def test_grid_values_are_typed_by_their_config_field():
    grid = parse_grid(["gamma=0,0.5,1", "co_learner=linear,conv", "first-order=true,false",
                       "head_inner_lr=none,0.1", "inner_steps=1,2"])
    assert grid == {"gamma": [0.0, 0.5, 1.0], "co_learner": ["linear", "conv"], "first_order": [True, False],
                    "head_inner_lr": [None, 0.1], "inner_steps": [1, 2]}
    assert isinstance(grid["gamma"][0], float) and isinstance(grid["inner_steps"][0], int)


@pytest.mark.parametrize("item, message", [
    ("gama=0,1", "unknown config field 'gama'"),
    ("inner_steps=1,2.5", "inner_steps takes an integer, got '2.5'"),
    ("gamma=0,abc", "gamma takes a finite number, got 'abc'"),
    ("gamma=nan", "gamma takes a finite number"),
    ("first_order=maybe", "first_order takes true or false"),
    ("gamma=", "no values"),
    ("gamma=0,,1", "an empty value"),
    ("gamma=1,1", "repeated"),
    ("gamma", "expected FIELD=v1,v2"),
    ("seed=0,1", "use --seeds"),
    ("task=fonts,sinusoid", "one task"),
])
def test_bad_grid_is_one_line_before_anything_runs(tmp_path, capsys, item, message):
    out = tmp_path / "sweep"
    code, _, err = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--grid", item, "--out", out)
    assert message in one_line_error(code, err)
    assert not out.exists()


def test_grid_cell_refused_before_anything_runs(tmp_path, capsys):
    # Each value is well typed, but a conv co-learner has no meaning on sinusoid: refused naming the cell.
    out = tmp_path / "sweep"
    code, _, err = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--grid", "co_learner=linear,conv",
                       "--out", out)
    assert "cell cml-co_learner_conv" in one_line_error(code, err)
    code, _, err = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--grid", "gamma=0,1",
                       "--grid", "gamma=2", "--out", out)
    assert "already gridded" in one_line_error(code, err)
    code, _, err = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--grid", "gamma=0,1",
                       "--gamma", "2", "--out", out)
    assert "both set gamma" in one_line_error(code, err)
    assert not out.exists()


def test_local_grid_names_cells_by_their_values_and_prints_the_summary(local_grid, capsys):
    names = sorted(p.name for p in local_grid.iterdir() if p.is_dir())
    assert names == ["cml-gamma_0.5-s0", "cml-gamma_0.5-s1", "cml-gamma_1-s0", "cml-gamma_1-s1"]
    assert records.read_json(local_grid / "cml-gamma_0.5-s1" / records.CONFIG)["gamma"] == 0.5
    aggregate = records.read_json(local_grid / records.AGGREGATE)
    assert aggregate["cml-gamma_0.5"]["grid"] == {"gamma": 0.5} and aggregate["cml-gamma_1"]["seeds"] == 2
    # A rerun trains nothing and prints the table (with --no-progress) and where aggregate.json is.
    code, out, _ = cli(capsys, *GRID, "--out", local_grid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["cell", "seeds", "mse"]
    mean = aggregate["cml-gamma_1"]["mse"]["mean"]
    assert any(line.startswith("cml-gamma_1 ") and f"{mean:.4f} ± " in line for line in lines)
    assert lines[-1] == f"aggregate: {local_grid / records.AGGREGATE}"
    # Another grid field in the same folder would rename its cells: refused.
    code, _, err = cli(capsys, *GRID, "--grid", "hidden=8,16", "--out", local_grid)
    assert "--grid fields gamma, not gamma, hidden" in one_line_error(code, err)


def test_grid_fields_keep_their_command_line_order(tmp_path, capsys):
    # sweep.json is written with sorted keys; the cells' names keep the order the fields were given in.
    out = tmp_path / "sweep"
    code, stdout, _ = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--seeds", "0", "--grid",
                          "inner_lr=0.02", "--grid", "gamma=0.5", *TINY, "--out", out)
    assert code == 0 and (out / "cml-inner_lr_0.02-gamma_0.5-s0" / records.TEST).is_file()
    assert list(records.read_json(out / records.AGGREGATE)) == ["cml-inner_lr_0.02-gamma_0.5"]
    assert "cml-inner_lr_0.02-gamma_0.5 " in stdout
    (run,) = find_runs([out])
    assert run.grid == {"inner_lr": 0.02, "gamma": 0.5} and run.cell_name == "cml-inner_lr_0.02-gamma_0.5"


def test_ablation_page_draws_the_gamma_grid_with_each_seed_below_three_seeds(local_grid, tmp_path):
    import pypdf

    from figures import ablation
    from figures.report import write_report

    runs = find_runs([local_grid])
    numbers = ablation.cells(runs)
    aggregate = records.read_json(local_grid / records.AGGREGATE)
    line = numbers["lines"][("maml", "linear")]
    assert sorted(line) == [0.5, 1.0]
    for gamma, key in ((0.5, "cml-gamma_0.5"), (1.0, "cml-gamma_1")):
        # Two seeds: each seed's value, no t-interval (the interval policy); the same numbers as aggregate.json.
        assert line[gamma]["test"]["ci95"] is None
        assert line[gamma]["test"]["values"] == aggregate[key]["mse"]["values"]
        assert line[gamma]["dagger"]["values"] == aggregate[key]["mse_dagger"]["values"]
    assert numbers["reference"] is None  # no gamma = 0 cell and no base-learner run
    pdf = write_report([local_grid], tmp_path / "report.pdf")
    text = [" ".join((page.extract_text() or "").split()) for page in pypdf.PdfReader(str(pdf)).pages]
    assert any("γ × co-learner ablation, sinusoid, 10-shot" in t and "each seed shown, no interval across seeds" in t
               for t in text)
    assert any("Grid sweep: grid" in t and "gamma in {0.5, 1.0}" in t for t in text)
    # The grid's commands as recorded: the first, and each rerun (an earlier test reran it) after it.
    first, *reruns = records.read_commands(local_grid)
    assert f"command: {records.command_text(first)}" in text[0]
    assert all(f"then: {records.command_text(c)}" in text[0] for c in reruns)


# -- --config --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run trained with flags that differ from the preset in many fields."""
    out = tmp_path_factory.mktemp("trained")
    argv = ["train", "--task", "sinusoid", "--method", "noisy", "--noise-std", "0.2", "--queries", "7",
            "--inner-lr", "0.02", "--meta-lr", "0.003", "--hidden", "8", "--seed", "3", *TINY,
            "--out", str(out), "--name", "run"]
    assert main(argv) == 0
    return out / "run"


def test_config_file_round_trips_and_flags_override_it(trained, tmp_path, capsys):
    original = records.read_json(trained / records.CONFIG)
    code, _, _ = cli(capsys, "train", "--config", trained / records.CONFIG, "--out", tmp_path, "--name", "again")
    assert code == 0
    assert records.read_json(tmp_path / "again" / records.CONFIG) == original
    # A flag beside the file wins; a field the file leaves out keeps the preset's value.
    code, _, _ = cli(capsys, "train", "--config", trained / records.CONFIG, "--queries", "4", "--out", tmp_path,
                     "--name", "more")
    assert code == 0
    assert records.read_json(tmp_path / "more" / records.CONFIG) == {**original, "queries": 4}
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"task": "sinusoid", "method": "cml", "queries": 6, "steps": 2, "test_tasks": 3,
                                   "val_tasks": 2, "progress": False}))
    code, _, _ = cli(capsys, "train", "--config", partial, "--out", tmp_path, "--name", "partial")
    written = records.read_json(tmp_path / "partial" / records.CONFIG)
    assert code == 0 and written["queries"] == 6 and written["meta_batch"] == 10  # the quick preset's


def test_sweep_takes_a_config_file(trained, tmp_path, capsys):
    original = records.read_json(trained / records.CONFIG)
    code, _, _ = cli(capsys, "sweep", "--config", trained / records.CONFIG, "--methods", "noisy", "--seeds", "3",
                     "--out", tmp_path / "sweep")
    assert code == 0
    assert records.read_json(tmp_path / "sweep" / "noisy-maml-s3" / records.CONFIG) == original


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"task": "sinusoid", "method": "cml", "inner_lrr": 0.1}', "unknown key(s) inner_lrr"),
    ('{"task": "sinusoid", "method": "cml", "steps": "ten"}', "steps must be an integer"),
    ('{"method": "cml"}', "--task is required"),
])
def test_bad_config_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    code, _, err = cli(capsys, "train", "--config", path, "--out", tmp_path / "runs")
    assert message in one_line_error(code, err)
    assert not (tmp_path / "runs").exists()


# -- the recorded command ----------------------------------------------------------------------------------


def test_rerunning_a_sweeps_recorded_argv_reproduces_every_cells_config(tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    argv = ["sweep", "--task", "sinusoid", "--methods", "none,noisy,cml", "--seeds", "0", "--grid", "gamma=0.5,2",
            "--queries", "7", "--inner-lr", "0.02", "--meta-lr", "0.003", "--noise-std", "0.3", "--hidden", "8",
            "--first-order", *TINY, "--out", "sweep"]  # a relative --out: the same argv reruns anywhere
    monkeypatch.chdir(first)
    assert cli(capsys, *argv)[0] == 0
    (entry,) = records.read_commands(first / "sweep")
    assert entry["argv"] == argv and entry["cwd"] == str(first) and entry["prog"] == "python -m cml"
    spec = records.read_json(first / "sweep" / records.SWEEP)
    assert entry["config"] == spec["base"]  # the resolved config every cell starts from
    monkeypatch.chdir(second)
    assert cli(capsys, *entry["argv"])[0] == 0
    cells = sorted(p.name for p in (first / "sweep").iterdir() if (p / records.CONFIG).is_file())
    assert len(cells) == 6  # 3 methods x 2 gammas x 1 seed
    for name in cells:
        assert records.read_json(second / "sweep" / name / records.CONFIG) == \
            records.read_json(first / "sweep" / name / records.CONFIG), name
    assert records.read_json(second / "sweep" / records.SWEEP) == spec
    # Rerunning a sweep continues it: the first command is kept and the rerun added after it.
    monkeypatch.chdir(first)
    assert cli(capsys, *argv, "--seeds", "1")[0] == 0
    assert [c["argv"] for c in records.read_commands(first / "sweep")] == [argv, [*argv, "--seeds", "1"]]


def test_train_records_its_command_keeps_it_on_resume_and_its_argv_reproduces_the_config(tmp_path, capsys,
                                                                                          monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    argv = ["train", "--task", "sinusoid", "--method", "noisy", "--noise-std", "0.2", "--queries", "7",
            "--inner-lr", "0.02", "--hidden", "8", "--seed", "3", *TINY, "--out", "runs", "--name", "run"]
    monkeypatch.chdir(first)
    assert cli(capsys, *argv)[0] == 0
    run = first / "runs" / "run"
    (entry,) = records.read_commands(run)
    assert entry["argv"] == argv and entry["config"] == records.read_json(run / records.CONFIG)
    assert isinstance(entry["threads"], int) and entry["torch_version"] and entry["time"].endswith("+00:00")
    monkeypatch.chdir(second)
    assert cli(capsys, *entry["argv"])[0] == 0
    assert records.read_json(second / "runs" / "run" / records.CONFIG) == records.read_json(run / records.CONFIG)
    # --resume keeps the command that started the run and adds its own; the config it resolved is the new one.
    monkeypatch.chdir(first)
    assert cli(capsys, *argv, "--resume", "--steps", "6")[0] == 0
    commands = records.read_commands(run)
    assert [c["argv"] for c in commands] == [argv, [*argv, "--resume", "--steps", "6"]]
    assert commands[1]["config"] == records.read_json(run / records.CONFIG) and commands[1]["config"]["steps"] == 6
    # --restart trains afresh: a new list in the new folder, the old one moved aside with the run it describes.
    assert cli(capsys, *argv, "--restart")[0] == 0
    assert [c["argv"] for c in records.read_commands(run)] == [[*argv, "--restart"]]
    (aside,) = run.parent.glob("run" + records.ASIDE + "*")
    assert records.read_commands(aside) == commands


def test_a_refused_command_records_nothing(tmp_path, capsys):
    # Refused before anything is written: no folder, so no command.json either.
    code, _, err = cli(capsys, "sweep", "--task", "sinusoid", "--methods", "cml", "--grid", "co_learner=conv",
                       "--out", tmp_path / "sweep")
    assert code == 2 and not (tmp_path / "sweep").exists()
    code, _, err = cli(capsys, "train", "--task", "sinusoid", "--method", "cml", "--inner-lr", "0",
                       "--out", tmp_path / "runs")
    assert code == 2 and not (tmp_path / "runs").exists()


# -- engines -----------------------------------------------------------------------------------------------


def test_ray_engine_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    code, _, err = cli(capsys, *GRID, "--engine", "ray", "--out", tmp_path / "sweep")
    assert "pip install 'ray[tune]" in one_line_error(code, err)
    assert not (tmp_path / "sweep").exists()
    code, _, err = cli(capsys, *GRID, "--cpus-per-trial", "2", "--out", tmp_path / "sweep")
    assert "add --engine ray" in one_line_error(code, err)


def test_tune_runs_without_its_tensorboard_logger_and_hint(monkeypatch):
    """Tune prints "To visualize your results with TensorBoard, run: tensorboard --logdir <.tune>" exactly when its
    callbacks hold its TensorBoard logger (ray/tune/tune.py); the engine's callbacks, completed as Tuner.fit()
    completes them, hold none, and keep Tune's CSV and JSON logs."""
    pytest.importorskip("ray.tune", reason="ray[tune] is not installed (requirements.txt installs it)")
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks  # what tune.run() calls on the list

    from cml import ray_engine

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    # Outside the engine's context Tune adds its TensorBoard logger to the same list: what the engine undoes.
    assert any(isinstance(c, TBXLoggerCallback) for c in _create_default_callbacks(ray_engine.tune_callbacks()))
    with ray_engine.no_default_loggers():
        kinds = [type(c) for c in _create_default_callbacks(ray_engine.tune_callbacks())]
    assert TBXLoggerCallback not in kinds and CSVLoggerCallback in kinds and JsonLoggerCallback in kinds
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ  # as it was
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    with ray_engine.no_default_loggers():
        assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "0"


@pytest.mark.ray
def test_ray_engine_with_two_workers_writes_the_local_engines_records(local_grid, tmp_path):
    pytest.importorskip("ray.tune", reason="ray[tune] is not installed (requirements.txt installs it)")
    out = tmp_path / "ray-grid"
    # A fresh interpreter outside the checkout, cml on its sys.path but not on PYTHONPATH: the workers see the
    # checkout only through the engine's runtime environment.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    argv = [*map(str, GRID), "--out", str(out), "--engine", "ray", "--cpus-per-trial", "1", "--max-concurrent", "2"]
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from cml.cli import main; sys.exit(main({argv!r}))"
    for attempt in (1, 2):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)  # Ray starts slowly on a busy 2-core machine (41 s idle)
        # Ray gives its raylet a fixed 30 s to register (ray/_private/node.py, not configurable): on an overloaded
        # machine the cluster itself may fail to start, before any cell runs. That, and only that, is tried again.
        if attempt == 1 and proc.returncode != 0 and RAY_STARTUP_TIMEOUT in proc.stderr:
            warnings.warn(f"Ray did not start ({RAY_STARTUP_TIMEOUT!r}); trying once more", stacklevel=1)
            shutil.rmtree(out, ignore_errors=True)
            continue
        break
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"aggregate: {out / records.AGGREGATE}" in proc.stdout
    assert (out / ".tune").is_dir()  # Tune ran the cells
    # ... without pointing the user at its own TensorBoard logs (cml's events are in the run folders).
    assert "TensorBoard" not in proc.stdout + proc.stderr and not list((out / ".tune").rglob("events.out.tfevents*"))
    assert sweep_records(out) == sweep_records(local_grid)


def test_driver_killed_mid_sweep_then_rerun_ends_identical(local_grid, tmp_path):
    # Local engine: the kill point is exact (the third checkpoint: the second cell, half trained).
    out = tmp_path / "grid"
    argv = [*map(str, GRID), "--out", str(out)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.environ[records.FAULT_ENV] = "checkpoint.pt:3:done"
            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    cells = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert not (out / records.AGGREGATE).exists() and len(cells) == 2
    assert load_checkpoint(out / cells[1])["step"] == 2  # the second cell stopped halfway
    with pytest.warns(UserWarning, match="no longer running"):  # the dead driver's locks are taken over
        assert main(argv) == 0
    assert sweep_records(out) == sweep_records(local_grid)


def _ray_descendants(root: int) -> dict[int, tuple[int, bytes]]:
    """``{pid: (start time, command line)}`` of the live descendants of ``root`` whose command line names Ray."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
    out, stack = {}, [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            stack.append(pid)
            if b"ray" in cmdline and b"_reaper" not in cmdline:
                out[pid] = (int(stat[stat.rindex(")") + 2:].split()[19]), cmdline)
    return out


def _alive(pid: int, start: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat[stat.rindex(")") + 2:].split()[19]) == start


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
def test_19_28_rays_processes_end_with_a_killed_driver(tmp_path):
    """Issue 19, case 28: after ``kill -9`` of a driver that started Ray, the raylet's DashboardAgent and
    RuntimeEnvAgent used to be alive a minute later."""
    pytest.importorskip("ray")
    code = ("import sys, time; from cml.ray_engine import connect; connect(num_cpus=1); print('up', flush=True); "
            "time.sleep(600)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started: dict[int, tuple[int, bytes]] = {}
    driver = None
    try:
        for attempt in (1, 2):
            err = tmp_path / f"driver-{attempt}.err"
            with open(err, "w") as f:
                driver = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                          stderr=f, text=True)
            if driver.stdout.readline().strip() == "up":  # ray.init returned (its own startup timeout bounds it)
                break
            driver.wait(timeout=60)
            # Ray gives its raylet a fixed 30 s to register: on an overloaded machine the cluster itself may not
            # start. That, and only that, is tried again (as in the Ray engine's test above).
            assert attempt == 1 and RAY_STARTUP_TIMEOUT in err.read_text(), err.read_text()[-3000:]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the raylet starts its two agents after ray.init returns
            started = _ray_descendants(driver.pid)
            if sum(b"agent" in c.lower() for _, c in started.values()) >= 2:
                break
            time.sleep(0.5)
        assert sum(b"agent" in c.lower() for _, c in started.values()) >= 2, started
        driver.kill()
        driver.wait(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(p, s) for p, (s, _) in started.items()):
            time.sleep(0.5)
        left = [c.split(b"\0")[0].decode() for p, (s, c) in started.items() if _alive(p, s)]
        assert not left, f"alive 60 s after the driver's kill -9: {left}"
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid, (start, _) in started.items():  # never leave Ray's processes behind, whatever happened above
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
