"""Run-folder files: JSON lines, JSON and checkpoints, each written so that a crash never leaves half a file.

A run folder holds ``config.json``, ``metrics.jsonl`` (training), ``val.jsonl`` (validation),
``checkpoint.pt`` (model, optimizer and RNG state), ``test.json`` (the final test) and, for analysis runs,
``dynamics.jsonl``, ``representations.json`` and ``features.npz``. Figures read only these files, and so does
:mod:`cml.tensorboard`, which writes ``tensorboard/`` (event files) from them on request.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


# The names of a run folder's files, made once: the trainer, sweeps, recorders and figures import them.
CONFIG = "config.json"
METRICS = "metrics.jsonl"
VAL = "val.jsonl"
CHECKPOINT = "checkpoint.pt"
TEST = "test.json"
DYNAMICS = "dynamics.jsonl"
REPRESENTATIONS = "representations.json"
FEATURES = "features.npz"
FITS = "fits.npz"
#: JSON-lines records a resumed run truncates to its checkpoint's step.
STEP_RECORDS = (METRICS, VAL, DYNAMICS)
# A sweep folder's own files.
SWEEP = "sweep.json"
AGGREGATE = "aggregate.json"


def run_folder_name(variant: str, seed: int, task: str | None = None) -> str:
    """A run folder's name: ``<variant>-s<seed>`` in a sweep (``boil_cml-s0``), ``<task>-<variant>-s<seed>`` for
    ``train`` (``fonts-boil_cml-s0``); ``variant`` is :func:`cml.methods.variant_key`."""
    name = f"{variant}-s{seed}"
    return name if task is None else f"{task}-{name}"


class RunFolderError(ValueError):
    """A run folder's file is missing, damaged or not written by cml."""


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null so that every reader (and jq) can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(_clean(record), sort_keys=True) + "\n")


def read_jsonl(path: Path, drop_partial_last: bool = False) -> list[dict[str, Any]]:
    """All records of a JSON-lines file; a missing file or a damaged line is an error naming it.

    Args:
        drop_partial_last: ignore a last line that is not valid JSON (one cut short by a crash while it was
            appended); any other damaged line is still an error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; was the run trained with the settings that write it?")
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                if drop_partial_last and i == len(lines):
                    break
                raise RunFolderError(f"{path}, line {i}: not valid JSON ({e}); the run folder is damaged") from None
    return out


def truncate_jsonl(path: Path, keep: Iterable[dict[str, Any]]) -> None:
    """Rewrites a JSON-lines file with only ``keep`` (used on resume to drop lines past the checkpoint)."""
    atomic_write_text(path, "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in keep))


def _temp_beside(path: Path) -> tuple[int, str]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are ordinary files that others may read
    return fd, tmp


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_clean(record), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; has the run finished?")
    return json.loads(path.read_text())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then rename: a crash leaves the old file intact."""
    import torch

    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
