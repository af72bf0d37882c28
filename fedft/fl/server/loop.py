"""The federated round loop: sample, send, aggregate, evaluate, record.

Flower's `Strategy.start` samples with the global `random` module and records
nothing about time or bytes; fedft runs the loop itself and uses the strategy
only for what it is for, `configure_train` and `aggregate_train`, handing it a
view of the grid that holds exactly the clients sampled for the round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedft.config import FedftConfig
from fedft.fl import protocol as p
from fedft.fl.packing import pack_size, packs_run
from fedft.fl.server.decompress import decode_replies
from fedft.fl.server.evaluation import Evaluator
from fedft.fl.server.exchange import check_stop, is_dropout, send_and_receive, send_packed
from fedft.fl.server.node_log import first_error, log_round_failures
from fedft.fl.server.nodes import engine_workers, identify_nodes
from fedft.fl.server.policy import RoundPolicy, rebase
from fedft.fl.server.ranks import ClientRanks, pad_replies, send_at_client_ranks
from fedft.fl.server.sampling import cyclic_sample_clients, poisson_sample_clients, sample_clients
from fedft.fl.server.validation import ArraySpec, UpdateBounds, bound_replies, conform, schema_of, screen_replies
from fedft.ml.finetune import FinetunePlan, frozen_digest
from fedft.privacy.tracker import PrivacyTracker
from fedft.state.client_records import ClientStateStore, state_bytes
from fedft.state.client_records import strip as strip_client_state

RoundCallback = Callable[[dict[str, Any]], None]
# (round, global state dict) as the round ends: snapshots what a checkpoint keeps; the
# callable it returns is called once the round's row is recorded (and may write the checkpoint)
AfterRound = Callable[[int, dict[str, Any]], Callable[[], None]]
# run_round's signature: (grid, arrays, round, settings, parts, wire, stop, on_replies=...) -> (new arrays, metrics row)
RoundRunner = Callable[..., tuple[ArrayRecord, dict[str, Any]]]


@dataclass(frozen=True)
class RoundSettings:
    """The plain values the loop reads from a run's config."""

    seed: int
    rounds: int
    num_clients: int
    clients_per_round: int
    round_timeout: float  # seconds to wait for a round's replies
    min_replies: int  # fewer usable updates: the round is skipped
    evaluate_every: int  # central evaluation every K-th round and the last
    config_json: str  # the run's config, sent with every train message
    bounds: UpdateBounds = UpdateBounds()  # num-examples caps and the update-norm bound
    min_clients: int = 0  # start once this many nodes gave valid partition ids (0 = all)
    poisson_sampling: bool = False  # each client joins with prob clients_per_round / num_clients (central DP)
    always_release: bool = False  # central DP: every round releases its noised aggregate, whatever arrived
    cyclic_sampling: bool = False  # central DP, privacy.client_sampling = "cyclic": fixed groups take turns
    secret_cohorts: bool = False  # Poisson cohorts from OS entropy (privacy.noise_source = "os"): whoever knows the seed cannot tell who joined
    clients_per_call: int = 1  # simulation: clients per worker call (fedft.fl.packing); 0 = auto
    packs: bool = False  # simulation: training messages are packed (decided once per run, fedft.fl.packing.packs_run)
    compression: str = "none"  # compression.kind: replies' `compressed` records are decoded against what was sent
    topk_fraction: float = 0.01

    @classmethod
    def from_config(cls, cfg: FedftConfig, example_caps: tuple[int, ...] = ()) -> RoundSettings:
        sim, st, central = cfg.simulation, cfg.strategy, cfg.privacy.mode == "central"
        user_dp = central or cfg.privacy.mode == "distributed"  # distributed: the clients clip, the server sees only the shares' sum
        # Central DP clips every update to clipping_norm, a bound that does not depend on the
        # other replies; a median-relative bound would (one user's data could get another's
        # update rejected), so under central DP the clipping is the only bound.
        bounds = UpdateBounds() if user_dp else UpdateBounds(st.max_update_norm, st.max_update_norm_median, st.update_norm_action,
                                                              example_caps if st.cap_num_examples else ())
        return cls(cfg.seed, sim.rounds, cfg.partition.num_clients, sim.clients_per_round, sim.round_timeout,
                   sim.min_replies, sim.evaluate_every, cfg.to_json(), bounds, sim.min_clients,
                   poisson_sampling=central and cfg.privacy.client_sampling == "poisson", always_release=user_dp,  # distributed: SecAgg's threshold decides
                   cyclic_sampling=central and cfg.privacy.client_sampling == "cyclic",
                   secret_cohorts=central and cfg.privacy.noise_source == "os",
                   clients_per_call=sim.clients_per_call,
                   packs=packs_run(sim.clients_per_round, sim.clients_per_call, cfg.faults.straggler_probability),
                   compression=cfg.compression.kind, topk_fraction=cfg.compression.topk_fraction)

    def sample(self, server_round: int, exclude: frozenset[int]) -> list[int]:
        """The round's cohort: Poisson at rate clients_per_round / num_clients, or exactly clients_per_round."""
        if self.poisson_sampling:
            seed = None if self.secret_cohorts else self.seed  # amplification by sampling holds only against who cannot replay the coins
            return poisson_sample_clients(seed, server_round, self.num_clients, self.clients_per_round / self.num_clients, exclude)
        if self.cyclic_sampling:
            return cyclic_sample_clients(self.seed, server_round, self.num_clients, self.clients_per_round, exclude)
        return sample_clients(self.seed, server_round, self.num_clients, self.clients_per_round, exclude=exclude)


@dataclass(frozen=True)
class RoundParts:
    """The objects a run's loop works with; the strategy, the tracker and the client-state
    store keep their own state across rounds (and a run checkpoint saves it)."""

    strategy: Strategy
    evaluator: Evaluator  # central test-set evaluation of a global state
    privacy: PrivacyTracker
    plan: FinetunePlan  # only `plan.sent` arrays travel (`finetune.mode`)
    on_round: RoundCallback  # each round's metrics row, round 0 (initial evaluation) included
    after_round: AfterRound | None = None  # (round, global state) as the round ends: checkpoints
    client_states: ClientStateStore | None = None  # None: client-state records in replies are dropped
    on_client_error: Callable[[str], None] | None = None  # one line per round in which a client failed: its first error
    client_ranks: ClientRanks | None = None  # lora.ranks: adapters cut to each client's rank and padded back
    clock: RoundPolicy | None = None  # devices.profiles: rounds planned on the virtual clock (fedft.fl.server.policy)
    round_runner: RoundRunner | None = None  # runs one round instead of `run_round`, same arguments and result (deploy.secure_aggregation: fedft.fl.server.secaggplus)


@dataclass(frozen=True)
class _Wire:
    """What every round sends and checks, fixed for the run."""

    train_config: ConfigRecord  # the config (and the frozen part's digest) in every train message
    schema: Any  # keys, shapes and dtypes of the global model's sent arrays (what the aggregate must match)
    expected_records: tuple[str, ...]  # the array records a reply must carry
    node_of: dict[int, int]  # client id -> node id
    client_of: dict[int, int]  # node id -> client id
    client_state_bytes: int = 2**20  # the most client-state bytes kept per client
    packed: bool = False  # training messages packed, several clients per call (in-process simulation only)
    workers: int = 1  # clients the engine runs at once (auto packing sizes its calls by it)
    client_states: ClientStateStore | None = None  # where client state lives between rounds when packed
    reply_schema: Any = None  # what every reply's arrays must match, when not `schema` (distributed DP: one share vector)


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
    metrics = [m.content.metric_records[p.METRICS] for m in replies]
    pairs = [(float(p.number(r, p.NUM_EXAMPLES)), float(p.number(r, key))) for r in metrics if key in r]
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


def run_rounds(grid: Grid, arrays: ArrayRecord, settings: RoundSettings, parts: RoundParts, *,
               start_round: int = 0, stop: threading.Event | None = None, bound_nodes: dict[int, int] | None = None) -> ArrayRecord:
    """Run rounds `start_round + 1 .. settings.rounds` from `arrays` (round 0, the initial
    evaluation, only when starting fresh); return the final global arrays.
    `stop` set (SIGINT/SIGTERM) raises RunInterrupted before any half-done round is recorded.
    `bound_nodes` ({node id: partition id}, deployment with `--clients`): each node's claim must match."""
    t0 = time.perf_counter()
    check_stop(stop)
    if start_round == 0:
        loss, acc = parts.evaluator(arrays.to_torch_state_dict())
    refused: dict[int, str] = {}  # nodes whose partition-id claim was malformed, out of range or duplicated
    node_of = identify_nodes(grid, settings.num_clients, settings.round_timeout, settings.config_json, stop, settings.min_clients, refused, bound_nodes)
    if start_round == 0:
        parts.on_round({"round": 0, "test_loss": loss, "test_accuracy": acc, "wall_seconds": time.perf_counter() - t0,
                        "clients_joined": len(node_of), "nodes_refused": len(refused)})
    plan = parts.plan
    workers = engine_workers(grid)  # None unless fedft run's in-process engine: there nodes are workers, not machines
    packed = settings.packs and workers is not None
    frozen = {} if plan.sends_everything else {p.FROZEN_DIGEST: frozen_digest(arrays.to_torch_state_dict(), plan)}
    wire = _Wire(
        train_config=ConfigRecord({p.CONFIG_JSON: settings.config_json, **frozen}),
        schema=schema_of(select_arrays(arrays, plan.sent)),
        expected_records=getattr(parts.strategy, "reply_array_records", (p.ARRAYS,)),
        reply_schema={k: ArraySpec(*spec) for k, spec in reply_arrays.items()} if (reply_arrays := getattr(parts.strategy, "reply_arrays", None)) else None,
        node_of=node_of,
        client_of={n: c for c, n in node_of.items()},
        client_state_bytes=2 * arrays.count_bytes() + 2**20,  # a model-sized variate (SCAFFOLD) twice, plus 1 MiB of bookkeeping
        packed=packed,
        workers=workers or 1,
        # packed: a client's state travels with its messages; the run's store (checkpointed) or, with
        # checkpoint.client_state off, one that lives as long as the run, as a node's Context would
        client_states=(ClientStateStore() if parts.client_states is None else parts.client_states) if packed else parts.client_states,
    )
    # Round r's central evaluation runs in its own thread while round r + 1 trains; its
    # row is recorded (and checkpointed, with the state snapshotted as round r ended) as
    # soon as round r + 1's replies are in, or when the loop ends or stops.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedft-evaluation") as evaluations:
        pending: list[_Unrecorded] = []

        def record_pending() -> None:
            while pending:
                pending.pop(0).record(parts)

        try:
            for server_round in range(start_round + 1, settings.rounds + 1):
                check_stop(stop)
                started = time.perf_counter()
                arrays, row = (parts.round_runner or run_round)(grid, arrays, server_round, settings, parts, wire, stop, on_replies=record_pending)
                state = arrays.to_torch_state_dict()
                commit = parts.after_round(server_round, state) if parts.after_round is not None else None
                test = evaluations.submit(_timed, parts.evaluator, state) if "test_loss" in row else None
                pending.append(_Unrecorded(row, started, time.perf_counter(), test, commit))
        finally:  # a stop or a failure keeps every round that ended
            record_pending()
    return arrays


@dataclass
class _Unrecorded:
    """A round that ended while its central evaluation still runs."""

    row: dict[str, Any]  # test_loss/test_accuracy None until the evaluation is in
    started: float  # perf_counter at the round's start: wall_seconds runs to the end of its evaluation
    ended: float  # perf_counter once the round aggregated: the end of a round not evaluated centrally
    test: Future | None  # (loss, accuracy, perf_counter at its end)
    commit: Callable[[], None] | None

    def record(self, parts: RoundParts) -> None:
        ended = self.ended
        if self.test is not None:
            self.row["test_loss"], self.row["test_accuracy"], ended = self.test.result()
        self.row["wall_seconds"] = ended - self.started  # not the recording time: that waits for the next round's replies
        parts.on_round(self.row)
        if self.commit is not None:
            self.commit()


def _timed(evaluator: Callable[[dict[str, Any]], tuple[float, float]], state: dict[str, Any]) -> tuple[float, float, float]:
    loss, accuracy = evaluator(state)
    return loss, accuracy, time.perf_counter()


def run_round(grid: Grid, arrays: ArrayRecord, server_round: int, settings: RoundSettings, parts: RoundParts, wire: _Wire,
              stop: threading.Event | None, on_replies: Callable[[], None] = lambda: None) -> tuple[ArrayRecord, dict[str, Any]]:
    """One round: sample, send, screen the replies, aggregate; (new arrays, metrics row).
    The row has test_loss/test_accuracy set to None when the round is centrally evaluated
    (the caller evaluates). `on_replies` runs as soon as the replies are in."""
    t0 = time.perf_counter()
    strategy, privacy, client_states, client_of, plan = parts.strategy, parts.privacy, wire.client_states, wire.client_of, parts.plan
    unavailable = frozenset(c for c in range(settings.num_clients) if c not in wire.node_of) | privacy.exclude
    sent = select_arrays(arrays, plan.sent)
    clock = parts.clock
    device_plan = clock.plan(server_round, unavailable, sent) if clock is not None else None
    clients = list(device_plan.accepted) if device_plan is not None else settings.sample(server_round, unavailable)  # devices: only updates that arrive in time are trained
    view = cast(Grid, SampledGrid(grid, [wire.node_of[c] for c in clients]))  # a Grid in all but name
    messages = list(strategy.configure_train(server_round, sent, wire.train_config, view))
    bases = clock.bases(device_plan) if clock is not None and device_plan is not None else {}  # fedbuff: who trains from an older version
    for m in messages:  # its own content: a strategy's messages share one RecordDict
        if (base := bases.get(client_of[m.metadata.dst_node_id])) is not None:
            m.content = RecordDict({**{k: m.content[k] for k in m.content.keys()}, p.ARRAYS: base})
    if parts.client_ranks is not None:
        send_at_client_ranks(messages, client_of, parts.client_ranks)
    privacy.begin_round(strategy)
    bytes_down = sum(p.payload_bytes(m.content) for m in messages)
    if device_plan is not None and messages:  # every selected (fedbuff: started) device downloaded the model, stragglers and failures too
        bytes_down = len(device_plan.selected) * p.payload_bytes(messages[0].content)
    if client_states is not None:
        client_states.attach(messages, client_of, every_client=wire.packed)
    if wire.packed:
        size = pack_size(len(messages), settings.clients_per_call, wire.workers)
        replies = send_packed(grid, messages, [client_of[m.metadata.dst_node_id] for m in messages], size, settings.round_timeout, stop)
    else:
        size, replies = 1, send_and_receive(grid, messages, settings.round_timeout, stop)
    on_replies()
    log_round_failures(server_round, messages, replies, client_of)  # which clients/nodes failed or timed out
    if parts.on_client_error is not None and (failed := [m for m in replies if m.has_error() and not is_dropout(m)]):
        parts.on_client_error(f"round {server_round}: {first_error(failed, client_of)}")
    replies.sort(key=lambda m: client_of.get(m.metadata.src_node_id, -1))  # deterministic aggregation order
    ok = [m for m in replies if not m.has_error()]
    bytes_up = sum(p.payload_bytes(m.content) + (0 if parts.client_states is None else state_bytes(m)) for m in ok)  # state: payload too (not when it travels only because of packing)
    if parts.client_ranks is not None:
        pad_replies(ok, client_of, parts.client_ranks)
    if client_states is not None:
        client_states.collect(ok, client_of, max_bytes=wire.client_state_bytes)
    else:
        strip_client_state(ok)
    dropped = sum(1 for m in replies if is_dropout(m))
    candidates, refused = privacy.split(ok, client_of)  # local DP: out-of-budget replies carry no update
    describe = lambda m: f"client {client_of.get(m.metadata.src_node_id, '?')} (node {m.metadata.src_node_id})"  # noqa: E731
    undecodable: list[tuple[Message, str]] = []
    sent_to = lambda m: bases.get(client_of.get(m.metadata.src_node_id, -1), sent)  # noqa: E731
    if settings.compression != "none":
        candidates, undecodable = decode_replies(candidates, sent_to, settings.compression, settings.topk_fraction, describe, server_round)
    accepted, rejected = screen_replies(candidates, wire.schema if wire.reply_schema is None else wire.reply_schema, wire.expected_records, describe, server_round)
    rejected += undecodable
    if clock is not None and device_plan is not None and bases:  # fedbuff: a report from an older version becomes current + weight x its update
        weights = clock.weights(device_plan)
        for m in accepted:
            if (c := client_of[m.metadata.src_node_id]) in bases:
                m.content[p.ARRAYS] = rebase(m.content.array_records[p.ARRAYS], bases[c], sent, weights.get(c, 1.0))
    accepted, too_large, bounded = bound_replies(accepted, sent, settings.bounds, client_of, describe, server_round)
    rejected += too_large
    # too few usable updates: keep the global model, record the round (central DP releases
    # every round: whether a round is released must not depend on what arrived)
    skipped = len(accepted) < settings.min_replies and not settings.always_release
    new_arrays, _ = (None, None) if skipped else strategy.aggregate_train(server_round, accepted + [m for m in replies if m.has_error()])
    privacy_columns = privacy.end_round(ok, client_of, refused, released=new_arrays is not None)
    if new_arrays is not None:
        arrays = merge_arrays(arrays, conform(new_arrays, wire.schema), plan.sent)
    if clock is not None:
        clock.after_round(select_arrays(arrays, plan.sent))
    evaluated = server_round % settings.evaluate_every == 0 or server_round == settings.rounds
    test: dict[str, Any] = {"test_loss": None, "test_accuracy": None} if evaluated else {}
    return arrays, {
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
        **bounded,  # clients_capped (num-examples), clients_clipped (update norm)
        "bytes_down": bytes_down,
        "bytes_up": bytes_up,
        "wall_seconds": time.perf_counter() - t0,
        "clients_dropped": dropped,
        "train_calls": -(-len(messages) // size),  # worker calls (messages) that carried the training: fewer than clients when packed
        "round_skipped": int(skipped),
        **privacy_columns,
        **(clock.columns(device_plan) if clock is not None and device_plan is not None else {}),
    }
