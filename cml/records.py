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
  the folder and the space needed.
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
    folder = Path(path).parent
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return DiskFullError(f"disk full: writing {Path(path).name} into {folder} needs {_size(needed)} and "
                         f"{_size(free)} is free; earlier records and the last checkpoint there are kept: free "
                         f"space, then rerun the same command (for train, with --resume)")


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it and renames it over ``path``.

    Raises:
        DiskFullError: if the disk is full (the old ``path``, if any, is unchanged; the temp file is removed).
    """
    path = Path(path)
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
    """Appends one JSON line and fsyncs it. A full disk removes what was appended of the line."""
    path = Path(path)
    data = (json.dumps(_clean(record), sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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

def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(path, f"not UTF-8 text (byte {e.start}); damaged or not written by cml") from None


def read_jsonl(path: Path, drop_partial_last: bool = True) -> list[dict[str, Any]]:
    """All records of a JSON-lines file; a missing file or a damaged line is an error naming it.

    Args:
        drop_partial_last: ignore a last line that is not valid JSON: records are appended, so a crash while
            appending can leave only the last line cut short. Any other damaged line is an error.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; was the run trained with the settings that write it?")
    lines = _text(path).splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                if drop_partial_last and i == len(lines):
                    break
                raise damaged(path, f"line {i} is not valid JSON ({e.msg})", _RESTART) from None
            if not isinstance(value, dict) or not isinstance(value.get("step"), int):
                raise damaged(path, f"line {i} is not a record with an integer step", _RESTART)
            out.append(value)
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a damaged file (not UTF-8, not JSON, not an object) is :func:`damaged`, a
    missing one a :class:`MissingFileError` (a FileNotFoundError)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; has the run finished?")
    try:
        value = json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise damaged(path, f"not valid JSON ({e.msg} at line {e.lineno}; cut short?)") from None
    if not isinstance(value, dict):
        raise damaged(path, f"holds a JSON {type(value).__name__} where an object was expected; not written by cml")
    return value


def load_npz(path: Path) -> dict[str, Any]:
    """The arrays of an ``.npz`` record (no pickles); a truncated or foreign file is :func:`damaged`, a missing
    one a :class:`MissingFileError` (a FileNotFoundError)."""
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; was the run trained with the settings that write it?")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
        raise damaged(path, f"not a readable .npz archive ({type(e).__name__}; cut short?)") from None


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
    """The lock file of a folder: ``.<name>.lock`` beside it (so that moving the folder aside keeps it)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process that left no host or PID"
    return f"PID {info.get('pid')} on host {info.get('host')} (since {info.get('since')})"


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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
            warnings.warn(f"{self.folder}: took over the lock of {_holder_text(stale)}, which is no longer "
                          f"running (killed?)", stacklevel=2)
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
