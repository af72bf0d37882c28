"""The simulation engine's node -> partition mapping, as the server loop reads it.

In `fedft run` the engine runs in this process and records which node holds which
partition as it registers them (`fedft.runtime.engine_patches.patched_engine`
fills a `NodePartitions`); the ServerApp wraps its grid in a `KnownNodesGrid`, and
the loop (`fedft.fl.server.loop.identify_nodes`) reads the mapping from it instead
of asking every node. A deployment's grid carries none: the loop asks.
"""

from __future__ import annotations

import threading
from typing import Any

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
        self._mapping = {int(n): int(p) for n, p in mapping.items()}
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
