"""One sweep cell: :func:`train_cell`, the one function every sweep engine (local, Ray, SLURM) calls to train a
cell into its run folder, and :func:`cell_finished`, what "finished" means for every engine.

The engines (:mod:`cml.sweep`'s local loop, :mod:`cml.ray_engine`, :mod:`cml.slurm_engine`) import this module;
it imports none of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import records
from .config import Config, ConfigError, differing_fields
from .recording import Recorder
from .tensorboard import LiveExport
from .trainer import BEST_VAL, Trainer, load_checkpoint, read_best


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
            trainer = Trainer(cfg, run_dir, splits=splits, resume=(run_dir / records.CHECKPOINT).exists(),
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
    """Whether a cell has every record it should have, each one parsing, for at least ``cfg.steps`` steps.

    ``config.json`` (the cell's settings; only ``steps`` may differ, as on resume), ``metrics.jsonl``,
    ``val.jsonl``, and a checkpoint and ``test.json`` of the same step, at least ``cfg.steps`` (a cell trained
    further than asked counts as finished); with ``recording``, also ``dynamics.jsonl`` (if a step was
    recorded), ``representations.json`` and ``features.npz`` (image tasks) or ``fits.npz`` (sinusoid); with
    ``select`` best-val, ``best.pt`` of the step ``test.json`` says it tested (``selected_step``). A cell
    killed between ``test.json`` and its recorder's last file is therefore not finished, and resuming it writes
    what is missing.
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
        recorded = recording and cfg.steps >= cfg.record_interval
        for name in (records.METRICS, records.VAL) + ((records.DYNAMICS,) if recorded else ()):
            records.read_jsonl(run_dir / name)
        if load_checkpoint(run_dir)["step"] != step:
            return False
        if cfg.select == BEST_VAL and records.read_json(run_dir / records.TEST).get("selected_step") != \
                read_best(run_dir)["step"]:
            return False  # the test read another checkpoint than the best.pt beside it
        if recording:
            records.read_json(run_dir / records.REPRESENTATIONS)
            records.load_npz(run_dir / cfg.family.end_record)
    except (FileNotFoundError, ConfigError, records.RunFolderError):
        return False
    return True
