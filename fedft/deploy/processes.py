"""Start Flower's processes and stop every one of them, children included, by PID.

Flower's processes start more processes: a SuperLink starts a SuperExec in a new
session (so it is not in the SuperLink's process group), the SuperExec starts one
`flwr-serverapp`/`flwr-clientapp` per task, and `flwr run` may start a managed
SuperLink daemon. A process-group kill misses the detached ones, and a child
whose parent died is re-parented to init, where a tree walk no longer finds it.
So every process fedft starts gets a unique `FEDFT_LAUNCH_ID` in its environment,
which all its descendants inherit; `stop_all` signals every live process that
carries our id (read with psutil, which sees the environment on Linux, macOS and
Windows), plus the tree below each process we started, first SIGTERM, then SIGKILL
after a grace period.
Should fedft itself be killed with SIGKILL (no cleanup possible), the kernel sends
each process it started a SIGTERM (Linux PR_SET_PDEATHSIG), and Flower's own
`--parent-pid` watchdogs take the grandchildren along.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psutil

from fedft.errors import FedftError

LAUNCH_ID = "FEDFT_LAUNCH_ID"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the OS picks it; a tiny race remains until bound)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Running, sleeping or stopped: not gone and not a zombie waiting for its parent."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (children, grandchildren, ...); [] once it is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def tagged(launch_id: str) -> list[int]:
    """PIDs whose environment carries FEDFT_LAUNCH_ID=launch_id (the own user's processes:
    the OS does not show other users' environments)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(LAUNCH_ID) == launch_id:
                found.append(proc.pid)
        except (psutil.Error, OSError):  # gone, a zombie, another user's, or a kernel thread
            continue
    return sorted(found)


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when fedft dies, even by SIGKILL, so
    the SuperLink/SuperNodes shut down (and Flower's --parent-pid watchdogs take their
    children along) instead of running on as orphans."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (delivered on exit from the block), so cleanup is never cut short."""
    held = {signal.SIGINT, signal.SIGTERM}
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held) if can else None
    try:
        yield
    finally:
        if old is not None:  # None exactly when the signals were not held
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class ProcessSet:
    """The processes one fedft command starts; `stop_all` leaves none behind."""

    def __init__(self) -> None:
        self.launch_id = uuid.uuid4().hex
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[IO] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env[LAUNCH_ID] = self.launch_id
        env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")  # offline machines: no update probe
        # Flower's SuperExec (in the SuperLink and each SuperNode) polls for a new task every second by
        # default: a ClientApp/ServerApp process would start up to 1 s late at every message
        env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25")
        # the user's own modules ([plugins], module:function names) are found from the folder the
        # command was started in (fedft/config/plugins.py), also by processes started elsewhere
        env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(os.getcwd()), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        env.update(extra or {})
        return env

    def start(self, name: str, cmd: Sequence[str], log: str | Path | None = None, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> subprocess.Popen:
        """Start `cmd` in its own session (Ctrl-C in the terminal reaches fedft only,
        which then stops everything in order); output goes to `log` (None: this terminal)."""
        out: IO | None = None  # None: share this terminal
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            out = open(log, "ab")
            self._logs.append(out)
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env(env), cwd=cwd, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.procs[name] = proc
        return proc

    def pids(self) -> list[int]:
        """Every live process of this set: started, tagged, or below one we started."""
        pids = set(tagged(self.launch_id))
        for proc in self.procs.values():
            if proc.poll() is None:
                pids.add(proc.pid)
            pids.update(descendants(proc.pid))
        return sorted(p for p in pids if p != os.getpid() and _alive(p))

    def stop(self, name: str, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Stop one started process and its children (e.g. to simulate a crash, sig=SIGKILL)."""
        proc = self.procs[name]
        self._signal_wait([proc.pid, *descendants(proc.pid)], sig, grace)
        proc.poll()

    def stop_all(self, grace: float = 8.0) -> list[int]:
        """SIGTERM everything, SIGKILL what is left after `grace` s; returns the PIDs signalled.
        A Ctrl-C or SIGTERM arriving meanwhile waits until the cleanup is done."""
        with _signals_deferred():
            return self._stop_all(grace)

    def _stop_all(self, grace: float) -> list[int]:
        pids = self.pids()
        self._signal_wait(pids, signal.SIGTERM, grace)
        left = self.pids()  # includes anything spawned while shutting down
        self._signal_wait(left, signal.SIGKILL, 5.0)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        for f in self._logs:
            f.close()
        self._logs.clear()
        return sorted(set(pids) | set(left))

    @staticmethod
    def _signal_wait(pids: list[int], sig: int, grace: float) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a job runner) unwinds like Ctrl-C, so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def check_flower_tools(*names: str) -> None:
    """Each of Flower's commands is on PATH, or one error naming the first missing."""
    for name in names:
        if shutil.which(name) is None:
            raise FedftError(name, "is not on PATH.", "install Flower into this environment: pip install 'flwr[simulation]>=1.42,<1.43'.")
