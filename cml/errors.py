"""Every error cml raises on purpose, under one root.

::

    CmlError
    ├── UserError                 the input or the environment is wrong; the message says what to do
    │   ├── ConfigError           a config value, flag or --config file            (also a ValueError)
    │   ├── DataError             a data set is missing, unreadable or too small   (also a ValueError)
    │   ├── RunFolderError        a run or sweep folder's file is damaged           (also a ValueError)
    │   │   ├── DiskFullError     a record could not be written for lack of space
    │   │   └── FolderLockedError another process writes the folder
    │   ├── MissingFileError      a file or folder the command needs is absent      (also a FileNotFoundError)
    │   │   ├── MissingRecordError  a record a figure needs is not in a run folder
    │   │   └── NoRunsError         none of the given paths holds a run folder
    │   ├── OutputExistsError     the path to write is taken                        (also a FileExistsError)
    │   ├── NonFiniteLossError    a loss or gradient became NaN or infinite        (also a FloatingPointError)
    │   ├── FigureInputError      a figure cannot be drawn from the runs it was given
    │   └── WorkerDiedError       a sweep's worker process died (killed, out of memory) while training a cell
    ├── Interrupted               SIGINT or SIGTERM stopped the command (not an error: the user asked)
    └── InternalError             not the user's to fix: a broken invariant of cml, or a failure of what it
                                  runs on                                           (also a RuntimeError)

``python -m cml`` prints a :class:`UserError` as one line and exits with status 2; an :class:`Interrupted` as
one line saying where training stopped and how to continue, with status 128 + the signal's number (130 for
SIGINT, 143 for SIGTERM, as a shell reports a process a signal ended); anything else, builtins included, is a bug
and keeps its traceback. The Ray engine re-raises a trial's :class:`UserError` naming the
cell. The report draws a "not available" page for a :class:`FigureInputError` or a :class:`MissingRecordError`
and fails on any other exception, so that a bug in a figure is never shown as a believable message.

The second base (``ValueError``, ``FileNotFoundError``, ...) is the builtin each class was before this root
existed: code that catches the builtin (``except FileNotFoundError`` around an optional record) keeps working.
Nothing in cml catches a builtin to mean "the user's mistake".

The classes are also importable from where they were defined before (``cml.config.ConfigError``,
``cml.records.RunFolderError``, ``cml.data.base.DataError``, ``cml.meta.NonFiniteLossError``,
``figures.runs.MissingRecordError``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CmlError", "UserError", "InternalError", "ConfigError", "DataError", "RunFolderError", "DiskFullError",
    "FolderLockedError", "MissingFileError", "MissingRecordError", "NoRunsError", "OutputExistsError",
    "NonFiniteLossError", "FigureInputError", "WorkerDiedError", "Interrupted",
]


class CmlError(Exception):
    """The root of every error cml raises on purpose."""


class UserError(CmlError):
    """The user's input or environment is wrong; the message names the value, file or step and what to do."""


class InternalError(CmlError, RuntimeError):
    """Not the user's to fix: a broken invariant of cml (a bug to report) or a failure of what it runs on."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


class DataError(UserError, ValueError):
    """A data set is missing, unreadable or too small for the requested tasks."""


class RunFolderError(UserError, ValueError):
    """A run folder's file is missing, damaged or not written by cml; the message says how to fix it."""


class DiskFullError(RunFolderError):
    """A record could not be written for lack of space; the older records and checkpoints are intact."""


class FolderLockedError(RunFolderError):
    """Another process is writing the folder."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the command needs does not exist (a checkpoint to resume, a record, a path given)."""


class MissingRecordError(MissingFileError):
    """A record a figure needs is not in a run folder.

    Attributes:
        run_dir: the run folder.
        record: the missing file's name.
        hint: what produces it.
        message: the whole message (also ``str(error)``).
    """

    def __init__(self, run_dir: Path, filename: str, hint: str = "train the run with the settings that write it"
                 ) -> None:
        self.run_dir, self.record, self.hint = Path(run_dir), filename, hint
        self.message = f"{self.run_dir} has no {filename}: {hint}"
        super().__init__(self.message)

    def __reduce__(self):
        # Pickled (a Ray trial's error) with its own arguments, not OSError's (message,).
        return type(self), (self.run_dir, self.record, self.hint)


class NoRunsError(MissingFileError):
    """None of the given paths holds a run folder."""


class OutputExistsError(UserError, FileExistsError):
    """The path a command would write is taken: a run folder holds a run, ``-o`` names a folder, ``--out`` runs
    through a file."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss or gradient became NaN or infinite (the message names the step and what to lower)."""


class FigureInputError(UserError):
    """A figure cannot be drawn from the runs it was given: a method, task, seed or recorded value it needs is
    absent, or the runs mix settings. The message names what is missing and, where it can, how to produce it."""


class WorkerDiedError(UserError):
    """A sweep engine's worker process died while it trained a cell (killed by a user or the kernel's OOM killer,
    its node lost): the cell's last checkpoint is kept, and rerunning the sweep resumes it."""


class Interrupted(CmlError):
    """SIGINT (Ctrl-C) or SIGTERM stopped a command; :mod:`cml.interrupt` raises it.

    Attributes:
        signum: the signal's number.
        step: the outer step training had finished when it stopped (None: it stopped outside training).
        steps: the steps the run was to train (None: outside training).
        exit_code: 128 + ``signum``, what a shell reports for a process the signal ended.
    """

    def __init__(self, signum: int, step: int | None = None, steps: int | None = None) -> None:
        self.signum, self.step, self.steps = signum, step, steps
        self.exit_code = 128 + signum
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if self.step is None:
            return "interrupted before training started; rerun the same command to start again"
        return f"interrupted at step {self.step} of {self.steps}; rerun the same command (or --resume) to continue"

    def __reduce__(self):
        return type(self), (self.signum, self.step, self.steps)
