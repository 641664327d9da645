"""TensorBoard: event files written live (`train --tensorboard`) and afterwards (`cml tensorboard RUNS`) read
back with TensorBoard's own EventAccumulator equal the run's records, point for point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="tensorboard is in requirements.txt; install it to test the export")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cml import records  # noqa: E402
from cml.cli import main  # noqa: E402
from cml.tensorboard import TENSORBOARD_DIR, export_run, scalars  # noqa: E402


def read_events(logdir: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` as TensorBoard reads the folder (every point kept: no reservoir sampling)."""
    (event_file,) = logdir.glob("events.out.tfevents.*")  # one file: an export replaces the earlier one
    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert len(steps) == len(set(steps)), f"{tag}: a step written twice"
        out[tag] = {e.step: e.value for e in events}
    return out


def assert_events_equal_records(events: dict[str, dict[int, float]], run_dir: Path) -> None:
    """Every record value is in the events at its step (as float32, TensorBoard's scalar type), and nothing else."""
    expected: dict[str, dict[int, float]] = {}
    for line in records.read_jsonl(run_dir / "metrics.jsonl"):
        for k, v in line.items():
            if k != "step" and v is not None:
                expected.setdefault(f"train/{k}", {})[line["step"]] = v
    for line in records.read_jsonl(run_dir / "val.jsonl"):
        for k, v in line.items():
            if k not in ("step", "tasks") and v is not None:  # the number of tasks is a count, not a series
                expected.setdefault(f"val/{k}", {})[line["step"]] = v
    for line in records.read_jsonl(run_dir / "dynamics.jsonl"):
        for k, v in line.items():
            if isinstance(v, dict):
                for block, x in v.items():
                    if x is not None:
                        expected.setdefault(f"dynamics/{k}/{block}", {})[line["step"]] = x
            elif k != "step" and v is not None:
                expected.setdefault(f"dynamics/{k}", {})[line["step"]] = v
    test = records.read_json(run_dir / "test.json")
    reps = records.read_json(run_dir / "representations.json")
    for key in ("cka", "cka_debiased"):
        for layer, cell in reps[key].items():
            expected[f"representations/{key}/{layer}/mean"] = {test["step"]: cell["mean"]}
    expected["test/" + ("acc" if "acc" in test else "mse")] = {test["step"]: test.get("acc", test.get("mse"))}
    # Config echoes and counts are not series (cml.tensorboard.NOT_SERIES; the .../undefined counts).
    assert not [t for t in events if t.startswith("test/params/") or t in ("test/shots", "test/ways", "test/tasks")
                or t.endswith("/undefined")]

    for tag, series in expected.items():
        assert tag in events, f"{tag} missing from the events"
        assert set(events[tag]) == set(series), tag
        for step, value in series.items():
            assert events[tag][step] == np.float32(value), (tag, step, events[tag][step], value)
    # And no tag the records do not hold.
    assert set(events) == set(scalars(run_dir))


def test_train_with_tensorboard_writes_events_equal_to_the_records(tmp_path, capsys):
    code = main(["train", "--method", "cml", "--task", "sinusoid", "--out", str(tmp_path), "--steps", "30",
                 "--log-interval", "5", "--val-interval", "10", "--val-tasks", "5", "--test-tasks", "10",
                 "--record-interval", "5", "--record-tasks", "3", "--no-progress", "--tensorboard"])
    assert code == 0
    run_dir = tmp_path / "sinusoid-cml-s0"
    events = read_events(run_dir / TENSORBOARD_DIR)
    assert_events_equal_records(events, run_dir)
    # What the issue asks to watch: losses, psi norms, cosine per block, CKA at the end.
    assert len(events["train/meta_loss"]) == 6 and len(events["dynamics/cos_psi"]) == 6
    assert any(t.startswith("dynamics/cos_blocks/") for t in events)
    assert any(t.startswith("representations/cka/") for t in events)


def test_export_of_a_sweep_equals_its_records_and_replaces_old_events(figure_runs, tmp_path, capsys):
    code = main(["tensorboard", str(figure_runs["fonts"]), "--logdir", str(tmp_path / "tb")])
    assert code == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert len(written) == 10  # five methods, two seeds
    run_dir = figure_runs["fonts"] / "cml-s1"
    logdir = tmp_path / "tb" / "fonts" / "cml-s1"
    assert logdir in written
    events = read_events(logdir)
    assert_events_equal_records(events, run_dir)
    # Classification: accuracies of both heads, during training and in the test.
    assert {"train/meta_acc", "train/co_acc", "val/acc", "test/acc", "test/acc_dagger"} <= set(events)
    # Exporting again leaves one event file with the same points (read_events checks there is one).
    export_run(run_dir, logdir)
    assert read_events(logdir) == events


def test_export_of_a_damaged_record_names_the_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"method": "cml", "task": "sinusoid", "seed": 0, "shots": 5,
                                                     "steps": 4}))
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "meta_loss": 1.0}\nnot json\n{"step": 3}\n')
    assert main(["tensorboard", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: line 2 is not valid JSON" in err and err.count("\n") == 1
