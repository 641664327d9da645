"""Weights & Biases runs written from a run folder's records (``--wandb`` on ``train``, ``resume`` and ``sweep``).

An optional extra: ``pip install wandb`` (or ``pip install 'cml[wandb]'``). Like the TensorBoard export, it reads
the records and never the trainer's state, through the same reader (:func:`cml.tensorboard.scalars`), so W&B,
TensorBoard and the report show the same numbers under the same tags (``train/meta_loss``, ``val/acc``,
``dynamics/cos_psi``, ``test/acc``, ...). The W&B run's config is the run's ``config.json``; its name is the run
folder's, its group the sweep folder's (for a sweep's cell).

``train --wandb`` logs while the run trains (after every log line, as ``--tensorboard`` writes events);
``sweep --wandb`` logs each cell once it is finished, from its records, so that every engine's cells are logged
the same way; a finished cell not logged before (trained without ``--wandb``, or by a ``--no-wait`` SLURM sweep)
is logged by the next ``sweep --wandb`` in its folder. Each exported run folder holds ``wandb_run.json`` (the W&B
run's id, project and mode). W&B's own settings apply: ``WANDB_MODE=offline`` logs to local files only (``wandb
sync`` uploads them later), ``WANDB_DIR`` is where its files go (default: the working directory's ``wandb/``),
``WANDB_PROJECT`` the project (default ``cml``). A run resumed with ``--wandb`` is a new W&B run of the same name
holding every record from step 0 (W&B cannot replace the points an earlier process logged).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import records
from .config import Config
from .errors import ConfigError
from .tensorboard import scalars

__all__ = ["INSTALL", "require_wandb", "WandbExport", "export_run", "export_finished"]

#: The install command the refusal names.
INSTALL = "pip install wandb (or pip install 'cml[wandb]')"
DEFAULT_PROJECT = "cml"


def require_wandb() -> Any:
    """The ``wandb`` module.

    Raises:
        ConfigError: one line naming the install command, if it is not installed.
    """
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"--wandb needs the wandb package: {INSTALL}") from None
    return wandb


def _group(run_dir: Path) -> str | None:
    return run_dir.parent.name if (run_dir.parent / records.SWEEP).is_file() else None


class WandbExport:
    """A W&B run that follows a run folder's records: :meth:`update` logs the points added since the last call
    (in step order: W&B's steps only increase), :meth:`close` logs the rest (CKA, test) and finishes the run.

    Args:
        run_dir: the run folder (with ``config.json``).
        job_type: W&B's job type (``train``, ``resume``, ``export``).
    """

    def __init__(self, run_dir: str | Path, job_type: str = "train") -> None:
        wandb = require_wandb()
        self.run_dir = Path(run_dir)
        config = records.read_json(self.run_dir / records.CONFIG)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), name=self.run_dir.name,
                              group=_group(self.run_dir), job_type=job_type, config=config,
                              settings=wandb.Settings(console="off", quiet=True))
        records.write_json(self.run_dir / records.WANDB_RUN,
                           {"id": self.run.id, "project": self.run.project, "name": self.run_dir.name,
                            "mode": "offline" if self.run.offline else "online", "dir": str(self.run.dir)})
        self._written: set[tuple[str, int]] = set()
        self.update()

    def update(self) -> int:
        """Logs the points not logged yet; returns how many."""
        by_step: dict[int, dict[str, float]] = {}
        for tag, series in scalars(self.run_dir).items():
            for step, value in series.items():
                if (tag, step) not in self._written:
                    by_step.setdefault(step, {})[tag] = value
                    self._written.add((tag, step))
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)
        return sum(len(v) for v in by_step.values())

    def hook(self, trainer: object) -> None:
        """:meth:`update`, as a trainer's log hook (``trainer.log_hooks``)."""
        self.update()

    def close(self) -> None:
        self.update()
        self.run.finish()


def export_run(run_dir: str | Path, job_type: str = "export") -> Path:
    """Logs one run folder's records as a W&B run; returns the path of its ``wandb_run.json``."""
    live = WandbExport(run_dir, job_type)
    live.close()
    return live.run_dir / records.WANDB_RUN


def export_finished(cells: Sequence[tuple[Path, Config]], record: bool) -> list[Path]:
    """Logs every finished cell of a sweep that holds no ``wandb_run.json`` yet (each under its folder's lock).

    Args:
        cells: the sweep's cells, as (run folder, config).
        record: whether the sweep records learning dynamics (what "finished" asks of a cell).

    Returns:
        The cells logged.
    """
    from .cells import cell_finished

    logged = []
    for run_dir, cfg in cells:
        recording = record and cfg.record_interval > 0
        if (run_dir / records.WANDB_RUN).is_file() or not cell_finished(run_dir, cfg, recording):
            continue
        with records.FolderLock(run_dir):
            export_run(run_dir, "sweep")
        logged.append(run_dir)
    return logged
