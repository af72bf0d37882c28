"""Central evaluation of the global model on the server-side test set."""

from __future__ import annotations

from typing import Callable

import torch

from fedft.config import FedftConfig
from fedft.ml.data import federated_data_for
from fedft.ml.models import build_model, model_options
from fedft.ml.training import evaluate, resolve_device

Evaluator = Callable[[dict[str, torch.Tensor]], tuple[float, float]]


def central_evaluator(cfg: FedftConfig) -> Evaluator:
    """Build the model and test tensors once; each call loads arrays and evaluates."""
    test = federated_data_for(cfg).test_set
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    model = build_model(cfg.model.name, tuple(x.shape[1:]), test.num_classes, **model_options(cfg.model))
    device = resolve_device(cfg.simulation.device)

    def run(state: dict[str, torch.Tensor]) -> tuple[float, float]:
        model.load_state_dict(state)
        return evaluate(model, x, y, device)

    return run


def initial_state(cfg: FedftConfig) -> dict[str, torch.Tensor]:
    """The round-0 global model, seeded by `cfg.seed` without touching global RNG state."""
    data = federated_data_for(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model.name, tuple(data.full.x.shape[1:]), data.full.num_classes, **model_options(cfg.model))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
