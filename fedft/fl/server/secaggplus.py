"""One round through Flower's SecAgg+, inside fedft's own round loop (`deploy.secure_aggregation`).

fedft still samples the cohort, builds the train messages with its strategy, evaluates and
records every round (fedft.fl.server.loop); only sending and summing go to Flower's
`SecAggPlusWorkflow`, which expects the legacy world: a `LegacyContext` holding a legacy
Strategy. `_Cohort` is that Strategy, and nothing more: `configure_fit` hands the workflow
this round's messages as FitIns, `aggregate_fit` keeps what the workflow unmasked. The
clients (fedft.fl.client.secaggplus) send their updates, so what the server learns is the
weighted mean of the surviving clients' updates (each quantised, masked; dropouts' masks
rebuilt from the survivors' shares). fedft's strategy then sees that mean as one reply,
the global model plus the mean update, weighted by the survivors' num-examples: FedAvg
keeps it, FedAvgM and FedOpt take their server step from it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.common import FitIns, FitRes, Parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from fedft.fl import protocol as p
from fedft.fl.client.secaggplus import ARRAY_KEYS
from fedft.fl.server.exchange import is_dropout, send_and_receive
from fedft.fl.server.loop import RoundParts, RoundRunner, RoundSettings, SampledGrid, merge_arrays, select_arrays
from fedft.fl.server.node_log import first_error, log_round_failures
from fedft.fl.server.secaggplus_config import SecAggPlusParams
from fedft.fl.server.validation import conform

log = logging.getLogger("fedft")
SUMMARY = {"secure_aggregation": "secaggplus"}  # summary.json


def _record_bytes(content: RecordDict) -> int:
    """Bytes a message carries: arrays, and the keys, shares and masked vectors in its config records
    (8 per number; Flower's own count refuses lists)."""
    def size(value: Any) -> int:
        return sum(size(v) for v in value) if isinstance(value, list) else len(value) if isinstance(value, (bytes, str)) else 8
    return sum(record.count_bytes() if isinstance(record, ArrayRecord) else sum(size(v) for v in record.values()) for record in content.values())


class _CountingGrid:
    """The grid as the workflow uses it: fedft's send-and-receive (a stop ends the wait), counting
    the bytes of every stage (keys, shares, masked vectors) and keeping the error replies."""

    def __init__(self, grid: Grid, stop: threading.Event | None) -> None:
        self._grid, self._stop = grid, stop
        self.bytes_down = self.bytes_up = 0
        self.errors: list[Message] = []

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        self.bytes_down += sum(_record_bytes(m.content) for m in messages)
        replies = send_and_receive(self._grid, messages, float(timeout or 0.0), self._stop)
        self.bytes_up += sum(_record_bytes(m.content) for m in replies if not m.has_error())
        self.errors += [m for m in replies if m.has_error()]
        return replies


class _Cohort(LegacyStrategy):
    """The legacy Strategy SecAggPlusWorkflow calls: this round's messages as FitIns, and the result kept."""

    def __init__(self, messages: list[Message], grid: Grid) -> None:
        self._instructions: list[tuple[ClientProxy, FitIns]] = []
        for m in messages:
            arrays = m.content.array_records[p.ARRAYS]
            config = {**dict(m.content.config_records[p.CONFIG]), ARRAY_KEYS: json.dumps(list(arrays.keys()))}
            self._instructions.append((GridClientProxy(m.metadata.dst_node_id, grid, run_id=0),  # run_id: only the proxy's own calls use it, the workflow makes none
                                       FitIns(compat.arrayrecord_to_parameters(arrays, keep_input=True), config)))  # type: ignore[arg-type]
        self.results: list[tuple[ClientProxy, FitRes]] | None = None  # set once the workflow unmasked the sum

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        return self._instructions

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]) -> tuple[Parameters | None, dict[str, Any]]:
        self.results = results  # every FitRes carries the same parameters: the unmasked weighted mean
        return (results[0][1].parameters if results else None), {}

    # never called by SecAggPlusWorkflow: fedft initialises, evaluates and records the run itself
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> list:
        return []

    def aggregate_evaluate(self, server_round: int, results: list, failures: list) -> tuple[float | None, dict[str, Any]]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Any]] | None:
        return None


def secaggplus_runner(params: SecAggPlusParams, max_weight: float) -> RoundRunner:
    """A `RoundParts.round_runner` that aggregates every round with Flower's SecAggPlusWorkflow.
    `max_weight`: the largest num-examples a client weighs with (Flower quantises num-examples / max_weight)."""
    workflow = SecAggPlusWorkflow(num_shares=params.flower_num_shares, reconstruction_threshold=params.reconstruction_threshold, max_weight=max_weight,
                                  clipping_range=params.clipping_range, quantization_range=params.quantization_range, timeout=params.timeout)

    def run(grid: Grid, arrays: ArrayRecord, server_round: int, settings: RoundSettings, parts: RoundParts, wire: Any,
            stop: threading.Event | None, on_replies: Callable[[], None] = lambda: None) -> tuple[ArrayRecord, dict[str, Any]]:
        t0 = time.perf_counter()
        client_of, sent = wire.client_of, select_arrays(arrays, parts.plan.sent)
        clients = settings.sample(server_round, frozenset(c for c in range(settings.num_clients) if c not in wire.node_of))
        messages = list(parts.strategy.configure_train(server_round, sent, wire.train_config, cast(Grid, SampledGrid(grid, [wire.node_of[c] for c in clients]))))
        counting = _CountingGrid(grid, stop)
        cohort = _Cohort(messages, grid)
        context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}), strategy=cohort)
        context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: server_round, Key.START_TIME: t0})
        context.state.array_records[MAIN_PARAMS_RECORD] = sent
        workflow(cast(Grid, counting), context)  # logs and returns early ("halted") when too few clients are left to unmask
        on_replies()
        results = cohort.results or []
        survivors = {proxy.node_id for proxy, _ in results}
        if counting.errors and parts.on_client_error is not None:
            parts.on_client_error(f"round {server_round}: {first_error(counting.errors, client_of)}")
        errored = {m.metadata.src_node_id for m in counting.errors} - survivors
        dropped = {m.metadata.src_node_id for m in counting.errors if is_dropout(m)} - survivors
        sampled = {m.metadata.dst_node_id for m in messages}
        log_round_failures(server_round, [m for m in messages if m.metadata.dst_node_id not in survivors], counting.errors, client_of)  # failed in a stage, or no reply in time
        if sampled - survivors:
            log.warning("round %d: SecAgg+ %s; clients %s dropped out", server_round, "unmasked the survivors' sum" if results else "halted, the round is skipped",
                        sorted(client_of.get(n, -1) for n in sampled - survivors))
        total = sum(fitres.num_examples for _, fitres in results)
        skipped = not results or len(results) < settings.min_replies
        if not skipped:
            mean = parameters_to_ndarrays(results[0][1].parameters)  # the weighted mean update, in `sent`'s order
            model = ArrayRecord({k: Array(np.asarray(sent[k].numpy(), np.float64) + u) for k, u in zip(sent.keys(), mean, strict=True)})
            reply = Message(RecordDict({p.ARRAYS: model, p.METRICS: MetricRecord({p.NUM_EXAMPLES: total})}), dst_node_id=0, message_type=MessageType.TRAIN)
            new_arrays, _ = parts.strategy.aggregate_train(server_round, [reply])
            if new_arrays is not None:
                arrays = merge_arrays(arrays, conform(new_arrays, wire.schema), parts.plan.sent)
            else:
                skipped = True
        evaluated = server_round % settings.evaluate_every == 0 or server_round == settings.rounds
        return arrays, {
            "round": server_round,
            **({"test_loss": None, "test_accuracy": None} if evaluated else {}),
            **{key: _weighted_mean(results, key) for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")},
            "clients_sampled": len(messages),
            "clients_replied": len(results),
            "clients_failed": len(errored - dropped),
            "clients_timed_out": len(sampled - survivors - errored),
            "clients_rejected": 0,
            "bytes_down": counting.bytes_down,
            "bytes_up": counting.bytes_up,
            "wall_seconds": time.perf_counter() - t0,
            "clients_dropped": len(dropped),
            "train_calls": len(messages),
            "round_skipped": int(skipped),
        }

    return run


def _weighted_mean(results: list[tuple[ClientProxy, FitRes]], key: str) -> float:
    pairs = [(float(fitres.num_examples), float(cast(float, fitres.metrics[key]))) for _, fitres in results if key in fitres.metrics]
    total = sum(w for w, _ in pairs)
    return sum(w * v for w, v in pairs) / total if total else float("nan")
