"""How a client trains: plain SGD or DP-SGD, two trainers behind one signature.

Everything around training is the same for both and lives in the one client
pipeline (`fedft.fl.client.pipeline`): merge the received arrays, validate, flip
labels or poison the update under `[attack]`, reply. A trainer gets a model that
holds the round's start state and the examples to train on, and returns the
trained arrays that travel (`plan.sent`) plus its own reply metrics. Every
training option (fine-tuning plan, `finetune.body_lr_scale`, FedProx and SCAFFOLD
corrections) means the same in both. The run's config picks the trainer once
(`trainer_for`).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
from flwr.app import RecordDict
from torch import nn

from fedft.fl.client.corrections import attach_gradient_corrections
from fedft.fl.context import RunContext
from fedft.ml.finetune import freeze, param_groups
from fedft.ml.models import model_key
from fedft.ml.training import TrainResult, make_optimizer, seed_generator, seeded_global_rng, train
from fedft.privacy.accounting import History, compose, dp_sgd_sample_rate, dp_sgd_steps_per_epoch, epsilon, total_steps
from fedft.privacy.client_policy import ClientPolicy, round_refusal
from fedft.privacy.dp_sgd import (
    BUDGET_SPENT,
    DP_STEPS,
    EPSILON,
    NOISE_MULTIPLIER,
    POLICY_REFUSED,
    SAMPLE_RATE,
    client_noise_multiplier,
    dp_train,
    plain_state,
    worker_dp_model,
)
from fedft.privacy.history import load_history, save_history

DROPOUT_STREAM = 0xD0  # the global generator's seed part (dropout), apart from batches and DP noise
log = logging.getLogger("fedft")


@dataclass(frozen=True)
class LocalRound:
    """One client's round as a trainer sees it."""

    client_id: int
    server_round: int
    device: torch.device
    num_classes: int
    proximal_mu: float = 0.0  # FedProx
    gradient_offset: dict[str, torch.Tensor] | None = None  # SCAFFOLD's c - c_i


@dataclass(frozen=True)
class Trained:
    state: dict[str, torch.Tensor]  # the trained `plan.sent` arrays, on the CPU, in the plan's order
    result: TrainResult
    metrics: dict[str, float]  # the trainer's own reply metrics (local DP: ε, steps, σ, q)


class Trainer(Protocol):
    def refusal(self, job: LocalRound, num_examples: int) -> dict[str, float] | None:
        """The reply metrics of a round this client must not train (local DP: its budget
        is spent), or None to train. Asked before anything else is done."""

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, job: LocalRound) -> Trained:
        """Train from the state `model` holds on (x, y)."""


class PlainTrainer:
    """Seeded mini-batch SGD/Adam (`fedft.ml.training.train`) on the model itself."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def refusal(self, job: LocalRound, num_examples: int) -> dict[str, float] | None:
        return None

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, job: LocalRound) -> Trained:
        cfg, plan = self.ctx.cfg, self.ctx.plan
        t = cfg.train
        freeze(model, plan)
        optimizer = make_optimizer(t.optimizer, param_groups(model, plan, t.lr, cfg.finetune.body_lr_scale), t.lr, t.momentum, t.weight_decay)
        corrections = attach_gradient_corrections(optimizer, model, proximal_mu=job.proximal_mu, gradient_offset=job.gradient_offset)
        with seeded_global_rng(job.device, cfg.seed, job.server_round, job.client_id, DROPOUT_STREAM):
            result = train(model, x, y, epochs=t.local_epochs, batch_size=t.batch_size, optimizer=optimizer,
                           generator=seed_generator(cfg.seed, job.server_round, job.client_id), device=job.device)
        if corrections is not None:
            corrections.remove()
        state = model.state_dict()
        return Trained({k: state[k].detach().cpu().clone() for k in plan.sent}, result, {})  # the model is reused


@dataclass(frozen=True)
class _Budget:
    noise_multiplier: float
    sample_rate: float
    steps: int  # DP-SGD steps this round
    history: History  # the accountant's history before this round


class DPTrainer:
    """DP-SGD (`fedft.privacy.dp_sgd.dp_train`) on this worker's Opacus twin of the
    model, within the client's budget: the accountant history lives in the node's
    state between rounds (`fedft.privacy.history`). An empty shard has nothing to
    train on and nothing to account: it gets the plain trainer's (empty) round.

    A deployed node (`policy` given, `fedft.privacy.client_policy`) keeps its history
    only in its own folder, never in `Context.state` (which a server can write), draws
    its noise from OS entropy whatever `privacy.noise_source` says, and refuses rounds
    its policy does not allow."""

    def __init__(self, ctx: RunContext, node_state: RecordDict, policy: ClientPolicy | None = None) -> None:
        self.ctx, self.policy = ctx, policy
        pc = ctx.cfg.privacy
        # deployed: the node's own folder is the only place the history lives (a throwaway RecordDict stands for Context.state)
        self.node_state, self.state_dir = (RecordDict(), policy.state_dir) if policy is not None else (node_state, pc.state_dir)
        self.os_noise = policy is not None or pc.noise_source == "os"
        self.plain = PlainTrainer(ctx)

    def _budget(self, client_id: int, n: int) -> _Budget:
        cfg = self.ctx.cfg
        pc, t, sim = cfg.privacy, cfg.train, cfg.simulation
        sigma = client_noise_multiplier(pc.noise_multiplier, pc.target_epsilon, pc.target_delta, pc.accountant, n, t.batch_size,
                                        t.local_epochs, sim.rounds, cfg.reports_per_round(), cfg.partition.num_clients)
        return _Budget(sigma, dp_sgd_sample_rate(n, t.batch_size), t.local_epochs * dp_sgd_steps_per_epoch(n, t.batch_size),
                       load_history(self.node_state, self.state_dir, client_id))

    def refusal(self, job: LocalRound, num_examples: int) -> dict[str, float] | None:
        pc = self.ctx.cfg.privacy
        if num_examples == 0 or (pc.target_epsilon is None and self.policy is None):
            return None
        b = self._budget(job.client_id, num_examples)
        reason = round_refusal(self.policy, b.noise_multiplier, pc.target_delta, b.history, b.sample_rate, b.steps)
        if reason is None and (pc.target_epsilon is None or epsilon(compose(b.history, b.noise_multiplier, b.sample_rate, b.steps),
                                                                      pc.target_delta, pc.accountant) <= pc.target_epsilon):
            return None
        if reason is not None:
            log.warning("client %s, round %s: refused: %s", job.client_id, job.server_round, reason)
        return {"num-examples": 0.0, BUDGET_SPENT: 1.0, POLICY_REFUSED: float(reason is not None), EPSILON: epsilon(b.history, pc.target_delta, pc.accountant),
                DP_STEPS: float(total_steps(b.history)), NOISE_MULTIPLIER: b.noise_multiplier, SAMPLE_RATE: b.sample_rate}

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, job: LocalRound) -> Trained:
        if len(y) == 0:
            return self.plain.train(model, x, y, job)
        cfg, plan = self.ctx.cfg, self.ctx.plan
        pc, t = cfg.privacy, cfg.train
        b = self._budget(job.client_id, len(y))
        dp_model = worker_dp_model(model_key(cfg.model, cfg.lora, self.ctx.client_rank(job.client_id)), tuple(x.shape[1:]), job.num_classes)
        dp_model.load_state_dict(model.state_dict())
        freeze(dp_model, plan)  # frozen parameters get no per-sample gradients and no noise
        # Opacus noises the parameters in the optimizer's order: keep the model's order in one group unless the body's lr differs
        scale = cfg.finetune.body_lr_scale
        params = [q for q in dp_model.parameters() if q.requires_grad] if scale == 1.0 else param_groups(dp_model, plan, t.lr, scale)
        optimizer = make_optimizer(t.optimizer, params, t.lr, t.momentum, t.weight_decay)
        # FedProx / SCAFFOLD corrections hook the inner optimizer's step, which Opacus'
        # DPOptimizer calls after clipping and noising: they are never clipped away.
        corrections = attach_gradient_corrections(optimizer, dp_model, proximal_mu=job.proximal_mu, gradient_offset=job.gradient_offset)
        dropout_rng = nullcontext() if self.os_noise else seeded_global_rng(job.device, cfg.seed, job.server_round, job.client_id, DROPOUT_STREAM)
        with dropout_rng:
            out = dp_train(dp_model, x, y, epochs=t.local_epochs, batch_size=t.batch_size, optimizer=optimizer,
                           noise_multiplier=b.noise_multiplier, max_grad_norm=pc.max_grad_norm, history=b.history, accountant=pc.accountant,
                           seed_parts=None if self.os_noise else (cfg.seed, job.server_round, job.client_id), device=job.device)
        if corrections is not None:
            corrections.remove()
        save_history(self.node_state, self.state_dir, job.client_id, out.history)
        metrics = {
            BUDGET_SPENT: 0.0,
            EPSILON: epsilon(out.history, pc.target_delta, pc.accountant),
            DP_STEPS: float(total_steps(out.history)),
            NOISE_MULTIPLIER: b.noise_multiplier,
            SAMPLE_RATE: b.sample_rate,
        }
        return Trained(plain_state(dp_model, list(plan.sent)), out.train, metrics)


def trainer_for(ctx: RunContext, node_state: RecordDict | None = None, policy: ClientPolicy | None = None) -> Trainer:
    """DP-SGD under `privacy.mode = "local"`, plain training otherwise. `node_state`
    (the node's Flower `Context.state`) keeps the DP accountant's history in a
    simulation; a deployed node's `policy` says where its own history lives."""
    if ctx.cfg.privacy.mode == "local":
        return DPTrainer(ctx, RecordDict() if node_state is None else node_state, policy)
    return PlainTrainer(ctx)
