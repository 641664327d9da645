"""SIGINT (Ctrl-C) and SIGTERM: a command stops cleanly, saying where, instead of a traceback or a silent exit.

While the trainer is inside its step loop (:func:`deferred`), a signal is only noted: the step in progress
finishes with its records, the trainer writes a checkpoint and raises :class:`cml.errors.Interrupted`, and
``python -m cml`` prints ``interrupted at step N of M; rerun the same command (or --resume) to continue`` and exits
with 128 + the signal's number (130, 143). Anywhere else (loading data, the final test) the signal raises
:class:`~cml.errors.Interrupted` at once, as Ctrl-C raises ``KeyboardInterrupt``; so does a second signal while
the first is waiting for its step to end, for a user who does not want to wait.

Records stay whole either way: whole files are written to a temp file and renamed (:mod:`cml.records`), and the
next writer of the folder removes what an interrupted one left.

The handlers are installed by :func:`handled` (what ``cml.cli.main`` wraps every command in), only in the main
thread (the only one Python delivers signals to), and the previous handlers are put back afterwards, so that
calling ``main`` from Python or a test leaves the process as it found it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Interrupted

__all__ = ["SIGNALS", "handled", "deferred", "pending", "progress", "Interrupted"]

#: The signals that stop a command cleanly.
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict[str, Any] = {"defer": False, "pending": None, "step": None, "steps": None}


def _handler(signum: int, frame: Any) -> None:
    if _state["defer"] and _state["pending"] is None:
        _state["pending"] = signum  # the step loop stops at the end of this step
        return
    raise Interrupted(signum, _state["step"], _state["steps"])


@contextmanager
def handled() -> Iterator[None]:
    """Installs the handlers of :data:`SIGNALS` for the block (in the main thread only), then restores the old."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _state.update(defer=False, pending=None, step=None, steps=None)


@contextmanager
def deferred() -> Iterator[None]:
    """A block (the trainer's step loop) in which a first signal waits for the step to end (see :func:`pending`)."""
    before = _state["defer"]
    _state["defer"] = True
    try:
        yield
    finally:
        _state["defer"] = before


def pending() -> int | None:
    """The signal noted during a :func:`deferred` block and not yet acted on, or None."""
    return _state["pending"]


def progress(step: int | None, steps: int | None) -> None:
    """Where training is (the last finished outer step of how many), for the message of an interruption."""
    _state.update(step=step, steps=steps)
