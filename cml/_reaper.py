"""Ends the Ray processes a driver started when the driver itself is killed (``kill -9``, an OOM kill).

``ray.init`` on a machine without a cluster starts one (GCS server, raylet, and the raylet's agents); Ray ends the
GCS server and the raylet with a driver that dies, but not the raylet's ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent``, which were found alive a minute after a ``kill -9`` of the driver. The Ray engine
(:func:`cml.ray_engine.connect`) therefore starts this watcher *before* it starts a cluster, and waits until the
watcher says it is watching: a driver killed a moment after ``ray.init`` returned is still seen. The watcher is a
process of its own session (so that Ctrl-C in the terminal does not reach it) that, every ``INTERVAL`` seconds,
notes the driver's descendants whose command line names Ray. When the driver is gone it ends those still alive,
their descendants, and every process whose environment names one of them as its raylet (``RAY_RAYLET_PID``: an
agent or worker the raylet started after the last look, already reparented when its raylet died): SIGTERM, then
SIGKILL after a grace period. A process is identified by its PID and start time, so a reused PID is never
signalled. When the driver ends normally it has shut Ray down first, and the watcher finds nothing left and exits.

Standard library only, Linux only (``/proc``): elsewhere :func:`cml.ray_engine.connect` starts no watcher.

Usage: ``python -m cml._reaper DRIVER_PID``; prints ``WATCHING`` once it is.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: Seconds between looks at the driver's descendants, and the grace between SIGTERM and SIGKILL.
INTERVAL, GRACE = 0.5, 5.0
#: The line the watcher prints once it has the driver's identity (the engine waits for it before ``ray.init``).
READY = "WATCHING"


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent PID, start time)`` of a live process, or None if it is gone (a zombie has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False


def _raylet(pid: int) -> int | None:
    """The ``RAY_RAYLET_PID`` in a process's environment (Ray sets it in every process its raylet starts)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"RAY_RAYLET_PID="):
            value = entry.partition(b"=")[2]
            return int(value) if value.isdigit() else None
    return None


def _processes() -> dict[int, tuple[int, int]]:
    """``{pid: (parent PID, start time)}`` of every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            out[int(entry)] = st
    return out


def descendants(roots: set[int], table: dict[int, tuple[int, int]] | None = None) -> dict[int, int]:
    """``{pid: start time}`` of every live descendant of the processes ``roots``."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    out: dict[int, int] = {}
    stack = list(roots)
    while stack:
        for pid in children.get(stack.pop(), []):
            if pid not in out:
                out[pid] = table[pid][1]
                stack.append(pid)
    return out


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start


def left_behind(known: dict[int, int]) -> dict[int, int]:
    """The live processes of ``known``, their descendants, and the processes started by a raylet among ``known``
    (alive or not: Ray ends the raylet with the driver, and its agents stay)."""
    table = _processes()
    live = {p: s for p, s in known.items() if table.get(p, (0, -1))[1] == s}
    out = live | descendants(set(live), table)
    for pid, (_, start) in table.items():
        if pid not in out and (raylet := _raylet(pid)) in known and start >= known[raylet]:
            out[pid] = start
    out.pop(os.getpid(), None)
    return out


def watch(driver: int) -> int:
    """Waits for ``driver`` to end, then ends the Ray processes it left; returns how many were signalled."""
    first = _stat(driver)
    print(READY, flush=True)
    if first is None:
        return 0
    born, me = first[1], os.getpid()
    known: dict[int, int] = {}
    while _alive(driver, born):
        for pid, start in descendants({driver}).items():
            if pid != me and pid not in known and _is_ray(pid):
                known[pid] = start
        known = {p: s for p, s in known.items() if _alive(p, s)}
        time.sleep(INTERVAL)
    signalled: dict[int, int] = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + GRACE
        while True:  # a raylet may start a worker while it is being ended: look again until all are gone
            left = left_behind(known | signalled)
            if not left or time.monotonic() > deadline:
                break
            for pid, start in left.items():
                if sig == signal.SIGKILL or pid not in signalled:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                    signalled[pid] = start
            time.sleep(0.1)
            if sig == signal.SIGKILL:
                break
    return len(signalled)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
