"""TensorBoard event files written from a run folder's records, live (``--tensorboard``) or afterwards
(``python -m cml tensorboard RUNS...``).

Both read the same files the figures read, never the trainer's state, so TensorBoard and the report cannot show
different numbers. Every number in a record becomes a scalar series; a nested record is flattened with ``/``:

- ``metrics.jsonl`` -> ``train/meta_loss``, ``train/co_loss``, ``train/meta_acc``, ``train/co_acc``,
  ``train/grad_norm_psi``, ``train/time`` (one point per log line);
- ``val.jsonl`` -> ``val/acc``, ``val/loss``, ``val/mse``, ... with their ``_ci95`` (one point per validation);
- ``dynamics.jsonl`` -> ``dynamics/grad_norm_psi``, ``dynamics/grad_norm_blocks/block1``, ``dynamics/cos_psi``,
  ``dynamics/cos_blocks/block1``, ... (one point per recorded step);
- ``representations.json`` -> ``representations/cka/<layer>/mean``, ``representations/cka_debiased/...``,
  ``representations/silhouette_after/mean``, ... at the last step;
- ``test.json`` -> ``test/acc``, ``test/acc_ci95``, ``test/mse_before``, ``test/train_time``, ... at the last
  step.

A value that restates the config or counts something rather than measuring it is not a series: the parameter
counts, shots, ways and the number of tasks of ``val.jsonl`` and ``test.json`` (:data:`NOT_SERIES`), and the count
of tasks where a representation metric is undefined (``.../undefined``).

Each run's event file also holds a TensorBoard HParams summary (:func:`hparams_summary`): the run's ``config.json``
as its hyperparameters and its ``test/`` metrics, so that the HParams tab compares runs in one table.

Events go into ``<run folder>/tensorboard/`` (``tensorboard --logdir runs/`` then lists every run), or into
another folder given to :func:`export_run` (``cml tensorboard --logdir DIR`` uses ``DIR/<sweep>/<run>``). An
export first removes the event files it wrote before, so exporting again, or resuming a run, never leaves
duplicate points. The record files' names are :mod:`cml.records`' constants.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import records
from .config import ConfigError
from .errors import MissingFileError

__all__ = ["TENSORBOARD_DIR", "RECORDS", "NOT_SERIES", "scalars", "require_tensorboard", "hparams_summary",
           "export_run", "LiveExport"]

#: The folder of a run's event files, inside the run folder (named once, in cml.records).
TENSORBOARD_DIR = records.TENSORBOARD_DIR
#: Record files exported, with their tag prefix; JSON lines give one point per line (at its ``step``), JSON
#: files one point at the run's last step.
RECORDS: tuple[tuple[str, str], ...] = (
    (records.METRICS, "train"),
    (records.VAL, "val"),
    (records.DYNAMICS, "dynamics"),
    (records.REPRESENTATIONS, "representations"),
    (records.TEST, "test"),
)
#: The tag prefix of test.json's series: the metrics the HParams table shows.
TEST_PREFIX = dict(RECORDS)[records.TEST] + "/"
_EVENTS = "events.out.tfevents.*"
#: Keys of ``val.jsonl`` and ``test.json`` lines that are not measurements (a config echo or a count).
NOT_SERIES = ("params", "shots", "ways", "tasks")
# The count of tasks where a metric of representations.json is undefined (recording.py's "undefined").
_COUNT_SUFFIX = "/undefined"


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    # Numbers only: None (an undefined value), strings, lists and booleans are not scalars.
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flatten(f"{prefix}/{k}", value[k])
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        yield prefix, float(value)


def _last_step(run_dir: Path) -> int | None:
    # The step of the end-of-run records: test.json's own (checked against config.json's steps), else the last
    # logged step, else the steps the config asks for.
    test = run_dir / records.TEST
    if test.is_file():
        step = records.read_json(test)["step"]
        config = records.read_json(run_dir / records.CONFIG)
        if isinstance(config.get("steps"), int) and step != config["steps"]:
            raise records.damaged(test, f"is of step {step}, but {records.CONFIG} says the run trains "
                                        f"{config['steps']} steps: it is the result of an earlier, shorter run",
                                  "rerun the run's train command with --resume to finish it (that writes it again)")
        return step
    metrics = run_dir / records.METRICS
    if metrics.is_file() and metrics.stat().st_size:
        lines = records.read_jsonl(metrics, drop_partial_last=True)
        if lines:
            return max(r["step"] for r in lines)
    steps = records.read_json(run_dir / records.CONFIG).get("steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """Every scalar in a run folder's records: ``{tag: {step: value}}`` (see the module docstring for tags).

    Args:
        run_dir: a run folder (with ``config.json``).

    Raises:
        RunFolderError: if a record file is damaged (a line that is not JSON), naming it.
        MissingFileError: if ``run_dir`` is not a run folder (a FileNotFoundError).
    """
    run_dir = Path(run_dir)
    if not (run_dir / records.CONFIG).is_file():
        raise MissingFileError(f"{run_dir} is not a run folder (no config.json); give a run or sweep folder "
                               f"written by `python -m cml train` or `sweep`")
    out: dict[str, dict[int, float]] = {}
    last = _last_step(run_dir)
    for name, prefix in RECORDS:
        path = run_dir / name
        if not path.is_file():
            continue
        if name in records.STEP_RECORDS:
            # A line cut short by a crash (or still being written) is not exported yet.
            lines = records.read_jsonl(path, drop_partial_last=True)
        else:
            if last is None:
                continue
            lines = [{"step": last, **records.read_json(path)}]
        skip = NOT_SERIES if name in (records.VAL, records.TEST) else ()
        for line in lines:
            step = int(line["step"])
            for tag, value in _flatten(prefix, {k: v for k, v in line.items() if k != "step" and k not in skip}):
                if not tag.endswith(_COUNT_SUFFIX):
                    out.setdefault(tag, {})[step] = value
    return out


def require_tensorboard() -> None:
    """Checks that TensorBoard events can be written (before a run folder is made for them).

    Raises:
        ConfigError: one line naming the install command, if the tensorboard package is missing.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:  # torch's writer needs the tensorboard package
        raise ConfigError("TensorBoard output needs the tensorboard package: pip install tensorboard "
                          "(or pip install 'cml[tensorboard]')") from None


def _hparam(value: Any) -> bool | int | float | str:
    # HParams takes numbers, strings and booleans: a tuple is shown as the CLI writes it, None as "none".
    if isinstance(value, (bool, int, float, str)):
        return value
    from .fields import show

    return show(value)


def hparams_summary(run_dir: Path, metrics: Any) -> list[Any]:
    """The HParams summaries of a run (experiment, session start, session end): its ``config.json`` as the
    hyperparameters and ``metrics`` (tags of its scalar series, e.g. ``test/acc``) as the metrics the table shows.
    """
    from torch.utils.tensorboard.summary import hparams

    config = records.read_json(run_dir / records.CONFIG)
    exp, start, end = hparams({k: _hparam(v) for k, v in sorted(config.items())}, {m: 0.0 for m in metrics})
    return [exp, start, end]


def _writer(logdir: Path):
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    # Never through a link: a tensorboard/ that links to another log folder would have that folder's events
    # deleted below. The folder itself and every event file in it are checked.
    records.refuse_link(logdir, folder_ok=True)
    records.make_folder(logdir, "--logdir")
    for old in logdir.glob(_EVENTS):
        records.refuse_link(old)
        old.unlink()
    return SummaryWriter(log_dir=str(logdir))


def export_run(run_dir: str | Path, logdir: str | Path | None = None) -> Path:
    """Writes one run's records as TensorBoard events, replacing events written there before.

    Args:
        run_dir: the run folder.
        logdir: where the event file goes (default ``<run_dir>/tensorboard``).

    Returns:
        The folder holding the event file.
    """
    live = LiveExport(run_dir, logdir)
    live.close()
    return live.logdir


class LiveExport:
    """Event files that follow a run while it trains: :meth:`update` after each log line writes the points
    added to the records since the last call; :meth:`close` writes the rest (CKA, test) and closes the file.

    Created after the trainer (which, on resume, has cut the records back to the checkpoint), it starts from a
    fresh event file holding every record already in the folder.
    """

    def __init__(self, run_dir: str | Path, logdir: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.logdir = Path(logdir) if logdir is not None else self.run_dir / TENSORBOARD_DIR
        self._writer = _writer(self.logdir)
        self._written: set[tuple[str, int]] = set()
        self.update()

    def update(self) -> int:
        """Writes the points not written yet; returns how many."""
        n = 0
        for tag, series in scalars(self.run_dir).items():
            for step in sorted(series):
                if (tag, step) not in self._written:
                    self._writer.add_scalar(tag, series[step], global_step=step)
                    self._written.add((tag, step))
                    n += 1
        self._writer.flush()
        return n

    def hook(self, trainer: object) -> None:
        """:meth:`update`, as a trainer's log hook (``trainer.log_hooks``, called with the trainer)."""
        self.update()

    def close(self) -> None:
        """Writes the points not written yet and the HParams summary (the config, and the ``test/`` metrics the
        records hold), then closes the event file."""
        self.update()
        metrics = sorted(t for t in scalars(self.run_dir) if t.startswith(TEST_PREFIX))
        if metrics:
            for summary in hparams_summary(self.run_dir, metrics):
                self._writer.file_writer.add_summary(summary)
        self._writer.close()
