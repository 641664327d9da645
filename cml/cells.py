"""One sweep cell: :func:`train_cell`, the one function every sweep engine (local, Ray, SLURM) calls to train a
cell into its run folder, and :func:`cell_finished`, what "finished" means for every engine.

The engines (:mod:`cml.sweep`'s local loop, :mod:`cml.ray_engine`, :mod:`cml.slurm_engine`) import this module;
it imports none of them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import records
from .config import Config, ConfigError, differing_fields
from .recording import Recorder
from .tensorboard import LiveExport
from .trainer import BEST_VAL, Trainer, load_checkpoint, read_best, record_step


def train_cell(run_dir: Path, cfg: Config, splits=None, record: bool = True, restart: bool = False,
               tensorboard: bool = False) -> None:
    """Trains one cell into its run folder, resuming from its checkpoint if it has one: the one function every
    engine calls, so that a cell's records do not depend on the engine.

    Args:
        run_dir: the cell's run folder.
        cfg: its config.
        splits: preloaded data splits (loaded from ``cfg`` when None).
        record: attach the learning-dynamics recorder when ``cfg.record_interval`` > 0.
        restart: move a cell whose files are damaged aside and train it afresh, instead of stopping.
        tensorboard: write TensorBoard events into the run folder, updated at every log line.
    """
    run_dir = Path(run_dir)
    recording = record and cfg.record_interval > 0
    with records.FolderLock(run_dir):
        recorder = Recorder(run_dir) if recording else None
        try:
            # With a checkpoint, resuming writes again whatever records are missing or damaged.
            trainer = Trainer(cfg, run_dir, splits=splits, resume=os.path.lexists(run_dir / records.CHECKPOINT),
                              recorder=recorder)
        except records.RunFolderError:
            if not restart:
                raise
            print(f"moved damaged {run_dir} aside to {records.move_aside(run_dir)}", file=sys.stderr)
            trainer = Trainer(cfg, run_dir, splits=splits, recorder=recorder)
        live = LiveExport(run_dir) if tensorboard else None
        if live is not None:
            trainer.log_hooks.append(live.hook)
        trainer.train()
        trainer.finish_recording()
        if live is not None:
            live.close()


def cell_finished(run_dir: Path, cfg: Config, recording: bool) -> bool:
    """Whether a cell has every record it should have, each one passing its schema (:data:`cml.records.SCHEMAS`)
    and belonging to the cell's last step, for at least ``cfg.steps`` steps.

    ``config.json`` (the cell's settings; only ``steps`` may differ, as on resume), a checkpoint and ``test.json``
    of the same step, at least ``cfg.steps`` (a cell trained further than asked counts as finished),
    ``metrics.jsonl`` ending at that step and ``val.jsonl`` holding it, each read whole (nothing is appended to a
    finished run, so a damaged last line is damage, not a write in progress); with ``recording``, also
    ``dynamics.jsonl`` ending at the last recorded step, and ``representations.json`` and ``features.npz`` (image
    tasks) or ``fits.npz`` (sinusoid) of that step; with ``select`` best-val, ``best.pt`` of the step ``test.json``
    says it tested (``selected_step``). A cell killed between ``test.json`` and its recorder's last
    file is therefore not finished, and resuming it writes what is missing; a record that resuming cannot write
    again (a deleted ``dynamics.jsonl``) makes the resume stop with one line saying so, instead of the cell being
    tested again on every rerun.
    """
    run_dir = Path(run_dir)
    try:
        # Through Config, so that a config.json written before a field existed compares equal to today's.
        saved = Config.from_dict(records.read_json(run_dir / records.CONFIG))
        if differing_fields(saved, cfg):  # steps may differ, as on resume; threads None takes the cell's own
            return False
        step = records.read_json(run_dir / records.TEST).get("step")
        if not isinstance(step, int) or step < cfg.steps or saved.steps != step:
            return False
        if load_checkpoint(run_dir)["step"] != step:
            return False
        if cfg.select == BEST_VAL and records.read_json(run_dir / records.TEST).get("selected_step") != \
                read_best(run_dir)["step"]:
            return False  # the test read another checkpoint than the best.pt beside it
        metrics = records.read_jsonl(run_dir / records.METRICS, drop_partial_last=False)
        val = records.read_jsonl(run_dir / records.VAL, drop_partial_last=False)
        if not metrics or metrics[-1]["step"] != step or not any(r["step"] == step for r in val):
            return False
        if recording and step >= cfg.record_interval:
            dynamics = records.read_jsonl(run_dir / records.DYNAMICS, drop_partial_last=False)
            if not dynamics or dynamics[-1]["step"] != step - step % cfg.record_interval:
                return False
        if recording:
            for name in (records.TEST_TASKS, records.REPRESENTATIONS, cfg.family.end_record):
                if record_step(run_dir / name) not in (None, step):  # None: written before records had steps
                    return False
    except (FileNotFoundError, ConfigError, records.RunFolderError):
        return False
    return True
