"""Which node holds which client: the server samples client ids, Flower addresses nodes.

In a deployment the server asks every node for its partition id once (`identify_nodes`).
In `fedft run` the simulation engine runs in this process and registers one node per
partition itself: `fedft.runtime.engine_patches` records that mapping in a
`NodePartitions` as it is made, the grid carries it (`KnownNodesGrid`), and the
start-up query then goes only to enough nodes to warm the workers (`WARM_UP_NODES`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedft.errors import FedftError
from fedft.fl import protocol as p
from fedft.fl.server.exchange import check_stop, send_and_receive

# With the mapping known, the start-up query (which loads data and imports in the Ray
# workers outside round 1's timeout) still goes to this many nodes: all of them in small
# runs, as before; a bounded number in large ones, where it warms every worker anyway.
WARM_UP_NODES = 256


class NodePartitions:
    """The engine's {node id: partition id}, filled once when the nodes are registered."""

    def __init__(self) -> None:
        self._mapping: dict[int, int] = {}
        self._ready = threading.Event()

    def set(self, mapping: dict[int, int]) -> None:
        self._mapping = {int(node): int(part) for node, part in mapping.items()}
        self._ready.set()

    def wait(self, timeout: float) -> dict[int, int] | None:
        return dict(self._mapping) if self._ready.wait(timeout) else None


def known_partitions(grid: Any, timeout: float) -> dict[int, int] | None:
    """{client id: node id} if `grid` carries the engine's mapping (a `KnownNodesGrid`), else None."""
    nodes = getattr(grid, "node_partitions", None)
    if not isinstance(nodes, NodePartitions):
        return None
    mapping = nodes.wait(timeout)
    return None if mapping is None else {p: n for n, p in mapping.items()}


class KnownNodesGrid:
    """A grid that also carries the simulation engine's node -> partition mapping."""

    def __init__(self, grid: Any, node_partitions: NodePartitions) -> None:
        self._grid = grid
        self.node_partitions = node_partitions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


STARTUP_TIMEOUT = 300.0  # seconds nodes get, at least, to start and answer the identity query


def identify_nodes(grid: Grid, num_clients: int, timeout: float, config_json: str = "", stop: threading.Event | None = None) -> dict[int, int]:
    """Ask every node for its partition id: {client id: node id}. With `config_json` the
    query also lets clients load their data now, so `round_timeout` times training, not
    start-up; a busy machine may need minutes to start the nodes, hence STARTUP_TIMEOUT."""
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < num_clients:
        if time.monotonic() > deadline:
            raise FedftError("partition.num_clients", f"only {len(node_ids)} of {num_clients} client nodes connected within {timeout:.0f} s.", "start more clients or raise simulation.round_timeout.")
        check_stop(stop)
        time.sleep(0.2)
    known = known_partitions(grid, timeout)
    if known is not None:  # in-process simulation: mapping known; query only enough nodes to warm the workers
        node_ids = [known[c] for c in sorted(known)[:WARM_UP_NODES]]
    def query() -> RecordDict:
        return RecordDict({p.CONFIG: ConfigRecord({p.CONFIG_JSON: config_json})} if config_json else {})

    queries = [Message(query(), dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
    mapping: dict[int, int] = {}
    for reply in send_and_receive(grid, queries, max(timeout, STARTUP_TIMEOUT), stop):
        if not reply.has_error():
            mapping[int(p.number(reply.content.config_records[p.IDENTITY], p.PARTITION_ID))] = reply.metadata.src_node_id
    return mapping if known is None else known
