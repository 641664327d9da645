"""The Ray engine of ``python -m cml sweep --engine ray``: one Ray Tune trial per cell.

Each trial calls :func:`cml.cells.train_cell`, the function the local engine calls, into the cell's run
folder, so the records are the same whichever engine ran the cell (wall-clock times aside). The driver
(``run_sweep``) decides which cells are unfinished and writes ``sweep.json`` and ``aggregate.json``; the
trials write only their own run folders, each under its own :class:`cml.records.FolderLock`.

Workers import this checkout's ``cml`` and ``analysis`` packages through Ray's ``py_modules`` runtime
environment (copied to every node), and run in the driver's working directory, so that relative paths
(``--out``, ``--data``) mean what they mean on the command line. On a cluster (``--address``), the sweep
folder and data must therefore sit at the same path on every node (a shared file system).

Ray is optional: without it, :func:`require_ray` stops with one line naming the install command.

Tune's own TensorBoard logger is left out (:func:`tune_callbacks`): it wrote events of Tune's trial results
under ``.tune`` and made Tune print "To visualize your results with TensorBoard, run: tensorboard --logdir
.../.tune/...", pointing away from the run folders where ``--tensorboard`` writes cml's events.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config, ConfigError
from .errors import InternalError, UserError, WorkerDiedError

#: What to install for ``--engine ray`` (the version this engine is tested against).
INSTALL = "pip install 'ray[tune]>=2.60'"
# Ray Tune's own experiment state (trial logs, results), kept inside the sweep folder, out of the figures' way.
TUNE_FOLDER = ".tune"
# The packages a worker imports: the trainer's (cml) and the statistics it records (analysis).
_PACKAGES = ("cml", "analysis")
# Set to 1, Tune adds none of its default result loggers (CSV, JSON, TensorBoard); the driver reads it in fit().
_NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine places trials.

    Attributes:
        cpus_per_trial: CPUs Ray reserves for each trial (and the torch threads it sets there).
        gpus_per_trial: GPUs per trial; fractional values (0.25) let several small runs share one GPU.
        max_concurrent: the most trials running at once (None: as many as the resources allow).
        address: an existing Ray cluster to join (``auto`` or ``HOST:PORT``; None: start one on this machine).
        num_cpus: CPUs of a cluster started here (None: all of this machine's); ignored with ``address``.
    """

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ConfigError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if not self.gpus_per_trial >= 0:
            raise ConfigError(f"--gpus-per-trial must be 0 or positive (0.25: four trials per GPU), got "
                              f"{self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")


def require_ray():
    """The ``ray`` module with Tune, or a one-line :class:`ConfigError` naming the install command."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray Tune, which is not installed: {INSTALL} "
                          f"(or sweep with --engine local)") from None
    return ray


def runtime_env() -> dict[str, Any]:
    """The runtime environment that gives every worker this checkout's packages (not an installed copy)."""
    root = Path(__file__).resolve().parent.parent
    return {"py_modules": [str(root / p) for p in _PACKAGES], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Starts (or joins, with ``address``) a Ray cluster whose workers import this checkout.

    Returns:
        True if this call started Ray (the caller shuts it down), False if Ray was already running.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": address, "runtime_env": runtime_env(), "include_dashboard": False,
                              "log_to_driver": False, "configure_logging": False}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if address is None:  # before ray.init: the watcher must see the processes Ray starts from the first
        _start_reaper()
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ConfigError(f"--address {address}: no Ray cluster there ({e}); start one with `ray start --head` "
                          f"or leave --address out") from None
    return True


def tune_callbacks() -> list[Any]:
    """Tune's result loggers for a sweep: its CSV and JSON logs (``.tune``, as before), not its TensorBoard one."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


@contextlib.contextmanager
def no_default_loggers() -> Iterator[None]:
    """While Tune runs: no default loggers added to :func:`tune_callbacks` (so no TensorBoard logger, and no hint
    printed for it); the variable is as it was afterwards."""
    before = os.environ.get(_NO_AUTO_LOGGERS)
    os.environ[_NO_AUTO_LOGGERS] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_NO_AUTO_LOGGERS]
        else:
            os.environ[_NO_AUTO_LOGGERS] = before


_REAPER: list[Any] = []


def _start_reaper() -> None:
    """Starts :mod:`cml._reaper` for this driver (once per process, Linux only): if the driver is killed, the
    Ray processes it started (the raylet's agents outlive it otherwise) are ended too."""
    import subprocess
    import sys

    if _REAPER or not Path("/proc/self/stat").exists():
        return
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    reaper = subprocess.Popen([sys.executable, "-m", "cml._reaper", str(os.getpid())], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    # Wait until it watches (an interpreter starts slowly on a busy machine: a driver killed before then would
    # leave everything behind). A watcher that fails to start closes the pipe, and Ray starts unwatched.
    assert reaper.stdout is not None
    reaper.stdout.readline()
    reaper.stdout.close()
    _REAPER.append(reaper)


# Each worker process keeps the data splits it loaded: a worker trains several cells of one sweep in turn.
_SPLITS: dict[str, Any] = {}


def _splits(start: Config):
    key = repr((start.task, start.data, start.image_size, start.split))
    if key not in _SPLITS:
        _SPLITS.clear()
        _SPLITS[key] = start.family.load(start)
    return _SPLITS[key]


def _trial(space: dict[str, Any]) -> None:
    """One Tune trial: trains one cell into its run folder (the same call as the local engine's)."""
    import torch
    from ray import tune

    from .cells import train_cell  # the worker's torch-side import (this module is read when the CLI parses)

    params = space["cell"]
    os.chdir(params["cwd"])  # relative --data and --out as on the driver's command line
    if params["threads"]:
        torch.set_num_threads(params["threads"])
    cfg = Config.from_dict(params["config"])
    start = Config.from_dict(params["start"])
    splits = _splits(start)
    run_dir = Path(params["run_dir"])
    train_cell(run_dir, cfg, splits=splits, record=params["record"], restart=params["restart"],
               tensorboard=params["tensorboard"])
    test = records.read_json(run_dir / records.TEST)
    tune.report({k: v for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def run_cells(start: Config, pending: Sequence[tuple[Path, Config]], record: bool, restart: bool,
              options: RayOptions, tensorboard: bool = False) -> None:
    """Trains ``pending`` cells as Ray Tune trials, one per cell, and waits for all of them.

    Args:
        start: the sweep's start config (each worker loads the data splits from it, as the local engine does).
        pending: (run folder, config) of each cell to train.
        record, restart, tensorboard: as :func:`cml.sweep.run_sweep`.
        options: placement (:class:`RayOptions`).

    Raises:
        The error of the first failed cell, naming the cell (a :class:`cml.errors.UserError` keeps its class, so
        that the CLI reports it in one line); :class:`cml.errors.InternalError` (a RuntimeError) for any other
        failure, chained to it.
    """
    if not pending:
        return
    ray = require_ray()
    from ray import tune

    started = connect(options.address, options.num_cpus)
    try:
        cwd = os.getcwd()
        threads = int(options.cpus_per_trial) if options.cpus_per_trial >= 1 else 1
        # Folders are absolute: a trial on another node must find the same folder (shared file system).
        cells = [{"run_dir": str(Path(run_dir).resolve()), "config": cfg.to_dict(), "start": start.to_dict(),
                  "record": record, "restart": restart, "tensorboard": tensorboard, "cwd": cwd, "threads": threads}
                 for run_dir, cfg in pending]
        out = Path(pending[0][0]).resolve().parent
        resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(_trial, resources),
            param_space={"cell": tune.grid_search(cells)},
            # One worker process trains several cells in turn: torch and the data are loaded once per worker.
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name=time.strftime("sweep-%Y%m%d-%H%M%S"),
                                      storage_path=str(out / TUNE_FOLDER), verbose=0, callbacks=tune_callbacks()),
        )
        with no_default_loggers():
            result_grid = tuner.fit()
        for result in result_grid:
            if result.error is not None:
                cell = Path(result.config["cell"]["run_dir"]).name
                _raise_cell_error(cell, result.error)
    finally:
        if started:
            ray.shutdown()


def _worker_died(error: BaseException) -> bool:
    """Whether a trial's error says its worker process died (killed, out of memory, its node lost)."""
    try:
        from ray import exceptions as rex
    except ImportError:
        return False
    died = tuple(getattr(rex, n) for n in ("RayActorError", "ActorDiedError", "WorkerCrashedError", "NodeDiedError",
                                           "OutOfMemoryError", "ActorUnavailableError") if hasattr(rex, n))
    seen = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, died):
            return True
        cause = getattr(cause, "cause", None) or cause.__cause__ or cause.__context__
    return False


def _raise_cell_error(cell: str, error: BaseException) -> None:
    if _worker_died(error):
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise WorkerDiedError(f"cell {cell}: its Ray worker died while training it ({type(error).__name__}: {first}); "
                              f"its last checkpoint is kept: rerun the same command to resume it (if the kernel "
                              f"killed it for memory, lower --max-concurrent)") from None
    cause = error
    while getattr(cause, "cause", None) is not None and cause is not cause.cause:
        cause = cause.cause
    if isinstance(cause, UserError):
        message = str(cause).strip().splitlines()[-1]
        try:
            again = type(cause)(f"cell {cell} (Ray trial): {message}")
        except TypeError:  # an error class with its own constructor: keep it as it came
            raise cause from None
        raise again from None
    raise InternalError(f"cell {cell} failed in its Ray trial: {error}") from error
