"""Sweeps: a grid of base learners x methods x any config fields x seeds on one task, in one folder,
resumable, aggregated across seeds, run by one process (``local``), by Ray Tune (``ray``, :mod:`cml.ray_engine`)
or as SLURM job-array tasks through submitit (``slurm``, :mod:`cml.slurm_engine`).

Layout of a sweep folder::

    sweep.json                 the grid: the config every cell starts from, bases, methods, seeds, and the
                               --grid fields with their values, in order (absent when there are none); and
                               ``cells``, the folder names asked for, only where the commands that wrote the
                               folder asked for fewer cells than that grid holds (the demo: Table 4's baselines
                               on one seed beside Figure 3's methods on two)
    <variant>-s<seed>/         one run folder per cell (see cml.records; variant: cml.methods.variant_key,
                               e.g. cml-s0 on MAML, boil_cml-s0 on BOIL); with a --grid, the grid values
                               come before the seed: cml-gamma_0.5-co_learner_conv-s0
    aggregate.json             per cell: mean and 95% CI (Student t; 3+ seeds) across seeds of each test metric

Every engine trains a cell with the one function :func:`cml.cells.train_cell`, so a cell's records do not depend on
the engine that ran it.

A cell is finished only when every record it should have exists and parses (:func:`cml.cells.cell_finished`); a
finished cell is skipped, an unfinished one with a checkpoint is resumed (which writes its missing records
again), one without is started again. The sweep folder and each cell are locked while written
(:class:`cml.records.FolderLock`). A claim drawn from one seed is not a claim: aggregate.json says how many
seeds back each mean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import dataclasses
import json
import math

from . import ray_engine, records, slurm_engine
from .config import Config, ConfigError, preset
from .fields import parse_text, split_list
from .methods import LEGACY_BASE, get_method, upgrade, variant_key

#: The test.json keys aggregate.json summarises across seeds: every evaluation protocol's key
#: (:data:`cml.meta.PROTOCOLS`) after each family's metric, and MSE before adaptation; named here so that the CLI
#: imports no torch (tests/test_protocols.py holds the two lists equal).
TEST_METRICS = ("acc", "acc_dagger", "acc_dagger_eq9", "acc_dagger_noadapt", "mse", "mse_dagger", "mse_dagger_eq9",
                "mse_dagger_noadapt", "mse_before")
#: The engines that train a sweep's cells: one after another in this process, one Ray Tune trial each, or one
#: SLURM array task each.
ENGINES = ("local", "ray", "slurm")
#: Config fields a --grid may not vary: each has its own flag (--bases, --methods, --seeds), and a sweep folder
#: holds one task.
NOT_GRIDDED = ("base", "method", "seed", "task")


def parse_grid(items: Sequence[str], cls: type = Config) -> dict[str, list[Any]]:
    """The ``--grid FIELD=v1,v2,...`` flags as ``{field: [values]}``, each value typed by its config field with
    the CLI flags' parser (:func:`cml.fields.parse_text`); a tuple value is bracketed (``widths=[1,2],[3]``).

    Args:
        cls: the config class whose fields are gridded.

    Raises:
        ConfigError: one line naming the flag, for an unknown field, a field with its own flag, a field given
            twice, an empty list, a repeated value or a value of the wrong type.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        flag = f"--grid {item}"
        name, eq, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name:
            raise ConfigError(f"{flag}: expected FIELD=v1,v2,... (e.g. --grid gamma=0,0.5,1)")
        if name not in fields:
            raise ConfigError(f"{flag}: unknown config field {name!r}; choose from "
                              f"{', '.join(f for f in fields if f not in NOT_GRIDDED)}")
        if name in NOT_GRIDDED:
            own = {"base": "--bases", "method": "--methods", "seed": "--seeds"}.get(name)
            raise ConfigError(f"{flag}: {name} is not a grid field; " +
                              (f"use {own}" if own else "a sweep folder holds one task: sweep each into its own --out"))
        if name in grid:
            raise ConfigError(f"{flag}: {name} is already gridded; give all its values in one --grid")
        texts = split_list(text)
        if not any(texts):
            raise ConfigError(f"{flag}: no values; give at least one, e.g. --grid {name}=v1,v2")
        if not all(texts):
            raise ConfigError(f"{flag}: an empty value in the list; remove the stray comma")
        values = [parse_text(cls, name, t, flag) for t in texts]
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{flag}: a value is repeated; each cell must be trained once")
        grid[name] = values
    return grid


def run_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], splits=None,
              record: bool = True, bases: Sequence[str] | None = None, preset_name: str | None = None,
              restart: bool = False, tensorboard: bool = False, grid: dict[str, list[Any]] | None = None,
              engine: str = "local", ray_options=None, slurm_options=None,
              command: dict[str, Any] | None = None, wandb: bool = False, bar=None) -> dict[str, Any]:
    """Trains every (base learner, method, grid point, seed) cell not yet finished, then writes and returns
    ``aggregate.json``.

    Args:
        out: the sweep folder.
        base: the config every cell starts from; ``base``, ``method``, ``seed`` and the grid's fields are set
            per cell.
        methods, seeds: the grid.
        splits: preloaded data splits shared by all cells of the local engine (loaded once from ``base`` when
            None; each Ray worker loads its own).
        record: attach the learning-dynamics recorder (``base.record_interval`` must then be > 0).
        bases: the base learners (default: ``base.base`` alone).
        preset_name: the preset ``base`` came from; a cell of another base learner takes that base's preset
            values (MAML++'s switches, Sharp-MAML's radii) unless ``base`` set them otherwise.
        restart: move a damaged ``sweep.json`` or a cell with a damaged file aside (nothing is deleted) and
            write it again, instead of stopping with the error.
        tensorboard: write TensorBoard events into each run folder from its records (:mod:`cml.tensorboard`),
            live while a cell trains; a cell finished earlier is exported from its records.
        grid: any other config fields and their values (:func:`parse_grid`); every combination is a cell.
        engine: ``local`` (cells one after another in this process), ``ray`` (one Ray Tune trial per cell) or
            ``slurm`` (one SLURM array task per cell).
        ray_options: the Ray engine's :class:`cml.ray_engine.RayOptions` (defaults when None).
        slurm_options: the SLURM engine's :class:`cml.slurm_engine.SlurmOptions` (defaults when None); with
            ``wait=False`` the cells are submitted and the aggregate holds the cells finished so far.
        command: the command line that asked for the sweep (:func:`cml.records.command_entry`), appended to the
            sweep folder's ``command.json`` once the grid is accepted, before any cell trains; None (a sweep
            started from Python) records none.
        wandb: log each cell to Weights & Biases from its records once it is finished (:mod:`cml.wandb_export`),
            every finished cell not logged before included.
        bar: the overall progress bar to advance by one per cell trained (the demo's, across its sweeps); None:
            one of this sweep's own (cells done of all, with an ETA) under the local engine when ``base.progress``.

    Raises:
        ConfigError: if ``out`` holds a sweep with another grid or base config, or a cell's config is invalid.
        RunFolderError: if a file of the sweep is damaged (without ``restart``), or another process writes it.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "ray":
        ray_engine.require_ray()  # before anything is written
    if engine == "slurm":
        slurm_options = slurm_options or slurm_engine.SlurmOptions()
        slurm_engine.preflight(slurm_options)  # before anything is written
    # torch and the trainer load here, when a sweep runs, not when the CLI builds its parser from this module.
    from .cells import cell_finished, train_cell

    out = Path(out)
    bases = list(bases or [base.base])
    grid = {k: list(v) for k, v in (grid or {}).items()}
    # Every cell's config is valid, and fits in memory, before anything is written or trained.
    cells = sweep_cells(base, bases, methods, seeds, grid, preset_name)
    _check_memory(cells)
    spec = _spec(base, bases, methods, seeds, grid, preset_name)
    with records.FolderLock(out):  # one sweep process per folder
        out.mkdir(parents=True, exist_ok=True)
        _write_spec(out, spec, restart)
        if command is not None:
            records.append_command(out, command, keep=True)
        pending = []
        for name, cfg in cells:
            if not cell_finished(out / name, cfg, record and cfg.record_interval > 0):
                pending.append((out / name, cfg))
            elif tensorboard:  # the export writes into the cell's folder: one writer at a time there too
                from .tensorboard import export_run

                with records.FolderLock(out / name):
                    export_run(out / name)
        if engine == "ray":
            ray_engine.run_cells(base, pending, record=record, restart=restart,
                                 options=ray_options or ray_engine.RayOptions(), tensorboard=tensorboard)
        elif engine == "slurm":
            slurm_engine.run_cells(base, pending, record=record, restart=restart, options=slurm_options,
                                   tensorboard=tensorboard)
        else:
            if pending and splits is None:
                splits = base.family.load(base)  # once for every cell (None for generated tasks)
            own = cells_bar(f"sweep {out.name}", len(cells), len(cells) - len(pending),
                            base.progress and bar is None)
            for run_dir, cfg in pending:
                train_cell(run_dir, cfg, splits=splits, record=record, restart=restart, tensorboard=tensorboard)
                for b in (own, bar):
                    if b is not None:
                        b.update(1)
            if own is not None:
                own.close()
        if wandb:
            from .wandb_export import export_finished

            export_finished([(out / name, cfg) for name, cfg in cells], record)
        return aggregate(out)


def cells_bar(desc: str, total: int, done: int, show: bool):
    """A progress bar over a sweep's cells (cells done of all, the ETA from the cells trained here), or None.

    Its rate is the mean over the cells trained so far (``smoothing=0``): cells of one sweep cost about the same,
    and the finished cells counted at the start add nothing to it.
    """
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="cell", smoothing=0, position=0)


def _spec(base: Config, bases: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
          grid: dict[str, list[Any]], preset_name: str | None) -> dict[str, Any]:
    """What ``sweep.json`` holds for this command, before it is merged with the sweep already in the folder."""
    spec = {"base": base.to_dict(), "bases": list(bases), "methods": list(methods), "seeds": [int(s) for s in seeds],
            "preset": preset_name}
    if grid:
        spec["grid"] = records.grid_spec(grid)
    return spec


def plan_sweep(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int],
               bases: Sequence[str] | None = None, preset_name: str | None = None,
               grid: dict[str, list[Any]] | None = None) -> list[tuple[str, Config]]:
    """The cells :func:`run_sweep` would train with these arguments, as (run folder name, config), having checked
    everything it checks before writing (each cell's config; the sweep already in ``out`` agrees), writing nothing.

    Raises:
        ConfigError: as :func:`run_sweep`, for an invalid cell or a folder holding a sweep with other settings.
        RunFolderError: if the folder's ``sweep.json`` is damaged.
    """
    bases = list(bases or [base.base])
    grid = {k: list(v) for k, v in (grid or {}).items()}
    cells = sweep_cells(base, bases, methods, seeds, grid, preset_name)
    if Path(out).is_dir():
        _write_spec(Path(out), _spec(base, bases, methods, seeds, grid, preset_name), restart=False, write=False)
    return cells


def sweep_cells(start: Config, bases: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
                grid: dict[str, list[Any]] | None = None, preset_name: str | None = None
                ) -> list[tuple[str, Config]]:
    """Every cell of a sweep as (run folder name, config), in training order: base, method, grid point, seed.

    Raises:
        ConfigError: naming the cell, if a cell's config is invalid (e.g. ``co_learner=conv`` on sinusoid).
    """
    cells = []
    for b in bases:
        for m in methods:
            for point in records.grid_points(grid):
                for seed in seeds:
                    cfg = cell_config(start, b, m, int(seed), preset_name)
                    if point:
                        try:
                            # After the method's and base's defaults: a gridded field takes exactly its value.
                            cfg = cfg.replace(**point)
                        except ConfigError as e:
                            raise ConfigError(f"cell {records.cell_name(variant_key(b, upgrade(b, m)), point)}: "
                                              f"{e}") from None
                    cells.append((records.run_folder_name(cfg.variant, cfg.seed, grid=point), cfg))
    return cells


def _check_memory(cells: Sequence[tuple[str, Config]]) -> None:
    """Each distinct cell config's memory estimate (:func:`cml.memory.check`), naming the cell that cannot fit."""
    from . import memory
    from .trainer import resolve_device

    seen: set[str] = set()
    for name, cfg in cells:
        key = repr({k: v for k, v in cfg.to_dict().items() if k != "seed"})
        if key in seen:
            continue
        seen.add(key)
        try:
            memory.check(cfg, cfg.task_entry.channels, resolve_device(cfg.device))
        except ConfigError as e:
            raise ConfigError(f"cell {name}: {e}") from None


def _read_spec(spec_path: Path, restart: bool) -> dict[str, Any] | None:
    """The sweep.json already in a sweep folder (None if there is none, or it was damaged and moved aside)."""
    if not spec_path.exists():
        return None
    try:
        old = records.read_json(spec_path)
        if not (isinstance(old.get("base"), dict) and isinstance(old.get("methods"), list)
                and isinstance(old.get("seeds"), list)):
            raise records.damaged(spec_path, "lacks the base config, methods or seeds; not written by cml")
        grid = old.get("grid", [])
        if not (isinstance(grid, list) and all(isinstance(i, dict) and isinstance(i.get("field"), str)
                                               and isinstance(i.get("values"), list) for i in grid)):
            raise records.damaged(spec_path, "its grid is not a list of fields with their values")
        cells = old.get("cells")
        if cells is not None and not (isinstance(cells, list) and all(isinstance(c, str) for c in cells)):
            raise records.damaged(spec_path, "its cells are not a list of run folder names")
        try:
            spec_cell_names(old)  # the merge names every cell of its grid
        except (ValueError, TypeError) as e:
            raise records.damaged(spec_path, f"its grid does not name cml cells ({e})") from None
    except records.RunFolderError:
        if not restart:
            raise
        print(f"moved damaged {spec_path} aside to {records.move_aside(spec_path)}", file=sys.stderr)
        return None
    return old


def _write_spec(out: Path, spec: dict[str, Any], restart: bool, write: bool = True) -> None:
    """Writes sweep.json, merged with the one already there (the union of bases, methods, seeds, grid values);
    with ``write`` False, only checks that the two agree.

    Raises:
        ConfigError: if the folder holds a sweep with another base config or other grid fields.
    """
    spec_path = out / records.SWEEP
    old = _read_spec(spec_path, restart)
    if old is not None:
        # As the file holds it (a tuple field's value is a JSON list there), so that only a real change differs.
        base = json.loads(json.dumps(spec["base"]))
        # Every setting but the progress bar: cells trained with other settings (another --steps included) would
        # be pooled with these as seeds of one cell, and a cell's resume refuses any other change anyway.
        changed = {k: v for k, v in old["base"].items() if base.get(k) != v and k != "progress"}
        if changed:
            listed = ", ".join(f"{k} {base.get(k)!r} (sweep.json: {v!r})" for k, v in sorted(changed.items())[:4])
            raise ConfigError(f"{out} holds a sweep with other settings: this command asks for {listed}; its cells "
                              f"would not be comparable with the sweep's: give the sweep's settings to add seeds, "
                              f"methods or grid values, or use another --out")
        old_grid, grid = records.spec_grid(old), records.spec_grid(spec)
        if list(old_grid) != list(grid):
            raise ConfigError(f"{out} holds a sweep over --grid fields {', '.join(old_grid) or '(none)'}, not "
                              f"{', '.join(grid) or '(none)'}: cell folders are named by them; use another --out")
        asked = set(spec_cell_names(old) if old.get("cells") is None else old["cells"]) | set(spec_cell_names(spec))
        spec["bases"] = list(dict.fromkeys(old.get("bases", [LEGACY_BASE]) + spec["bases"]))
        spec["methods"] = list(dict.fromkeys(old["methods"] + spec["methods"]))
        spec["seeds"] = sorted(set(old["seeds"]) | set(spec["seeds"]))
        if grid:
            spec["grid"] = records.grid_spec({k: old_grid[k] + [v for v in grid[k] if v not in old_grid[k]]
                                              for k in grid})
        # The union's grid can hold cells no command asked for (methods on one seed, others on two): name the
        # ones asked for, so that a reader does not report the rest as unfinished. A folder whose commands cover
        # the whole grid is written as before.
        union = spec_cell_names(spec)
        if set(union) != asked:
            spec["cells"] = [name for name in union if name in asked]
    if write:
        records.write_json(spec_path, spec)


def spec_cell_names(spec: dict[str, Any]) -> list[str]:
    """The run folder names of every cell of a ``sweep.json``'s grid (bases x methods x grid points x seeds), in
    training order, whether or not its commands asked for each (see :func:`cml.records.spec_planned`)."""
    return [records.run_folder_name(variant_key(b, upgrade(b, m)), int(s), grid=point)
            for b in spec.get("bases", [LEGACY_BASE]) for m in spec.get("methods", [])
            for point in records.grid_points(records.spec_grid(spec)) for s in spec.get("seeds", [])]


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
        # The backbone too: a ResNet-12 sweep compares with the ResNet-12 preset (cml.tasks.Image.backbone_presets).
        own = preset(preset_name, start.task, method, base=start.base, data=start.data, backbone=start.backbone)
        theirs = preset(preset_name, start.task, method, base=base, data=start.data, backbone=start.backbone)
        for field, value in theirs.to_dict().items():
            if field not in changes and getattr(start, field) == getattr(own, field):
                changes[field] = value
    return start.replace(**changes)


def aggregate(out: Path) -> dict[str, Any]:
    """Mean and 95% CI across seeds of each finished cell's test metrics; writes aggregate.json.

    Keys are cell names (:func:`cml.records.cell_name`: the variant, then the grid values); with a grid, each
    entry also holds ``grid``, the cell's values of the gridded fields. The interval follows the reporting
    policy (:func:`analysis.stats.seed_ci95`): null with fewer than 3 seeds.

    Only runs that are what the sweep says they are are pooled: each cell's ``config.json`` must be the config
    ``sweep.json`` gives that cell (:func:`sweep_cells`; the result-neutral fields of
    :data:`cml.records.RESULT_NEUTRAL` aside) and its ``test.json`` of that config's last step. Any other run (a
    cell trained further by hand, a copied folder, a record of another step) is left out of the mean and listed
    in the entry's ``dropped``, with what differs; the entry has no ``dropped`` when nothing was.
    """
    from analysis.stats import seed_ci95

    out = Path(out)
    spec = records.read_json(out / records.SWEEP)
    try:
        start = Config.from_dict(spec["base"], source=f"the base config of {out / records.SWEEP}")
    except ConfigError as e:
        raise records.damaged(out / records.SWEEP, f"holds an invalid base config ({e})") from None
    expected = dict(sweep_cells(start, spec.get("bases", [LEGACY_BASE]), spec["methods"], spec["seeds"],
                                records.spec_grid(spec), spec.get("preset")))
    result: dict[str, Any] = {}
    variants = [variant_key(b, m) for b in spec.get("bases", [LEGACY_BASE]) for m in spec["methods"]]
    for variant in dict.fromkeys(variants):
        for point in records.grid_points(records.spec_grid(spec)):
            tests, dropped = [], []
            for seed in spec["seeds"]:
                name = records.run_folder_name(variant, seed, grid=point)
                if not (out / name / records.TEST).exists():
                    continue
                test = records.read_json(out / name / records.TEST)
                why = _not_the_cell(out / name, expected[name], test)
                if why:
                    dropped.append({"run": name, "why": why})
                else:
                    tests.append({**test, "_seed": seed})
            if not tests and not dropped:
                continue
            cfg = expected[records.run_folder_name(variant, spec["seeds"][0], grid=point)]
            entry: dict[str, Any] = {"seeds": len(tests), "params": tests[0]["params"] if tests else None,
                                     "base": cfg.base, "method": cfg.method}
            if point:
                entry["grid"] = point
            for metric in TEST_METRICS:
                have = [t for t in tests if t.get(metric) is not None]  # a diverged reading is null: left out
                if have:
                    values = [t[metric] for t in have]
                    mean, ci = seed_ci95(values)
                    entry[metric] = {"mean": mean, "ci95": ci, "values": values}
                    if len(have) < len(tests):  # which seed each value is, where some seed has none
                        entry[metric]["value_seeds"] = [t["_seed"] for t in have]
            if dropped:
                entry["dropped"] = dropped
            result[records.cell_name(variant, point)] = entry
    records.write_json(out / records.AGGREGATE, result)
    return result


def _not_the_cell(run_dir: Path, cfg: Config, test: dict[str, Any]) -> str | None:
    """Why a cell's run is not the cell ``sweep.json`` defines (None when it is): its config differs in a field
    that changes results, or its test.json is of another step than its config's last."""
    try:
        saved = Config.from_dict(records.read_json(run_dir / records.CONFIG)).to_dict()
    except FileNotFoundError:
        return f"it has no {records.CONFIG}"
    except ConfigError as e:
        return f"its {records.CONFIG} is not a valid config ({e})"
    diff = records.config_differences(saved, cfg.to_dict(), ignore=())
    if diff:
        return "its config differs from the sweep's: " + ", ".join(
            f"{k} {a!r} (the sweep's {b!r})" for k, (a, b) in list(diff.items())[:4])
    if test["step"] != saved["steps"]:
        return f"its {records.TEST} is of step {test['step']}, not of its last step {saved['steps']}"
    return None


def summary(result: dict[str, Any], path: Path) -> str:
    """The end-of-sweep table: one line per cell, each test metric as mean ± 95% CI across its seeds, then
    the path of ``aggregate.json``."""
    metrics = [m for m in TEST_METRICS if any(m in e for e in result.values())]
    percent = {m for m in TEST_METRICS if m.startswith("acc")}  # every protocol's accuracy
    width = max([len("cell")] + [len(k) for k in result])
    lines = [f"{'cell':{width}s} seeds  " + "  ".join(f"{m:>17s}" for m in metrics)]
    for name, entry in result.items():
        cells = []
        for m in metrics:
            if m not in entry:
                cells.append(f"{'-':>17s}")
                continue
            scale, fmt = (100.0, ".2f") if m in percent else (1.0, ".4f")
            mean, ci = entry[m]["mean"], entry[m]["ci95"]
            ci_text = f"{scale * ci:{fmt}}" if ci is not None and math.isfinite(ci) else "n/a"
            cells.append(f"{f'{scale * mean:{fmt}} ± {ci_text}':>17s}")
        lines.append(f"{name:{width}s} {entry['seeds']:5d}  " + "  ".join(cells))
    for name, entry in result.items():
        for d in entry.get("dropped", []):  # never pooled, and never silently: say which run and why
            lines.append(f"not pooled into {name}: {d['run']}: {d['why']}")
    if not result:
        lines.append("(no finished cell)")
    note = ("acc in %; " if "acc" in metrics else "") + "± is the 95% CI across seeds (n/a with fewer than 3)"
    return "\n".join(lines + [note, f"aggregate: {path}"])
