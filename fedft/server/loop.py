"""The federated round loop: sample, send, aggregate, evaluate, record.

Flower's `Strategy.start` samples with the global `random` module and records
nothing about time or bytes; fedft runs the loop itself and uses the strategy
only for what it is for, `configure_train` and `aggregate_train`, handing it a
view of the grid that holds exactly the clients sampled for the round.
"""

from __future__ import annotations

import time
from typing import Callable

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedft import protocol as p
from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.finetune import frozen_digest, plan_for
from fedft.server.evaluation import Evaluator
from fedft.server.sampling import sample_clients

RoundCallback = Callable[[dict[str, float]], None]


class SampledGrid:
    """A grid whose only nodes are the ones sampled for this round."""

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid = grid
        self._node_ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def identify_nodes(grid: Grid, num_clients: int, timeout: float) -> dict[int, int]:
    """Ask every node for its partition id: {client id: node id}."""
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < num_clients:
        if time.monotonic() > deadline:
            raise FedftError("partition.num_clients", f"only {len(node_ids)} of {num_clients} client nodes connected within {timeout:.0f} s.", "start more clients or raise simulation.round_timeout.")
        time.sleep(0.2)
    queries = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
    mapping: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if not reply.has_error():
            mapping[int(reply.content[p.IDENTITY][p.PARTITION_ID])] = reply.metadata.src_node_id
    return mapping


def _weighted_mean(replies: list[Message], key: str) -> float:
    pairs = [(float(m.content[p.METRICS][p.NUM_EXAMPLES]), float(m.content[p.METRICS][key])) for m in replies if key in m.content[p.METRICS]]
    total = sum(w for w, _ in pairs)
    return sum(w * v for w, v in pairs) / total if total else float("nan")


def select_arrays(arrays: ArrayRecord, keys: tuple[str, ...]) -> ArrayRecord:
    """The arrays that travel this round (all of them unless some are frozen)."""
    return arrays if len(keys) == len(arrays) else ArrayRecord({k: arrays[k] for k in keys})


def merge_arrays(arrays: ArrayRecord, update: ArrayRecord, keys: tuple[str, ...]) -> ArrayRecord:
    """The global arrays with the aggregated `keys` replaced; every other array stays as it was."""
    if len(keys) == len(arrays) and set(update) == set(arrays):
        return update
    allowed = set(keys)
    return ArrayRecord({k: (update[k] if k in allowed and k in update else v) for k, v in arrays.items()})


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    cfg: FedftConfig,
    arrays: ArrayRecord,
    evaluator: Evaluator,
    on_round: RoundCallback,
) -> ArrayRecord:
    """Run `cfg.simulation.rounds` rounds from `arrays`; return the final global arrays."""
    sim = cfg.simulation
    t0 = time.perf_counter()
    loss, acc = evaluator(arrays.to_torch_state_dict())
    node_of = identify_nodes(grid, cfg.partition.num_clients, sim.round_timeout)
    on_round({"round": 0, "test_loss": loss, "test_accuracy": acc, "wall_seconds": time.perf_counter() - t0})
    config_json = cfg.to_json()
    plan = plan_for(cfg)  # finetune.mode: only `plan.sent` arrays travel; the rest stays as it started
    frozen = {} if plan.sends_everything else {p.FROZEN_DIGEST: frozen_digest(arrays.to_torch_state_dict(), plan)}
    for server_round in range(1, sim.rounds + 1):
        t0 = time.perf_counter()
        available = frozenset(c for c in range(cfg.partition.num_clients) if c not in node_of)
        clients = sample_clients(cfg.seed, server_round, cfg.partition.num_clients, sim.clients_per_round, exclude=available)
        view = SampledGrid(grid, [node_of[c] for c in clients])
        train_config = ConfigRecord({p.CONFIG_JSON: config_json, **frozen})
        messages = list(strategy.configure_train(server_round, select_arrays(arrays, plan.sent), train_config, view))
        bytes_down = sum(p.payload_bytes(m.content) for m in messages)
        replies = list(grid.send_and_receive(messages, timeout=sim.round_timeout))
        client_of = {n: c for c, n in node_of.items()}
        replies.sort(key=lambda m: client_of.get(m.metadata.src_node_id, -1))  # deterministic aggregation order
        ok = [m for m in replies if not m.has_error()]
        bytes_up = sum(p.payload_bytes(m.content) for m in ok)
        new_arrays, _ = strategy.aggregate_train(server_round, replies)
        if new_arrays is not None:
            arrays = merge_arrays(arrays, new_arrays, plan.sent)
        loss, acc = evaluator(arrays.to_torch_state_dict())
        on_round({
            "round": server_round,
            "test_loss": loss,
            "test_accuracy": acc,
            "train_loss": _weighted_mean(ok, "train_loss"),
            "train_accuracy": _weighted_mean(ok, "train_accuracy"),
            "val_loss": _weighted_mean(ok, "val_loss"),
            "val_accuracy": _weighted_mean(ok, "val_accuracy"),
            "clients_sampled": len(messages),
            "clients_replied": len(ok),
            "clients_failed": len(replies) - len(ok),
            "clients_timed_out": len(messages) - len(replies),
            "bytes_down": bytes_down,
            "bytes_up": bytes_up,
            "wall_seconds": time.perf_counter() - t0,
        })
    return arrays


