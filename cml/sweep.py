"""Sweeps: a grid of base learners x methods x seeds on one task, in one folder, resumable, aggregated
across seeds.

Layout of a sweep folder::

    sweep.json                 the grid: the config every cell starts from, bases, methods, seeds
    <variant>-s<seed>/         one run folder per cell (see cml.records; variant: cml.methods.variant_key,
                               e.g. cml-s0 on MAML, boil_cml-s0 on BOIL)
    aggregate.json             per variant: mean and 95% CI (Student t; 3+ seeds) across seeds of each test metric

A cell is finished only when every record it should have exists and parses (:func:`cell_finished`); a
finished cell is skipped, an unfinished one with a checkpoint is resumed (which writes its missing records
again), one without is started again. The sweep folder and each cell are locked while written
(:class:`cml.records.FolderLock`). A claim drawn from one seed is not a claim: aggregate.json says how many
seeds back each mean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config, ConfigError, preset
from .methods import LEGACY_BASE, get_method, upgrade, variant_key

TEST_METRICS = ("acc", "acc_dagger", "mse", "mse_dagger", "mse_before")


def run_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits=None,
              record: bool = True, bases: Sequence[str] | None = None, preset_name: str | None = None,
              restart: bool = False, tensorboard: bool = False) -> dict[str, Any]:
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
        restart: move a damaged ``sweep.json`` or a cell with a damaged file aside (nothing is deleted) and
            write it again, instead of stopping with the error.
        tensorboard: write TensorBoard events into each run folder from its records (:mod:`cml.tensorboard`),
            live while a cell trains; a cell finished earlier is exported from its records.

    Raises:
        ConfigError: if ``out`` holds a sweep with another grid or base config.
        RunFolderError: if a file of the sweep is damaged (without ``restart``), or another process writes it.
    """
    out = Path(out)
    bases = list(bases or [base.base])
    # Every cell's config is valid before anything is written or trained.
    cells = [cell_config(base, b, m, int(seed), preset_name) for b in bases for m in methods for seed in seeds]
    spec = {"base": base.to_dict(), "bases": bases, "methods": list(methods), "seeds": [int(s) for s in seeds],
            "preset": preset_name}
    with records.FolderLock(out):  # one sweep process per folder
        out.mkdir(parents=True, exist_ok=True)
        _run_cells(out, base, spec, cells, splits, record, restart, tensorboard)
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


def _run_cells(out: Path, base: Config, spec: dict[str, Any], cells: Sequence[Config], splits, record: bool,
               restart: bool, tensorboard: bool) -> None:
    from .recording import Recorder
    from .tensorboard import LiveExport, export_run
    from .trainer import TaskSource, Trainer

    spec_path = out / records.SWEEP
    old = _read_spec(spec_path, restart)
    if old is not None:
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
        recording = record and cfg.record_interval > 0
        if cell_finished(run_dir, cfg, recording):
            if tensorboard:  # the export writes into the cell's folder: one writer at a time there too
                with records.FolderLock(run_dir):
                    export_run(run_dir)
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
            live = LiveExport(run_dir) if tensorboard else None
            if live is not None:
                trainer.log_hooks.append(lambda _, live=live: live.update())
            trainer.train()
            trainer.finish_recording()
            if live is not None:
                live.close()


def cell_finished(run_dir: Path, cfg: Config, recording: bool) -> bool:
    """Whether a cell has every record it should have, each one parsing, for at least ``cfg.steps`` steps.

    ``config.json`` (the cell's settings; only ``steps`` may differ, as on resume), ``metrics.jsonl``,
    ``val.jsonl``, and a checkpoint and ``test.json`` of the same step, at least ``cfg.steps`` (a cell trained
    further than asked counts as finished); with ``recording``, also ``dynamics.jsonl`` (if a step was
    recorded), ``representations.json`` and ``features.npz`` (image tasks) or ``fits.npz`` (sinusoid). A cell
    killed between ``test.json`` and its recorder's last file is therefore not finished, and resuming it writes
    what is missing.
    """
    from .trainer import load_checkpoint

    run_dir = Path(run_dir)
    try:
        # Through Config, so that a config.json written before a field existed compares equal to today's.
        saved = Config.from_dict(records.read_json(run_dir / records.CONFIG)).to_dict()
        if {k: v for k, v in saved.items() if k not in ("steps", "progress")} != \
                {k: v for k, v in cfg.to_dict().items() if k not in ("steps", "progress")}:
            return False
        step = records.read_json(run_dir / records.TEST).get("step")
        if not isinstance(step, int) or step < cfg.steps or saved.get("steps") != step:
            return False
        recorded = recording and cfg.steps >= cfg.record_interval
        for name in (records.METRICS, records.VAL) + ((records.DYNAMICS,) if recorded else ()):
            records.read_jsonl(run_dir / name)
        if load_checkpoint(run_dir)["step"] != step:
            return False
        if recording:
            records.read_json(run_dir / records.REPRESENTATIONS)
            records.load_npz(run_dir / (records.FITS if cfg.is_regression else records.FEATURES))
    except (FileNotFoundError, ConfigError, records.RunFolderError):
        return False
    return True


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
