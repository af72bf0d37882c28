"""The single-machine simulation backend (`simulation.backend = "local"`): the same
ClientApp in a small pool of forked worker processes, behind Flower's simulation
`Backend` interface (`flwr.server.superlink.fleet.vce.backend.Backend`).

Why: on one machine Ray's own start (GCS, raylet, agents, then a fresh Python per
actor that imports torch, flwr and fedft and loads the data again) is most of a short
run's start-up. Here the workers are forked from the driver before Flower's engine
starts any thread: they inherit its imports and the data it already loaded and
partitioned (`fedft.ml.data.federated_data` is cached by value, so a worker's
`run_context(config_json).data` finds it; the pages are shared copy-on-write), and they
stay alive for the whole run. The `fedft` command forks them instead from a process that
warmed up beside the driver's start-up (fedft.runtime.warm_start): same ClientApp, same
data, and one import fewer to pay in round 1.

What a worker does is what a Ray actor does (fedft.runtime.local_worker): an exception
in the ClientApp comes back as `ClientAppException(str(ex))`, which Flower's engine turns into an error reply
(`CLIENT_APP_RAISED_EXCEPTION`) exactly as on Ray, so injected crashes
(fedft.fl.client.faults) are failed replies and the run goes on. The pool has as many
workers as Ray would have actors: CPUs (`ray_num_cpus`, else this process's CPUs) //
`client_resources.num_cpus`. A worker that dies (killed, out of memory) fails the
message it held and is replaced by a fresh fork.

Workers ignore SIGINT (Ctrl-C reaches the whole process group; the driver's handler
decides), exit when their pipe closes (the driver ended, however it ended), and
`LocalPool.close` stops them all and waits for each to exit.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import select
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig

from fedft.runtime.local_worker import serve
from fedft.runtime.warm_start import WarmStart

STOP_GRACE_SECONDS = 5.0  # close: idle workers exit at once; a busy one gets this long before SIGKILL


def pool_size(num_cpus: int, client_cpus: float) -> int:
    """Workers for `num_cpus` CPUs at `client_cpus` each, as Ray sizes its actor pool (at least 1)."""
    return max(1, int(num_cpus // client_cpus)) if client_cpus > 0 else max(1, num_cpus)


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Forked:
    """A worker forked by the warm-start process (fedft.runtime.warm_start), as much of
    `multiprocessing.Process` as the pool uses. Only the first of them is this process's
    child; the others are that one's children, so a pidfd is what this process can wait
    on and signal without mistaking a reused PID. The exit code is known for a child only."""

    def __init__(self, pid: int, child: bool) -> None:
        self.pid = pid
        self._child = child
        self._fd: int | None = os.pidfd_open(pid)  # a zombie has one too: it cannot have been reaped yet
        self.exitcode: int | None = None

    def join(self, timeout: float | None = None) -> None:
        if self._fd is None:
            return
        if not select.select([self._fd], [], [], timeout)[0]:
            return  # still running
        if self._child:
            self.exitcode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(self._fd)
        self._fd = None

    def is_alive(self) -> bool:
        self.join(0)
        return self._fd is not None

    def kill(self) -> None:
        if self._fd is not None:
            signal.pidfd_send_signal(self._fd, signal.SIGKILL)


class _Worker:
    def __init__(self, conn: Connection, process: Any) -> None:
        self.conn = conn
        self.process = process  # a multiprocessing.Process, or Forked

    @classmethod
    def fork(cls, ctx: Any, client_app: ClientApp, others: list[Connection]) -> _Worker:
        """A fresh fork of this process."""
        conn, child = ctx.Pipe()
        # the child closes every driver-side end it inherits, its own included: then its
        # pipe reads EOF as soon as the driver is gone, however the driver ended
        process = ctx.Process(target=serve, args=(child, client_app, [*others, conn]), daemon=True, name="fedft-local-worker")
        process.start()
        child.close()
        return cls(conn, process)

    def ask_to_stop(self) -> None:
        """An idle worker returns at once; a busy one after its message."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.conn.close()

    def wait(self, grace: float) -> None:
        """Wait up to `grace` s for it to exit, then kill it."""
        self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class LocalPool:
    """`size` forked workers running `client_app`: from `warm` if given (fedft.runtime.
    warm_start; it must run fedft's ClientApp), else from this process. Make it before any
    other thread starts (the engine's, the ServerApp's): a fork gets only the forking
    thread. Workers from `warm` are waited for on first use, so the engine and round 0's
    evaluation start meanwhile; should it fail, this process forks them then, with those
    threads running (as it replaces a dead worker)."""

    def __init__(self, client_app: ClientApp, size: int, warm: WarmStart | None = None) -> None:
        self._ctx = multiprocessing.get_context("fork")
        self._client_app = client_app
        self._lock = threading.Lock()
        self._closed = False
        self._size = size
        self.workers: list[_Worker] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()
        ends = warm.request_workers(size) if warm is not None else None
        self._pending = (warm, ends) if warm is not None and ends is not None else None
        if self._pending is None:
            self._add([self._fork() for _ in range(size)])

    def _add(self, workers: list[_Worker]) -> None:
        for w in workers:
            self.workers.append(w)
            self._idle.put(w)

    def _settle(self) -> None:
        """The warm start's workers, once they exist (see class doc)."""
        with self._lock:
            if self._pending is None:
                return
            warm, ends = self._pending
            self._pending = None
            pids = warm.collect_workers()
            if pids is not None:
                self._add([_Worker(conn, Forked(pid, child=i == 0)) for i, (conn, pid) in enumerate(zip(ends, pids))])
                return
            for conn in ends:
                conn.close()
            for _ in range(self._size):
                self._add([self._fork()])

    def _fork(self) -> _Worker:
        return _Worker.fork(self._ctx, self._client_app, [w.conn for w in self.workers])

    @property
    def size(self) -> int:
        return self._size

    def pids(self) -> list[int]:
        self._settle()
        return [w.process.pid for w in self.workers if w.process.pid is not None]

    def has_idle(self) -> bool:
        self._settle()
        return not self._idle.empty()

    def run(self, message: Message, context: Context) -> tuple[Message, Context]:
        self._settle()
        worker = self._idle.get()
        try:
            worker.conn.send((message, context))
            reply = worker.conn.recv()  # EOF if the worker died: only it held the other end
        except (EOFError, OSError):
            worker.process.join(1.0)
            code = worker.process.exitcode
            worker = self._replace(worker)
            raise ClientAppException(f"the local worker process running this ClientApp exited ({'exit code ' + str(code) if code is not None else 'exit code unknown'})") from None
        finally:
            self._idle.put(worker)
        if reply[0] == "raised":
            raise ClientAppException(reply[1])
        return reply[1], reply[2]

    def _replace(self, dead: _Worker) -> _Worker:
        """A fresh fork in place of a dead worker (none once the pool is closing)."""
        with self._lock:
            if self._closed:
                return dead
            dead.conn.close()
            fresh = self._fork()
            self.workers[self.workers.index(dead)] = fresh
        return fresh

    def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every worker and wait until each has exited."""
        self._settle()
        with self._lock:
            self._closed = True
            workers = list(self.workers)
        for w in workers:  # all told first: a worker forked by the first one is waited for by it
            w.ask_to_stop()
        for w in workers:
            w.wait(grace)


class LocalBackend(Backend):
    """Flower's simulation Backend over a `LocalPool` made beforehand (see module doc)."""

    def __init__(self, backend_config: BackendConfig, pool: LocalPool) -> None:
        super().__init__(backend_config)
        self.pool = pool
        self.app_fn: Callable[[], ClientApp] | None = None

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        self.app_fn = app_fn  # the workers already hold this ClientApp (forked with it)

    @property
    def num_workers(self) -> int:
        return self.pool.size

    def is_worker_idle(self) -> bool:
        return self.pool.has_idle()

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        return self.pool.run(message, context)

    def terminate(self) -> None:
        self.pool.close()
