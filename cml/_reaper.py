"""Ends the Ray processes a driver started when the driver itself is killed (``kill -9``, an OOM kill).

``ray.init`` on a machine without a cluster starts one (GCS server, raylet, and the raylet's agents); Ray ends the
GCS server and the raylet with a driver that dies, but not the raylet's ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent``, which were found alive a minute after a ``kill -9`` of the driver. The Ray engine
(:func:`cml.ray_engine.connect`) therefore starts this watcher beside a cluster it starts: a process of its own
session (so that Ctrl-C in the terminal does not reach it) that, once a second, notes the driver's descendants
whose command line names Ray, and when the driver is gone sends the ones still alive SIGTERM, then SIGKILL after
a grace period. A process is identified by its PID and start time, so a reused PID is never signalled. When the
driver ends normally it has shut Ray down first, and the watcher finds nothing left and exits.

Standard library only, Linux only (``/proc``): elsewhere :func:`cml.ray_engine.connect` starts no watcher.

Usage: ``python -m cml._reaper DRIVER_PID``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: Seconds between looks at the driver's descendants, and the grace between SIGTERM and SIGKILL.
INTERVAL, GRACE = 1.0, 5.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent PID, start time)`` of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[19])


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False


def descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every live descendant of ``root``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append((int(entry), st[1]))
    out: dict[int, int] = {}
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if pid not in out:
                out[pid] = start
                stack.append(pid)
    return out


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start


def watch(driver: int) -> int:
    """Waits for ``driver`` to end, then ends the Ray processes it left; returns how many were signalled."""
    first = _stat(driver)
    if first is None:
        return 0
    born, me = first[1], os.getpid()
    known: dict[int, int] = {}
    while _alive(driver, born):
        for pid, start in descendants(driver).items():
            if pid != me and pid not in known and _is_ray(pid):
                known[pid] = start
        known = {p: s for p, s in known.items() if _alive(p, s)}
        time.sleep(INTERVAL)
    left = {p: s for p, s in known.items() if _alive(p, s)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in left.items():
            if _alive(pid, start):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + GRACE
        while any(_alive(p, s) for p, s in left.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
    return len(left)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
