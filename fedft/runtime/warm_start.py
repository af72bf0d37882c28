"""Local workers that start warm: forked from a process that made their one missing
import and loaded the data beside the driver's start-up.

Why: a worker forked from the driver has the driver's imports, but its first client
call still pays for one the driver never makes: `torch.optim.Optimizer.step` and
`zero_grad` import `torch._dynamo` on first use, 0.8 s of CPU in every worker (on
2 cores, round 1 of the quickstart took 1.7 s instead of 0.8 s). The `fedft` command
imports what the driver and the workers share (torch, Flower's client side, fedft's
ClientApp: this module's imports), then forks this process (`WarmStart.begin`) and goes
on with the rest (Flower's engine, the server side). On the other core, this process
imports `torch._dynamo` and loads the run's data once the driver has checked the
config (`send_config`). When the driver builds its pool (fedft.runtime.local_backend),
it sends one end of each worker's pipe (`request_workers`), starts the engine and round
0's evaluation, and takes the PIDs when the first message needs a worker
(`collect_workers`). This process forks the other workers from itself, so they inherit
the import and the data pool (its pages shared copy-on-write), and then serves as the
first worker: the pool has no process more than one forked from the driver.
benchmarks/README.md, section 16: the whole 5-round quickstart 0.9 s shorter.

Same results as workers forked from the driver: the same ClientApp on the same data
(`run_context(config_json)` is a pure function of the config), and nothing here draws
a random number (tests/test_warm_start.py). If anything goes wrong here (an import, the
data, more workers than one message can carry descriptors for), the driver forks its
workers itself, as before. The driver holds a pidfd for each worker, since only the
first is its child (fedft.runtime.local_backend.Forked).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import traceback
from multiprocessing.connection import Connection, Pipe
from typing import Any, NoReturn

from fedft.fl.client.app import app  # torch, Flower's client side, fedft's: imported before the fork, by both
from fedft.fl.context import run_context
from fedft.runtime.local_worker import serve

_MAX_MESSAGE = 1 << 22  # a config as JSON is a few kB; a message is one datagram (SOCK_SEQPACKET)


def supported() -> bool:
    """Linux (fork, SOCK_SEQPACKET, pidfds), as the local backend itself, where pidfds are
    not refused (an old container runtime's seccomp profile may refuse the system call)."""
    if not (hasattr(os, "fork") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class WarmStart:
    """The driver's handle on the warming process (see module doc)."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self._control: socket.socket | None = control
        self._handed_over = False

    @classmethod
    def begin(cls) -> WarmStart | None:
        """Fork the warming process now: before this process starts any thread, and before
        it imports the rest of what it needs (this module imports what both need)."""
        if not supported():
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            mine.close()
            _warm_up_then_serve(theirs)
        theirs.close()
        return cls(pid, mine)

    def send_config(self, config_json: str) -> None:
        """The run's config: the warming process loads its data while the driver goes on."""
        self._send({"config": config_json})

    def request_workers(self, size: int) -> list[Connection] | None:
        """Ask for `size` workers; returns the driver's end of each one's pipe (the first
        worker is the warming process itself), or None if it has exited. Their PIDs come
        with `collect_workers`: meanwhile the driver starts the engine."""
        pipes = [Pipe() for _ in range(size)]
        sent = self._send({"workers": size}, [theirs.fileno() for _, theirs in pipes])  # Linux passes at most 253 per message
        for mine, theirs in pipes:
            theirs.close()
            if not sent:
                mine.close()
        if not sent:
            self.close()
            return None
        return [mine for mine, _ in pipes]

    def collect_workers(self) -> list[int] | None:
        """The requested workers' PIDs, once they are forked; None if the warming process
        could not (it has exited: close the pipes `request_workers` gave)."""
        try:
            reply = json.loads(self._control.recv(_MAX_MESSAGE) or b"{}") if self._control else {}
        except OSError:
            reply = {}
        if "pids" not in reply:
            self.close()
            return None
        self._handed_over = True  # the pool stops and waits for them now
        self._close_control()
        return [self.pid, *reply["pids"]]

    def close(self) -> None:
        """Unless its workers were handed to a pool: stop it (it holds nothing worth
        waiting for: a run that fails on bad input exits at once) and wait until it has."""
        self._close_control()
        if not self._handed_over:
            self._handed_over = True
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> bool:
        if self._control is None:
            return False
        try:
            socket.send_fds(self._control, [json.dumps(message).encode()], fds or [])
            return True
        except OSError:  # it exited (an import failed)
            return False

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None


def _warm_up_then_serve(control: socket.socket) -> NoReturn:
    """The warming process: never returns into the driver's code."""
    code = 1
    try:
        gc.freeze()  # what it inherited stays out of its collections: they would touch (and copy) every inherited page
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the driver decides
        code = _run(control)
    except BaseException:  # noqa: BLE001  (nothing may escape into the driver's code: the driver falls back)
        traceback.print_exc()
    finally:
        os._exit(code)


def _run(control: socket.socket) -> int:
    error = None
    try:
        import torch._dynamo  # noqa: F401  (the one import the driver has not made: see module doc)
    except Exception:  # noqa: BLE001
        error = traceback.format_exc(limit=1)
    config_json = None
    while True:
        payload, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 256)
        if not payload:  # the driver closed: not needed (Ray, a failed run)
            return 0
        message = json.loads(payload)
        if "config" in message and error is None:
            config_json = message["config"]
            try:
                _ = run_context(config_json).data  # the pool, loaded once: the workers share its pages
            except Exception:  # noqa: BLE001  (the driver loaded it fine; it falls back and sees any problem itself)
                error = traceback.format_exc(limit=1)
        if "workers" in message:
            break
    ends = [Connection(fd) for fd in fds]
    if error is not None or config_json is None or len(ends) != message["workers"]:
        control.send(json.dumps({"error": error or "no config"}).encode())
        return 1
    pids = []
    for i in range(1, len(ends)):
        pid = os.fork()
        if pid == 0:
            control.close()
            serve(ends[i], app, [e for j, e in enumerate(ends) if j != i])
            os._exit(0)
        pids.append(pid)
    try:
        control.send(json.dumps({"pids": pids}).encode())
    except OSError:  # the driver is gone or gave up: its ends are closed, so the workers read EOF and exit
        for end in ends:
            end.close()
        for pid in pids:
            os.waitpid(pid, 0)
        return 1
    control.close()
    serve(ends[0], app, ends[1:])  # the first worker: this process
    for pid in pids:  # they were told to stop too; reap them
        os.waitpid(pid, 0)
    return 0
