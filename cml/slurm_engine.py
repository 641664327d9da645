"""The SLURM engine of ``python -m cml sweep --engine slurm``: one job-array task per unfinished cell, through
submitit.

Each task calls :func:`cml.cells.train_cell`, the function the local and Ray engines call, into the cell's run
folder, so the records are the same whichever engine ran the cell (wall-clock times aside). The driver
(``run_sweep``) decides which cells are unfinished and writes ``sweep.json`` and ``aggregate.json``; the tasks
write only their own run folders, each under its own :class:`cml.records.FolderLock`.

submitit's own files (the submission script, the pickled calls, each task's ``.out``/``.err`` log and result) go
to ``<out>/.slurm/``, with ``jobs.json``: which job last took each cell. A sweep command run again skips the
finished cells, waits for the cells whose jobs are still queued or running (it does not submit them twice), and
submits the rest; with ``--no-wait`` it submits and returns at once, and the same command run later collects.

Preemption and time limits: SLURM sends SIGUSR2 ``signal_delay_s`` before it stops a task (submitit asks for it
in the submission script); submitit then calls :meth:`CellTask.checkpoint`, which hands back the same call, and
requeues the task. The requeued task finds the cell's own ``checkpoint.pt`` and resumes from it (records equal to
an uninterrupted run, as for any resumed cell); the steps since that checkpoint are trained again, so
``--checkpoint-interval`` bounds the work lost. After ``MAX_TIMEOUTS`` time-outs of one cell submitit stops
requeuing it; the same command submits it again, from its checkpoint.

Tasks import this checkout's ``cml`` (its folder is put first on ``PYTHONPATH``) and run in the driver's working
directory, so relative ``--data`` and ``--out`` mean what they mean on the command line. On a cluster the sweep
folder, the data and this checkout must therefore sit at the same path on every node (a shared file system).

``--slurm-executor local`` runs the same tasks as local subprocesses through submitit's ``LocalExecutor``
(every cell at once, with the same requeue on SIGUSR2): a sweep can be tried, and is tested, without a cluster.

submitit is optional: without it, :func:`require_submitit` stops with one line naming the install command.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import pickle
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config, ConfigError

#: What to install for ``--engine slurm`` (the version this engine is tested against).
INSTALL = "pip install 'submitit>=1.5.4'"
#: Where the tasks run: SLURM (sbatch on this machine's PATH) or this machine's subprocesses (for trying a sweep).
EXECUTORS = ("slurm", "local")
#: submitit's files and ``jobs.json``, inside the sweep folder, out of the figures' way.
JOB_FOLDER = ".slurm"
JOBS = "jobs.json"
#: Time-outs after which submitit stops requeuing a cell (its default); preemptions do not count.
MAX_TIMEOUTS = 3
# Keys of --slurm-opt that have their own flag, or that submitit writes itself (its logs and the requeue
# signal live by them).
_OWN_FLAG = {"partition": "--partition", "time": "--time", "gpus-per-task": "--gpus-per-task",
             "cpus-per-task": "--cpus-per-task", "mem": "--mem", "array": "--array-parallelism"}
_SUBMITIT_SETS = ("output", "error", "signal", "open-mode")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# SLURM's --mem: a count of megabytes, or one with a K, M, G or T suffix.
_MEM = re.compile(r"[0-9]+[KMGTkmgt]?")
# sacct states after which a job does nothing more (its cell then needs submitting again, unless finished).
_ENDED = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
          "REVOKED", "TIMEOUT")
_HINTS = {"TIMEOUT": " (with a longer --time, or a smaller --checkpoint-interval)",
          "OUT_OF_MEMORY": " (with more --mem)"}


class CellJobError(records.RunFolderError):
    """A cell's job ended without finishing the cell (cancelled, killed by the scheduler, out of time too often):
    its run folder keeps the last checkpoint, and the same sweep command submits it again."""


@dataclass(frozen=True)
class SlurmOptions:
    """How the SLURM engine submits its tasks.

    Attributes:
        executor: ``slurm`` (sbatch) or ``local`` (this machine's subprocesses, to try a sweep without a cluster).
        partition: the SLURM partition (None: the cluster's default).
        time: each task's time limit in minutes; a cell that needs longer is requeued from its checkpoint.
        gpus_per_task: GPUs per task (0: none requested).
        cpus_per_task: CPUs per task, and the torch threads the task uses.
        mem: memory per node in SLURM's syntax (``16G``, ``500M``; None: the cluster's default).
        array_parallelism: the most tasks of the array running at once (SLURM's ``--array=...%N``; None:
            submitit's 256). The local executor starts every cell at once.
        extra: further ``#SBATCH --KEY=VALUE`` lines (``--slurm-opt``), in order.
        wait: wait for the tasks and print the summary (False: submit and return, ``--no-wait``).
    """

    executor: str = "slurm"
    partition: str | None = None
    time: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem: str | None = None
    array_parallelism: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    wait: bool = True

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--slurm-executor {self.executor}: choose one of {', '.join(EXECUTORS)}")
        if self.partition is not None and not self.partition.strip():
            raise ConfigError("--partition is empty; name a partition (sinfo lists them) or leave it out")
        if not self.time >= 1:
            raise ConfigError(f"--time must be at least 1 minute, got {self.time}")
        if not self.gpus_per_task >= 0:
            raise ConfigError(f"--gpus-per-task must be 0 or more, got {self.gpus_per_task}")
        if not self.cpus_per_task >= 1:
            raise ConfigError(f"--cpus-per-task must be at least 1, got {self.cpus_per_task}")
        if self.mem is not None and not _MEM.fullmatch(self.mem):
            raise ConfigError(f"--mem {self.mem!r}: expected SLURM's syntax, a number with an optional K, M, G "
                              f"or T suffix (16G, 500M)")
        if self.array_parallelism is not None and self.array_parallelism < 1:
            raise ConfigError(f"--array-parallelism must be at least 1, got {self.array_parallelism}")


def parse_slurm_opts(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The ``--slurm-opt KEY=VALUE`` flags as ``((key, value), ...)``, each key as sbatch spells it
    (``mail_user`` becomes ``mail-user``).

    Raises:
        ConfigError: one line naming the flag, for a missing ``=``, a key that is not an sbatch option name, a key
            with its own flag (``partition``: use ``--partition``), one submitit writes itself (``output``), or a
            key given twice.
    """
    parsed: dict[str, str] = {}
    for item in items:
        flag = f"--slurm-opt {item}"
        key, eq, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not eq or not _KEY.fullmatch(key):
            raise ConfigError(f"{flag}: expected KEY=VALUE with KEY an sbatch option name (e.g. --slurm-opt "
                              f"account=mylab, --slurm-opt qos=high)")
        if key in _OWN_FLAG:
            raise ConfigError(f"{flag}: {key} has its own flag; use {_OWN_FLAG[key]}")
        if key in _SUBMITIT_SETS:
            raise ConfigError(f"{flag}: submitit sets --{key} itself (the task logs in {JOB_FOLDER}/ and the "
                              f"requeue signal depend on it); remove it")
        if key in parsed:
            raise ConfigError(f"{flag}: {key} is given twice; keep one")
        parsed[key] = value
    return tuple(parsed.items())


def options_from_flags(slurm_executor: str | None = None, partition: str | None = None, time: int | None = None,
                       gpus_per_task: int | None = None, cpus_per_task: int | None = None, mem: str | None = None,
                       array_parallelism: int | None = None, slurm_opt: Sequence[str] | None = None,
                       no_wait: bool | None = None) -> SlurmOptions:
    """The :class:`SlurmOptions` of the sweep command's flags (a flag left out, None, keeps its default)."""
    given = {"executor": slurm_executor, "partition": partition, "time": time, "gpus_per_task": gpus_per_task,
             "cpus_per_task": cpus_per_task, "mem": mem, "array_parallelism": array_parallelism}
    options = {k: v for k, v in given.items() if v is not None}
    return SlurmOptions(**options, extra=parse_slurm_opts(slurm_opt or ()), wait=not no_wait)


def require_submitit():
    """The ``submitit`` module, or a one-line :class:`ConfigError` naming the install command."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--engine slurm needs submitit, which is not installed: {INSTALL} "
                          f"(or sweep with --engine local)") from None
    return submitit


def preflight(options: SlurmOptions) -> None:
    """Everything the engine needs before a sweep writes anything: submitit, and sbatch for the slurm executor.

    Raises:
        ConfigError: one line naming what is missing and what to do.
    """
    require_submitit()
    if options.executor == "slurm":
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise ConfigError(f"--engine slurm: {missing[0]} is not on PATH, so this is not a SLURM login node; "
                              f"sweep from one, or pass --slurm-executor local to run the cells as local "
                              f"subprocesses")


class CellTask:
    """One cell as a submitit task: trains it into its run folder with :func:`cml.cells.train_cell`.

    Checkpointable in submitit's sense (it has :meth:`checkpoint`), so a task preempted or near its time limit is
    requeued instead of failing. The cell's progress is on disk, not in this object: the requeued task finds the
    cell's ``checkpoint.pt`` and resumes from it.
    """

    def __call__(self, cell: dict[str, Any]) -> str:
        """Trains ``cell`` (a dict of :func:`_payload`) unless it is finished; returns its folder's name."""
        import torch

        from .cells import cell_finished, train_cell  # torch-side: this module is read when the CLI parses
        from .trainer import load_checkpoint

        os.chdir(cell["cwd"])  # relative --data and --out as on the driver's command line
        torch.set_num_threads(cell["threads"])
        cfg = Config.from_dict(cell["config"])
        start = Config.from_dict(cell["start"])
        run_dir = Path(cell["run_dir"])
        if cell_finished(run_dir, cfg, cell["record"] and cfg.record_interval > 0):
            return run_dir.name  # requeued after its cell finished: nothing left to do
        if (run_dir / records.CHECKPOINT).exists():
            try:
                step = load_checkpoint(run_dir)["step"]
                print(f"cell {run_dir.name}: resuming from its checkpoint at step {step}", file=sys.stderr,
                      flush=True)
            except (records.RunFolderError, FileNotFoundError):
                pass  # train_cell reports (or with --restart moves aside) a damaged checkpoint
        splits = start.family.load(start)  # None for generated tasks
        train_cell(run_dir, cfg, splits=splits, record=cell["record"], restart=cell["restart"],
                   tensorboard=cell["tensorboard"])
        return run_dir.name

    def checkpoint(self, cell: dict[str, Any]):
        """submitit's hook on SIGUSR2 (preemption, or the time limit near): the same call, to run when requeued."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CellTask(), cell)


def _payload(start: Config, run_dir: Path, cfg: Config, record: bool, restart: bool, tensorboard: bool,
             threads: int) -> dict[str, Any]:
    # Folders are absolute: a task on another node must find the same folder (shared file system).
    return {"run_dir": str(Path(run_dir).resolve()), "config": cfg.to_dict(), "start": start.to_dict(),
            "record": record, "restart": restart, "tensorboard": tensorboard, "cwd": os.getcwd(),
            "threads": threads}


def _checkout() -> str:
    """The folder that holds this ``cml`` package (and ``analysis``): first on the tasks' ``PYTHONPATH``."""
    return str(Path(__file__).resolve().parent.parent)


def make_executor(folder: Path, options: SlurmOptions, name: str):
    """The submitit executor of ``options``, its files in ``folder``, its jobs named ``name``."""
    submitit = require_submitit()
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(timeout_min=options.time, gpus_per_node=options.gpus_per_task)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_TIMEOUTS)
    parameters: dict[str, Any] = {
        "job_name": name, "time": options.time, "cpus_per_task": options.cpus_per_task,
        # The tasks import this checkout, whatever the node's environment puts first.
        "setup": [f"export PYTHONPATH={shlex.quote(_checkout())}${{PYTHONPATH:+:$PYTHONPATH}}"],
    }
    for key in ("partition", "mem", "array_parallelism"):
        if getattr(options, key) is not None:
            parameters[key] = getattr(options, key)
    if options.gpus_per_task:
        parameters["gpus_per_task"] = options.gpus_per_task
    if options.extra:
        parameters["additional_parameters"] = dict(options.extra)
    executor.update_parameters(**parameters)
    return executor


# -- which job holds which cell ----------------------------------------------------------------------------


def _read_jobs(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    fix = ("remove it and rerun the sweep (first check squeue: a cell whose job still runs would be submitted "
           "again)")
    try:
        cells = records.read_json(path).get("cells")
    except records.RunFolderError:
        raise records.damaged(path, "not a JSON object", fix) from None
    if not (isinstance(cells, dict) and all(isinstance(r, dict) and isinstance(r.get("job"), str)
                                            and r.get("executor") in EXECUTORS for r in cells.values())):
        raise records.damaged(path, "its cells are not each a job id and an executor", fix)
    return cells


def _local_alive(job_id: str, folder: Path) -> bool:
    """Whether a local job's controller (its id is the controller's PID) still runs, for a job this process did
    not start (a PID alone could have been reused: its command line must name the job folder)."""
    try:
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in cmdline and str(folder).encode() in cmdline


def _active_earlier(jobs: dict[str, dict[str, str]], cells: Sequence[str], folder: Path) -> dict[str, Any]:
    """The cells among ``cells`` whose recorded job is still queued or running, each with a submitit job to wait
    on (None for a local job of another process: :func:`_local_alive` is asked instead)."""
    submitit = require_submitit()
    active: dict[str, Any] = {}
    slurm = {c: jobs[c]["job"] for c in cells if c in jobs and jobs[c]["executor"] == "slurm"}
    if slurm and shutil.which("sacct") is not None:
        watcher = submitit.SlurmJob.watcher
        for job_id in slurm.values():
            watcher.register_job(job_id)
        watcher.update()  # one sacct call for them all
        for cell, job_id in slurm.items():
            job = submitit.SlurmJob(folder, job_id)
            state = watcher.get_state(job_id, mode="cache").split()[0].upper()
            # UNKNOWN: sacct has no such job (any more): it runs nothing.
            if not job.paths.result_pickle.exists() and state not in _ENDED + ("UNKNOWN",):
                active[cell] = job
    for cell in cells:
        if cell in jobs and jobs[cell]["executor"] == "local" and _local_alive(jobs[cell]["job"], folder):
            active[cell] = None
    return active


def _done(job: Any, job_id: str, folder: Path) -> bool:
    return not _local_alive(job_id, folder) if job is None else job.done()


# -- running ---------------------------------------------------------------------------------------------


def run_cells(start: Config, pending: Sequence[tuple[Path, Config]], record: bool, restart: bool,
              options: SlurmOptions, tensorboard: bool = False) -> None:
    """Submits the ``pending`` cells, one array task each, then (unless ``options.wait`` is False) waits for them.

    A cell whose job from an earlier command is still queued or running is not submitted again: it is waited for.

    Args:
        start: the sweep's start config (each task loads the data splits from it, as the local engine does).
        pending: (run folder, config) of each cell to train.
        record, restart, tensorboard: as :func:`cml.sweep.run_sweep`.
        options: where and how to submit (:class:`SlurmOptions`).

    Raises:
        The error of the first failed cell, naming the cell and its job (a user's error keeps its class, so that
        the CLI reports it in one line); :class:`CellJobError` for a job that ended without finishing its cell;
        RuntimeError for any other failure in a task (with its traceback).
    """
    if not pending:
        return
    from .cells import cell_finished  # torch-side, as above

    out = Path(pending[0][0]).resolve().parent
    folder = out / JOB_FOLDER
    jobs_path = folder / JOBS
    jobs = _read_jobs(jobs_path)
    names = [Path(run_dir).name for run_dir, _ in pending]
    waiting = _active_earlier(jobs, names, folder)  # cell -> job
    if waiting:
        print(f"{len(waiting)} cell(s) still queued or running from an earlier submission "
              f"({_job_list(jobs[c]['job'] for c in waiting)}): not submitted again", file=sys.stderr)
    submit = [(run_dir, cfg) for run_dir, cfg in pending if Path(run_dir).name not in waiting]
    if submit:
        folder.mkdir(parents=True, exist_ok=True)
        executor = make_executor(folder, options, f"cml-{out.name}")
        cells = [_payload(start, run_dir, cfg, record, restart, tensorboard, options.cpus_per_task)
                 for run_dir, cfg in submit]
        if options.executor == "local":
            import submitit

            # Local tasks inherit this environment: the checkout first on their path, as the SLURM setup line.
            path = os.pathsep.join(p for p in (_checkout(), os.environ.get("PYTHONPATH")) if p)
            with submitit.helpers.environment_variables(PYTHONPATH=path):
                submitted = executor.map_array(CellTask(), cells)
        else:
            submitted = executor.map_array(CellTask(), cells)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for (run_dir, _), job in zip(submit, submitted):
            jobs[Path(run_dir).name] = {"job": job.job_id, "executor": options.executor, "submitted": now}
            waiting[Path(run_dir).name] = job
        records.write_json(jobs_path, {"cells": jobs})
        where = "SLURM job" if options.executor == "slurm" else "local job(s)"
        print(f"submitted {len(submit)} cell(s) as {where} {_job_list(j.job_id for j in submitted)}; logs in "
              f"{folder}", file=sys.stderr)
    if not options.wait:
        print(f"not waiting (--no-wait): run the same command again to collect the {len(waiting)} cell(s) "
              f"when they finish", file=sys.stderr)
        return
    # A local job's state is a process poll; a SLURM job's, a look for its result file (submitit asks sacct only
    # now and then, at most every 10 minutes).
    poll = 0.25 if options.executor == "local" else 10.0
    left = dict(waiting)
    while left:
        for cell in sorted(left):
            if _done(left[cell], jobs[cell]["job"], folder):
                del left[cell]
                print(f"cell {cell}: job {jobs[cell]['job']} ended ({len(waiting) - len(left)}/{len(waiting)})",
                      file=sys.stderr)
        if left:
            time.sleep(poll)
    failed = [(Path(run_dir).name, cfg) for run_dir, cfg in pending
              if not cell_finished(run_dir, cfg, record and cfg.record_interval > 0)]
    if failed:
        others = (f" ({len(failed) - 1} more cell(s) failed: {', '.join(n for n, _ in failed[1:])}; their logs "
                  f"are in {folder})") if len(failed) > 1 else ""
        _raise_cell_error(failed[0][0], jobs.get(failed[0][0]), folder, others)


def _job_list(ids) -> str:
    ids = list(ids)
    arrays = sorted({i.split("_")[0] for i in ids})
    return ", ".join(arrays) if all("_" in i for i in ids) else ", ".join(ids)


def _user_errors() -> tuple[type, ...]:
    from .data.base import DataError
    from .meta import NonFiniteLossError

    return (ConfigError, DataError, NonFiniteLossError, records.RunFolderError)


def _error_class(name: str) -> type | None:
    """The cml error class a task's traceback names (``cml.meta.NonFiniteLossError``), if it is a user's error."""
    module, _, cls_name = name.rpartition(".")
    if not module.startswith("cml"):
        return None
    try:
        cls = getattr(importlib.import_module(module), cls_name, None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, _user_errors()) else None


def _raise_cell_error(cell: str, job: dict[str, str] | None, folder: Path, others: str) -> None:
    """Raises the error that ended ``cell``'s job, read from submitit's result file or the scheduler's state."""
    import submitit

    if job is None:  # not reached: every pending cell was submitted or found running
        raise CellJobError(f"cell {cell}: not finished and no job took it; rerun the same command{others}")
    job_id, executor = job["job"], job["executor"]
    handle = (submitit.SlurmJob if executor == "slurm" else submitit.LocalJob)(folder, job_id)
    where = f"{'SLURM' if executor == 'slurm' else 'local'} job {job_id}"
    log = handle.paths.stderr
    rerun = "the cell keeps its last checkpoint: rerun the same command to submit it again"
    result = handle.paths.result_pickle
    if not result.exists():
        state = handle.state.split()[0].upper() if executor == "slurm" else "no result"
        raise CellJobError(f"cell {cell}: {where} ended without finishing it ({state}); its log: {log}; "
                           f"{rerun}{_HINTS.get(state, '')}{others}")
    with open(result, "rb") as f:
        outcome, value = pickle.load(f)
    if outcome != "error":
        raise CellJobError(f"cell {cell}: {where} ended but the cell is not finished; its log: {log}; "
                           f"{rerun}{others}")
    last = next((line for line in reversed(str(value).strip().splitlines()) if line.strip()), "")
    name, _, message = last.partition(": ")
    if name.endswith("UncompletedJobError"):  # submitit's own: e.g. "timed-out too many times"
        raise CellJobError(f"cell {cell}: {where} stopped: {message}; its log: {log}; {rerun} (with a longer "
                           f"--time if it timed out){others}")
    cls = _error_class(name)
    if cls is not None:
        text = f"cell {cell} ({where}): {message}{others}"
        for candidate in (cls, *(c for c in _user_errors() if issubclass(cls, c))):
            try:
                error = candidate(text)
            except TypeError:  # an error class with its own constructor: try the user's class it derives from
                continue
            raise error from None
    raise RuntimeError(f"cell {cell} failed in {where}{others}; its traceback (also in {log}):\n{value}")
