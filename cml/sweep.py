"""Sweeps: a grid of base learners x methods x seeds on one task, in one folder, resumable, aggregated
across seeds.

Layout of a sweep folder::

    sweep.json                 the grid: the config every cell starts from, bases, methods, seeds
    <variant>-s<seed>/         one run folder per cell (see cml.records; variant: cml.methods.variant_key,
                               e.g. cml-s0 on MAML, boil_cml-s0 on BOIL)
    aggregate.json             per variant: mean and 95% CI (Student t; 3+ seeds) across seeds of each test metric

A run whose ``test.json`` exists is finished and skipped; one with a checkpoint is resumed; one without is
started again. A claim drawn from one seed is not a claim: aggregate.json says how many seeds back each mean.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config, ConfigError, preset
from .methods import LEGACY_BASE, get_method, upgrade, variant_key

TEST_METRICS = ("acc", "acc_dagger", "mse", "mse_dagger", "mse_before")


def run_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits=None,
              record: bool = True, bases: Sequence[str] | None = None, preset_name: str | None = None,
              tensorboard: bool = False) -> dict[str, Any]:
    """Trains every (base learner, method, seed) cell not yet finished, then writes and returns
    ``aggregate.json``.

    Args:
        out: the sweep folder.
        base: the config every cell starts from; ``base``, ``method`` and ``seed`` are set per cell.
        methods, seeds: the grid.
        splits: preloaded data splits shared by all cells (loaded once from ``base`` when None).
        record: attach the learning-dynamics recorder (``base.record_interval`` must then be > 0).
        bases: the base learners (default: ``base.base`` alone).
        preset_name: the preset ``base`` came from; a cell of another base learner takes that base's preset
            values (MAML++'s switches, Sharp-MAML's radii) unless ``base`` set them otherwise.
        tensorboard: write TensorBoard events into each run folder from its records (:mod:`cml.tensorboard`),
            live while a cell trains; a cell finished earlier is exported from its records.

    Raises:
        ConfigError: if ``out`` holds a sweep with another grid or base config.
    """
    from .recording import Recorder
    from .tensorboard import LiveExport, export_run
    from .trainer import TaskSource, Trainer

    out = Path(out)
    bases = list(bases or [base.base])
    cells = [cell_config(base, b, m, int(seed), preset_name) for b in bases for m in methods for seed in seeds]
    out.mkdir(parents=True, exist_ok=True)  # every cell's config is valid before anything is written
    spec = {"base": base.to_dict(), "bases": bases, "methods": list(methods), "seeds": [int(s) for s in seeds],
            "preset": preset_name}
    spec_path = out / records.SWEEP
    if spec_path.exists():
        old = records.read_json(spec_path)
        changed = {k: v for k, v in old["base"].items() if spec["base"].get(k) != v and k not in ("steps", "progress")}
        if changed:
            raise ConfigError(f"{out} holds a sweep with other settings ({', '.join(sorted(changed))}); "
                              f"use another --out")
        spec["bases"] = list(dict.fromkeys(old.get("bases", [LEGACY_BASE]) + spec["bases"]))
        spec["methods"] = list(dict.fromkeys(old["methods"] + spec["methods"]))
        spec["seeds"] = sorted(set(old["seeds"]) | set(spec["seeds"]))
    records.write_json(spec_path, spec)
    if splits is None and not base.is_regression:
        splits = TaskSource(base).splits
    for cfg in cells:
        run_dir = out / records.run_folder_name(cfg.variant, cfg.seed)
        test = run_dir / records.TEST
        if test.exists() and records.read_json(test)["step"] >= cfg.steps:
            if tensorboard:
                export_run(run_dir)
            continue
        resume = (run_dir / records.CHECKPOINT).exists()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # nothing recoverable: no checkpoint was written
        recorder = Recorder(run_dir) if record and cfg.record_interval else None
        trainer = Trainer(cfg, run_dir, splits=splits, resume=resume, recorder=recorder)
        live = LiveExport(run_dir) if tensorboard else None
        if live is not None:
            trainer.log_hooks.append(lambda _, live=live: live.update())
        trainer.train()
        trainer.finish_recording()
        if live is not None:
            live.close()
    return aggregate(out)


def cell_config(start: Config, base: str, method: str, seed: int, preset_name: str | None = None) -> Config:
    """One cell's config: ``start`` with the cell's base learner, method and seed.

    A method's defaults (noisy's sigma) fill fields that ``start`` leaves at their off value; a base other than
    ``start``'s takes its own preset values (from ``preset_name``) for the fields ``start`` leaves as the
    preset set them, so that ``--bases maml,maml++`` trains MAML++ with its switches on.
    """
    try:
        method = upgrade(base, method)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    changes: dict[str, Any] = {"base": base, "method": method, "seed": seed}
    off = Config(method="none")
    for field, value in get_method(method).defaults:
        if getattr(start, field) == getattr(off, field):
            changes[field] = value
    if base != start.base and preset_name is not None:
        own = preset(preset_name, start.task, method, base=start.base, data=start.data)
        theirs = preset(preset_name, start.task, method, base=base, data=start.data)
        for field, value in theirs.to_dict().items():
            if field not in changes and getattr(start, field) == getattr(own, field):
                changes[field] = value
    return start.replace(**changes)


def aggregate(out: Path) -> dict[str, Any]:
    """Mean and 95% CI across seeds of each finished run's test metrics, per variant; writes aggregate.json.

    The interval follows the reporting policy (:func:`analysis.stats.seed_ci95`): null with fewer than 3 seeds.
    """
    from analysis.stats import seed_ci95

    spec = records.read_json(Path(out) / records.SWEEP)
    result: dict[str, Any] = {}
    variants = [variant_key(b, m) for b in spec.get("bases", [LEGACY_BASE]) for m in spec["methods"]]
    for variant in dict.fromkeys(variants):
        tests = [records.read_json(p) for seed in spec["seeds"]
                 if (p := Path(out) / records.run_folder_name(variant, seed) / records.TEST).exists()]
        if not tests:
            continue
        entry: dict[str, Any] = {"seeds": len(tests), "params": tests[0]["params"],
                                 "base": tests[0].get("base", LEGACY_BASE), "method": tests[0]["method"]}
        for metric in TEST_METRICS:
            values = [t[metric] for t in tests if metric in t]
            if values:
                mean, ci = seed_ci95(values)
                entry[metric] = {"mean": mean, "ci95": ci, "values": values}
        result[variant] = entry
    records.write_json(Path(out) / records.AGGREGATE, result)
    return result
