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
from logging import WARNING
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common.logger import log
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
        self.workers = 1  # clients the engine runs at once (its backend's workers), set by fedft.runtime.engine

    def set(self, mapping: dict[int, int]) -> None:
        self._mapping = {int(node): int(part) for node, part in mapping.items()}
        self._ready.set()

    def wait(self, timeout: float) -> dict[int, int] | None:
        return dict(self._mapping) if self._ready.wait(timeout) else None


def engine_workers(grid: Any) -> int | None:
    """The in-process engine's worker count if `grid` is a `KnownNodesGrid`, else None
    (a deployment: nodes are machines, and packed training is not for them)."""
    nodes = getattr(grid, "node_partitions", None)
    return nodes.workers if isinstance(nodes, NodePartitions) else None


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


def parse_claim(reply: Message, num_clients: int) -> tuple[int | None, str]:
    """(partition id, "") if `reply` is a well-formed identity reply claiming an id in
    0..num_clients-1, else (None, why). A node chooses what it answers, so nothing in
    the reply is trusted to have the right type."""
    if reply.has_error():
        return None, f"answered with an error ({(reply.error.reason or '').strip()[:120]})"
    identity = reply.content.config_records.get(p.IDENTITY)
    if identity is None or p.PARTITION_ID not in identity:
        return None, f"sent no '{p.IDENTITY}' record with '{p.PARTITION_ID}'"
    value = identity[p.PARTITION_ID]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(value, float) and not value.is_integer():
        return None, f"claimed partition id {value!r}, not an integer"
    if not 0 <= int(value) < num_clients:
        return None, f"claimed partition id {int(value)}, outside 0..{num_clients - 1}"
    return int(value), ""


def assign(claims: dict[int, int]) -> tuple[dict[int, int], dict[int, str]]:
    """{node: claimed id} -> ({client id: node}, {refused node: why}). Every node claiming
    an id another node also claims is refused: no first-come winner, so a second node
    cannot take a client's place by answering sooner."""
    by_id: dict[int, list[int]] = {}
    for node, client in sorted(claims.items()):
        by_id.setdefault(client, []).append(node)
    mapping = {c: nodes[0] for c, nodes in by_id.items() if len(nodes) == 1}
    refused = {n: f"claimed partition id {c}, which nodes {nodes} all claim" for c, nodes in by_id.items() if len(nodes) > 1 for n in nodes}
    return mapping, refused


def quorum_out_of_reach(valid: int, quorum: int, bound: dict[int, int] | None, asked: set[int]) -> bool:
    """True once waiting longer cannot bring `quorum` valid claims. With the operator's
    list (`bound`, {node id: partition id}) only listed nodes can claim validly (any other
    key is refused, or never let in) and each node is asked once, so at most
    valid + (listed nodes not yet asked) claims can ever be valid. Without a list any
    node may still join: never decided early."""
    return bound is not None and valid + len(set(bound) - asked) < quorum


def identify_nodes(grid: Grid, num_clients: int, timeout: float, config_json: str = "", stop: threading.Event | None = None,
                   min_clients: int = 0, refused: dict[int, str] | None = None, bound: dict[int, int] | None = None) -> dict[int, int]:
    """Ask the nodes for their partition ids: {client id: node id}. Starts when
    `min_clients` nodes (0 = all `num_clients`) have joined, and asks nodes that join
    later until that many have valid, unique claims. A malformed, out-of-range or
    duplicated claim refuses that node (logged; `refused` gets {node: why}), never the run;
    with `bound` ({node id: partition id} from the operator's list of client keys) so
    does a claim other than the one the node's key is listed with, and the wait ends as
    soon as every listed node has answered (`quorum_out_of_reach`), not at the timeout.
    With `config_json` the query also lets clients load their data now, so
    `round_timeout` times training, not start-up; a busy machine may need minutes to
    start the nodes, hence STARTUP_TIMEOUT."""
    quorum = min_clients or num_clients
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < quorum:
        if time.monotonic() > deadline:
            raise FedftError("partition.num_clients", f"only {len(node_ids)} of {quorum} client nodes connected within {timeout:.0f} s.", "start more clients, lower simulation.min_clients or raise simulation.round_timeout.")
        check_stop(stop)
        time.sleep(0.2)
    known = known_partitions(grid, timeout)
    if known is not None:  # in-process simulation: mapping known; query only enough nodes to warm the workers
        node_ids = [known[c] for c in sorted(known)[:WARM_UP_NODES]]

    def query() -> RecordDict:
        return RecordDict({p.CONFIG: ConfigRecord({p.CONFIG_JSON: config_json})} if config_json else {})

    claims: dict[int, int] = {}
    bad: dict[int, str] = {}
    asked: set[int] = set()
    while True:
        todo = [n for n in node_ids if n not in asked]
        asked.update(todo)
        queries = [Message(query(), dst_node_id=n, message_type=MessageType.QUERY) for n in todo]
        for reply in send_and_receive(grid, queries, max(timeout, STARTUP_TIMEOUT), stop) if queries else []:
            claim, why = parse_claim(reply, num_clients)
            node = reply.metadata.src_node_id
            if claim is not None and bound is not None and bound.get(node) != claim:
                claim, why = None, (f"claimed partition id {claim}, but its key is listed for {bound[node]}" if node in bound else "its key is not in the operator's list")
            if claim is None:
                bad[node] = why
            else:
                claims[node] = claim
        mapping, duplicated = assign(claims)
        decided = quorum_out_of_reach(len(mapping), quorum, bound, asked)  # every listed node has answered: the outcome is known now
        if known is not None or len(mapping) >= quorum or decided or time.monotonic() > deadline:
            break
        check_stop(stop)
        time.sleep(0.5)
        node_ids = sorted(grid.get_node_ids())
    for node, why in sorted({**bad, **duplicated}.items()):
        log(WARNING, "node %s refused: %s", node, why)
    if refused is not None:
        refused.update(bad)
        refused.update(duplicated)
    if known is not None:
        return known
    if len(mapping) < quorum:
        when = "(every listed client has answered" if decided else f"within {timeout:.0f} s ("
        raise FedftError("simulation.min_clients", f"only {len(mapping)} of {quorum} client nodes gave a valid partition id {when}"
                         f"{'; ' if decided else ''}{len(bad) + len(duplicated)} refused; see the log).", "start the missing clients, or lower simulation.min_clients.")
    return mapping
