"""The ServerApp: Flower glue around the round loop.

`serve` does one run against any Grid (simulation or deployment). `make_server_app`
wraps it for `fedft run` and reports back through a `ServerOutcome`; the ServerApp
that `flwr run .` and deployments use is `fedft.deploy.flwr_app`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.fl.context import RunContext
from fedft.fl.server import text_metrics
from fedft.fl.server.evaluation import central_evaluator
from fedft.fl.server.loop import RoundCallback, RoundParts, RoundSettings, run_rounds, select_arrays
from fedft.fl.server.nodes import KnownNodesGrid, NodePartitions, engine_workers
from fedft.fl.server.policy import clocked_rounds
from fedft.fl.server.ranks import ClientRanks
from fedft.fl.server.secaggplus import SUMMARY as SECAGGPLUS_SUMMARY
from fedft.fl.server.secaggplus import secaggplus_runner
from fedft.fl.server.secaggplus_config import secaggplus_params
from fedft.ml.data import FederatedData
from fedft.ml.data.text import TextFederatedData
from fedft.ml.models import lora_active, model_options
from fedft.privacy.audit import run_mia
from fedft.privacy.central import central_noise_seed, wrap_strategy
from fedft.privacy.distributed import update_dimension, wrap_distributed
from fedft.privacy.one_run_audit import audit_canaries, audit_canary_users, record_audit
from fedft.privacy.tracker import privacy_tracker
from fedft.state.model_file import save_checkpoint
from fedft.state.run_checkpoint import CheckpointKeeper, RunCheckpoint, ServerState, restore_state
from fedft.state.run_folder import RunWriter
from strategies import RunFacts, build_strategy

log = logging.getLogger("fedft")


@dataclass
class ServerOutcome:
    """What the ServerApp thread hands back to the caller of `fedft run`."""

    started: bool = False  # `main` began (the engine started the ServerApp)
    done: threading.Event = field(default_factory=threading.Event)  # set when `main` ends, however it ends
    state: dict[str, torch.Tensor] | None = None  # the final global model, once every round is done
    first_client_error: str | None = None  # the first client failure, one line ("round 1: client 3 (node ..) failed: ...")
    error: str | None = None  # what `main` raised, one line

    def on_client_error(self, line: str) -> None:
        if self.first_client_error is None:
            self.first_client_error = line


def training_failure(rows: list[dict[str, Any]], first_client_error: str | None = None) -> str | None:
    """Why a run whose rounds all ran has still failed, or None: no client ever replied, or
    every round was skipped (the global model never changed). One line, with the first client error."""
    trained = [r for r in rows if r.get("round", 0) > 0]
    if not trained:
        return None
    if all(r.get("clients_replied", 0) == 0 for r in trained):
        reason = "every client failed in every round"
    elif all(r.get("round_skipped") for r in trained):
        reason = "every round was skipped (fewer usable updates than simulation.min_replies)"
    else:
        return None
    return f"{reason}; first client error: {first_client_error}" if first_client_error else reason


def example_caps(data: FederatedData, registered: dict[int, int] | None = None) -> tuple[int, ...]:
    """Each client's largest believable `num-examples`: the size the operator registered
    for it, else its partition's training-set size, which is what an honest client
    without its own data reports (fedft/fl/client/pipeline.py)."""
    return tuple((registered or {}).get(c, len(train)) for c, (train, _) in enumerate(data.clients))


def serve(grid: Grid, cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback, resume: RunCheckpoint | None = None, stop: threading.Event | None = None,
          binding: tuple[dict[int, int], dict[int, int]] | None = None, on_client_error: Callable[[str], None] | None = None) -> dict[str, torch.Tensor]:
    """Run all rounds (from a checkpoint when resuming), record and checkpoint each,
    save the final model; return its state. Central DP's noise follows `privacy.noise_source`:
    "os" entropy (the default; a deployment forces it) or "seeded" from (seed, round)
    (reproducible and resumable bit for bit, not private).
    `binding` (`fedft server --clients`): ({node id: partition id}, {partition id: registered num-examples cap}).
    `on_client_error` gets one line per round in which a client failed."""
    if cfg.privacy.mode == "distributed" and engine_workers(grid) is None:  # not fedft run's engine: a deployment
        raise FedftError("privacy.mode", "\"distributed\" simulates secure aggregation; deployed, the server would receive each client's share, "
                         "which carries only its 1/clients_per_round of the noise.",
                         "run it as a simulation (fedft run), or deploy with privacy.mode = \"none\" and deploy.secure_aggregation = true.")
    ctx = RunContext(cfg)  # data, model, plan and start state, derived once for the whole run
    dimension = update_dimension(tuple(ctx.start_state[k].shape) for k in ctx.plan.sent)  # distributed DP: the noise and bounds depend on it
    strategy = wrap_strategy(build_strategy(cfg.strategy.name, cfg.strategy.params(), RunFacts.from_config(cfg)), cfg, central_noise_seed(cfg))  # central DP wraps it
    strategy = wrap_distributed(strategy, cfg, dimension)  # so does distributed DP (simulated secure aggregation)
    evaluator = central_evaluator(ctx)
    privacy = privacy_tracker(cfg, dimension)
    data = ctx.data
    text = data if isinstance(data, TextFederatedData) else None  # next-character data: perplexity, baseline, vocabulary
    if text is not None:
        writer.extra.update(text_metrics.text_summary(text))
    sent = select_arrays(ArrayRecord(ctx.start_state), ctx.plan.sent)
    clock = clocked_rounds(cfg, [len(train) for train, _ in data.clients], {k: tuple(a.shape) for k, a in sent.items()}, sent.count_bytes())
    server_state = ServerState(strategy, privacy=privacy, devices=clock)
    start, arrays = 0, ArrayRecord(ctx.start_state)
    if resume is not None:
        start, arrays = resume.round, ArrayRecord(resume.arrays)
        restore_state(server_state, resume.state)
    keeper = CheckpointKeeper(writer.run_dir, cfg, server_state, writer.rows, resume.elapsed_seconds if resume else 0.0)
    round_runner = None
    if cfg.deploy.secure_aggregation:  # Flower's SecAgg+: the server learns only the weighted mean of the cohort's updates
        max_weight = cfg.deploy.secagg_max_weight or float(max(example_caps(data, binding[1] if binding else None)))
        round_runner = secaggplus_runner(secaggplus_params(cfg), max_weight)
        writer.extra.update(SECAGGPLUS_SUMMARY)

    def record(row: dict) -> None:
        writer.extra.update(privacy.summary())
        if clock is not None:
            writer.extra.update(clock.summary())
        if text is not None:
            text_metrics.with_perplexity(row)
        writer.record_round(row)
        on_round(row)

    try:
        parts = RoundParts(strategy, evaluator, privacy, ctx.plan, on_round=record, after_round=keeper.after_round,
                           client_states=server_state.clients if cfg.checkpoint.client_state else None, on_client_error=on_client_error,
                           client_ranks=ClientRanks(tuple(cfg.lora.ranks)) if lora_active(cfg.model, cfg.lora) and cfg.lora.ranks else None, clock=clock,
                           round_runner=round_runner)
        final = run_rounds(grid, arrays, RoundSettings.from_config(cfg, example_caps(data, binding[1] if binding else None)), parts,
                           start_round=start, stop=stop, bound_nodes=binding[0] if binding else None).to_torch_state_dict()
    except Exception:  # RunInterrupted (SIGINT/SIGTERM) or a failure: keep what is complete
        keeper.flush()  # the last completed round, if `checkpoint.every` had not written it yet
        raise
    save_checkpoint(
        writer.run_dir / "model.pt", final, architecture=cfg.model.name, num_classes=data.full.num_classes,
        input_shape=tuple(data.full.x.shape[1:]), dataset=cfg.data.name, config_json=cfg.to_json(),
        extra={"model_options": model_options(cfg.model, cfg.lora), **(text_metrics.checkpoint_extra(cfg, text) if text is not None else {})},  # the file alone rebuilds the model
    )
    if cfg.audit.mia:  # empirical leakage of the final model next to the theoretical ε
        writer.extra.update(run_mia(ctx.build_model(), final, data, cfg.audit.mia_samples, cfg.seed))
    a, audit_delta = cfg.audit, cfg.audit.delta or cfg.privacy.target_delta
    if a.canaries and data.canaries is not None:  # one-run ε lower bound beside ε (docs/audit.md)
        c = data.canaries
        record_audit(writer.extra, audit_canaries(ctx.build_model(), final, data.full.x[c.index], data.full.y[c.index], c.included,
                                                  a.guess_count(), audit_delta, a.confidence))
    if a.canary_users:  # user level: the canaries' alignment with how far the released arrays moved
        sent = select_arrays(ArrayRecord(ctx.start_state), ctx.plan.sent)
        movement = [final[k].double().numpy() - sent[k].numpy().astype(np.float64) for k in sent.keys()]
        record_audit(writer.extra, audit_canary_users(cfg.seed, a.canary_users, movement, a.guess_count(), audit_delta, a.confidence))
    return final


def make_server_app(cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback, outcome: ServerOutcome, resume: RunCheckpoint | None = None,
                    stop: threading.Event | None = None, node_partitions: NodePartitions | None = None) -> ServerApp:
    """A ServerApp for one in-process simulation; `outcome` says whether it started, when it
    ended and the final model, so the caller can wait for the ServerApp thread before summarising."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        outcome.started = True
        if node_partitions is not None:  # simulation: the engine's own node -> partition mapping
            grid = cast(Grid, KnownNodesGrid(grid, node_partitions))  # a Grid that also carries the mapping
        try:
            outcome.state = serve(grid, cfg, writer, on_round, resume, stop, on_client_error=outcome.on_client_error)
        except Exception as exc:
            outcome.error = exc.one_line() if isinstance(exc, FedftError) else " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise
        finally:
            outcome.done.set()

    return app
