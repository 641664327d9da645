"""Finding and reading run folders for the figures: records only, never the trainer.

A *run folder* holds ``config.json`` and the records of :mod:`cml.records`; a *sweep folder* holds
``sweep.json`` and one run folder per (base, method, grid point, seed) (see :mod:`cml.sweep`). :func:`find_runs`
accepts either, or any folder above them, and returns :class:`Run` objects whose loaders raise
:class:`MissingRecordError` naming the folder, the file and the command that writes it.

A run is identified by its :class:`Cell`, the (base learner, method) pair its config names; figures key on
cells and choose which to draw by what a method does (the row flags of :data:`cml.methods.METHOD_TABLE`: a
co-learner, gradient noise, extra capacity), never by a name. The names older records use (method ``maml``,
``noisy-maml`` or ``more-maml`` and no base) are read in one place, :func:`cell_of`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cml import records
from cml.errors import FigureInputError, MissingFileError, MissingRecordError, NoRunsError
from cml.bases import BASE_TABLE, BASES
from cml.methods import DISPLAY_ORDER, LEGACY_BASE, METHOD_TABLE, Method, display_name, upgrade, variant_key
from cml.tasks import TASK_TABLE, TaskFamily, get_task

__all__ = [
    "BASE_ORDER",
    "PAPER_BASE",
    "Cell",
    "MissingRecordError",
    "NoRunsError",
    "Run",
    "Setting",
    "adds_nothing",
    "branches",
    "cell_of",
    "cells_where",
    "command_adding",
    "command_lines",
    "config_groups",
    "cooperates",
    "method_named",
    "never_trained",
    "find_runs",
    "as_runs",
    "layer_label",
    "group_by_config",
    "group_by_method",
    "group_by_setting",
    "pooled",
    "sweep_folders",
]

#: Base learners in the registry's order (the paper's Table 1 order, then others by name).
BASE_ORDER: tuple[str, ...] = BASES
#: The base learner of the paper's Figures 2-4, Table 4 and claims (MAML: the default base, and the base of every
#: run written before bases existed). Table 1 compares every base.
PAPER_BASE: str = LEGACY_BASE


@dataclass(frozen=True)
class Cell:
    """What a run trained: a base learner and the method added to it, whatever its folder is called.

    Attributes:
        base: a base learner's name (:mod:`cml.bases`); one this version does not know is kept, and labelled and
            sorted after the known ones.
        method: a method's name in :data:`cml.methods.METHOD_TABLE` (``none``, ``cml``, ...), never an older
            record's name (:func:`cell_of` reads those).

    Raises:
        ValueError: for a method the table does not have.
    """

    base: str
    method: str

    def __post_init__(self) -> None:
        if self.method not in METHOD_TABLE:
            raise ValueError(f"unknown method {self.method!r}; this version of cml knows "
                             f"{', '.join(METHOD_TABLE)}")

    @property
    def spec(self) -> Method:
        """The method's row: what it adds (co-learner, noise, capacity) and how it is reported (CML†)."""
        return METHOD_TABLE[self.method]

    @property
    def variant(self) -> str:
        """The cell's name in run folders and ``aggregate.json`` (:func:`cml.methods.variant_key`): ``cml``,
        ``noisy-maml`` on MAML, ``boil_cml`` on BOIL."""
        return variant_key(self.base, self.method)

    @property
    def label(self) -> str:
        """The printed name: "MAML", "noisy-MAML", "CML" on MAML, "BOIL + CML" on BOIL."""
        base = BASE_TABLE.get(self.base)
        return display_name(base.label if base else self.base, self.base, self.method)

    @property
    def sort_key(self) -> tuple[int, str, int, int]:
        """Legend and table order: by base (:data:`BASE_ORDER`), then by method (:data:`cml.methods.DISPLAY_ORDER`:
        the base alone and the baselines first, CML last)."""
        methods = list(METHOD_TABLE)
        rank = DISPLAY_ORDER.index(self.method) if self.method in DISPLAY_ORDER else len(DISPLAY_ORDER)
        return (BASE_ORDER.index(self.base) if self.base in BASE_ORDER else len(BASE_ORDER), self.base, rank,
                methods.index(self.method))

    def __str__(self) -> str:
        return self.variant


def cell_of(record: dict[str, Any], source: Path, name: str | None = None) -> Cell:
    """The cell a record names: a ``config.json``, a ``test.json`` or an ``aggregate.json`` entry.

    The one reader of older records' names: a record without ``base`` is on MAML, and the method names
    ``maml``, ``noisy-maml`` and ``more-maml`` are ``none``, ``noisy`` and ``more`` there
    (:data:`cml.methods.LEGACY`).

    Args:
        record: the record, with ``method`` and, since base learners exist, ``base``.
        source: the file it comes from, named in errors.
        name: the method to read when the record has none (an ``aggregate.json`` entry written before entries
            held one: its key, the method's name on MAML).

    Raises:
        RunFolderError: naming ``source``, for a method this version does not know, or an older name under
            another base.
    """
    base = str(record.get("base", LEGACY_BASE))
    method = str(record.get("method", name))
    try:
        return Cell(base, upgrade(base, method))
    except ValueError as e:
        raise records.damaged(source, f"{e}", "it was written by another version of cml: read it with that "
                              "version, or train the run again with this one") from None


# -- choosing cells by what their method does ---------------------------------------------------------------


def adds_nothing(method: Method) -> bool:
    """The base learner alone: no co-learner, no noise, no extra capacity (the paper's MAML)."""
    return not (method.co_learner or method.gradient_noise or method.extra_capacity)


def cooperates(method: Method) -> bool:
    """A co-learner that only the outer loop trains, its loss added to the outer objective (the paper's CML); CL's
    second branch, adapted in the inner loop as well, is not, and neither is a co-learner never trained (the
    random co-learner)."""
    return method.co_learner and method.phi_in_outer_loss and not method.phi_in_inner_loop and not method.frozen


def branches(method: Method) -> bool:
    """A second branch trained like the first, in both loops (the paper's CL): a co-learner that the inner loop
    adapts and the outer loop trains."""
    return method.co_learner and method.phi_in_inner_loop and not method.frozen


def never_trained(method: Method) -> bool:
    """A co-learner that neither loop updates, its loss in the outer objective (the paper's "MAML with random
    noise" of Figure 3a: the random co-learner)."""
    return method.co_learner and "phi" in method.frozen and method.phi_in_outer_loss


def method_named(wanted: Callable[[Method], bool]) -> str | None:
    """The first method of :data:`cml.methods.METHOD_TABLE` that satisfies ``wanted`` (its ``--methods`` name, for
    the command that trains it), or None."""
    return next((m.name for m in METHOD_TABLE.values() if wanted(m)), None)


def cells_where(cells: Iterable[Cell], wanted: Callable[[Method], bool], base: str | None = PAPER_BASE) -> list[Cell]:
    """The cells whose method satisfies ``wanted``, on ``base`` (None: on any base), in legend order."""
    return sorted((c for c in cells if wanted(c.spec) and (base is None or c.base == base)),
                  key=lambda c: c.sort_key)


def layer_label(layer: str, layers: Sequence[str] = ()) -> str:
    """Printed name of a recorded layer of ``representations.json``: ``flat`` is the head's input (with the other
    ``layers`` given, named as the block it is the output of: ``block4 = head input``), ``output`` the head's
    output (the logits)."""
    if layer == records.OUTPUT_LAYER:
        return "head output"
    if layer != "flat":
        return layer
    # The head's input is the last psi layer's output, which the records keep once, as flat: name its layer.
    named = [name for name in layers if name not in ("flat", records.OUTPUT_LAYER)]
    stem = named[-1].rstrip("0123456789") if named else ""
    number = named[-1][len(stem):] if named else ""
    return f"{stem}{int(number) + 1} = head input" if stem and number.isdigit() else "head input"


# Why a file can be missing, and what writes it: the second half of every MissingRecordError.
_NO_HINT = "train the run with the settings that write it"
_HINTS = {
    records.TEST: "the run has not finished; run the same command again (sweeps and --resume continue it)",
    records.VAL: "the run has not validated yet; train it further or set --val-interval",
    records.METRICS: "the run has not logged a step yet; train it",
    records.DYNAMICS: "train with --record-interval K (e.g. --record-interval 5) to record gradients",
    records.REPRESENTATIONS: "train with --record-interval K; CKA and silhouettes are written when training ends",
    records.FEATURES: "train an image task with --record-interval K; t-SNE features are written when training ends",
    records.FITS: "train --task sinusoid with --record-interval K; the fitted curves are written when training ends",
    records.TEST_TASKS: "train with --record-interval K; the per-task test values are written when training ends "
                        "(runs written before this record existed lack it)",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# The config fields a figure identifies and groups runs by, with their types: checked when a run is loaded.
_IDENTITY_FIELDS = (("method", "a string", lambda v: isinstance(v, str)),
                    ("task", "a string", lambda v: isinstance(v, str)),
                    ("seed", "an integer", _is_int),
                    ("shots", "an integer", _is_int),
                    ("ways", "an integer", _is_int))


class Setting(NamedTuple):
    """What makes runs comparable: the task and its N-way K-shot shape (ways is None for regression)."""

    task: str
    ways: int | None
    shots: int

    @property
    def label(self) -> str:
        """``"sinusoid, 10-shot"`` or ``"fonts, 5-way 1-shot"``."""
        if self.ways is None:
            return f"{self.task}, {self.shots}-shot"
        return f"{self.task}, {self.ways}-way {self.shots}-shot"

    @property
    def family(self) -> TaskFamily:
        """The task's family (:mod:`cml.tasks`): its metric, and whether it classifies."""
        return get_task(self.task).family


@dataclass(frozen=True)
class Run:
    """One run folder and its config; records are read on demand by the methods below.

    Attributes:
        path: the run folder.
        config: the contents of ``config.json`` (a :class:`cml.config.Config` as a dict).
        cell: the (base, method) pair the config names (:func:`cell_of`).
    """

    path: Path
    config: dict[str, Any]
    cell: Cell = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", cell_of(self.config, self.path / records.CONFIG))

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """The run in ``path``.

        Raises:
            MissingRecordError: if ``path`` has no ``config.json``.
            RunFolderError: (a ValueError) if ``config.json`` is damaged, or lacks or mistypes ``method``,
                ``task``, ``seed``, ``shots`` or ``ways`` (the fields a figure groups runs by).
        """
        path = Path(path)
        cfg_path = path / records.CONFIG
        if not cfg_path.is_file():
            raise MissingRecordError(path, records.CONFIG, "this is not a run folder written by `python -m cml`")
        config = records.read_json(cfg_path)
        missing = [k for k in ("method", "task", "seed", "shots") if k not in config]
        if missing:
            raise records.damaged(cfg_path, f"lacks {', '.join(missing)}; it was not written by `python -m cml`")
        for key, kind, ok in _IDENTITY_FIELDS:
            if key in config and not ok(config[key]):
                raise records.damaged(cfg_path, f"{key} must be {kind}, got {config[key]!r}")
        _check_types(config, cfg_path)
        if config["task"] not in TASK_TABLE:
            raise records.damaged(cfg_path, f"names task {config['task']!r}, which this version of cml does not know",
                                  "read it with the version of cml that wrote it")
        return cls(path, config)

    # -- identity -----------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        """The base learner (``maml`` for runs written before bases existed); the method is ``cell.method``."""
        return self.cell.base

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def shots(self) -> int:
        return int(self.config["shots"])

    @property
    def family(self) -> TaskFamily:
        """The task's family (:mod:`cml.tasks`)."""
        return get_task(self.task).family

    @property
    def setting(self) -> Setting:
        return Setting(self.task, int(self.config.get("ways", 5)) if self.family.classification else None, self.shots)

    @property
    def grid(self) -> dict[str, Any]:
        """This run's values of its sweep's ``--grid`` fields (``{"gamma": 0.5, "co_learner": "conv"}``); empty
        for a run outside a sweep or in a sweep without a grid."""
        return {f: self.config.get(f) for f in _sweep_grid(self.path.parent)}

    @property
    def cell_name(self) -> str:
        """The cell's name across seeds: the variant, then its grid values (:func:`cml.records.cell_name`)."""
        return records.cell_name(self.cell.variant, self.grid)

    def __str__(self) -> str:
        return f"{self.cell_name} seed {self.seed} ({self.path})"

    # -- records ------------------------------------------------------------------------------------

    def has(self, filename: str) -> bool:
        """Whether the run folder holds ``filename`` (and, for JSON lines, at least one record)."""
        p = self.path / filename
        return p.is_file() and (not filename.endswith(".jsonl") or p.stat().st_size > 0)

    def require(self, filename: str) -> Path:
        """The path of ``filename`` in the run folder; raises :class:`MissingRecordError` if absent."""
        if not self.has(filename):
            hint = None
            if filename in (records.FEATURES, records.FITS) and filename != self.family.end_record:
                hint = (f"{self.task} runs write {self.family.end_record}, not {filename} (Figure 4 draws "
                        f"{records.FEATURES}, Figure 2 {records.FITS})")
            raise MissingRecordError(self.path, filename, hint or _HINTS.get(filename, _NO_HINT))
        return self.path / filename

    def check(self) -> None:
        """Reads every record the folder holds, so that a damaged one is found before any figure is drawn.

        Raises:
            RunFolderError: naming the first damaged record and the command that writes it again.
        """
        for name, read in ((records.TEST, self.test), (records.VAL, self.val), (records.METRICS, self.metrics),
                           (records.DYNAMICS, self.dynamics), (records.REPRESENTATIONS, self.representations),
                           (records.TEST_TASKS, self.test_tasks),
                           (records.FEATURES, self.features), (records.FITS, self.fits)):
            if self.has(name):
                read()
        self.commands()

    def commands(self) -> list[dict[str, Any]] | None:
        """The commands that wrote the run (:func:`cml.records.read_commands`): its sweep folder's, for a run of a
        sweep, else its own; None where none was recorded."""
        return records.read_commands(self.source)

    @property
    def source(self) -> Path:
        """The folder a command wrote: the run's sweep folder, or the run folder itself outside a sweep."""
        return self.path.parent if (self.path.parent / records.SWEEP).is_file() else self.path

    def _of_last_step(self, name: str, step: Any) -> None:
        """Refuses an end-of-run record of another step than the run's last (``config.json``'s ``steps``): the
        result of an earlier, shorter run, left by a run extended with ``--resume --steps`` (or copied)."""
        steps = self.config.get("steps")
        if _is_int(steps) and _is_int(step) and step != steps:
            raise records.damaged(self.path / name, f"is of step {step}, but {records.CONFIG} says the run trains "
                                                    f"{steps} steps: it is the result of an earlier, shorter run, not "
                                                    f"this one's",
                                  "rerun the run's train command with --resume to finish it (that writes it again), "
                                  "or leave the run out")

    def test(self) -> dict[str, Any]:
        """``test.json``: the final test (means and 95% CIs over test tasks, parameter counts).

        Raises:
            RunFolderError: if it is damaged, or of another step than the run's last.
        """
        test = records.read_json(self.require(records.TEST))
        self._of_last_step(records.TEST, test["step"])
        return test

    @property
    def finished(self) -> bool:
        """Whether the run has written its test: then nothing is appended to its records any more."""
        return self.has(records.TEST)

    def _lines(self, name: str) -> list[dict[str, Any]]:
        # A finished run's last line cut short is damage, not a write in progress: never silently one point less.
        return sorted(records.read_jsonl(self.require(name), drop_partial_last=not self.finished),
                      key=lambda r: r["step"])

    def test_tasks(self) -> dict[str, Any]:
        """``test_tasks.json``: the final test task by task (per-task values of each test metric, and a digest of
        the tasks drawn: :func:`cml.recording.per_task_test_record`)."""
        data = records.read_json(self.require(records.TEST_TASKS))
        values = data.get("values")
        if not (isinstance(data.get("digest"), str) and isinstance(values, dict)
                and all(isinstance(v, list) for v in values.values())):
            raise records.damaged(self.path / records.TEST_TASKS, "lacks its digest or per-task values")
        return data

    def val(self) -> list[dict[str, Any]]:
        """``val.jsonl``: one record per validation, in step order."""
        return self._lines(records.VAL)

    def metrics(self) -> list[dict[str, Any]]:
        """``metrics.jsonl``: training scalars averaged over each log interval, in step order."""
        return self._lines(records.METRICS)

    def dynamics(self) -> list[dict[str, Any]]:
        """``dynamics.jsonl``: gradient norms (and cosines for co-learner methods) per recorded step."""
        return self._lines(records.DYNAMICS)

    def representations(self) -> dict[str, Any]:
        """``representations.json``: CKA per layer and silhouettes (end of training)."""
        rec = records.read_json(self.require(records.REPRESENTATIONS))
        self._of_last_step(records.REPRESENTATIONS, rec.get("step"))
        return rec

    def _arrays(self, name: str) -> dict[str, np.ndarray]:
        arrays = records.load_npz(self.require(name))
        self._of_last_step(name, int(arrays["step"]) if "step" in arrays else None)
        return arrays

    def features(self) -> dict[str, np.ndarray]:
        """``features.npz``: one test task's query features and t-SNE map before and after adaptation."""
        return self._arrays(records.FEATURES)

    def fits(self) -> dict[str, np.ndarray]:
        """``fits.npz``: three sinusoid test curves, support points and predictions (Figure 2)."""
        return self._arrays(records.FITS)


def _sweep_grid(folder: Path) -> list[str]:
    """The --grid fields of the sweep in ``folder`` (none if it is not a sweep folder)."""
    spec_path = folder / records.SWEEP
    if not spec_path.is_file():
        return []
    return list(records.spec_grid(records.read_json(spec_path)))


def _runs_in_sweep(folder: Path) -> list[Run]:
    spec = records.read_json(folder / records.SWEEP)
    runs, absent = [], []
    planned = records.spec_planned(spec)
    variants = [cell_of({"base": b, "method": m}, folder / records.SWEEP).variant
                for b in spec.get("bases", [LEGACY_BASE]) for m in spec.get("methods", [])]
    for variant in dict.fromkeys(variants):
        for point in records.grid_points(records.spec_grid(spec)):
            for seed in spec.get("seeds", []):
                run_dir = folder / records.run_folder_name(variant, seed, grid=point)
                if (run_dir / records.CONFIG).is_file():
                    runs.append(Run.load(run_dir))
                elif planned is None or run_dir.name in planned:  # a cell no command asked for is not missing
                    absent.append(run_dir.name)
    if absent:
        # The grid is methods x seeds; a cell never started is worth one line, not one per cell.
        warnings.warn(f"sweep {folder}: {len(absent)} of {len(absent) + len(runs)} cells not started "
                      f"({', '.join(absent)}); run the sweep with those methods and seeds to train them", stacklevel=3)
    return runs


def _aside(found: Path, root: Path) -> bool:
    return any(records.ASIDE in part for part in found.relative_to(root).parts)


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run folder in ``paths``: run folders, sweep folders, or folders above them (searched recursively).

    A run found twice (a sweep and one of its own runs both given) is returned once.

    Args:
        paths: folders.

    Returns:
        The runs, in the order found.

    Raises:
        MissingFileError: if a path does not exist.
        NoRunsError: if no run folder is found at all.
    """
    paths = [Path(p) for p in paths]
    found: list[Run] = []
    for path in paths:
        if not path.exists():
            raise MissingFileError(f"{path} does not exist; give a run folder or a sweep folder")
        if (path / records.SWEEP).is_file():
            found += _runs_in_sweep(path)
        elif (path / records.CONFIG).is_file():
            found.append(Run.load(path))
        elif path.is_dir():
            # A parent of sweeps or runs: the shallowest sweep.json or config.json on each branch.
            # Folders moved aside by --restart are kept for the user, not reported.
            sweeps = sorted(p.parent for p in path.rglob(records.SWEEP) if not _aside(p, path))
            for sweep in sweeps:
                found += _runs_in_sweep(sweep)
            for cfg in sorted(path.rglob(records.CONFIG)):
                if not any(s in cfg.parents for s in sweeps) and not _aside(cfg, path):
                    found.append(Run.load(cfg.parent))
    unique: dict[Path, Run] = {}
    for run in found:
        unique.setdefault(run.path.resolve(), run)
    if not unique:
        raise NoRunsError(f"no run folder (a folder with config.json) in {', '.join(map(str, paths)) or 'no paths'}; "
                          f"train one with `python -m cml train` or `python -m cml sweep`")
    return list(unique.values())


def as_runs(source: Run | str | Path | Iterable[Run | str | Path]) -> list[Run]:
    """Runs from a mix of :class:`Run` objects and folder paths (see :func:`find_runs`)."""
    if isinstance(source, (Run, str, Path)):
        source = [source]
    items = list(source)
    runs = [r for r in items if isinstance(r, Run)]
    paths = [p for p in items if not isinstance(p, Run)]
    if paths:
        runs += find_runs(paths)
    if not runs:
        raise NoRunsError("no runs given")
    return runs


def _check_types(config: dict[str, Any], path: Path) -> None:
    """Every known config field of a ``config.json`` holds a value of its type (a figure reads ``gamma`` as a
    number); unknown fields (a newer version's) are left to the version that wrote them."""
    from cml import fields  # not at import: figures load only records and the tables
    from cml.config import Config
    from cml.errors import ConfigError

    types = fields.field_types(Config)
    for key, value in config.items():
        if key in types:
            try:
                fields.coerce(key, types[key], value)
            except ConfigError as e:
                raise records.damaged(path, f"{e}; damaged or not written by cml") from None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    # Through Config, so that a config.json written before a field existed compares equal to one with its default.
    from cml.config import Config
    from cml.errors import ConfigError

    try:
        return Config.from_dict(config).to_dict()
    except ConfigError:  # a newer version's fields: compare what the file holds
        return dict(config)


def pooled(runs: Sequence[Run], warn: bool = True) -> tuple[list[Run], list[tuple[Run, str]]]:
    """The runs that may be pooled as seeds of their cells, and the others with why they may not.

    Runs of one cell are pooled across seeds only when their configs are equal in every field but the seed and
    the result-neutral fields (:data:`cml.records.RESULT_NEUTRAL`): a mean over runs of 30 and 300 steps, or over
    two inner step sizes, is not a mean over seeds. Where a cell's runs differ, the configuration most of them
    share is kept (on a tie, the one of the lowest seed) and the others are left out.

    Args:
        warn: also warn (``UserWarning``) for each run left out.

    Returns:
        ``(kept, dropped)``: the kept runs in their given order; each dropped run with a sentence saying which
        fields differ from the kept runs of its cell.
    """
    by_cell: dict[tuple[Setting, Cell], list[Run]] = {}
    for run in runs:
        by_cell.setdefault((run.setting, run.cell), []).append(run)
    left_out: dict[Path, str] = {}
    for (_, cell), group in by_cell.items():
        configs: list[tuple[dict[str, Any], list[Run]]] = []
        for run in sorted(group, key=lambda r: r.seed):
            mine = _comparable(run.config)
            home = next((rs for c, rs in configs if not records.config_differences(mine, c)), None)
            if home is None:
                configs.append((mine, [run]))
            else:
                home.append(run)
        if len(configs) < 2:
            continue
        kept_config, _ = max(configs, key=lambda item: len(item[1]))  # max keeps the first of a tie
        for config, rs in configs:
            if config is kept_config:
                continue
            diff = records.config_differences(config, kept_config)
            text = ", ".join(f"{k} {a!r} (the cell's other runs: {b!r})" for k, (a, b) in list(diff.items())[:4])
            for run in rs:
                left_out[run.path] = (f"{run.path} ({cell.label}, seed {run.seed}) not pooled with the other runs of "
                                      f"its cell: {text}")
    dropped = [(r, left_out[r.path]) for r in runs if r.path in left_out]
    if warn:
        for _, why in dropped:
            warnings.warn(why, stacklevel=3)
    return [r for r in runs if r.path not in left_out], dropped


def group_by_method(runs: Sequence[Run]) -> dict[Cell, list[Run]]:
    """Runs per cell (in legend order, :attr:`Cell.sort_key`), each list sorted by seed.

    Runs are expected to share one :class:`Setting`. Two runs of one cell and seed (the same cell in two
    folders) keep the first, with a warning, so that no seed is counted twice; runs of one cell whose configs
    differ in more than the seed are never pooled (:func:`pooled`: the others are left out, with a warning).

    Raises:
        FigureInputError: if the runs mix settings (group them with :func:`group_by_setting` first).
    """
    settings = {r.setting for r in runs}
    if len(settings) > 1:
        labels = ", ".join(s.label for s in settings)
        raise FigureInputError(f"runs of different settings cannot be compared: {labels}; "
                               f"group them with group_by_setting first")
    runs, _ = pooled(runs)
    out: dict[Cell, dict[int, Run]] = {}
    for run in runs:
        cell = out.setdefault(run.cell, {})
        if run.seed in cell:
            warnings.warn(f"{run.path} repeats {run.cell} seed {run.seed} of {cell[run.seed].path}; "
                          f"using the first", stacklevel=2)
            continue
        cell[run.seed] = run
    return {c: [out[c][s] for s in sorted(out[c])] for c in sorted(out, key=lambda c: c.sort_key)}


def group_by_setting(runs: Sequence[Run]) -> dict[Setting, list[Run]]:
    """Runs per setting (task, ways, shots), settings sorted by task then shots."""
    out: dict[Setting, list[Run]] = {}
    for run in runs:
        out.setdefault(run.setting, []).append(run)
    return {s: out[s] for s in sorted(out, key=lambda s: (s.task, s.ways or 0, s.shots))}


def sweep_folders(runs: Sequence[Run]) -> list[Path]:
    """The sweep folders the runs come from (a run's parent holding ``sweep.json``), in order."""
    seen: dict[Path, None] = {}
    for run in runs:
        if (run.path.parent / records.SWEEP).is_file():
            seen.setdefault(run.path.parent, None)
    return list(seen)


def command_lines(runs: Sequence[Run]) -> list[str]:
    """What wrote the runs, as the report prints it: per folder a command wrote (a sweep folder, or a run folder
    outside a sweep), each command recorded in its ``command.json``, oldest first (the first started it; a later
    one, prefixed "then:", resumed or extended it). A folder without one is named, with its config file: the
    command was not recorded, and none is made up.

    Raises:
        RunFolderError: if a ``command.json`` is damaged.
    """
    lines: list[str] = []
    for folder in dict.fromkeys(r.source for r in runs):
        commands = records.read_commands(folder)
        if commands is None:
            config = folder / (records.SWEEP if (folder / records.SWEEP).is_file() else records.CONFIG)
            lines.append(f"not recorded for {folder} (it has no {records.COMMAND}: written before cml recorded "
                         f"its commands, or from Python); its config: {config}")
            continue
        lines += [("then: " if i else "") + records.command_text(c) for i, c in enumerate(commands)]
    return lines


#: Fields two seeds of one config may differ in: the seed and the result-neutral ones (as :func:`pooled` reads them).
_NOT_COMPARED = ("seed", *records.RESULT_NEUTRAL)


def config_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs split by their whole config but the seed, in the order first found: a run joins the first group
    whose config it does not differ from (:func:`cml.records.config_differences`, read through
    :class:`cml.config.Config`: the comparison :func:`pooled` makes, result-neutral fields and an unrecorded
    ``threads`` aside). A table pools seeds only within one group, so runs that differ in anything else (steps,
    gamma, the learning rate) are never averaged as if they were seeds."""
    groups: list[tuple[dict[str, Any], list[Run]]] = []
    for run in runs:
        mine = _comparable(run.config)
        home = next((rs for c, rs in groups if not records.config_differences(mine, c)), None)
        if home is None:
            groups.append((mine, [run]))
        else:
            home.append(run)
    return [rs for _, rs in groups]


def group_by_config(runs: Sequence[Run]) -> dict[Cell, list[list[Run]]]:
    """Per cell (in legend order), its runs split by their whole config but the seed (:func:`config_groups`), each
    group sorted by seed with a seed given twice kept once (the first, with a warning, as :func:`group_by_method`).

    The grouping of the tables (results, Table 4): a cell's runs of two configs are two rows, never one.
    """
    cells = sorted({r.cell for r in runs}, key=lambda c: c.sort_key)
    out: dict[Cell, list[list[Run]]] = {}
    for cell in cells:
        groups = []
        for group in config_groups([r for r in runs if r.cell == cell]):
            by_seed = group_by_method(group)[cell]
            groups.append(by_seed)
        out[cell] = groups
    return out


def config_difference(groups: Sequence[Sequence[Run]]) -> list[str]:
    """Per group, the fields (and values) where its config differs from the other groups' (``"steps=100"``)."""
    configs = [{k: v for k, v in _comparable(g[0].config).items() if k not in _NOT_COMPARED} for g in groups]
    fields = sorted({k for a in configs for b in configs for k in records.config_differences(a, b)})
    return [", ".join(f"{k}={c.get(k)}" for k in fields) for c in configs]


def command_adding(runs: Sequence[Run], method: str) -> str:
    """A command that trains ``method`` at the runs' settings, beside them: the recorded ``sweep`` command that
    started their sweep with ``--methods method`` (a sweep folder takes new methods at its own settings), or,
    for runs without one, a sweep from a run's ``config.json`` into a new folder."""
    for folder in dict.fromkeys(r.source for r in runs):
        commands = records.read_commands(folder) if (folder / records.SWEEP).is_file() else None
        if not commands or not commands[0]["argv"] or commands[0]["argv"][0] != "sweep":
            continue
        argv = list(commands[0]["argv"])
        if "--methods" in argv and argv.index("--methods") + 1 < len(argv):
            argv[argv.index("--methods") + 1] = method
        else:
            argv[1:1] = ["--methods", method]
        return records.command_text({**commands[0], "argv": argv})
    # A run of the base alone or of CML carries no other method's defaults (noisy's sigma) into the new runs.
    plain = [r for r in runs if adds_nothing(r.cell.spec) or cooperates(r.cell.spec)] or list(runs)
    seeds = ",".join(str(s) for s in sorted({r.seed for r in runs}))
    source = plain[0].source
    out = source.parent / f"{source.name}-{method}"
    return (f"python -m cml sweep --config {plain[0].path / records.CONFIG} --methods {method} --seeds {seeds} "
            f"--out {out}")
