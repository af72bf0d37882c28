"""One client's work for one round, as a plain function of plain inputs.

`local_update` is what the ClientApp runs; it is independent of Flower so it can
be tested, benchmarked and reused by the deployment client unchanged.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from fedft.fl.client.attack import attack_generator, attack_update, flip_labels, is_attacker
from fedft.fl.client.corrections import attach_gradient_corrections
from fedft.config import FedftConfig
from fedft.ml.data import federated_data_for
from fedft.ml.finetune import client_start, freeze, merge_received, param_groups
from fedft.ml.models import build_model, model_options
from fedft.ml.training import TrainResult, evaluate, make_optimizer, resolve_device, seed_generator, train


@lru_cache(maxsize=8)
def parse_config(text: str) -> FedftConfig:
    return FedftConfig.from_json(text)


@lru_cache(maxsize=256)
def client_tensors(config_json: str, client_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x_train, y_train, x_val, y_val, num_classes) for one client, cached per worker."""
    cfg = parse_config(config_json)
    data = federated_data_for(cfg)
    if not 0 <= client_id < len(data.clients):
        raise ValueError(f"partition-id {client_id} is outside 0..{len(data.clients) - 1}")
    train_set, val_set = data.client_sets(client_id)
    as_t = torch.from_numpy
    return as_t(train_set.x), as_t(train_set.y), as_t(val_set.x), as_t(val_set.y), data.full.num_classes


@lru_cache(maxsize=4)
def _worker_model(name: str, input_shape: tuple, num_classes: int, options: tuple) -> torch.nn.Module:
    return build_model(name, input_shape, num_classes, **dict(options))


def model_key(cfg: FedftConfig) -> tuple[str, tuple]:
    """(model name, sorted size options): what a worker's cached model objects are keyed by."""
    return cfg.model.name, tuple(sorted(model_options(cfg.model).items()))


def worker_model(cfg: FedftConfig, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """This worker's model object, built once and reused: every call loads the global
    state into it (all parameters and buffers) and makes a fresh optimizer, so reuse
    changes no result; building seed_cnn costs about a third of a small client's round."""
    name, options = model_key(cfg)
    return _worker_model(name, input_shape, num_classes, options)


def local_update(
    config_json: str,
    client_id: int,
    server_round: int,
    global_state: dict[str, torch.Tensor],
    data: tuple | None = None,
    proximal_mu: float = 0.0,
    gradient_offset: dict[str, torch.Tensor] | None = None,
    frozen_digest: str = "",
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Evaluate the received global model on the local validation split, then train
    it locally; return the new state and metrics (`num-examples` weights the mean).

    `data` (a deployed node's own tensors, see `fedft.fl.client.node_data`) replaces the
    partition. `proximal_mu` (FedProx) and `gradient_offset` (SCAFFOLD's c - c_i)
    correct every local gradient (fedft.fl.client.corrections); a client picked by
    `[attack]` poisons its labels or its update (fedft.fl.client.attack). With `finetune.mode` other than full, `global_state`
    and the returned state hold only the trainable arrays; the frozen rest comes from
    the client's own start state."""
    cfg = parse_config(config_json)
    torch.set_num_threads(max(1, int(cfg.simulation.client_resources.num_cpus)))
    x_tr, y_tr, x_val, y_val, num_classes = data or client_tensors(config_json, client_id)
    device = resolve_device(cfg.simulation.device)
    model = worker_model(cfg, tuple(x_tr.shape[1:]), num_classes)
    model.load_state_dict(merge_received(config_json, global_state, frozen_digest))
    val_loss, val_acc = evaluate(model, x_val, y_val, device)
    attacker = is_attacker(cfg.attack, client_id, cfg.partition.num_clients)
    if attacker and cfg.attack.kind == "label_flip":
        y_tr = flip_labels(y_tr, num_classes)
    t = cfg.train
    plan = client_start(config_json)[0]
    freeze(model, plan)
    optimizer = make_optimizer(t.optimizer, param_groups(model, plan, t.lr, cfg.finetune.body_lr_scale), t.lr, t.momentum, t.weight_decay)
    corrections = attach_gradient_corrections(optimizer, model, proximal_mu=proximal_mu, gradient_offset=gradient_offset)
    result: TrainResult = train(
        model, x_tr, y_tr,
        epochs=t.local_epochs, batch_size=t.batch_size, optimizer=optimizer,
        generator=seed_generator(cfg.seed, server_round, client_id), device=device,
    )
    if corrections is not None:
        corrections.remove()
    metrics = {
        "num-examples": float(result.num_examples),
        "train_loss": result.loss,
        "train_accuracy": result.accuracy,
        "steps": float(result.steps),
    }
    if len(y_val):
        metrics.update(val_loss=val_loss, val_accuracy=val_acc)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in plan.sent}  # the model is reused
    if attacker:
        a = cfg.attack
        state = attack_update(a.kind, global_state, state, scale=a.scale, noise_std=a.noise_std, generator=attack_generator(a.seed, server_round, client_id))
    return state, metrics


def local_evaluate(config_json: str, client_id: int, global_state: dict[str, torch.Tensor], data: tuple | None = None) -> dict[str, float]:
    cfg = parse_config(config_json)
    _, _, x_val, y_val, num_classes = data or client_tensors(config_json, client_id)
    model = build_model(cfg.model.name, tuple(x_val.shape[1:]), num_classes, **model_options(cfg.model))
    model.load_state_dict(merge_received(config_json, global_state))
    loss, acc = evaluate(model, x_val, y_val, resolve_device(cfg.simulation.device))
    return {"num-examples": float(len(y_val)), "val_loss": loss, "val_accuracy": acc}
