"""The run index: ``cml runs [FOLDERS]`` lists run folders and sweep cells with their state, and ``cml compare
RUN...`` sets runs side by side. Both read records only: no torch, never the trainer (a checkpoint is not opened:
its presence is what is checked).

A run's *state*:

- ``finished``: ``test.json`` of the step its ``config.json`` asks for, a checkpoint, and (when it records learning
  dynamics) ``representations.json`` and its end record (``features.npz``/``fits.npz``);
- ``partial``: anything less (killed, still queued, or trained without the last records); ``cml resume RUN``
  continues it, and a sweep's own command finishes its cells;
- ``damaged``: a record that does not parse (the message names it, and the command that writes it again);
- ``locked``: a live process holds its folder lock (:class:`cml.records.FolderLock`): it is being written now;
- ``not started``: a cell of a sweep's grid (``sweep.json``) that its commands asked for and that has no folder yet.

*Paired* runs (``compare``): runs of the same seed drawing the same test tasks: the test tasks are drawn from the
seed's ``test`` stream with the task's data and shape (:data:`TEST_TASK_FIELDS`), so two such runs are tested on
identical tasks, and their difference is not that of two task samples. Across three or more paired seeds the
mean difference gets a Student-t 95% CI across seeds (the report's policy, :mod:`analysis.stats`).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import records
from .config import Config, ConfigError
from .errors import MissingFileError, NoRunsError, RunFolderError
from .fields import show
from .methods import LEGACY_BASE, upgrade, variant_key
from .tasks import TASK_TABLE

__all__ = ["STATES", "COLUMNS", "TEST_TASK_FIELDS", "Entry", "index", "runs_table", "compare_text"]

STATES = ("finished", "partial", "damaged", "locked", "not started")
#: The columns of ``cml runs`` (``--sort`` takes one).
COLUMNS = ("run", "task", "base", "method", "seed", "steps", "result", "state")
#: The config fields that, with the seed, decide which test tasks a run draws (its test split and the tasks'
#: shape); fields a task family does not read keep their defaults and so agree.
TEST_TASK_FIELDS = ("task", "data", "split", "image_size", "ways", "shots", "queries", "test_tasks", "hops",
                    "max_nodes")
# Folders that are never runs: what --restart moved aside, and the exporters' and engines' own folders.
_NOT_RUNS = (records.ASIDE,)


@dataclass
class Entry:
    """One row of the index: a run folder or a sweep cell.

    Attributes:
        path: the run folder.
        config: its ``config.json`` (empty when it has none, or it is damaged).
        state: one of :data:`STATES`.
        done, total: the steps trained (the last logged step; the tested step once finished) and asked for.
        test: its ``test.json`` (empty until it is finished).
        problem: what is damaged, or who holds the lock.
        grid: the cell's values of its sweep's ``--grid`` fields.
    """

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    state: str = "partial"
    done: int | None = None
    total: int | None = None
    test: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    grid: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return str(self.config.get("base", LEGACY_BASE)) if self.config else ""

    @property
    def method(self) -> str:
        if not self.config:
            return ""
        try:
            return upgrade(self.base, str(self.config.get("method")))
        except ValueError:
            return str(self.config.get("method"))

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def task(self) -> str:
        return str(self.config.get("task", ""))

    @property
    def metric(self) -> str | None:
        """The test record's main key (``acc``, ``mse``), from the task's family."""
        entry = TASK_TABLE.get(self.task)
        return entry.family.metric if entry is not None else None

    def result(self, key: str | None = None) -> tuple[float, float | None] | None:
        """``(mean, 95% CI over test tasks)`` of a test metric (the main one by default), or None."""
        key = key or self.metric
        if key is None or not isinstance(self.test.get(key), (int, float)):
            return None
        ci = self.test.get(f"{key}_ci95")
        return float(self.test[key]), float(ci) if isinstance(ci, (int, float)) and math.isfinite(ci) else None


def _read_config(path: Path) -> dict[str, Any]:
    values = records.read_json(path)
    try:
        # Typed and checked as a config (an older record's missing fields read as their defaults).
        Config.from_dict(values, source=str(path))
    except ConfigError as e:
        raise records.damaged(path, f"not a valid config ({e})") from None
    return values


def _run_entry(path: Path, grid: dict[str, Any] | None = None) -> Entry:
    """The state of one run folder, from its records (see the module docstring)."""
    entry = Entry(path, grid=dict(grid or {}))
    holder = records.lock_holder(path)
    try:
        entry.config = _read_config(path / records.CONFIG)
        entry.total = entry.config.get("steps")
        logged = records.read_jsonl(path / records.METRICS) if (path / records.METRICS).is_file() else []
        entry.done = max((r["step"] for r in logged), default=0)
        for name in (records.VAL, records.DYNAMICS):
            if (path / name).is_file():
                records.read_jsonl(path / name)
        if (path / records.TEST).is_file():
            test = records.read_json(path / records.TEST)
            if test.get("step") == entry.total:
                entry.test, entry.done = test, test["step"]
        recording = bool(entry.config.get("record_interval"))
        end = TASK_TABLE[entry.task].family.end_record if entry.task in TASK_TABLE else None
        needed = [records.CHECKPOINT] + ([records.REPRESENTATIONS] + ([end] if end else []) if recording else [])
        if (path / records.REPRESENTATIONS).is_file():
            records.read_json(path / records.REPRESENTATIONS)
        for name in (records.FEATURES, records.FITS):
            if (path / name).is_file():
                records.load_npz(path / name)
        finished = bool(entry.test) and all((path / n).is_file() for n in needed)
        if not finished:
            entry.test = {}
        entry.state = "finished" if finished else "partial"
    except MissingFileError as e:  # no config.json: a folder a killed run made before writing one
        entry.state, entry.problem = "partial", str(e)
    except RunFolderError as e:
        entry.state, entry.problem = "damaged", str(e)
    if holder is not None:
        entry.state = "locked"
        entry.problem = (f"being written by PID {holder.get('pid')} on {holder.get('host')} since "
                         f"{holder.get('since')}" if holder else "being written")
    return entry


def _sweep_entries(folder: Path) -> list[Entry]:
    """Every cell of the sweep in ``folder`` (its grid, from ``sweep.json``), then any other run folder in it."""
    out: list[Entry] = []
    spec_path = folder / records.SWEEP
    try:
        spec = records.read_json(spec_path)
        grid = records.spec_grid(spec)
        planned = records.spec_planned(spec)
        names = [(records.run_folder_name(variant_key(b, upgrade(b, m)), s, grid=point), point)
                 for b in spec.get("bases", [LEGACY_BASE]) for m in spec.get("methods", [])
                 for point in records.grid_points(grid) for s in spec.get("seeds", [])]
    except (RunFolderError, ValueError, TypeError, AttributeError, KeyError) as e:
        out.append(Entry(folder, state="damaged", problem=f"{spec_path}: {e}"))
        names, planned = [], None
    seen = set()
    for name, point in dict.fromkeys((n, tuple(p.items())) for n, p in names):
        seen.add(name)
        run = folder / name
        if run.is_dir():
            out.append(_run_entry(run, dict(point)))
        elif planned is None or name in planned:  # a cell of the grid no command asked for is not listed
            out.append(Entry(run, state="not started", grid=dict(point), done=0))
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in seen):
        if (child / records.CONFIG).is_file() and not _skipped(child):
            out.append(_run_entry(child))
    return out


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or any(mark in path.name for mark in _NOT_RUNS)


def _walk(folder: Path) -> list[Entry]:
    if (folder / records.SWEEP).is_file():
        return _sweep_entries(folder)
    if (folder / records.CONFIG).is_file():
        return [_run_entry(folder)]
    out: list[Entry] = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not _skipped(p)):
        out += _walk(child)
    return out


def index(paths: Sequence[str | Path]) -> list[Entry]:
    """Every run folder and sweep cell in ``paths`` (run folders, sweep folders, or folders above them), each
    once, in the order found.

    Raises:
        MissingFileError: if a path does not exist.
        NoRunsError: if none holds a run or a sweep.
    """
    found: dict[Path, Entry] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise MissingFileError(f"{p} does not exist; give run folders, sweep folders or folders above them")
        if not p.is_dir():
            raise MissingFileError(f"{p} is a file; give run folders, sweep folders or folders above them")
        for e in _walk(p):
            found.setdefault(e.path.resolve(), e)
    if not found:
        raise NoRunsError(f"no run folder (config.json) or sweep folder (sweep.json) in {', '.join(map(str, paths))}; "
                          f"train one with `cml train` or `cml sweep`")
    return list(found.values())


# -- cml runs ------------------------------------------------------------------------------------------------------

def _result_text(entry: Entry, key: str | None = None) -> str:
    value = entry.result(key)
    if value is None:
        return "-"
    key = key or entry.metric or ""
    mean, ci = value
    percent = key.startswith("acc")
    scale, fmt, unit = (100.0, ".2f", "%") if percent else (1.0, ".4f", "")
    ci_text = f" ± {scale * ci:{fmt}}" if ci is not None else " (no CI: 1 task)"
    return f"{scale * mean:{fmt}}{ci_text}{unit}"


def _label(entry: Entry, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            rel = entry.path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return str(Path(root) / rel) if str(rel) != "." else str(root)
    return str(entry.path)


def _cell(entry: Entry, column: str, roots: Sequence[Path]) -> str:
    if column == "run":
        return _label(entry, roots)
    if column == "steps":
        done = "?" if entry.done is None else str(entry.done)
        return f"{done}/{entry.total}" if entry.total is not None else done
    if column == "result":
        return (f"{entry.metric} {_result_text(entry)}" if entry.result() else "-")
    if column == "state":
        return entry.state
    if column == "seed":
        return "" if entry.seed is None else str(entry.seed)
    return str(getattr(entry, column))


def _sort_key(column: str) -> Callable[[Entry], Any]:
    def key(e: Entry) -> Any:
        if column == "result":
            value = e.result()
            return (value is None, -value[0] if value else 0.0)  # best first for accuracies; see runs_table
        if column == "steps":
            return (e.done is None, -(e.done or 0), e.total or 0)
        if column == "seed":
            return (e.seed is None, e.seed or 0)
        if column == "state":
            return STATES.index(e.state)
        return _cell(e, column, ())
    return key


def runs_table(entries: Sequence[Entry], roots: Sequence[Path] = (), sort: str | None = None) -> str:
    """``cml runs``: one line per run or cell (:data:`COLUMNS`), a line per problem under it, and the counts.

    Args:
        roots: the folders given, so that each run is named by its path as typed.
        sort: a column of :data:`COLUMNS` (``result``: the best first, by the task's metric; ``steps``: the most
            trained first); None keeps the order found.
    """
    rows = list(entries)
    if sort is not None:
        if sort not in COLUMNS:
            raise ConfigError(f"--sort {sort}: unknown column; choose one of: {', '.join(COLUMNS)}")
        key = _sort_key(sort)
        if sort == "result":
            # By the task's own direction: the lowest MSE is the best, as the highest accuracy is.
            def better(e: Entry) -> Any:
                value, entry = e.result(), TASK_TABLE.get(e.task)
                sign = -1.0 if entry is None or entry.family.higher_is_better else 1.0
                return (value is None, sign * value[0] if value else 0.0)
            key = better
        rows.sort(key=key)
    cells = [[_cell(e, c, roots) for c in COLUMNS] for e in rows]
    heads = [c if c != "result" else "result (± 95% CI over test tasks)" for c in COLUMNS]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    for e, row in zip(rows, cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if e.problem and e.state in ("damaged", "locked"):
            lines.append(f"    {e.problem}")
    counts = {s: sum(e.state == s for e in rows) for s in STATES}
    lines.append(f"{len(rows)} run{'s' if len(rows) != 1 else ''}: " +
                 ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


# -- cml compare ---------------------------------------------------------------------------------------------------

def _test_tasks(config: dict[str, Any]) -> tuple[Any, ...]:
    defaults = Config.from_dict({k: v for k, v in config.items()}).to_dict()
    return tuple(defaults[k] for k in TEST_TASK_FIELDS)


def _typed(entry: Entry) -> dict[str, Any]:
    # Every field, an older record's missing ones at their defaults, so that runs of two versions compare.
    return Config.from_dict(dict(entry.config)).to_dict()


def _metrics(entries: Sequence[Entry]) -> list[str]:
    """The test metrics the runs hold (a key with its ``_ci95`` beside it), in the order their records list them."""
    keys: dict[str, None] = {}
    for e in entries:
        for k in e.test:
            if f"{k}_ci95" in e.test:
                keys.setdefault(k, None)
    return list(keys)


def _scaled(key: str) -> tuple[float, str, str]:
    return (100.0, ".2f", "%") if key.startswith("acc") else (1.0, ".4f", "")


def _group_result(group: Sequence[Entry], key: str) -> str:
    """One group's value of a metric: a run's mean ± CI over test tasks, or several seeds' mean (± a CI across
    seeds from 3 on, else each seed's value)."""
    values = [(e.seed, e.result(key)) for e in group]
    got = [(s, v) for s, v in values if v is not None]
    if not got:
        return "-"
    scale, fmt, unit = _scaled(key)
    if len(group) == 1:
        return _result_text(group[0], key)
    means = [v[0] for _, v in got]
    mean = sum(means) / len(means)
    if len(means) >= 3:
        from analysis.stats import seed_ci95

        _, ci = seed_ci95(means)
        return f"{scale * mean:{fmt}} ± {scale * ci:{fmt}}{unit} ({len(means)} seeds)"
    each = ", ".join(f"s{s} {scale * v[0]:{fmt}}" for s, v in got)
    return f"{scale * mean:{fmt}}{unit} ({each}; no CI across fewer than 3 seeds)"


def _paired_text(a: Sequence[Entry], b: Sequence[Entry], key: str) -> str:
    pairs = [(x, y) for x in a for y in b if x.seed == y.seed and x.seed is not None
             and _test_tasks(x.config) == _test_tasks(y.config) and x.result(key) and y.result(key)]
    if not pairs:
        return "not paired (no seed in common with the same test tasks)"
    scale, fmt, unit = _scaled(key)
    diffs = [(x.seed, scale * (y.result(key)[0] - x.result(key)[0])) for x, y in pairs]  # type: ignore[index]
    mean = sum(d for _, d in diffs) / len(diffs)
    each = ", ".join(f"s{s} {d:+{fmt}}" for s, d in diffs)
    if len(diffs) >= 3:
        from analysis.stats import seed_ci95

        _, ci = seed_ci95([d for _, d in diffs])
        return f"{mean:+{fmt}} ± {ci:{fmt}}{unit} ({len(diffs)} paired seeds: {each})"
    if len(diffs) == 1:
        return f"{mean:+{fmt}}{unit} (paired: seed {diffs[0][0]})"
    return f"{mean:+{fmt}}{unit} ({len(diffs)} paired seeds: {each}; no CI across fewer than 3)"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]


def compare_text(entries: Sequence[Entry], roots: Sequence[Path] = ()) -> str:
    """``cml compare``: the runs' config differences and test results side by side, and paired differences.

    Runs that differ only by their seed form one column (a cell across seeds); with a single such group, each run
    is its own column. The first column is the reference of the paired differences (see the module docstring).

    Raises:
        ConfigError: with fewer than two runs, or a run without a readable config.
    """
    bad = [e for e in entries if not e.config]
    if bad:
        raise ConfigError(f"cannot compare {bad[0].path}: {bad[0].problem or 'it is not started'}")
    if len(entries) < 2:
        raise ConfigError("compare needs two or more runs (run folders, or sweep folders holding them)")
    typed = {id(e): _typed(e) for e in entries}
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        key = tuple(sorted((k, repr(v)) for k, v in typed[id(e)].items() if k not in ("seed", "progress")))
        groups.setdefault(key, []).append(e)
    columns = list(groups.values()) if len(groups) > 1 else [[e] for e in entries]
    if len(columns) > len(string.ascii_uppercase):
        raise ConfigError(f"compare sets at most {len(string.ascii_uppercase)} columns side by side, got "
                          f"{len(columns)}; give fewer runs")
    labels = list(string.ascii_uppercase[:len(columns)])
    lines = ["runs:"]
    for label, group in zip(labels, columns):
        names = ", ".join(_label(e, roots) for e in group)
        states = {e.state for e in group}
        note = "" if states == {"finished"} else f" [{', '.join(sorted(states))}]"
        lines.append(f"  {label}  {names}{note}")
    fields = [k for k in typed[id(entries[0])] if k != "progress"
              and len({repr(typed[id(e)][k]) for e in entries}) > 1]
    lines.append("config differences (every other field is the same in all):" if fields else
                 "config: the same in all")
    if fields:
        rows = [["field", *labels]]
        for k in fields:
            values = []
            for group in columns:
                vs = list(dict.fromkeys(show(typed[id(e)][k]) for e in group))
                values.append(",".join(vs))
            rows.append([k, *values])
        lines += _table(rows)
    metrics = _metrics(entries)
    if not metrics:
        lines.append("results: none of the runs is finished (no test.json)")
        return "\n".join(lines)
    lines.append("results (test.json; one run: mean ± 95% CI over its test tasks; several seeds: their mean):")
    lines += _table([["metric", *labels]] + [[k, *(_group_result(g, k) for g in columns)] for k in metrics])
    lines.append(f"paired differences (X − {labels[0]}; paired: the same seed and the same test tasks, "
                 f"{', '.join(TEST_TASK_FIELDS)} equal):")
    rows = []
    for label, group in zip(labels[1:], columns[1:]):
        for k in metrics:
            rows.append([f"{label} − {labels[0]}", k, _paired_text(columns[0], group, k)])
    lines += _table(rows)
    return "\n".join(lines)
