"""Sweeps: a grid of methods x seeds on one task, in one folder, resumable, aggregated across seeds.

Layout of a sweep folder::

    sweep.json                 the grid: base config, methods, seeds
    <method>-s<seed>/          one run folder per cell (see cml.records)
    aggregate.json             per method: mean and 95% CI (Student t; 3+ seeds) across seeds of each test metric

A run whose ``test.json`` exists is finished and skipped; one with a checkpoint is resumed; one without is
started again. A claim drawn from one seed is not a claim: aggregate.json says how many seeds back each mean.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config, ConfigError

TEST_METRICS = ("acc", "acc_dagger", "mse", "mse_dagger", "mse_before")


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def run_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits=None,
              record: bool = True, tensorboard: bool = False) -> dict[str, Any]:
    """Trains every (method, seed) cell not yet finished, then writes and returns ``aggregate.json``.

    Args:
        out: the sweep folder.
        base: the config every cell starts from; ``method`` and ``seed`` are set per cell. Method-specific
            defaults (noisy-maml's noise) come from ``base`` if set there, else from the preset values.
        methods, seeds: the grid.
        splits: preloaded data splits shared by all cells (loaded once from ``base`` when None).
        record: attach the learning-dynamics recorder (``base.record_interval`` must then be > 0).
        tensorboard: write TensorBoard events into each run folder from its records (:mod:`cml.tensorboard`),
            live while a cell trains; a cell finished earlier is exported from its records.

    Raises:
        ConfigError: if ``out`` holds a sweep with another grid or base config.
    """
    from analysis.recorders import Recorder

    from .tensorboard import LiveExport, export_run
    from .trainer import TaskSource, Trainer

    out = Path(out)
    for method in methods:  # every cell's config is valid before anything is written or trained
        for seed in seeds:
            cell_config(base, method, int(seed))
    out.mkdir(parents=True, exist_ok=True)
    spec = {"base": base.to_dict(), "methods": list(methods), "seeds": [int(s) for s in seeds]}
    spec_path = out / "sweep.json"
    if spec_path.exists():
        old = records.read_json(spec_path)
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
            if (run_dir / "test.json").exists() and records.read_json(run_dir / "test.json")["step"] >= cfg.steps:
                if tensorboard:
                    export_run(run_dir)
                continue
            resume = (run_dir / "checkpoint.pt").exists()
            if run_dir.exists() and not resume:
                shutil.rmtree(run_dir)  # nothing recoverable: no checkpoint was written
            recorder = Recorder(run_dir) if record and cfg.record_interval else None
            trainer = Trainer(cfg, run_dir, splits=splits, resume=resume, recorder=recorder)
            live = LiveExport(run_dir) if tensorboard else None
            if live is not None:
                trainer.log_hooks.append(lambda _, live=live: live.update())
            trainer.train()
            if recorder is not None:
                recorder.finish(trainer)
            if live is not None:
                live.close()
    return aggregate(out)


def cell_config(base: Config, method: str, seed: int) -> Config:
    changes: dict[str, Any] = {"method": method, "seed": seed}
    if method == "noisy-maml" and base.noise_std == 0:
        changes["noise_std"] = 0.5
    return base.replace(**changes)


def aggregate(out: Path) -> dict[str, Any]:
    """Mean and 95% CI across seeds of each finished run's test metrics, per method; writes aggregate.json.

    The interval follows the reporting policy (:func:`analysis.stats.seed_ci95`): null with fewer than 3 seeds.
    """
    from analysis.stats import seed_ci95

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
                mean, ci = seed_ci95(values)
                entry[metric] = {"mean": mean, "ci95": ci, "values": values}
        result[method] = entry
    records.write_json(Path(out) / "aggregate.json", result)
    return result
