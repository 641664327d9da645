"""Run-folder files: JSON lines, JSON, checkpoints and arrays, each written so that a crash never leaves half a file.

A run folder holds ``config.json``, ``metrics.jsonl`` (training), ``val.jsonl`` (validation),
``checkpoint.pt`` (model, optimizer and RNG state), with ``--select best-val`` ``best.pt`` (the weights of the
best validation), ``test.json`` (the final test) and, for analysis runs,
``dynamics.jsonl``, ``representations.json`` and ``features.npz`` (or ``fits.npz``); a run folder written by
``train`` and a sweep folder also hold ``command.json``, the command lines that wrote them. Figures read only
these files, and so does :mod:`cml.tensorboard`, which writes ``tensorboard/`` (event files) from them on request.

Reliability (README, "Reliability"):

- every whole-file record is written to a temp file beside it, fsynced, then renamed over the old one, so a
  crash or a full disk leaves either the old file or the new one, never half of one; JSON-lines records are
  appended and fsynced, and a last line cut short by a crash is ignored by every reader;
- one writer per run or sweep folder: :class:`FolderLock` (a lock file beside the folder naming host and PID,
  held with ``flock`` so that a killed writer's lock is recognised as stale and taken over), and the holder
  removes the temp files a killed writer left;
- every damaged or foreign file is a :class:`RunFolderError` made by :func:`damaged`: one line naming the
  file, what is wrong with it and the command that fixes it; a full disk is a :class:`DiskFullError` naming
  the folder and the space needed;
- every record is checked against its schema when read (:data:`SCHEMAS`: the types of its keys, the keys its
  readers need, its step), so that a record that parses but holds a wrong type is one line naming the file and
  the key, never a traceback in whichever figure reads it; integers of more than :data:`MAX_INT_DIGITS` digits
  and nesting deeper than Python's recursion limit are refused the same way;
- no record, lock file or folder of events is opened through a symbolic link (``O_NOFOLLOW``, or a refusal
  naming the link): a link may point anywhere, and a write through it would change a file outside the folder;
  a folder is locked by its resolved path, so that two names of one folder (a symlinked alias) share one lock.
"""

from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import math
import os
import shlex
import shutil
import signal
import socket
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import __version__

# Re-exported: a run folder's errors, defined with every other error in cml.errors.
from .errors import DiskFullError, FolderLockedError, MissingFileError, OutputExistsError, RunFolderError  # noqa: F401

CHECKPOINT = "checkpoint.pt"
SWEEP = "sweep.json"
AGGREGATE = "aggregate.json"
LOCK_SUFFIX = ".lock"
# A folder moved out of the way by --restart is renamed <name><ASIDE><UTC time>; figures skip such folders.
ASIDE = ".aside-"
# Test hook for the fault-injection tests: "NAME:N:PHASE" kills this process with SIGKILL the N-th time
# record NAME reaches PHASE ("partial": half its bytes written; "written": all written, not yet renamed;
# "done": renamed or appended). Unset in normal use; reading it costs one dictionary lookup per write.
FAULT_ENV = "CML_TEST_KILL"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# The names of a run folder's files, made once: the trainer, sweeps, recorders and figures import them.
CONFIG = "config.json"
METRICS = "metrics.jsonl"
VAL = "val.jsonl"
CHECKPOINT = "checkpoint.pt"
#: The checkpoint with the best validation metric, kept beside the last by a ``--select best-val`` run.
BEST_CHECKPOINT = "best.pt"
TEST = "test.json"
DYNAMICS = "dynamics.jsonl"
REPRESENTATIONS = "representations.json"
#: The layer of ``representations.json`` that is the head's output (the logits; sinusoid: the prediction).
OUTPUT_LAYER = "output"
#: The final test task by task (per-task values and a digest of the tasks), written by the recorder.
TEST_TASKS = "test_tasks.json"
FEATURES = "features.npz"
FITS = "fits.npz"
#: JSON-lines records a resumed run truncates to its checkpoint's step.
STEP_RECORDS = (METRICS, VAL, DYNAMICS)
#: The Weights & Biases run a run folder was logged to (``--wandb``, :mod:`cml.wandb_export`).
WANDB_RUN = "wandb_run.json"
# A sweep folder's own files.
SWEEP = "sweep.json"
AGGREGATE = "aggregate.json"
#: The command lines that wrote a folder: in a run folder written by ``train`` and in a sweep folder written by
#: ``sweep`` (or ``demo``), never in a sweep's cells (:func:`append_command`).
COMMAND = "command.json"
#: The folder of a run's TensorBoard event files, inside the run folder (:mod:`cml.tensorboard`).
TENSORBOARD_DIR = "tensorboard"
#: Every name cml writes inside a run folder (besides its temp files ``.NAME.*.tmp``): a folder holding anything
#: else is not a cml run folder, and ``train`` refuses to write into it (:func:`foreign_entries`).
RUN_FILES = (CONFIG, METRICS, VAL, DYNAMICS, CHECKPOINT, BEST_CHECKPOINT, TEST, TEST_TASKS, REPRESENTATIONS, FEATURES,
             FITS, COMMAND, TENSORBOARD_DIR, WANDB_RUN)
#: Record files written once, at the end of a run (with its final step): stale once the run is trained further.
END_RECORDS = (TEST, TEST_TASKS, REPRESENTATIONS, FEATURES, FITS)
#: Config fields that change no number of a run's test, validation, dynamics or representation records, only
#: how the run is shown (``progress``), where and by which engine it computes (``device``, ``backend``: the same
#: maths; the engines are tested to agree), and how often it writes records (``log_interval``, ``val_interval``,
#: ``checkpoint_interval``, ``record_interval``: validation uses a fresh generator, recording never touches the
#: training generators, and resume is exact; all tested). Runs differing only in these and in ``seed`` are pooled
#: as seeds of one cell; runs differing in any other field never are (:func:`config_differences`).
RESULT_NEUTRAL = ("progress", "device", "backend", "log_interval", "val_interval", "checkpoint_interval",
                  "record_interval")
#: The longest integer a record may hold: 19 digits is every count, step or seed cml writes (int64); a longer one
#: is damage (Python's own limit of 4,300 digits would otherwise surface as a ValueError deep in the JSON parser).
MAX_INT_DIGITS = 19


def run_folder_name(variant: str, seed: int, task: str | None = None, grid: dict[str, Any] | None = None) -> str:
    """A run folder's name: ``<variant>-s<seed>`` in a sweep (``boil_cml-s0``), ``<task>-<variant>-s<seed>`` for
    ``train`` (``fonts-boil_cml-s0``); ``variant`` is :func:`cml.methods.variant_key`. A cell of a sweep's
    ``--grid`` carries its grid values between the two (:func:`cell_name`): ``cml-gamma_0.5-co_learner_conv-s0``."""
    name = f"{cell_name(variant, grid)}-s{seed}"
    return name if task is None else f"{task}-{name}"


def _grid_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true, false, null: as the config file writes them
    if isinstance(value, float):
        return f"{value:g}"  # 0.0 -> 0, 1e-05 -> 1e-05: what the user typed, not float noise
    if isinstance(value, (tuple, list)):  # a tuple field's value (a list once read back from sweep.json)
        return ",".join(_grid_text(v) for v in value) or "()"
    return str(value).replace(os.sep, "_")  # a path value must not make a sub-folder


def cell_name(variant: str, grid: dict[str, Any] | None = None) -> str:
    """A sweep cell's name across seeds: the variant, then each grid field and its value
    (``cml-gamma_0.5-co_learner_conv``); the key of ``aggregate.json``."""
    return "-".join([variant] + [f"{k}_{_grid_text(v)}" for k, v in (grid or {}).items()])


def spec_grid(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """The ``--grid`` of a ``sweep.json``, fields in their command-line order (they name the cell folders).

    ``sweep.json`` stores it as a list of ``{"field": ..., "values": [...]}``: JSON objects are written with
    sorted keys, which would lose the order.
    """
    # A tuple field's values are JSON lists in the file: tuples again, as the config field holds them.
    return {item["field"]: [tuple(v) if isinstance(v, list) else v for v in item["values"]]
            for item in spec.get("grid") or []}


def spec_planned(spec: dict[str, Any]) -> set[str] | None:
    """The cell folder names a ``sweep.json``'s commands asked for, where they are fewer than its grid holds
    (its ``cells``: the demo trains some methods on one seed and others on two); None where every cell of the
    grid was asked for. A reader reports a cell of the grid without a folder as unfinished only if it was asked for.
    """
    cells = spec.get("cells")
    return None if cells is None else set(cells)


def grid_spec(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """A grid as ``sweep.json`` stores it (see :func:`spec_grid`)."""
    return [{"field": field, "values": list(values)} for field, values in grid.items()]


def grid_points(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of a sweep's grid values, the first field varying slowest (``[{}]`` for no grid)."""
    import itertools

    grid = grid or {}
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


# How to repair each kind of damaged file. A record computed from the checkpoint is written again by
# continuing the run; a damaged config or checkpoint means starting the run again, with the old folder kept.
_RESTART = ("rerun the run's train or sweep command with --restart: that moves {folder} aside (nothing is "
            "deleted) and trains it afresh")
_FIXES = {
    "config.json": _RESTART,
    CHECKPOINT: _RESTART,
    BEST_CHECKPOINT: ("rerun the run's train command with --resume, or its sweep command: either writes {name} again "
                      "from the best weights kept in checkpoint.pt"),
    SWEEP: ("rerun the sweep with --restart: it moves {name} aside and writes it again from the command line; "
            "the cells are kept"),
    AGGREGATE: "rerun the sweep command: it writes {name} again from the cells' test.json",
    COMMAND: ("it only lists the commands that wrote {folder}, and nothing can write it again: move it out of the "
              "folder (the report then says the command was not recorded), and a rerun starts a new list"),
}
_RESUME = ("rerun the run's train command with --resume, or its sweep command: either writes {name} again "
           "from the checkpoint")


def damaged(path: Path, problem: str, fix: str | None = None) -> RunFolderError:
    """The one error for a damaged or foreign file: ``<path>: <problem>; <fix>``.

    Args:
        path: the file.
        problem: what is wrong with it, e.g. ``"not valid JSON (line 3)"``.
        fix: the command that repairs it; default: the fix for that file name (see ``_FIXES``).
    """
    path = Path(path)
    fix = fix if fix is not None else _FIXES.get(path.name, _RESUME)
    return RunFolderError(f"{path}: {problem}; {fix.format(folder=path.parent, name=path.name)}")


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null so that every reader (and jq) can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# -- writing ---------------------------------------------------------------------------------------------

_fault_counts: dict[tuple[str, str], int] = {}


def _fault_point(path: Path, phase: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, nth, when = spec.split(":")
    if Path(path).name != name or phase != when:
        return
    key = (name, phase)
    _fault_counts[key] = _fault_counts.get(key, 0) + 1
    if _fault_counts[key] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    if n < 1024:
        return f"{n} bytes"
    exponent = min(3, int(math.log(n, 1024)))
    return f"{n / 1024 ** exponent:.1f} {('KB', 'MB', 'GB')[exponent - 1]}"


def _disk_full(path: Path, needed: int) -> DiskFullError:
    """The error for a write that found the disk full; call it once the write's own temp file is removed, so that
    the space it reports free is the space there is."""
    folder = Path(path).parent
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    # The advice must work: --resume needs a checkpoint, and a run stopped before its first one starts afresh.
    if (folder / CHECKPOINT).is_file():
        again = "rerun the same command (for train, with --resume: the checkpoint there is kept)"
    elif Path(path).name in RUN_FILES:
        again = "rerun the same command (no checkpoint was written yet, so the run starts afresh)"
    else:
        again = "rerun the same command"
    return DiskFullError(f"disk full: writing {Path(path).name} into {folder} needs {_size(needed)} and "
                         f"{_size(free)} is free; earlier records and the last checkpoint there are kept: free "
                         f"space, then {again}")


def _write_all(fd: int, data: bytes, path: Path) -> None:
    # In two halves so that the fault-injection tests can stop a write in its middle.
    view = memoryview(data)
    for chunk, phase in ((view[: len(view) // 2], "partial"), (view[len(view) // 2:], None)):
        while chunk:
            chunk = chunk[os.write(fd, chunk):]
        if phase:
            _fault_point(path, phase)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is: fsync the folder (not possible everywhere).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic there
        pass
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> tuple[int, str]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are ordinary files that others may read
    return fd, tmp


def _link_error(path: Path) -> RunFolderError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return damaged(path, f"is a symbolic link{target}; cml reads and writes a folder's records, locks and events "
                         f"only as files of that folder, never through a link that may point anywhere",
                   "replace the link with the file itself, or remove it")


def _not_a_file(path: Path) -> RunFolderError:
    kind = "a folder" if os.path.isdir(path) else "not a regular file"
    return damaged(path, f"is {kind} where cml keeps a file of that name", "move it out of the way")


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` that never follows a symbolic link at ``path`` and opens only a regular file.

    ``O_NOFOLLOW`` makes the kernel refuse a link (even a dangling one, which ``O_CREAT`` would otherwise create
    outside the folder); ``O_NONBLOCK`` keeps a FIFO planted at the path from blocking the open, and the file
    type is checked on the open descriptor.

    Raises:
        RunFolderError: naming ``path``, if it is a symbolic link, a folder or not a regular file.
        OSError: any other failure of the open (a full disk, a permission).
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise _link_error(path) from None
        if e.errno == errno.EISDIR:
            raise _not_a_file(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_file(path)
    return fd


def refuse_link(path: Path, folder_ok: bool = False) -> None:
    """Raises :class:`RunFolderError` naming ``path`` if it is a symbolic link, or a folder (unless ``folder_ok``)
    or another non-regular file; a missing path is fine (it is about to be written)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _link_error(Path(path))
    if not (stat.S_ISREG(st.st_mode) or (folder_ok and stat.S_ISDIR(st.st_mode))):
        raise _not_a_file(Path(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it and renames it over ``path``.

    Raises:
        DiskFullError: if the disk is full (the old ``path``, if any, is unchanged; the temp file is removed).
        RunFolderError: if ``path`` is a symbolic link or a folder (the rename would replace the user's link or
            fail half-way).
    """
    path = Path(path)
    refuse_link(path)
    tmp = None
    try:
        fd, tmp = _temp_beside(path)
        try:
            _write_all(fd, data, path)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fault_point(path, "written")
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        if tmp is not None:  # before measuring the free space: the temp file's bytes are not ours to count
            Path(tmp).unlink(missing_ok=True)
            tmp = None
        if e.errno in _DISK_FULL:
            raise _disk_full(path, len(data)) from None
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    _fault_point(path, "done")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_clean(record), indent=2, sort_keys=True) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` into memory, then :func:`atomic_write_bytes`: a crash or a full disk keeps the old file."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_savez(path: Path, **arrays: Any) -> None:
    """``numpy.savez_compressed`` into memory, then :func:`atomic_write_bytes`."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Appends one JSON line and fsyncs it. A full disk removes what was appended of the line.

    Raises:
        DiskFullError: if the disk is full.
        RunFolderError: if ``path`` is a symbolic link (a dangling one would be created outside the folder) or
            not a regular file.
    """
    path = Path(path)
    data = (json.dumps(_clean(record), sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, data, path)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)  # no half line left behind by a full disk
                raise
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise _disk_full(path, len(data)) from None
        raise
    _fault_point(path, "done")


def last_step(path: Path, tail: int = 1 << 16) -> int | None:
    """The step of the last whole line of a JSON-lines record, read from its last ``tail`` bytes; None if the
    file is absent, empty or its last whole line holds no step (what a checkpoint records, see
    ``cml.trainer.RECORD_STEPS``)."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    with os.fdopen(open_no_follow(path, os.O_RDONLY), "rb") as f:
        start = max(0, f.seek(0, os.SEEK_END) - tail)
        f.seek(start)
        lines = f.read().split(b"\n")[:-1]  # the part after the last newline is a line still being appended
    for line in reversed(lines[1:] if start else lines):
        if line.strip():
            try:
                step = json.loads(line).get("step")
            except (ValueError, AttributeError):
                return None
            return step if _int(step) else None
    return None


def truncate_jsonl(path: Path, keep: Iterable[dict[str, Any]]) -> None:
    """Rewrites a JSON-lines file with only ``keep`` (used on resume to drop lines past the checkpoint)."""
    atomic_write_text(path, "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in keep))


# -- the command that wrote a folder ------------------------------------------------------------------------

def command_entry(argv: Sequence[str], config: dict[str, Any], prog: str = "python -m cml") -> dict[str, Any]:
    """One entry of ``command.json``: a command line as given, and what it resolved to and ran on.

    Args:
        argv: the arguments after the program's name, as given (``["sweep", "--task", "fonts", ...]``).
        config: the resolved config as a dict: the run's (``train``; what its ``config.json`` holds) or the one
            every cell of a sweep starts from (``sweep``; its ``sweep.json``'s ``base``).
        prog: the program as typed: ``python -m cml`` or ``cml``.

    Returns:
        ``{"argv", "prog", "cwd", "config", "cml_version", "torch_version", "threads", "device", "time"}``:
        ``cwd`` because relative paths in ``argv`` are relative to it; ``threads`` the torch threads the run uses
        (the config's ``threads``, else ``torch.get_num_threads()``: the speed depends on it, and so do the last
        bits of a sum split across threads); ``device`` where it runs (``cpu``, or ``cuda`` with the card's name;
        ``auto`` resolved); ``time`` is UTC. The torch build, the thread count and the device are what a
        bit-identical rerun needs besides the config.
    """
    import torch  # not at import time: the figures read records and never need torch

    threads = config.get("threads")
    device = str(config.get("device", "cpu"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name()})"
    return {"argv": [str(a) for a in argv], "prog": prog, "cwd": os.getcwd(), "config": config,
            "cml_version": __version__, "torch_version": torch.__version__,
            "threads": torch.get_num_threads() if threads is None else threads, "device": device,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def append_command(folder: Path, entry: dict[str, Any], keep: bool) -> None:
    """Writes ``entry`` into ``folder/command.json`` (atomically), after the entries already there if ``keep``.

    The file holds ``{"commands": [...]}``, oldest first: the first entry is the command that started the folder,
    each later one a command that continued it. ``train`` keeps the list on ``--resume`` and starts a new one
    otherwise (a fresh run replaces whatever an earlier attempt left; ``--restart`` moves the old folder, with its
    list, aside); ``sweep`` always keeps it, since rerunning a sweep resumes it and a new command may add seeds,
    methods or grid values to the same folder.

    Raises:
        RunFolderError: if ``keep`` and the ``command.json`` there is damaged (see :func:`read_commands`).
    """
    history = (read_commands(folder) or []) if keep else []
    write_json(Path(folder) / COMMAND, {"commands": [*history, entry]})


def read_commands(folder: Path) -> list[dict[str, Any]] | None:
    """The entries of ``folder/command.json``, oldest first; None if the folder has none (written before cml
    recorded its commands, or by :func:`cml.sweep.run_sweep` called from Python).

    Raises:
        RunFolderError: if the file is damaged or is not a list of commands with their ``argv``.
    """
    path = Path(folder) / COMMAND
    if not path.is_file():
        return None
    commands = read_json(path).get("commands")
    if not (isinstance(commands, list) and commands and all(
            isinstance(c, dict) and isinstance(c.get("argv"), list) and all(isinstance(a, str) for a in c["argv"])
            for c in commands)):
        raise damaged(path, "is not a list of commands, each with its argv; not written by cml")
    return commands


def command_text(entry: dict[str, Any]) -> str:
    """An entry's command line as it would be typed (each argument quoted for a POSIX shell where needed)."""
    return f"{entry.get('prog', 'python -m cml')} {shlex.join(entry['argv'])}"


# -- reading ---------------------------------------------------------------------------------------------

def read_bytes(path: Path) -> bytes:
    """The bytes of a record file, opened without following a symbolic link (:func:`open_no_follow`).

    Raises:
        MissingFileError: if there is no file at ``path`` (a dangling link is a link, not a missing file).
        RunFolderError: if ``path`` is a link, a folder or not a regular file.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise MissingFileError(f"{path} does not exist; was the run trained with the settings that write it?")
    fd = open_no_follow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _text(path: Path) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(path, f"not UTF-8 text (byte {e.start}); damaged or not written by cml") from None


class _HugeInteger(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _HugeInteger(digits)
    return int(text)


def parse_json(text: str, path: Path, what: str = "") -> Any:
    """``json.loads`` of a record's text, every way it can fail turned into one :func:`damaged` line.

    Integers longer than :data:`MAX_INT_DIGITS` digits and nesting deeper than the recursion limit are refused
    (Python raises ValueError and RecursionError for them, which no reader should see).

    Args:
        what: where in the file the text is (``"line 3 "``), for the message.
    """
    try:
        return json.loads(text, parse_int=_bounded_int)
    except _HugeInteger as e:
        raise damaged(path, f"{what}holds an integer of {e.digits} digits, more than any count, step or seed cml "
                            f"writes ({MAX_INT_DIGITS}); damaged or not written by cml") from None
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise damaged(path, f"{what}is nested too deeply to be a cml record; damaged or not written by cml") from None


# -- schemas: what every record holds, checked on read -------------------------------------------------------

class _Bad(Exception):
    """A record's key holds a value of the wrong type (turned into a damaged() line naming the file and key)."""

    def __init__(self, key: str, what: str, value: Any) -> None:
        super().__init__(key)
        self.key, self.what, self.value = key, what, value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise _Bad(key, what, value)


def _number_or_null(key: str, v: Any) -> None:
    _need(v is None or _number(v), key, "a finite number or null", v)


def _step(r: dict[str, Any], required: bool = True) -> None:
    if required or "step" in r:
        _need(_int(r.get("step")), "step", "a count of steps (an integer >= 0)", r.get("step"))


def _summary(key: str, v: Any) -> None:
    # A mean over tasks and its CI (cml.recording._summary): {"mean", "ci95", "undefined"}.
    _need(isinstance(v, dict) and "mean" in v, key, 'an object with "mean" (and "ci95")', v)
    for k in ("mean", "ci95"):
        if k in v:
            _number_or_null(f"{key}.{k}", v[k])
    if "undefined" in v:
        _need(_int(v["undefined"]), f"{key}.undefined", "a count", v["undefined"])


def _metric_key(key: str) -> bool:
    # Test metrics and their CIs: acc, acc_dagger, acc_dagger_eq9, loss, mse, mse_before, ... and *_ci95.
    return key.startswith(("acc", "mse", "loss")) or key.endswith("_ci95")


def _check_test(r: dict[str, Any]) -> None:
    _step(r)
    params = r.get("params")
    _need(isinstance(params, dict) and "train" in params and "test" in params
          and all(isinstance(k, str) and _int(v) for k, v in params.items()),
          "params", 'parameter counts ({"train": ..., "test": ..., ...})', params)
    for key in ("tasks", "shots"):
        if key in r:
            _need(_int(r[key], 1), key, "a positive integer", r[key])
    if "ways" in r:
        _need(r["ways"] is None or _int(r["ways"], 1), "ways", "a positive integer or null", r["ways"])
    for key in ("method", "base", "variant", "task"):
        if key in r:
            _need(isinstance(r[key], str), key, "a string", r[key])
    if "train_time" in r:
        _need(_number(r["train_time"]), "train_time", "a number of seconds", r["train_time"])
    for key, v in r.items():
        if _metric_key(key):
            _number_or_null(key, v)


def _check_representations(r: dict[str, Any]) -> None:
    _step(r, required=False)  # written since the second fault matrix; older records have none
    if "tasks" in r:
        _need(_int(r["tasks"], 1), "tasks", "a positive integer", r["tasks"])
    if "layers" in r:
        _need(isinstance(r["layers"], list) and all(isinstance(x, str) for x in r["layers"]), "layers",
              "a list of layer names", r["layers"])
    for key in ("cka", "cka_debiased"):
        if key in r:
            _need(isinstance(r[key], dict), key, "an object of layers", r[key])
            for layer, v in r[key].items():
                _summary(f"{key}.{layer}", v)
    for key in ("silhouette_before", "silhouette_after"):
        if key in r:
            _summary(key, r[key])
    if "tsne_task" in r:
        _need(isinstance(r["tsne_task"], dict), "tsne_task", "an object", r["tsne_task"])
        for k, v in r["tsne_task"].items():
            _number_or_null(f"tsne_task.{k}", v)


def _check_line(r: dict[str, Any]) -> None:
    # A line of metrics.jsonl, val.jsonl or dynamics.jsonl: a step, numbers (or null), per-block objects of them.
    _step(r)
    for key, v in r.items():
        if key == "step":
            continue
        if isinstance(v, dict):
            for k, x in v.items():
                _number_or_null(f"{key}.{k}", x)
        else:
            _number_or_null(key, v)


def _check_sweep(r: dict[str, Any]) -> None:
    _need(isinstance(r.get("base"), dict), "base", "the config every cell starts from (an object)", r.get("base"))
    _need(isinstance(r.get("methods"), list) and bool(r["methods"]) and all(isinstance(m, str) for m in r["methods"]),
          "methods", "a non-empty list of method names", r.get("methods"))
    _need(isinstance(r.get("seeds"), list) and all(_int(x, -2 ** 63) for x in r["seeds"]), "seeds",
          "a list of integer seeds", r.get("seeds"))
    if "bases" in r:
        _need(isinstance(r["bases"], list) and bool(r["bases"]) and all(isinstance(b, str) for b in r["bases"]),
              "bases", "a non-empty list of base-learner names", r["bases"])
    if "preset" in r:
        _need(r["preset"] is None or isinstance(r["preset"], str), "preset", "a preset name or null", r["preset"])
    grid = r.get("grid", [])
    _need(isinstance(grid, list) and all(isinstance(i, dict) and isinstance(i.get("field"), str)
                                         and isinstance(i.get("values"), list) and i["values"] for i in grid),
          "grid", 'a list of {"field": ..., "values": [...]}', grid)


def _check_aggregate(r: dict[str, Any]) -> None:
    for cell, entry in r.items():
        _need(isinstance(entry, dict) and _int(entry.get("seeds")), cell, 'an object with "seeds"', entry)


#: The schema of each record, by file name: a check of a parsed record (a JSON object, or one JSON line), raising
#: on the first key of the wrong type. :func:`read_json` and :func:`read_jsonl` apply it, so every reader (the
#: report, TensorBoard, sweeps' ``cell_finished`` and ``aggregate``, resume) sees only well-typed records.
SCHEMAS: dict[str, Any] = {TEST: _check_test, REPRESENTATIONS: _check_representations, METRICS: _check_line,
                           VAL: _check_line, DYNAMICS: _check_line, SWEEP: _check_sweep, AGGREGATE: _check_aggregate}


def check_record(path: Path, record: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``record`` if it holds what its file's schema (:data:`SCHEMAS`, by ``path``'s name) says; a file without a
    schema passes.

    Args:
        where: where in the file the record is (``"line 3: "``), for the message.

    Raises:
        RunFolderError: naming the file and the key, and the command that writes it again.
    """
    check = SCHEMAS.get(Path(path).name)
    if check is not None:
        try:
            check(record)
        except _Bad as e:
            fix = _RESTART if Path(path).name in STEP_RECORDS else None
            raise damaged(path, f"{where}{e.key} must be {e.what}, got {_short(e.value)}; damaged or not written by "
                                f"cml", fix) from None
    return record


def read_jsonl(path: Path, drop_partial_last: bool = True) -> list[dict[str, Any]]:
    """All records of a JSON-lines file, each checked against its schema; a missing file or a damaged line is an
    error naming it.

    Args:
        drop_partial_last: ignore a last line that is not valid JSON: records are appended, so a crash while
            appending can leave only the last line cut short. Any other damaged line is an error. A reader of a
            finished run passes False: nothing is appended to it any more, so a damaged last line is damage.
    """
    path = Path(path)
    lines = _text(path).splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                value = parse_json(line, path, f"line {i} ")
            except json.JSONDecodeError as e:
                if drop_partial_last and i == len(lines):
                    break
                raise damaged(path, f"line {i} is not valid JSON ({e.msg})", _RESTART) from None
            if not isinstance(value, dict) or not _int(value.get("step")):
                raise damaged(path, f"line {i} is not a record with an integer step", _RESTART)
            out.append(check_record(path, value, f"line {i}: "))
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, checked against its file's schema (:data:`SCHEMAS`); a damaged file (not UTF-8,
    not JSON, not an object, a key of the wrong type, a link) is :func:`damaged`, a missing one a
    :class:`MissingFileError` (a FileNotFoundError)."""
    path = Path(path)
    if not os.path.lexists(path):
        raise MissingFileError(f"{path} does not exist; has the run finished?")
    try:
        value = parse_json(_text(path), path)
    except json.JSONDecodeError as e:
        raise damaged(path, f"not valid JSON ({e.msg} at line {e.lineno}; cut short?)") from None
    if not isinstance(value, dict):
        raise damaged(path, f"holds a JSON {type(value).__name__} where an object was expected; not written by cml")
    return check_record(path, value)


def open_record(path: Path) -> io.BufferedReader:
    """A record file opened for reading as a binary file object, never through a symbolic link (for readers that
    take a file: ``np.load``, ``torch.load``).

    Raises:
        MissingFileError: if there is no file at ``path``.
        RunFolderError: if ``path`` is a link, a folder or not a regular file.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise MissingFileError(f"{path} does not exist; was the run trained with the settings that write it?")
    return os.fdopen(open_no_follow(path, os.O_RDONLY), "rb")


def load_npz(path: Path) -> dict[str, Any]:
    """The arrays of an ``.npz`` record (no pickles); a truncated or foreign file is :func:`damaged`, a missing
    one a :class:`MissingFileError` (a FileNotFoundError)."""
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    try:
        with open_record(path) as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
        if isinstance(e, (RunFolderError, MissingFileError)):
            raise
        raise damaged(path, f"not a readable .npz archive ({type(e).__name__}; cut short?)") from None
    if "step" in arrays and not (arrays["step"].shape == () and arrays["step"].dtype.kind in "iu"
                                 and int(arrays["step"]) >= 0):
        raise damaged(path, f"step must be a count of steps, got an array of shape {arrays['step'].shape} and dtype "
                            f"{arrays['step'].dtype}; damaged or not written by cml")
    return arrays


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = ("seed",)
                       ) -> dict[str, tuple[Any, Any]]:
    """The config fields whose values differ between two configs (``config.json`` dicts), besides the
    result-neutral fields (:data:`RESULT_NEUTRAL`) and ``ignore``: ``{field: (a's value, b's value)}``.

    A field one config lacks (written before the field existed) is compared as absent; read both through
    :class:`cml.config.Config` first where the defaults of missing fields must count. ``threads`` differs only
    where both name a count: None is "the process's count" (a sweep's base config), which a run resolves and
    records when it starts (as :func:`cml.config.differing_fields` reads it).
    """
    skip = set(RESULT_NEUTRAL) | set(ignore)
    keys = [k for k in dict.fromkeys([*a, *b]) if k not in skip]
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)
            and not (k == "threads" and (a.get(k) is None or b.get(k) is None))}


def describe_differences(diff: dict[str, tuple[Any, Any]], mine: str, theirs: str, limit: int = 4) -> str:
    """``"steps 300 (the cell's other runs: 30), inner_lr 0.05 (...: 0.01)"`` for :func:`config_differences`."""
    parts = [f"{k} {_short(x)} ({theirs}: {_short(y)})" for k, (x, y) in list(diff.items())[:limit]]
    more = f" and {len(diff) - limit} more" if len(diff) > limit else ""
    return f"{mine} " + ", ".join(parts) + more


# -- one writer per folder ---------------------------------------------------------------------------------

def remove_temp_files(folder: Path) -> list[Path]:
    """Removes the temp files a killed writer left in ``folder`` (call only while holding its lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    left = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in left:
        p.unlink(missing_ok=True)
    return left


def move_aside(folder: Path) -> Path:
    """Renames ``folder`` to ``<folder><ASIDE><UTC time>`` (a new name if taken) and returns the new path."""
    folder = Path(folder)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = folder.with_name(f"{folder.name}{ASIDE}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{ASIDE}{stamp}-{n}")
    os.rename(folder, target)
    return target


def make_folder(folder: Path, flag: str) -> Path:
    """Creates ``folder`` and the folders above it, if absent, to write into.

    Args:
        flag: the option the user named the path with (``--out``, ``-o``), for the message.

    Raises:
        OutputExistsError: if ``folder`` or a folder above it is a file (the user's path to change, not a bug).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputExistsError(f"{flag}: {in_the_way} is a file where a folder must be (for {folder}); choose "
                                f"another {flag} or move the file") from None
    return folder


def lock_path(folder: Path) -> Path:
    """The lock file of a folder: ``.<name>.lock`` beside it (so that moving the folder aside keeps it), named
    after the folder's resolved path, so that every name of one folder (``runs/alias -> runs/real``) shares it."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def foreign_entries(folder: Path) -> list[str]:
    """The entries of ``folder`` that cml does not write in a run folder (:data:`RUN_FILES`, temp files), and those
    of its names that are symbolic links (a record must be a file of the folder): what makes a folder not a cml run
    folder. Empty for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(os.listdir(folder)):
        path = folder / entry
        ours = entry in RUN_FILES or (entry.startswith(".") and entry.endswith(".tmp"))
        if not ours or (entry in RUN_FILES and os.path.islink(path)):
            out.append(entry + (" (a symbolic link)" if os.path.islink(path) else ""))
    return out


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process that left no host or PID"
    return f"PID {info.get('pid')} on host {info.get('host')} (since {info.get('since')})"


def _why_stale(info: dict[str, Any]) -> str:
    """Why a lock file whose ``flock`` could be taken is stale, in words that are true of its holder."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname():
        return ("which holds no lock on the file (another host: it stopped, or the file system does not share "
                "flock locks between hosts)")
    try:
        alive = isinstance(pid, int) and pid > 0
        if isinstance(pid, int) and alive:
            os.kill(pid, 0)  # signal 0: raises if no such process
    except ProcessLookupError:
        alive = False
    except PermissionError:  # the PID exists, owned by another user
        alive = True
    if alive:
        return (f"which holds no lock on the file: PID {pid} is running but is not writing this folder (its PID "
                f"was reused by another process, or the lock file was copied)")
    return "which is no longer running (killed?)"


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def lock_holder(folder: Path) -> dict[str, Any] | None:
    """The live writer of a folder (its lock's host, PID and start time; ``{}`` if it wrote none), or None when no
    process holds its lock; a lock file left by a killed writer is not held.

    Reads only, and never takes the lock, not even for a moment (a writer starting then would be refused): on Linux
    the kernel's table of locks (``/proc/locks``) is read; elsewhere a shared lock is tried and dropped at once.
    """
    path = lock_path(folder)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or not readable): nobody holds it
        return None
    try:
        st = os.fstat(fd)
        held = _held_in_proc_locks(st.st_dev, st.st_ino)
        if held is None:
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # a writer holds it exclusively
                held = True
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                held = False
        return (_read_holder(fd) or {}) if held else None
    finally:
        os.close(fd)


def _held_in_proc_locks(dev: int, ino: int) -> bool | None:
    """Whether ``/proc/locks`` lists a ``flock`` on the file (device, inode); None where there is no such table."""
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in table.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"; a blocked waiter's line has "->" after the number.
        if "->" in parts:
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == wanted:
            return True
    return False


class FolderLock:
    """One writer per run or sweep folder, for the life of the writer (a context manager).

    The lock file ``.<name>.lock`` beside the folder holds the writer's host, PID and start time, and is held
    with ``flock``. The kernel drops a ``flock`` when its process dies, so a lock file whose ``flock`` can be
    taken is stale (its writer was killed): it is taken over with a warning naming the dead holder. On
    acquiring, the temp files of a killed writer are removed from the folder.

    Raises:
        FolderLockedError: on entry, if a live process holds the folder (naming its host and PID).
        OutputExistsError: on entry, if the folder or a folder above it is a file.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        make_folder(self.path.parent, "--out")
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputExistsError(f"{self.folder} is a file, not a run or sweep folder; choose another --out/--name "
                                    f"or move the file")
        while True:
            # Never through a link: a planted .NAME.lock -> FILE would have FILE truncated and the PID written in.
            fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderLockedError(
                    f"{self.folder} is being written by {_holder_text(holder)} (lock {self.path}); two writers "
                    f"would mix their records: wait for it to finish, stop it, or choose another --out/--name"
                ) from None
            # A holder that was releasing may have removed the file we opened: lock the file at the path.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd)
        if stale is not None:
            warnings.warn(f"{self.folder}: took over the lock of {_holder_text(stale)}, {_why_stale(stale)}",
                          stacklevel=2)
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            _write_all(fd, json.dumps(info).encode("utf-8"), self.path)
            os.fsync(fd)
        except OSError as e:
            self.path.unlink(missing_ok=True)
            os.close(fd)
            if e.errno in _DISK_FULL:
                raise _disk_full(self.path, 200) from None
            raise
        self._fd = fd
        remove_temp_files(self.folder)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the flock, then close (which drops it): a waiter that opened the old
        # file sees that it is no longer at the path and retries.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
