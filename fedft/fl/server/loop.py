"""The federated round loop: sample, send, aggregate, evaluate, record.

Flower's `Strategy.start` samples with the global `random` module and records
nothing about time or bytes; fedft runs the loop itself and uses the strategy
only for what it is for, `configure_train` and `aggregate_train`, handing it a
view of the grid that holds exactly the clients sampled for the round.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedft.fl import protocol as p
from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.state.client_records import ClientStateStore
from fedft.state.client_records import strip as strip_client_state
from fedft.privacy.tracker import PrivacyTracker, privacy_tracker
from fedft.ml.finetune import frozen_digest, plan_for
from fedft.fl.server.evaluation import Evaluator
from fedft.fl.server.exchange import check_stop, is_dropout, send_and_receive
from fedft.fl.server.node_log import log_round_failures
from fedft.fl.server.nodes import identify_nodes
from fedft.fl.server.sampling import sample_clients
from fedft.fl.server.validation import conform, schema_of, screen_replies

RoundCallback = Callable[[dict[str, float]], None]
AfterRound = Callable[[int, dict], None]  # (round, global state dict) once the round is recorded


class SampledGrid:
    """A grid whose only nodes are the ones sampled for this round."""

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid = grid
        self._node_ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


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
    *,
    start_round: int = 0,
    stop: threading.Event | None = None,
    after_round: AfterRound | None = None,
    client_states: ClientStateStore | None = None,
    privacy: PrivacyTracker | None = None,
) -> ArrayRecord:
    """Run rounds `start_round + 1 .. cfg.simulation.rounds` from `arrays` (round 0, the
    initial evaluation, only when starting fresh); return the final global arrays.
    `stop` set (SIGINT/SIGTERM) raises RunInterrupted before any half-done round is recorded."""
    sim = cfg.simulation
    privacy = privacy or privacy_tracker(cfg)
    t0 = time.perf_counter()
    check_stop(stop)
    if start_round == 0:
        loss, acc = evaluator(arrays.to_torch_state_dict())
    node_of = identify_nodes(grid, cfg.partition.num_clients, sim.round_timeout, cfg.to_json(), stop)
    client_of = {n: c for c, n in node_of.items()}
    if start_round == 0:
        on_round({"round": 0, "test_loss": loss, "test_accuracy": acc, "wall_seconds": time.perf_counter() - t0})
    config_json = cfg.to_json()
    plan = plan_for(cfg)  # finetune.mode: only `plan.sent` arrays travel; the rest stays as it started
    frozen = {} if plan.sends_everything else {p.FROZEN_DIGEST: frozen_digest(arrays.to_torch_state_dict(), plan)}
    schema = schema_of(select_arrays(arrays, plan.sent))  # every reply must match the sent arrays' keys, shapes, dtypes
    expected_records = getattr(strategy, "reply_array_records", (p.ARRAYS,))
    for server_round in range(start_round + 1, sim.rounds + 1):
        check_stop(stop)
        t0 = time.perf_counter()
        available = frozenset(c for c in range(cfg.partition.num_clients) if c not in node_of) | privacy.exclude
        clients = sample_clients(cfg.seed, server_round, cfg.partition.num_clients, sim.clients_per_round, exclude=available)
        view = SampledGrid(grid, [node_of[c] for c in clients])
        train_config = ConfigRecord({p.CONFIG_JSON: config_json, **frozen})
        messages = list(strategy.configure_train(server_round, select_arrays(arrays, plan.sent), train_config, view))
        privacy.begin_round(strategy)
        bytes_down = sum(p.payload_bytes(m.content) for m in messages)
        if client_states is not None:
            client_states.attach(messages, client_of)
        replies = send_and_receive(grid, messages, sim.round_timeout, stop)
        log_round_failures(server_round, messages, replies, client_of)  # which clients/nodes failed or timed out
        replies.sort(key=lambda m: client_of.get(m.metadata.src_node_id, -1))  # deterministic aggregation order
        ok = [m for m in replies if not m.has_error()]
        if client_states is not None:
            client_states.collect(ok, client_of)
        else:
            strip_client_state(ok)
        bytes_up = sum(p.payload_bytes(m.content) for m in ok)
        dropped = sum(1 for m in replies if is_dropout(m))
        candidates, refused = privacy.split(ok, client_of)  # local DP: out-of-budget replies carry no update
        describe = lambda m: f"client {client_of.get(m.metadata.src_node_id, '?')} (node {m.metadata.src_node_id})"  # noqa: E731
        accepted, rejected = screen_replies(candidates, schema, expected_records, describe, server_round)
        skipped = len(accepted) < sim.min_replies  # too few usable updates: keep the global model, record the round
        new_arrays, _ = (None, None) if skipped else strategy.aggregate_train(server_round, accepted + [m for m in replies if m.has_error()])
        privacy_columns = privacy.end_round(ok, client_of, refused, released=new_arrays is not None)
        if new_arrays is not None:
            arrays = merge_arrays(arrays, conform(new_arrays, schema), plan.sent)
        evaluated = server_round % sim.evaluate_every == 0 or server_round == sim.rounds
        test = dict(zip(("test_loss", "test_accuracy"), evaluator(arrays.to_torch_state_dict()))) if evaluated else {}
        on_round({
            "round": server_round,
            **test,
            "train_loss": _weighted_mean(accepted, "train_loss"),
            "train_accuracy": _weighted_mean(accepted, "train_accuracy"),
            "val_loss": _weighted_mean(accepted, "val_loss"),
            "val_accuracy": _weighted_mean(accepted, "val_accuracy"),
            "clients_sampled": len(messages),
            "clients_replied": len(ok),
            "clients_failed": len(replies) - len(ok) - dropped,
            "clients_timed_out": len(messages) - len(replies),
            "clients_rejected": len(rejected),
            "bytes_down": bytes_down,
            "bytes_up": bytes_up,
            "wall_seconds": time.perf_counter() - t0,
            "clients_dropped": dropped,
            "round_skipped": int(skipped),
            **privacy_columns,
        })
        if after_round is not None:
            after_round(server_round, arrays.to_torch_state_dict())
    return arrays


