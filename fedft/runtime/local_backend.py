"""The single-machine simulation backend (`simulation.backend = "local"`): the same
ClientApp in a small pool of forked worker processes, behind Flower's simulation
`Backend` interface (`flwr.server.superlink.fleet.vce.backend.Backend`).

Why: on one machine Ray's own start (GCS, raylet, agents, then a fresh Python per
actor that imports torch, flwr and fedft and loads the data again) is most of a short
run's start-up. Here the workers are forked from the driver before Flower's engine
starts any thread: they inherit its imports and the data it already loaded and
partitioned (`fedft.ml.data.federated_data` is cached by value, so a worker's
`run_context(config_json).data` finds it; the pages are shared copy-on-write), and they
stay alive for the whole run.

What a worker does is what a Ray actor does (`flwr.simulation.ray_transport.ray_actor.
ClientAppActor.run`): it gets (message, context) pickled, calls the ClientApp, and sends
(reply, context) back pickled; an exception in the ClientApp comes back as
`ClientAppException(str(ex))`, which Flower's engine turns into an error reply
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
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig

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


def _serve(conn: Connection, client_app: ClientApp, others: list[Connection]) -> None:
    """A worker's loop: run the ClientApp on each (message, context) until told to stop
    (None) or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for other in others:  # the driver's ends of the pipes (this worker's and the others'): only the driver may hold them
        other.close()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        message, context = job
        try:
            reply: tuple = ("ok", client_app(message=message, context=context), context)
        except Exception as ex:  # noqa: BLE001  (as Ray's ClientAppActor: every exception becomes ClientAppException)
            reply = ("raised", f"{ex}", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any, client_app: ClientApp, others: list[Connection]) -> None:
        self.conn, child = ctx.Pipe()
        # the child closes every driver-side end it inherits, its own included: then its
        # pipe reads EOF as soon as the driver is gone, however the driver ended
        self.process = ctx.Process(target=_serve, args=(child, client_app, [*others, self.conn]), daemon=True, name="fedft-local-worker")
        self.process.start()
        child.close()

    def stop(self, grace: float) -> None:
        """Ask it to stop (an idle worker returns at once), wait up to `grace`, then kill."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.conn.close()
        self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class LocalPool:
    """`size` forked workers running `client_app`. Fork before any other thread starts
    (the engine's threads, the ServerApp's): a child gets only the forking thread."""

    def __init__(self, client_app: ClientApp, size: int) -> None:
        self._ctx = multiprocessing.get_context("fork")
        self._client_app = client_app
        self._lock = threading.Lock()
        self._closed = False
        self.workers: list[_Worker] = []
        for _ in range(size):
            self.workers.append(self._fork())
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for w in self.workers:
            self._idle.put(w)

    def _fork(self) -> _Worker:
        return _Worker(self._ctx, self._client_app, [w.conn for w in self.workers])

    @property
    def size(self) -> int:
        return len(self.workers)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid is not None]

    def has_idle(self) -> bool:
        return not self._idle.empty()

    def run(self, message: Message, context: Context) -> tuple[Message, Context]:
        worker = self._idle.get()
        try:
            worker.conn.send((message, context))
            reply = worker.conn.recv()  # EOF if the worker died: only it held the other end
        except (EOFError, OSError):
            worker.process.join(1.0)
            code = worker.process.exitcode
            worker = self._replace(worker)
            raise ClientAppException(f"the local worker process running this ClientApp exited (exit code {code})") from None
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
        with self._lock:
            self._closed = True
            workers = list(self.workers)
        for w in workers:
            w.stop(grace)


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
