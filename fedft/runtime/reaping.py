"""Processes this process started, stopped by PID and waited for.

`ray.shutdown()` returns before Ray's processes (GCS, raylet, agents, workers) have
exited: some outlive `fedft run` by seconds. `StartedProcesses` notes which of this
process's descendants are new since it was made (after `ray.init`, and again before the
shutdown to catch workers started meanwhile), holds a pidfd for each (a PID that exits
cannot be mistaken for a new process that reuses it), and `stop` waits on those pidfds
(an event per process, no sleeping poll), sending SIGTERM and then SIGKILL to any that
are still alive after the grace period. Only processes found in this process's own tree
are touched; nothing is looked up by name.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path


def _parents() -> dict[int, int]:
    """{pid: parent pid} of every process that has not exited (zombies left out)."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state, parent = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if state != "Z":
                found[int(entry)] = int(parent)
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, their children, ...)."""
    kids: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        kids.setdefault(parent, []).append(child)
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


class StartedProcesses:
    """The descendants of this process that appear after it is made (see module doc)."""

    def __init__(self) -> None:
        self.supported = hasattr(os, "pidfd_open") and Path("/proc/self/stat").exists()
        self._before = descendants(os.getpid()) if self.supported else set()
        self._fds: dict[int, int] = {}

    def note(self) -> None:
        """Record the new descendants alive now (call it more than once: later ones add)."""
        if not self.supported:
            return
        for pid in descendants(os.getpid()) - self._before - set(self._fds):
            try:
                self._fds[pid] = os.pidfd_open(pid)
            except OSError:  # already gone
                pass

    @property
    def pids(self) -> list[int]:
        return sorted(self._fds)

    def _wait(self, fds: dict[int, int], seconds: float) -> dict[int, int]:
        """Wait until every process in `fds` exited or `seconds` passed; returns those still alive."""
        alive = dict(fds)
        deadline = time.monotonic() + seconds
        poller = select.poll()
        by_fd = {fd: pid for pid, fd in alive.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while alive:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                alive.pop(by_fd[fd], None)
        return alive

    def stop(self, grace: float = 10.0) -> list[int]:
        """Wait up to `grace` s for the noted processes to exit, then SIGTERM, then SIGKILL
        the rest; returns the PIDs that had to be signalled. Each pidfd is closed after."""
        if not self._fds:
            return []
        alive = self._wait(self._fds, grace)
        signalled = sorted(alive)
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if not alive:
                break
            for fd in alive.values():
                try:
                    signal.pidfd_send_signal(fd, sig)
                except OSError:
                    pass
            alive = self._wait(alive, wait)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        return signalled
