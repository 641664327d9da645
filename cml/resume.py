"""Resuming a run from its own folder: the run's ``config.json`` is the config, and a setting given beside it may
only repeat it, except ``steps`` (to train further) and ``progress`` (``cml resume RUN``, ``cml train --resume``).

A run is continued with exactly the settings it started with, so that its records are those of an uninterrupted
run; no flag has to be typed again. A flag that contradicts the stored config is refused, naming both values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import records
from .config import Config, ConfigError, differing_fields
from .errors import MissingFileError
from .fields import show

__all__ = ["resume_config", "resuming_text"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_config(run_dir: Path, flags: dict[str, Any], file: dict[str, Any] | None = None,
                  file_name: str | None = None) -> Config:
    """The config a resumed run continues with: its ``config.json``, with the settings given beside it.

    Args:
        run_dir: the run folder.
        flags: the config fields set by flags (typed: :func:`cml.cli.given_fields`).
        file: the fields of a ``--config`` file given beside them, if any (flags win over it).
        file_name: that file's name, for messages.

    Returns:
        The stored config with ``steps``, ``progress`` and (for a run that recorded none) ``threads`` as given.

    Raises:
        MissingFileError: if ``run_dir`` holds no ``config.json``.
        ConfigError: one line naming every given setting that contradicts the stored config, with both values.
    """
    path = Path(run_dir) / records.CONFIG
    if not path.is_file():
        raise MissingFileError(f"cannot resume {run_dir}: it holds no {records.CONFIG}; give a run folder written by "
                               f"`cml train` or a sweep (or train it first)")
    saved = Config.load(path)
    given = {**(file or {}), **flags}
    try:
        wanted = saved.replace(**given)
    except ConfigError as e:
        raise ConfigError(f"cannot resume {run_dir}: {e}") from None
    bad = differing_fields(saved, wanted)
    if bad:
        def named(k: str) -> str:
            where = _flag(k) if k in flags else f"{k} in --config {file_name}"
            return f"{where} {show(getattr(wanted, k))} (the run's {show(getattr(saved, k))})"

        verb = "contradicts" if len(bad) == 1 else "contradict"
        raise ConfigError(f"cannot resume {run_dir}: {', '.join(named(k) for k in bad)} {verb} its {records.CONFIG}; "
                          f"a run continues with its own settings, only --steps (to train further) and --progress may "
                          f"change: drop {'it' if len(bad) == 1 else 'them'}, or train a new run")
    return wanted


def resuming_text(run_dir: Path, step: int, steps: int) -> str:
    """The line a resumed run starts with: ``resuming RUN at step N of M`` (and what happens when N is M)."""
    text = f"resuming {run_dir} at step {step} of {steps}"
    if step >= steps:
        text += " (trained: it validates where that is missing and tests again; --steps N trains further)"
    return text
