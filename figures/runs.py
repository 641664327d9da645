"""Finding and reading run folders for the figures: records only, never the trainer.

A *run folder* holds ``config.json`` and the records of :mod:`cml.records`; a *sweep folder* holds
``sweep.json`` and one run folder per (method, seed) (see :mod:`cml.sweep`). :func:`find_runs` accepts
either, or any folder above them, and returns :class:`Run` objects whose loaders raise
:class:`MissingRecordError` naming the folder, the file and the command that writes it.
"""

from __future__ import annotations

import dataclasses
import shlex
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cml import records
from cml.bases import BASES
from cml.methods import LEGACY, LEGACY_BASE, split_variant, variant_key

__all__ = [
    "METHOD_ORDER",
    "MissingRecordError",
    "NoRunsError",
    "Run",
    "Setting",
    "find_runs",
    "as_runs",
    "group_by_method",
    "group_by_setting",
    "sweep_folders",
    "reproduce_command",
]

#: Order of methods in legends and tables: baselines first, CML last (as in the paper's Table 4). A cell on
#: another base learner (``boil_cml``) sorts by its base, then by its method in this order.
METHOD_ORDER: tuple[str, ...] = ("maml", "noisy-maml", "more-maml", "cl", "cml")
#: Base learners in the registry's order (the paper's Table 1 order, then others by name).
BASE_ORDER: tuple[str, ...] = BASES

# Why a file can be missing, and what writes it: the second half of every MissingRecordError.
_HINTS = {
    records.TEST: "the run has not finished; run the same command again (sweeps and --resume continue it)",
    records.VAL: "the run has not validated yet; train it further or set --val-interval",
    records.METRICS: "the run has not logged a step yet; train it",
    records.DYNAMICS: "train with --record-interval K (e.g. --record-interval 5) to record gradients",
    records.REPRESENTATIONS: "train with --record-interval K; CKA and silhouettes are written when training ends",
    records.FEATURES: "train an image task with --record-interval K; t-SNE features are written when training ends",
    records.FITS: "train --task sinusoid with --record-interval K; the fitted curves are written when training ends",
}


class MissingRecordError(FileNotFoundError):
    """A record a figure needs is not in a run folder.

    Attributes:
        run_dir: the run folder.
        record: the missing file's name.
        hint: what produces it.
        message: the whole message (also ``str(error)``).
    """

    def __init__(self, run_dir: Path, filename: str, hint: str | None = None) -> None:
        self.run_dir, self.record = Path(run_dir), filename
        self.hint = hint or _HINTS.get(filename, "train the run with the settings that write it")
        self.message = f"{self.run_dir} has no {filename}: {self.hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        # OSError would format its own (errno, strerror) pair; the message is the point.
        return self.message


class NoRunsError(FileNotFoundError):
    """None of the given paths holds a run folder."""


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
    def is_regression(self) -> bool:
        return self.task == "sinusoid"


@dataclass(frozen=True)
class Run:
    """One run folder and its config; records are read on demand by the methods below.

    Attributes:
        path: the run folder.
        config: the contents of ``config.json`` (a :class:`cml.config.Config` as a dict).
    """

    path: Path
    config: dict[str, Any]

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
        return cls(path, config)

    # -- identity -----------------------------------------------------------------------------------

    @property
    def method(self) -> str:
        """The cell's variant key (:func:`cml.methods.variant_key`): on the MAML base the paper's method names
        (``maml``, ``cml``, ``noisy-maml``...), on another base ``boil``, ``boil_cml``..."""
        return variant_key(self.base, str(self.config["method"]))

    @property
    def base(self) -> str:
        """The base learner (``maml`` for runs written before bases existed)."""
        return str(self.config.get("base", LEGACY_BASE))

    @property
    def addon(self) -> str:
        """The method on the base learner: ``none``, ``cml``, ``noisy``, ``more`` or ``cl``."""
        method = str(self.config["method"])
        return LEGACY.get(method, method)

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
    def is_regression(self) -> bool:
        return self.task == "sinusoid"

    @property
    def setting(self) -> Setting:
        return Setting(self.task, None if self.is_regression else int(self.config.get("ways", 5)), self.shots)

    @property
    def grid(self) -> dict[str, Any]:
        """This run's values of its sweep's ``--grid`` fields (``{"gamma": 0.5, "co_learner": "conv"}``); empty
        for a run outside a sweep or in a sweep without a grid."""
        return {f: self.config.get(f) for f in _sweep_grid(self.path.parent)}

    @property
    def cell(self) -> str:
        """The cell's name across seeds: the variant, then its grid values (:func:`cml.records.cell_name`)."""
        return records.cell_name(self.method, self.grid)

    def __str__(self) -> str:
        return f"{self.cell} seed {self.seed} ({self.path})"

    # -- records ------------------------------------------------------------------------------------

    def has(self, filename: str) -> bool:
        """Whether the run folder holds ``filename`` (and, for JSON lines, at least one record)."""
        p = self.path / filename
        return p.is_file() and (not filename.endswith(".jsonl") or p.stat().st_size > 0)

    def require(self, filename: str) -> Path:
        """The path of ``filename`` in the run folder; raises :class:`MissingRecordError` if absent."""
        if not self.has(filename):
            hint = None
            if filename == records.FEATURES and self.is_regression:
                hint = "regression runs have no t-SNE features (Figure 4 needs an image task)"
            elif filename == records.FITS and not self.is_regression:
                hint = "only sinusoid runs write fitted curves (Figure 2)"
            raise MissingRecordError(self.path, filename, hint)
        return self.path / filename

    def check(self) -> None:
        """Reads every record the folder holds, so that a damaged one is found before any figure is drawn.

        Raises:
            RunFolderError: naming the first damaged record and the command that writes it again.
        """
        for name, read in ((records.TEST, self.test), (records.VAL, self.val), (records.METRICS, self.metrics),
                           (records.DYNAMICS, self.dynamics), (records.REPRESENTATIONS, self.representations),
                           (records.FEATURES, self.features), (records.FITS, self.fits)):
            if self.has(name):
                read()

    def test(self) -> dict[str, Any]:
        """``test.json``: the final test (means and 95% CIs over test tasks, parameter counts)."""
        return records.read_json(self.require(records.TEST))

    def val(self) -> list[dict[str, Any]]:
        """``val.jsonl``: one record per validation, in step order."""
        return sorted(records.read_jsonl(self.require(records.VAL)), key=lambda r: r["step"])

    def metrics(self) -> list[dict[str, Any]]:
        """``metrics.jsonl``: training scalars averaged over each log interval, in step order."""
        return sorted(records.read_jsonl(self.require(records.METRICS)), key=lambda r: r["step"])

    def dynamics(self) -> list[dict[str, Any]]:
        """``dynamics.jsonl``: gradient norms (and cosines for co-learner methods) per recorded step."""
        return sorted(records.read_jsonl(self.require(records.DYNAMICS)), key=lambda r: r["step"])

    def representations(self) -> dict[str, Any]:
        """``representations.json``: CKA per layer and silhouettes (end of training)."""
        return records.read_json(self.require(records.REPRESENTATIONS))

    def features(self) -> dict[str, np.ndarray]:
        """``features.npz``: one test task's query features and t-SNE map before and after adaptation."""
        return records.load_npz(self.require(records.FEATURES))

    def fits(self) -> dict[str, np.ndarray]:
        """``fits.npz``: three sinusoid test curves, support points and predictions (Figure 2)."""
        return records.load_npz(self.require(records.FITS))


def _sweep_grid(folder: Path) -> list[str]:
    """The --grid fields of the sweep in ``folder`` (none if it is not a sweep folder)."""
    spec_path = folder / records.SWEEP
    if not spec_path.is_file():
        return []
    return list(records.spec_grid(records.read_json(spec_path)))


def _runs_in_sweep(folder: Path) -> list[Run]:
    spec = records.read_json(folder / records.SWEEP)
    runs, absent = [], []
    variants = [variant_key(b, m) for b in spec.get("bases", [LEGACY_BASE]) for m in spec.get("methods", [])]
    for variant in dict.fromkeys(variants):
        for point in records.grid_points(records.spec_grid(spec)):
            for seed in spec.get("seeds", []):
                run_dir = folder / records.run_folder_name(variant, seed, grid=point)
                if (run_dir / records.CONFIG).is_file():
                    runs.append(Run.load(run_dir))
                else:
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
        FileNotFoundError: if a path does not exist.
        NoRunsError: if no run folder is found at all.
    """
    paths = [Path(p) for p in paths]
    found: list[Run] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; give a run folder or a sweep folder")
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


def _method_key(method: str) -> tuple[int, int, str]:
    try:
        base, addon = split_variant(method, BASE_ORDER)
    except KeyError:
        return (len(BASE_ORDER), len(METHOD_ORDER), method)
    legacy = variant_key(LEGACY_BASE, addon)
    return (BASE_ORDER.index(base), METHOD_ORDER.index(legacy) if legacy in METHOD_ORDER else len(METHOD_ORDER),
            method)


def group_by_method(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs per method (in :data:`METHOD_ORDER`), each list sorted by seed.

    Runs are expected to share one :class:`Setting`. Two runs of one method and seed (the same cell in two
    folders) keep the first, with a warning, so that no seed is counted twice.

    Raises:
        ValueError: if the runs mix settings (group them with :func:`group_by_setting` first).
    """
    settings = {r.setting for r in runs}
    if len(settings) > 1:
        raise ValueError(f"runs of different settings cannot be compared: {', '.join(s.label for s in settings)}; "
                         f"group them with group_by_setting first")
    out: dict[str, dict[int, Run]] = {}
    for run in runs:
        cell = out.setdefault(run.method, {})
        if run.seed in cell:
            warnings.warn(f"{run.path} repeats {run.method} seed {run.seed} of {cell[run.seed].path}; "
                          f"using the first", stacklevel=2)
            continue
        cell[run.seed] = run
    return {m: [out[m][s] for s in sorted(out[m])] for m in sorted(out, key=_method_key)}


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


def _sweep_preset(runs: Sequence[Run]) -> str | None:
    for folder in sweep_folders(runs):
        name = records.read_json(folder / records.SWEEP).get("preset")
        if name:
            return str(name)
    return None


def _flag(field: str, value: Any) -> list[str]:
    """The command-line flags that set a config field to ``value`` ([] for a None no flag can express)."""
    flag = "--" + field.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, bool):
        return [flag if value else "--no-" + field.replace("_", "-")]
    return [flag, repr(value) if isinstance(value, float) else str(value)]


def _rebuild(runs: Sequence[Run], preset_name: str, grid: dict[str, list[Any]]) -> tuple[dict[str, Any], list[str]]:
    """The config flags a ``sweep`` command needs so that each run's cell gets the run's whole config.

    Simulates the sweep (its start config from the preset and the flags, then :func:`cml.sweep.cell_config`
    and the run's grid values) and adds a flag for every field where a simulated cell differs from its run,
    until none differs. Returns the flags' fields and values, and the fields no flag could make equal (runs
    that disagree on them: they were not trained by one sweep).
    """
    from cml.config import Config, preset
    from cml.sweep import cell_config

    task = runs[0].task
    originals = [Config.from_dict(r.config, source=str(r.path / records.CONFIG)) for r in runs]
    overrides: dict[str, Any] = {}
    stuck: set[str] = set()
    for _ in range(len(originals[0].to_dict())):  # each round fixes at least one field, or stops
        start = preset(preset_name, task, "none", base=LEGACY_BASE, **overrides)
        start = start.replace(**{k: v for k, v in overrides.items() if v is None})
        wanted: dict[str, set[str]] = {}
        values: dict[str, Any] = {}
        for _run, orig in zip(runs, originals):
            cell = cell_config(start, orig.base, orig.method, orig.seed, preset_name)
            cell = cell.replace(**{f: getattr(orig, f) for f in grid})
            for field, value in orig.to_dict().items():
                if getattr(cell, field) != value and field not in stuck:
                    wanted.setdefault(field, set()).add(repr(value))
                    values[field] = value
        agreed = {f: values[f] for f, v in wanted.items() if len(v) == 1 and _flag(f, values[f])}
        stuck |= set(wanted) - set(agreed)
        if not agreed:
            break
        overrides.update(agreed)
    return overrides, sorted(stuck)


#: The --record-interval a reproduce command asks for when the runs did not record.
DEFAULT_RECORD_INTERVAL = 5


# Config fields repeated on the command line when the runs' config.json is not a valid config (older versions).
_COMMAND_FIELDS = ("data", "ways", "shots", "steps", "filters", "co_learner", "gamma")


def reproduce_command(runs: Sequence[Run], record_interval: int | None = None, out: str | Path | None = None,
                      record: bool = True) -> str:
    """A ``python -m cml sweep`` command that trains ``runs``' cells again, each with its run's whole config.

    Every config field that the sweep would not set by itself (from the preset, the method and the base) is
    a flag, so that a run retrained by the command has the original's ``config.json`` (with
    ``record_interval`` as asked).

    Args:
        runs: runs of one setting.
        record_interval: the ``--record-interval`` to ask for, so that the figures' records are written. None:
            the runs' own when they recorded, else :data:`DEFAULT_RECORD_INTERVAL`.
        out: the sweep folder to write. Default: the runs' sweep folder (else ``runs/<task>``) with
            ``-recorded`` appended, because a sweep folder refuses a grid with other settings.
        record: False: keep the runs' own ``record_interval`` whatever it is (the exact command).
    """
    if not runs:
        raise ValueError("reproduce_command needs at least one run")
    cfg = runs[0].config
    ordered = sorted(runs, key=lambda r: _method_key(r.method))
    methods = ",".join(dict.fromkeys(r.addon if r.base != LEGACY_BASE else r.method for r in ordered))
    bases = list(dict.fromkeys(r.base for r in ordered))
    seeds = ",".join(str(s) for s in sorted({r.seed for r in runs}))
    grid: dict[str, list[Any]] = {}
    for run in runs:
        for field, value in run.grid.items():
            if value not in grid.setdefault(field, []):
                grid[field].append(value)
    if out is None:
        sweeps = sweep_folders(runs)
        out = f"{sweeps[0] if sweeps else Path('runs') / cfg['task']}-recorded"
    from cml.config import PRESETS, ConfigError

    preset_name = _sweep_preset(runs)
    try:
        if preset_name is None:  # runs trained by `train`: the preset that needs the fewest flags
            preset_name = min(PRESETS, key=lambda p: len(_rebuild(runs, p, grid)[0]))
        overrides, stuck = _rebuild(runs, preset_name, grid)
    except ConfigError as e:
        # A config.json that is no longer a valid config (written by an older cml, or by hand): the fields
        # that change what a number means, as they are.
        warnings.warn(f"a config.json of these runs is not a valid config ({e}); the command repeats only "
                      f"{', '.join(_COMMAND_FIELDS)}",
                      stacklevel=2)
        preset_name = preset_name or "quick"
        overrides = {f: cfg[f] for f in _COMMAND_FIELDS if cfg.get(f) is not None
                     and not (f in ("ways", "filters") and cfg["task"] == "sinusoid")}
        stuck = []
    if stuck:
        warnings.warn(f"the runs differ in {', '.join(stuck)} in a way one sweep cannot repeat; the command "
                      f"trains them with the preset's values", stacklevel=2)
    own = {int(r.config.get("record_interval", 0)) for r in runs}
    if record:
        if record_interval is None:
            record_interval = next(iter(own)) if len(own) == 1 and min(own) > 0 else DEFAULT_RECORD_INTERVAL
        if own != {record_interval}:
            overrides["record_interval"] = record_interval
    parts = ["python", "-m", "cml", "sweep", "--task", cfg["task"]]
    if preset_name != "quick":
        parts += ["--preset", preset_name]
    if bases != [LEGACY_BASE]:
        parts += ["--bases", ",".join(bases)]
        methods = ",".join(dict.fromkeys(r.addon for r in ordered))
    parts += ["--methods", methods, "--seeds", seeds]
    for field, values in grid.items():
        parts += ["--grid", f"{field}=" + ",".join(_flag(field, v)[-1] if not isinstance(v, bool) else
                                                   str(v).lower() for v in values)]
    parts += ["--out", str(out)]
    from cml.config import Config

    order = [f.name for f in dataclasses.fields(Config)]
    for field in sorted(overrides, key=order.index):
        parts += _flag(field, overrides[field])
    return " ".join(shlex.quote(p) for p in parts)
