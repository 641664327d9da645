"""``--dry-run`` on ``train``, ``resume`` and ``sweep``: what the command would do, then stop, writing nothing.

``train`` prints the run folder, what would happen to it, and the config as its ``config.json`` would hold it
(``threads`` and ``backend auto`` resolved as the trainer resolves them here); ``sweep`` checks what it checks
before writing (every cell's config, and that the folder's ``sweep.json`` agrees), then prints each cell with
whether it is finished (skipped), would resume (from which step) or would start, and the config the cells start
from. Nothing is written: no folder, no lock file, no data cache (the data are not loaded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from . import records
from .config import Config
from .errors import RunFolderError

__all__ = ["resolved", "train_plan", "sweep_plan", "cell_state"]

_HEAD = "dry run: nothing was written"


def resolved(cfg: Config) -> Config:
    """``cfg`` as the trainer would run it here: ``threads`` None as the process's count, ``backend auto`` as the
    engine it picks on the device.

    Raises:
        ConfigError: if the device is not available (``cuda`` without one), as training would.
    """
    import torch

    from .engines import resolve_backend
    from .trainer import resolve_device

    changes: dict[str, Any] = {}
    if cfg.backend == "auto":
        changes["backend"] = resolve_backend(cfg.backend, resolve_device(cfg.device))
    else:
        resolve_device(cfg.device)
    if cfg.threads is None:
        changes["threads"] = torch.get_num_threads()
    return cfg.replace(**changes) if changes else cfg


def _config_text(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True)


def _checkpoint_step(run_dir: Path) -> int | None:
    from .trainer import load_checkpoint

    step = load_checkpoint(run_dir)["step"]
    return step if isinstance(step, int) else None


def train_plan(cfg: Config, run_dir: Path, resume: bool, restart: bool) -> str:
    """What ``train`` (or ``resume``) would do with ``cfg`` in ``run_dir``, and the config it would write.

    Raises:
        RunFolderError: if a resumed run's checkpoint is damaged (as resuming would).
    """
    run_dir = Path(run_dir)
    exists = (run_dir / records.CHECKPOINT).exists()
    if resume and exists:
        what = f"would resume {run_dir} at step {_checkpoint_step(run_dir)} of {cfg.steps}"
    elif resume:
        what = f"would train {run_dir} from step 0 of {cfg.steps}: it holds no checkpoint yet"
    elif exists and restart:
        what = f"would move {run_dir} aside (to {run_dir.name}{records.ASIDE}TIME) and train it afresh"
    elif exists:
        what = (f"would stop: {run_dir} already holds a run (pass --resume to continue it, --restart to move it "
                f"aside, or another --out/--name)")
    elif run_dir.exists():
        what = f"would train {run_dir} from step 0 (it holds no checkpoint)"
    else:
        what = f"would train a new run folder {run_dir}"
    lock = records.lock_holder(run_dir)
    if lock is not None:
        what += f"; but it is being written now (PID {lock.get('pid')} on {lock.get('host')}): it would stop"
    return f"{_HEAD}; train {what}\nconfig.json:\n{_config_text(resolved(cfg))}"


def cell_state(run_dir: Path, cfg: Config, recording: bool) -> str:
    """What a sweep would do with one cell: ``finished (skipped)``, ``resume at step N``, ``start``, or why not."""
    from .cells import cell_finished

    if cell_finished(run_dir, cfg, recording):
        return "finished (skipped)"
    if not (run_dir / records.CHECKPOINT).exists():
        return "start"
    try:
        return f"resume at step {_checkpoint_step(run_dir)} of {cfg.steps}"
    except RunFolderError as e:
        return f"damaged ({e}); --restart would move it aside and train it afresh"


def sweep_plan(out: Path, base: Config, methods: Sequence[str], seeds: Sequence[int], bases: Sequence[str],
               preset_name: str | None, grid: dict[str, list[Any]], engine: str) -> str:
    """The cells ``sweep`` would train in ``out``, each with its state, and the config they start from.

    Raises:
        ConfigError: as the sweep would, before writing (an invalid cell, a folder holding another sweep).
        RunFolderError: if the folder's ``sweep.json`` is damaged.
    """
    from .sweep import plan_sweep

    out = Path(out)
    cells = plan_sweep(out, base, methods, seeds, bases=bases, preset_name=preset_name, grid=grid)
    states = [(name, cell_state(out / name, cfg, cfg.record_interval > 0)) for name, cfg in cells]
    width = max(len("cell"), *(len(n) for n, _ in states))
    done = sum(s.startswith("finished") for _, s in states)
    resume = sum(s.startswith("resume") for _, s in states)
    folder = "holds a sweep that this command extends or repeats" if (out / records.SWEEP).is_file() else "is new"
    lines = [f"{_HEAD}; sweep {out} ({folder}), engine {engine}: {len(cells)} cells, {done} finished, {resume} to "
             f"resume, {len(cells) - done - resume} to start or redo",
             f"{'cell':{width}s}  state"]
    lines += [f"{name:{width}s}  {state}" for name, state in states]
    lines += ["every cell's config starts from (its base, method, grid values and seed then set):",
              _config_text(base)]
    return "\n".join(lines)
