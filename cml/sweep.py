"""Sweeps: a grid of methods x seeds on one task, in one folder, resumable, aggregated across seeds.

Layout of a sweep folder::

    sweep.json                 the grid: base config, methods, seeds
    <method>-s<seed>/          one run folder per cell (see cml.records)
    aggregate.json             per method: mean and 95% CI (Student t) across seeds of each test metric

A cell is finished only when every record it should have exists and parses (:func:`cell_finished`); a
finished cell is skipped, an unfinished one with a checkpoint is resumed (which writes its missing records
again), one without is started again. The sweep folder and each cell are locked while written
(:class:`cml.records.FolderLock`). A claim drawn from one seed is not a claim: aggregate.json says how many
seeds back each mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import sys

from . import records
from .config import Config, ConfigError

TEST_METRICS = ("acc", "acc_dagger", "mse", "mse_dagger", "mse_before")


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def run_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits=None,
              record: bool = True, restart: bool = False) -> dict[str, Any]:
    """Trains every (method, seed) cell not yet finished, then writes and returns ``aggregate.json``.

    Args:
        out: the sweep folder.
        base: the config every cell starts from; ``method`` and ``seed`` are set per cell. Method-specific
            defaults (noisy-maml's noise) come from ``base`` if set there, else from the preset values.
        methods, seeds: the grid.
        splits: preloaded data splits shared by all cells (loaded once from ``base`` when None).
        record: attach the learning-dynamics recorder (``base.record_interval`` must then be > 0).
        restart: move a damaged ``sweep.json`` or a cell with a damaged file aside (nothing is deleted) and
            write it again, instead of stopping with the error.

    Raises:
        ConfigError: if ``out`` holds a sweep with another grid or base config.
        RunFolderError: if a file of the sweep is damaged (without ``restart``), or another process writes it.
    """
    out = Path(out)
    for method in methods:  # every cell's config is valid before anything is written or trained
        for seed in seeds:
            cell_config(base, method, int(seed))
    with records.FolderLock(out):  # one sweep process per folder
        out.mkdir(parents=True, exist_ok=True)
        _run_cells(out, base, methods, seeds, splits, record, restart)
        return aggregate(out)


def _read_spec(spec_path: Path, restart: bool) -> dict[str, Any] | None:
    """The sweep.json already in a sweep folder (None if there is none, or it was damaged and moved aside)."""
    if not spec_path.exists():
        return None
    try:
        old = records.read_json(spec_path)
        if not (isinstance(old.get("base"), dict) and isinstance(old.get("methods"), list)
                and isinstance(old.get("seeds"), list)):
            raise records.damaged(spec_path, "lacks the base config, methods or seeds; not written by cml")
    except records.RunFolderError:
        if not restart:
            raise
        print(f"moved damaged {spec_path} aside to {records.move_aside(spec_path)}", file=sys.stderr)
        return None
    return old


def _run_cells(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits, record: bool,
               restart: bool) -> None:
    from analysis.recorders import Recorder

    from .trainer import TaskSource, Trainer

    spec = {"base": base.to_dict(), "methods": list(methods), "seeds": [int(s) for s in seeds]}
    spec_path = out / records.SWEEP
    old = _read_spec(spec_path, restart)
    if old is not None:
        changed = {k: v for k, v in old["base"].items() if spec["base"].get(k) != v and k not in ("steps", "progress")}
        if changed:
            raise ConfigError(f"{out} holds a sweep with other settings ({', '.join(sorted(changed))}); "
                              f"use another --out")
        spec["methods"] = list(dict.fromkeys(old["methods"] + spec["methods"]))
        spec["seeds"] = sorted(set(old["seeds"]) | set(spec["seeds"]))
    records.write_json(spec_path, spec)
    if splits is None and not base.is_regression:
        splits = TaskSource(base).splits
    for method in methods:
        for seed in seeds:
            cfg = cell_config(base, method, int(seed))
            run_dir = out / run_name(method, int(seed))
            recording = record and cfg.record_interval > 0
            if cell_finished(run_dir, cfg, recording):
                continue
            with records.FolderLock(run_dir):
                recorder = Recorder(run_dir) if recording else None
                try:
                    # With a checkpoint, resuming writes again whatever records are missing or damaged.
                    trainer = Trainer(cfg, run_dir, splits=splits, resume=(run_dir / records.CHECKPOINT).exists(),
                                      recorder=recorder)
                except records.RunFolderError:
                    if not restart:
                        raise
                    print(f"moved damaged {run_dir} aside to {records.move_aside(run_dir)}", file=sys.stderr)
                    trainer = Trainer(cfg, run_dir, splits=splits, recorder=recorder)
                trainer.train()
                if recorder is not None:
                    recorder.finish(trainer)


def cell_finished(run_dir: Path, cfg: Config, recording: bool) -> bool:
    """Whether a cell has every record it should have, each one parsing, for at least ``cfg.steps`` steps.

    ``config.json`` (the cell's settings; only ``steps`` may differ, as on resume), ``metrics.jsonl``,
    ``val.jsonl``, and a checkpoint and ``test.json`` of the same step, at least ``cfg.steps`` (a cell trained
    further than asked counts as finished, as it always has); with ``recording``, also ``dynamics.jsonl`` (if a step was recorded), ``representations.json``
    and ``features.npz`` (image tasks) or ``fits.npz`` (sinusoid). A cell killed between ``test.json`` and its
    recorder's last file is therefore not finished, and resuming it writes what is missing.
    """
    from .trainer import load_checkpoint

    run_dir = Path(run_dir)
    try:
        saved = records.read_json(run_dir / "config.json")
        if {k: v for k, v in saved.items() if k not in ("steps", "progress")} != \
                {k: v for k, v in cfg.to_dict().items() if k not in ("steps", "progress")}:
            return False
        step = records.read_json(run_dir / "test.json").get("step")
        if not isinstance(step, int) or step < cfg.steps or saved.get("steps") != step:
            return False
        for name in ("metrics.jsonl", "val.jsonl") + (("dynamics.jsonl",) if recording and
                                                      cfg.steps >= cfg.record_interval else ()):
            records.read_jsonl(run_dir / name)
        if load_checkpoint(run_dir)["step"] != step:
            return False
        if recording:
            records.read_json(run_dir / "representations.json")
            records.load_npz(run_dir / ("fits.npz" if cfg.is_regression else "features.npz"))
    except (FileNotFoundError, records.RunFolderError):
        return False
    return True


def cell_config(base: Config, method: str, seed: int) -> Config:
    changes: dict[str, Any] = {"method": method, "seed": seed}
    if method == "noisy-maml" and base.noise_std == 0:
        changes["noise_std"] = 0.5
    return base.replace(**changes)


def aggregate(out: Path) -> dict[str, Any]:
    """Mean and 95% CI across seeds of each finished run's test metrics, per method; writes aggregate.json."""
    from analysis.stats import mean_ci95

    spec = records.read_json(Path(out) / "sweep.json")
    result: dict[str, Any] = {}
    for method in spec["methods"]:
        tests = [records.read_json(p) for seed in spec["seeds"]
                 if (p := Path(out) / run_name(method, seed) / "test.json").exists()]
        if not tests:
            continue
        entry: dict[str, Any] = {"seeds": len(tests), "params": tests[0]["params"]}
        for metric in TEST_METRICS:
            values = [t[metric] for t in tests if metric in t]
            if values:
                mean, ci = mean_ci95(values)
                entry[metric] = {"mean": mean, "ci95": ci, "values": values}
        result[method] = entry
    records.write_json(Path(out) / "aggregate.json", result)
    return result
