"""Scoped changes to Flower 1.42's in-process simulation engine: two fixes for many
clients, the choice of backend, and who shuts Ray down.

1. Node -> partition mapping without a handshake. The engine registers one node per
   partition (`vce_api._register_nodes`) and keeps the mapping to itself, so fedft's
   server asked every node for its partition id: one message per node. Flower's
   dispatcher scans the whole message store once per node every 0.1 s, so N messages to
   N nodes cost O(N^2) store checks: minutes for 10,000 clients. In `fedft run` the
   engine runs in this process: `patched_engine` records the mapping as it is made and
   the server reads it (`fedft.fl.server.nodes.known_partitions`); the start-up query that warms the workers
   then goes to at most WARM_UP_NODES nodes.
2. The dispatcher (`vce_api.add_messages_to_queue`) asks every node for pending
   messages every 0.1 s, each ask checking every stored message: O(nodes x messages) per
   sweep even when 100 of 10,000 nodes were sampled. The replacement asks only the
   nodes that have an undelivered message (found by one pass over the store), through
   the same `state.get_message_ins`, and polls every 0.02 s.
   Its other threads (the workers that call the backend, the one that stores replies)
   wait on queues with a 1-s timeout and see the stop event only between waits: a
   finished run spent up to a second more in shutdown. Their queues are replaced by
   `StopAwareQueue`s that give up a wait within 0.02 s of the stop event.

3. Another backend (`backend_replaced`): `vce_api.start_vce` builds `RayBackend` in a
   local `backend_fn` and hands it to `vce_api.run_api`; the replacement `run_api` gets
   fedft's backend factory instead (fedft.runtime.local_backend).
4. `ray_left_running`: Flower's `RayBackend.terminate` stops only its actors; fedft
   shuts Ray down itself (after noting Ray's processes, so it can wait for them).

All are undone when the simulation returns. Deployments (real SuperNodes) are
unaffected: there the server still asks each node (fedft.fl.server.loop.identify_nodes).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fedft.fl.server.nodes import NodePartitions

DISPATCH_POLL_SECONDS = 0.02
STOP_POLL_SECONDS = 0.02


class StopAwareQueue(queue.Queue):
    """A queue whose timed `get` also ends (queue.Empty) once `stop` is set."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self._stop = stop

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block or timeout is None:
            return super().get(block, timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return super().get(True, max(0.0, min(deadline - time.monotonic(), STOP_POLL_SECONDS)))
            except queue.Empty:
                if self._stop.is_set() or time.monotonic() >= deadline:
                    raise


def _dispatch_pending(state: Any, queue: Any, nodes_mapping: dict, f_stop: threading.Event, fallback: Any) -> None:
    store = getattr(state, "message_ins_store", None)
    lock = getattr(state, "lock", None)
    if store is None or lock is None:  # not the in-memory LinkState this was written for
        return fallback(state, queue, nodes_mapping, f_stop)
    while not f_stop.is_set():
        with lock:
            pending = {m.metadata.dst_node_id for m in list(store.values()) if m.metadata.delivered_at == ""}
        for node_id in pending:
            if node_id in nodes_mapping:
                for msg in state.get_message_ins(node_id=node_id, limit=1):
                    queue.put(msg)
        f_stop.wait(DISPATCH_POLL_SECONDS)


@contextmanager
def ray_left_running() -> Iterator[None]:
    """Flower's RayBackend shuts Ray down when a simulation ends (`terminate`), even a Ray
    this process had started before (a notebook's `ray.init()`, a test session's): for
    the duration of one simulation, `terminate` stops only the backend's actors (fedft's
    engine shuts down a Ray it started itself)."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    terminate = RayBackend.terminate

    def terminate_actors(self: Any) -> None:
        if self.pool:
            self.pool.terminate_all_actors()

    RayBackend.terminate = terminate_actors  # type: ignore[method-assign]
    try:
        yield
    finally:
        RayBackend.terminate = terminate  # type: ignore[method-assign]


@contextmanager
def backend_replaced(make_backend: Callable[[], Any]) -> Iterator[None]:
    """For one simulation, the engine runs its ClientApps on `make_backend()` instead of `RayBackend`."""
    from flwr.server.superlink.fleet.vce import vce_api

    run_api = vce_api.run_api

    def run_api_on(app_fn: Any, backend_fn: Any, *args: Any, **kwargs: Any) -> None:
        return run_api(app_fn, make_backend, *args, **kwargs)

    vce_api.run_api = run_api_on
    try:
        yield
    finally:
        vce_api.run_api = run_api


@contextmanager
def patched_engine(node_partitions: NodePartitions | None = None) -> Iterator[None]:
    """Apply the fixes (1, 2) to `flwr...vce_api` for the duration of one in-process simulation."""
    from flwr.server.superlink.fleet.vce import vce_api

    register, dispatch = vce_api._register_nodes, vce_api.add_messages_to_queue

    def register_and_record(*args: Any, **kwargs: Any) -> dict:
        mapping = register(*args, **kwargs)
        if node_partitions is not None:
            node_partitions.set(mapping)
        return mapping

    def fast_dispatch(state: Any, queue: Any, nodes_mapping: dict, f_stop: threading.Event) -> None:
        _dispatch_pending(state, queue, nodes_mapping, f_stop, dispatch)

    run_api, queue_class = vce_api.run_api, vce_api.Queue

    def run_api_stopping_promptly(*args: Any, **kwargs: Any) -> None:
        stop = kwargs["f_stop"] if "f_stop" in kwargs else args[5]  # run_api(app_fn, backend_fn, nodes_mapping, state_factory, node_info_stores, f_stop, metrics)
        vce_api.Queue = lambda: StopAwareQueue(stop)  # type: ignore[misc,assignment]  # the queues run_api makes for its threads
        try:
            return run_api(*args, **kwargs)
        finally:
            vce_api.Queue = queue_class  # type: ignore[misc]

    vce_api._register_nodes, vce_api.add_messages_to_queue, vce_api.run_api = register_and_record, fast_dispatch, run_api_stopping_promptly
    try:
        yield
    finally:
        vce_api._register_nodes, vce_api.add_messages_to_queue, vce_api.run_api = register, dispatch, run_api
