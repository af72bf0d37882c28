"""One client's work for one round, as a plain function of plain inputs.

One pipeline for every client: merge the received arrays -> evaluate on the local
validation split -> poison the labels (`[attack]` label_flip) -> train (plain or
DP-SGD, `fedft.fl.client.trainers`) -> poison the update (the other attacks) ->
reply. `local_update` is what the ClientApp runs; it is independent of Flower so it
can be tested, benchmarked and reused by the deployment client unchanged.
"""

from __future__ import annotations

import torch
from flwr.app import RecordDict

from fedft.fl.client.attack import attack_generator, attack_update, flip_labels, is_attacker
from fedft.fl.client.trainers import LocalRound, Trainer, trainer_for
from fedft.fl.context import ClientTensors, run_context
from fedft.ml.training import evaluate, resolve_device
from fedft.privacy.client_policy import ClientPolicy

PRIVATE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # computed on the client's private data


def clear_metrics_allowed(mode: str, client_metrics: str) -> bool:
    """Whether a client may send metrics computed on its private data: not under local or
    central DP unless `privacy.client_metrics = "clear"` (they are outside ε)."""
    return mode == "none" or client_metrics == "clear"


def count_withheld(mode: str, client_metrics: str) -> bool:
    """Whether replies carry num-examples = 1 instead of the true count: under DP with
    `privacy.client_metrics = "none"` (the count is a function of private data, outside ε)."""
    return mode != "none" and client_metrics == "none"


def local_update(
    config_json: str,
    client_id: int,
    server_round: int,
    global_state: dict[str, torch.Tensor],
    data: ClientTensors | None = None,
    *,
    node_state: RecordDict | None = None,
    proximal_mu: float = 0.0,
    gradient_offset: dict[str, torch.Tensor] | None = None,
    frozen_digest: str = "",
    trainer: Trainer | None = None,
    policy: ClientPolicy | None = None,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, float]]:
    """Evaluate the received global model on the local validation split, then train
    it locally; return the new state and metrics (`num-examples` weights the mean),
    or no state when the trainer refuses the round (local DP: the budget is spent).

    `data` (a deployed node's own tensors, see `fedft.fl.client.node_data`) replaces the
    partition. `node_state` (the node's Flower `Context.state`) keeps the local DP
    accountant's history between rounds. `proximal_mu` (FedProx) and `gradient_offset`
    (SCAFFOLD's c - c_i) correct every local gradient (fedft.fl.client.corrections); a
    client picked by `[attack]` poisons its labels or its update (fedft.fl.client.attack).
    With `finetune.mode` other than full, `global_state` and the returned state hold only
    the trainable arrays; the frozen rest comes from the client's own start state.
    `trainer` replaces the one the config picks (benchmarks compare them). `policy`:
    a deployed node's own privacy policy (`fedft.privacy.client_policy`). Under local
    or central DP the train/val metrics are left out of the reply unless
    `privacy.client_metrics` is "clear" ("none": num-examples is sent as 1)."""
    ctx = run_context(config_json)
    cfg = ctx.cfg
    torch.set_num_threads(max(1, int(cfg.simulation.client_resources.num_cpus)))
    x_tr, y_tr, x_val, y_val, num_classes = data or ctx.client_tensors(client_id)
    job = LocalRound(client_id, server_round, resolve_device(cfg.simulation.device), num_classes, proximal_mu, gradient_offset)
    trainer = trainer or trainer_for(ctx, node_state, policy)
    refused = trainer.refusal(job, len(y_tr))
    if refused is not None:
        return None, refused
    model = ctx.worker_model(tuple(x_tr.shape[1:]), num_classes, ctx.client_rank(client_id))  # lora.ranks: this client's rank
    model.load_state_dict(ctx.merge_received(global_state, frozen_digest))
    val_loss, val_acc = evaluate(model, x_val, y_val, job.device)
    attacker = is_attacker(cfg.attack, client_id, cfg.partition.num_clients)
    if attacker and cfg.attack.kind == "label_flip":
        y_tr = flip_labels(y_tr, num_classes)
    trained = trainer.train(model, x_tr, y_tr, job)
    result = trained.result
    metrics = {
        "num-examples": float(result.num_examples),
        "train_loss": result.loss,
        "train_accuracy": result.accuracy,
        "steps": float(result.steps),
        **trained.metrics,
    }
    if len(y_val):
        metrics.update(val_loss=val_loss, val_accuracy=val_acc)
    if not clear_metrics_allowed(cfg.privacy.mode, cfg.privacy.client_metrics):
        metrics = {k: v for k, v in metrics.items() if k not in PRIVATE_METRICS}
    if count_withheld(cfg.privacy.mode, cfg.privacy.client_metrics):
        metrics["num-examples"] = 1.0
    state = trained.state
    if attacker:
        a = cfg.attack
        state = attack_update(a.kind, global_state, state, scale=a.scale, noise_std=a.noise_std, generator=attack_generator(a.seed, server_round, client_id))
        if a.num_examples > 0:  # a weight the server should not believe (strategy.cap_num_examples)
            metrics["num-examples"] = a.num_examples
    return state, metrics


def local_evaluate(config_json: str, client_id: int, global_state: dict[str, torch.Tensor], data: ClientTensors | None = None) -> dict[str, float]:
    ctx = run_context(config_json)
    _, _, x_val, y_val, num_classes = data or ctx.client_tensors(client_id)
    model = ctx.build_model(tuple(x_val.shape[1:]), num_classes)
    model.load_state_dict(ctx.merge_received(global_state))
    loss, acc = evaluate(model, x_val, y_val, resolve_device(ctx.cfg.simulation.device))
    count = 1.0 if count_withheld(ctx.cfg.privacy.mode, ctx.cfg.privacy.client_metrics) else float(len(y_val))
    if not clear_metrics_allowed(ctx.cfg.privacy.mode, ctx.cfg.privacy.client_metrics):
        return {"num-examples": count}
    return {"num-examples": float(len(y_val)), "val_loss": loss, "val_accuracy": acc}
