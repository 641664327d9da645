"""A newcomer's path (issue 20): the thread count in the config, resuming from the folder, the run index (``cml
runs``, ``cml compare``), ``--dry-run``, progress bars, Weights & Biases and the TensorBoard HParams summary, and the
CLI's rough edges."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cml import records
from cml.cli import main
from cml.config import Config, preset
from cml.runindex import index, runs_table

# A run that trains in a second or two: sinusoid, a few steps, a checkpoint at every other step.
TINY = ["--task", "sinusoid", "--steps", "6", "--meta-batch", "2", "--log-interval", "2", "--val-tasks", "3",
        "--test-tasks", "5", "--checkpoint-interval", "2", "--no-progress"]
TIME = {"time", "train_time", "elapsed"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _threads():
    """Every test leaves torch at the thread count it found (a run sets the process's count)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIME}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def run_records(run_dir: Path) -> dict[str, object]:
    """A run's step records and test record, wall-clock fields aside."""
    out: dict[str, object] = {name: _strip(records.read_jsonl(run_dir / name)) for name in records.STEP_RECORDS
                              if (run_dir / name).exists()}
    out["test"] = _strip(records.read_json(run_dir / records.TEST))
    return out


def config_of(run_dir: Path) -> dict:
    return json.loads((run_dir / records.CONFIG).read_text())


# -- reproducible by construction ---------------------------------------------------------------------------------

def test_threads_are_part_of_the_config_and_of_the_recorded_command(tmp_path, capsys):
    assert run(capsys, "train", "--method", "cml", *TINY, "--out", tmp_path, "--name", "t1", "--threads", "1")[0] == 0
    assert run(capsys, "train", "--method", "cml", *TINY, "--out", tmp_path, "--name", "t1b", "--threads", "1")[0] == 0
    assert run(capsys, "train", "--method", "cml", *TINY, "--out", tmp_path, "--name", "t2", "--threads", "2")[0] == 0
    one, again, two = (config_of(tmp_path / n) for n in ("t1", "t1b", "t2"))
    # The same seed at 1 and 2 threads: two configs, differing in the thread count alone.
    assert one["threads"] == 1 and two["threads"] == 2
    assert {k for k in one if one[k] != two[k]} == {"threads"}
    # The same threads: identical records (wall-clock fields aside).
    assert one == again and run_records(tmp_path / "t1") == run_records(tmp_path / "t1b")
    # command.json says what ran: the config's threads, the torch build, the device.
    (entry,) = records.read_commands(tmp_path / "t2")
    assert entry["threads"] == 2 == entry["config"]["threads"]
    assert entry["torch_version"] == torch.__version__ and entry["device"] == "cpu"
    # Left out, threads is the process's count, written resolved (as backend auto is).
    torch.set_num_threads(1)
    assert run(capsys, "train", "--method", "none", *TINY, "--out", tmp_path, "--name", "default")[0] == 0
    assert config_of(tmp_path / "default")["threads"] == 1 == torch.get_num_threads()
    # A sweep can vary it: one cell per count, named by it.
    assert run(capsys, "sweep", "--methods", "none", "--seeds", "0", "--grid", "threads=1,2", *TINY,
               "--out", tmp_path / "sweep")[0] == 0
    assert {config_of(tmp_path / "sweep" / n)["threads"] for n in ("maml-threads_1-s0", "maml-threads_2-s0")} == {1, 2}
    with pytest.raises(Exception, match="threads must be a positive integer"):
        preset("quick", "sinusoid", "cml", threads=0)


def _make_old(run_dir: Path) -> None:
    """The run folder as a version before ``threads`` existed wrote it: no such key in config.json or the
    checkpoint's config."""
    values = config_of(run_dir)
    del values["threads"]
    (run_dir / records.CONFIG).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    state = torch.load(run_dir / records.CHECKPOINT, weights_only=True)
    del state["config"]["threads"]
    torch.save(state, run_dir / records.CHECKPOINT)


def test_a_run_written_before_threads_loads_evaluates_resumes_and_is_listed(tmp_path, capsys):
    run_dir = tmp_path / "old"
    assert run(capsys, "train", "--method", "cml", *TINY, "--out", tmp_path, "--name", "old")[0] == 0
    test = records.read_json(run_dir / records.TEST)
    _make_old(run_dir)
    assert Config.load(run_dir / records.CONFIG).threads is None
    code, out, _ = run(capsys, "evaluate", run_dir, "--no-progress")
    assert code == 0 and f"{test['mse']:.4f}" in out  # its own settings reproduce test.json
    from figures.runs import find_runs

    (loaded,) = find_runs([run_dir])
    loaded.check()  # what the report reads
    assert "finished" in run(capsys, "runs", tmp_path)[1]
    code, _, err = run(capsys, "resume", run_dir, "--steps", "8")
    assert code == 0 and "resuming" in err and "at step 6 of 8" in err
    assert config_of(run_dir)["threads"] == torch.get_num_threads()  # continued at the process's count, recorded


# -- resume from the folder ---------------------------------------------------------------------------------------

def test_resume_continues_from_the_folder_with_its_own_config(tmp_path, capsys):
    # Settings the preset would not give: a resume that rebuilt them from the preset would differ.
    own = ["--inner-lr", "0.02", "--checkpoint-interval", "2", "--seed", "3"]
    straight = tmp_path / "straight"
    assert run(capsys, "train", "--method", "cml", *TINY, *own, "--steps", "10", "--out", tmp_path,
               "--name", "straight")[0] == 0
    assert run(capsys, "train", "--method", "cml", *TINY, *own, "--out", tmp_path, "--name", "r")[0] == 0
    run_dir = tmp_path / "r"
    code, out, err = run(capsys, "resume", run_dir, "--steps", "10")
    assert code == 0 and f"resuming {run_dir} at step 6 of 10" in err
    # The metrics and test of an uninterrupted run (val.jsonl keeps the validation at the old end, step 6).
    got, want = run_records(run_dir), run_records(straight)
    assert got["metrics.jsonl"] == want["metrics.jsonl"] and got["test"] == want["test"]
    assert config_of(run_dir) == config_of(straight)
    # Recorded as a continuation: the train command first, then the resume.
    assert [c["argv"][0] for c in records.read_commands(run_dir)] == ["train", "resume"]
    # A flag that contradicts the stored config: one line naming it with both values.
    code, _, err = run(capsys, "resume", run_dir, "--inner-lr", "0.5", "--steps", "12")
    assert code == 2 and err.count("\n") == 1
    assert "--inner-lr 0.5 (the run's 0.02)" in err and "only --steps" in err
    # A flag that repeats it is fine; train --resume needs only what names the folder (the preset's
    # checkpoint interval, left out, no longer contradicts the run's).
    code, _, err = run(capsys, "train", "--task", "sinusoid", "--method", "cml", "--seed", "3", "--out", tmp_path,
                       "--name", "r", "--resume", "--steps", "12", "--inner-lr", "0.02", "--no-progress")
    assert code == 0 and "at step 10 of 12" in err
    code, _, err = run(capsys, "resume", tmp_path / "nowhere")
    assert code == 2 and "holds no config.json" in err


def test_resume_without_a_checkpoint_starts_again_with_the_stored_config(tmp_path, capsys):
    assert run(capsys, "train", "--method", "none", *TINY, "--inner-lr", "0.03", "--out", tmp_path,
               "--name", "k")[0] == 0
    run_dir = tmp_path / "k"
    reference = run_records(run_dir)
    (run_dir / records.CHECKPOINT).unlink()  # killed before its first checkpoint
    code, _, err = run(capsys, "resume", run_dir)
    assert code == 0 and "holds no checkpoint yet: training it from step 0 of 6" in err
    assert run_records(run_dir) == reference and config_of(run_dir)["inner_lr"] == 0.03


# -- --dry-run ----------------------------------------------------------------------------------------------------

def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_dry_run_prints_the_resolved_config_and_the_cells_and_writes_nothing(tmp_path, capsys):
    torch.set_num_threads(1)
    before = _tree(tmp_path)
    code, out, _ = run(capsys, "train", "--method", "cml", *TINY, "--backend", "auto", "--out", tmp_path / "runs",
                       "--dry-run")
    assert code == 0 and _tree(tmp_path) == before  # no folder, no lock file
    config = json.loads(out[out.index("{"):])
    assert config["threads"] == 1 and config["backend"] == "higher"  # resolved as the trainer resolves them
    assert Config.from_dict(config).steps == 6 and "would train a new run folder" in out
    sweep = ["sweep", "--methods", "none,cml", "--seeds", "0,1", *TINY, "--out", tmp_path / "sweep"]
    code, out, _ = run(capsys, *sweep, "--dry-run")
    assert code == 0 and _tree(tmp_path) == before and "4 cells, 0 finished" in out
    assert all(re.search(rf"^{cell} +start$", out, re.M) for cell in ("maml-s0", "maml-s1", "cml-s0", "cml-s1"))
    # After part of the sweep ran: which cells are finished, which would resume.
    assert run(capsys, "sweep", "--methods", "none", "--seeds", "0", *TINY, "--out", tmp_path / "sweep")[0] == 0
    assert run(capsys, "train", "--method", "cml", *TINY, "--steps", "4", "--out", tmp_path / "sweep",
               "--name", "cml-s0")[0] == 0
    after = _tree(tmp_path)
    code, out, _ = run(capsys, *sweep, "--dry-run")
    assert code == 0 and _tree(tmp_path) == after
    assert re.search(r"^maml-s0 +finished \(skipped\)$", out, re.M) and re.search(r"^cml-s0 +resume at step 4 of 6$",
                                                                                   out, re.M)
    # What the sweep itself would refuse, the dry run refuses too, before writing.
    code, _, err = run(capsys, *sweep[:-2], "--out", tmp_path / "sweep", "--inner-lr", "0.5", "--dry-run")
    assert code == 2 and "holds a sweep with other settings: this command asks for inner_lr 0.5" in err


# -- the run index ------------------------------------------------------------------------------------------------

def _fake_run(folder: Path, seed: int, method: str = "none", acc: float | None = None, steps: int = 10,
              logged: int | None = None, **config) -> Path:
    """A run folder built by hand (``cml runs`` and ``compare`` read records only): its config.json, metrics up to
    ``logged``, and with ``acc`` a test.json and a checkpoint file."""
    folder.mkdir(parents=True)
    cfg = preset("quick", "fonts", method, seed=seed, steps=steps, **config)
    cfg.save(folder / records.CONFIG)
    for step in range(2, (logged if logged is not None else steps) + 1, 2):
        records.append_jsonl(folder / records.METRICS, {"step": step, "time": 0.1, "meta_loss": 1.0})
    if acc is not None:
        records.write_json(folder / records.TEST, {"step": steps, "acc": acc, "acc_ci95": 0.01, "tasks": 600,
                                                   "params": {"train": 10, "test": 8}})  # as the schema asks
        (folder / records.CHECKPOINT).write_bytes(b"")  # checked for presence only: never opened
    return folder


def test_runs_lists_every_state(tmp_path, capsys):
    root = tmp_path / "runs"
    _fake_run(root / "done", 0, acc=0.9)
    _fake_run(root / "better", 1, acc=0.95)
    _fake_run(root / "half", 0, logged=4)
    bad = _fake_run(root / "bad", 0, acc=0.8)
    (bad / records.METRICS).write_text('{"step": 2}\nnot json\n{"step": 4}\n')
    busy = _fake_run(root / "busy", 2, logged=2)
    sweep = root / "sweep"
    sweep.mkdir()
    spec = {"base": preset("quick", "fonts", "none").to_dict(), "bases": ["maml"], "methods": ["none", "cml"],
            "seeds": [0], "preset": "quick"}
    records.write_json(sweep / records.SWEEP, spec)
    _fake_run(sweep / "maml-s0", 0, acc=0.85)
    (root / "bad.aside-20240101").mkdir()  # moved aside by --restart: not listed
    with records.FolderLock(busy):
        code, out, _ = run(capsys, "runs", root)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(str(root))}
    state = {Path(k).name: v.rsplit("  ", 1)[-1].strip() for k, v in rows.items()}
    assert state == {"done": "finished", "better": "finished", "half": "partial", "bad": "damaged",
                     "busy": "locked", "maml-s0": "finished", "cml-s0": "not started"}
    assert "90.00 ± 1.00%" in rows[str(root / "done")] and "4/10" in rows[str(root / "half")]
    assert "metrics.jsonl: line 2 is not valid JSON" in out and f"PID {os.getpid()}" in out
    assert out.splitlines()[-1] == "7 runs: 3 finished, 1 partial, 1 damaged, 1 locked, 1 not started"
    # The lock was only looked at: nothing holds it now, and the probe took nothing.
    assert records.lock_holder(busy) is None
    code, out, _ = run(capsys, "runs", root, "--sort", "result")
    names = [Path(line.split()[0]).name for line in out.splitlines() if line.startswith(str(root))]
    assert names[:3] == ["better", "done", "maml-s0"]
    entries = index([root])
    assert sorted(e.path.name for e in entries if e.state == "partial") == ["busy", "half"]
    assert "steps" in runs_table(entries, sort="steps").splitlines()[0]
    code, _, err = run(capsys, "runs", tmp_path / "nothing")
    assert code == 2 and "does not exist" in err


def test_compare_sets_runs_side_by_side_and_pairs_them_by_seed(tmp_path, capsys):
    from analysis.stats import seed_ci95

    root = tmp_path / "runs"
    base = {0: 0.90, 1: 0.80, 2: 0.85}
    gain = {0: 0.02, 1: 0.05, 2: 0.01}
    for s in base:
        _fake_run(root / f"maml-s{s}", s, acc=base[s])
        _fake_run(root / f"cml-s{s}", s, "cml", acc=base[s] + gain[s])
    code, out, _ = run(capsys, "compare", *(root / f"{m}-s{s}" for m in ("maml", "cml") for s in base))
    assert code == 0
    assert "A  " in out and "method" in out.split("results")[0]  # the config difference
    mean, ci = seed_ci95([100 * g for g in gain.values()])
    assert f"+{mean:.2f} ± {ci:.2f}% (3 paired seeds" in out
    assert "(3 seeds)" in out  # each column: the mean across seeds with its CI
    # Two runs of one seed: each its own column, the difference on the same test tasks.
    code, out, _ = run(capsys, "compare", root / "maml-s0", root / "cml-s0")
    assert code == 0 and "+2.00% (paired: seed 0)" in out
    # Different test tasks are not paired.
    _fake_run(root / "cml-q", 0, "cml", acc=0.99, queries=7)
    code, out, _ = run(capsys, "compare", root / "maml-s0", root / "cml-q")
    assert code == 0 and "not paired" in out and "queries" in out
    code, _, err = run(capsys, "compare", root / "maml-s0")
    assert code == 2 and "two or more runs" in err


# -- progress -----------------------------------------------------------------------------------------------------

def test_a_sweep_has_one_overall_bar_and_bars_named_by_cell(tmp_path, capsys):
    quiet = [a for a in TINY if a != "--no-progress"]
    code, _, err = run(capsys, "sweep", "--methods", "none", "--seeds", "0,1", "--grid", "gamma=0,1", *quiet,
                       "--out", tmp_path / "s")
    assert code == 0
    assert "sweep s: 100%" in err and "4/4" in err and "cell" in err
    assert all(name in err for name in ("maml-gamma_0-s0", "maml-gamma_1-s1"))  # seed and grid values
    code, _, err = run(capsys, "sweep", "--methods", "none", "--seeds", "0,2", *TINY, "--out", tmp_path / "q")
    assert code == 0 and "%|" not in err  # --no-progress: no bar
    from cml.demo import SWEEPS, _overall_bar, demo_configs

    bar = _overall_bar(tmp_path / "demo", demo_configs(steps=2))
    assert bar.total == sum(len(m) * len(s) for _, _, parts in SWEEPS for m, s in parts) and bar.n == 0
    bar.close()


# -- TensorBoard and Weights & Biases -----------------------------------------------------------------------------

def test_tensorboard_holds_an_hparams_summary_and_no_junk_tags(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    from cml.tensorboard import TENSORBOARD_DIR, scalars

    assert run(capsys, "train", "--method", "cml", *TINY, "--record-interval", "2", "--record-tasks", "3",
               "--out", tmp_path, "--name", "tb", "--tensorboard")[0] == 0
    run_dir = tmp_path / "tb"
    tags = set(scalars(run_dir))
    assert "test/mse" in tags and "val/mse" in tags
    junk = [t for t in tags if t.startswith("test/params/") or t in ("test/shots", "test/tasks", "val/tasks")
            or t.endswith("/undefined")]
    assert not junk
    (events,) = (run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*")
    start = None
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams" and value.tag == "_hparams_/session_start_info":
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                start = data.session_start_info
    assert start is not None
    config = config_of(run_dir)
    got = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert got["method"] == "cml" and got["inner_lr"] == config["inner_lr"] and got["data"] == "none"
    assert set(got) == set(config)


def test_tensorboard_or_wandb_missing_fails_before_any_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # an import of it raises ImportError
    monkeypatch.setitem(sys.modules, "wandb", None)
    for flag, words in (("--tensorboard", "pip install tensorboard"), ("--wandb", "pip install wandb")):
        code, _, err = run(capsys, "train", "--method", "none", *TINY, "--out", tmp_path / "runs", flag)
        assert code == 2 and words in err and err.count("\n") == 1
        code, _, err = run(capsys, "sweep", "--methods", "none", "--seeds", "0", *TINY, "--out", tmp_path / "s", flag)
        assert code == 2 and words in err
    assert not list(tmp_path.iterdir())


def _wandb_records(path: Path):
    """The records of an offline W&B run's transaction log (``run-<id>.wandb``: the LevelDB log format W&B writes,
    32 KiB blocks of records, each a protobuf ``Record``), read without W&B's service."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunks = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def _offline_runs(folder: Path) -> dict[str, dict]:
    out = {}
    for log in folder.glob("wandb/offline-run-*/run-*.wandb"):
        run, history = None, {}
        for r in _wandb_records(log):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run = r.run
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                history.setdefault(r.history.step.num, {}).update(
                    {k: v for k, v in items.items() if not k.startswith("_")})
        config = {i.key: json.loads(i.value_json) for i in run.config.update if i.key != "_wandb"}
        out[run.display_name] = {"id": run.run_id, "config": config, "history": history, "group": run.run_group}
    return out


def test_wandb_offline_logs_the_records_and_config(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is in requirements.txt; install it to test --wandb")
    from cml.tensorboard import scalars

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    code, _, err = run(capsys, "train", "--method", "cml", *TINY, "--out", tmp_path, "--name", "w", "--wandb")
    assert code == 0 and "Weights & Biases run: w" in err
    logged = _offline_runs(tmp_path / "wb")["w"]
    run_dir = tmp_path / "w"
    assert logged["config"] == config_of(run_dir)
    expected: dict[int, dict[str, float]] = {}
    for tag, series in scalars(run_dir).items():
        for step, value in series.items():
            expected.setdefault(step, {})[tag] = value
    assert logged["history"] == expected  # every point of the records, at its step, and nothing else
    assert records.read_json(run_dir / records.WANDB_RUN)["id"] == logged["id"]
    # A sweep logs each cell once it is finished, grouped by the sweep folder; a rerun logs none twice.
    sweep = ["sweep", "--methods", "none,cml", "--seeds", "0", *TINY, "--out", tmp_path / "grid", "--wandb"]
    assert run(capsys, *sweep)[0] == 0
    assert run(capsys, *sweep)[0] == 0
    cells = {k: v for k, v in _offline_runs(tmp_path / "wb").items() if k != "w"}
    assert sorted(cells) == ["cml-s0", "maml-s0"] and {c["group"] for c in cells.values()} == {"grid"}
    assert len(list((tmp_path / "wb").glob("wandb/offline-run-*"))) == 3


# -- the CLI's rough edges ----------------------------------------------------------------------------------------

def test_a_flag_its_task_does_not_read_is_refused(tmp_path, capsys):
    for flag in (["--ways", "1"], ["--filters", "16"], ["--image-size", "32"]):
        code, _, err = run(capsys, "train", "--method", "none", *TINY, *flag, "--out", tmp_path)
        assert code == 2 and f"{flag[0]} does not apply to sinusoid" in err and err.count("\n") == 1
    code, _, err = run(capsys, "sweep", "--methods", "none", *TINY, "--grid", "ways=2,3", "--out", tmp_path / "s")
    assert code == 2 and "--grid ways=2 does not apply to sinusoid" in err
    code, _, err = run(capsys, "params", "--task", "sinusoid", "--filters", "16")
    assert code == 2 and "does not apply" in err
    assert not list(tmp_path.iterdir())
    # The default value changes nothing and is let through (a --config file of a run holds one).
    assert run(capsys, "train", "--method", "none", *TINY, "--ways", "5", "--out", tmp_path)[0] == 0
    assert config_of(tmp_path / "sinusoid-maml-s0")["ways"] == 5


def test_params_defaults_to_trains_preset_and_help_lists_values(capsys):
    code, out, _ = run(capsys, "params", "--task", "fonts")
    assert code == 0 and "(quick preset, fonts)" in out
    from cml.cli import build_parser

    text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    split = text[text.index("--split SPLIT "):]
    split = split[:split.index("config overrides")]
    assert "lake, vinyals" in split and "Default: default" not in split
    filters = text[text.index("--filters FILTERS "):text.index("--hidden HIDDEN ")]
    assert "sinusoid" not in filters and "graph)" not in filters
    evaluate = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "--progress, --no-progress" in evaluate and "--threads" in evaluate


def test_a_fonts_cache_under_a_missing_folder_is_refused_before_rendering(tmp_path, capsys):
    cache = tmp_path / "missing" / "cache"
    code, _, err = run(capsys, "train", "--task", "fonts", "--method", "none", "--data", cache, "--steps", "1",
                       "--out", tmp_path / "runs", "--no-progress")
    assert code == 2 and f"its parent folder {cache.parent} does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "missing").exists()


def _png_folder(root: Path, classes: int, light: bool, per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            strokes = rng.random((28, 28)) < 0.15
            pixels = np.where(strokes, 0, 255) if light else np.where(strokes, 255, 0)
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return root


def test_evaluate_on_a_folder_says_what_is_wrong_in_one_line(fonts_cache, tmp_path, capsys):
    assert run(capsys, "train", "--task", "fonts", "--method", "none", "--steps", "1", "--filters", "8",
               "--meta-batch", "1", "--val-tasks", "2", "--test-tasks", "2", "--queries", "2", "--no-progress",
               "--out", tmp_path, "--name", "f")[0] == 0
    run_dir = tmp_path / "f"
    few = _png_folder(tmp_path / "three", 3, light=False)
    code, _, err = run(capsys, "evaluate", run_dir, "--data", few, "--no-progress")
    assert code == 2 and "3 class folders, fewer than the 5 ways" in err and "lower --ways" not in err
    # One level too high: the class folders are inside alphabet folders.
    _png_folder(tmp_path / "alphabets" / "greek", 5, light=False)
    _png_folder(tmp_path / "alphabets" / "latin", 5, light=False)
    code, _, err = run(capsys, "evaluate", run_dir, "--data", tmp_path / "alphabets", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "expected directly in it" in err and "give one of them" in err
    assert "UserWarning" not in err
    # Dark strokes on light paper without --invert: one warning line; with it, none.
    light = _png_folder(tmp_path / "light", 5, light=True)
    with pytest.warns(UserWarning, match="inverted relative to the light-on-dark images .* add --invert") as caught:
        assert run(capsys, "evaluate", run_dir, "--data", light, "--tasks", "2", "--queries", "2",
                   "--no-progress")[0] == 0
    assert len(caught) == 1
    code, _, err = run(capsys, "evaluate", run_dir, "--data", light, "--tasks", "2", "--queries", "2", "--invert",
                       "--progress")
    assert code == 0 and "warning" not in err and "eval" in err  # and the bar was shown
    # As the user sees it (outside pytest's recording): one "warning:" line, no source line.
    done = subprocess.run([sys.executable, "-m", "cml", "evaluate", str(run_dir), "--data", str(light), "--tasks",
                           "2", "--queries", "2", "--no-progress"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("warning: ") and "add --invert" in done.stderr
