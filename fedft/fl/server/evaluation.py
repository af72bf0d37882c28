"""Central evaluation of the global model on the server-side test set."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedft.fl.context import RunContext
from fedft.ml.training import evaluate, resolve_device

Evaluator = Callable[[dict[str, torch.Tensor]], tuple[float, float]]


def central_evaluator(ctx: RunContext) -> Evaluator:
    """Build the model and test tensors once; each call loads arrays and evaluates."""
    test = ctx.data.test_set
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    model = ctx.build_model(tuple(x.shape[1:]), test.num_classes)
    device = resolve_device(ctx.cfg.simulation.device)

    def run(state: dict[str, torch.Tensor]) -> tuple[float, float]:
        model.load_state_dict(state)
        return evaluate(model, x, y, device)

    return run
