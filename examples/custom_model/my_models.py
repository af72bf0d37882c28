"""Your own model, data and strategy for fedft, in a module of your own.

Two ways to hand them to fedft (custom.toml uses both):
- register them by name in a module listed in the config's `[plugins] modules`
  (here the model "tiny_mlp"): every process, Ray workers included, imports that module;
- or name them by import path, `module:function` (here the dataset and the strategy).
Either way this file must be importable where the run starts: run from this folder,
or put it on PYTHONPATH (Ray workers get the driver's sys.path).
"""

from __future__ import annotations

import math

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

from fedft.ml.data import ArrayDataset
from fedft.ml.models import register_model


@register_model("tiny_mlp")
def tiny_mlp(input_shape: tuple[int, ...], num_classes: int, hidden_size: int = 32) -> nn.Module:
    """A model builder takes the input shape and the class count (and any ModelConfig size it names)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_classes))


def blobs(path: str) -> ArrayDataset:
    """A dataset loader takes `data.path` ("" = its default) and returns the whole labelled set:
    here 4 Gaussian blobs in 16 dimensions, shaped like 1x4x4 images, the same in every process."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 2.0, size=(4, 16))
    y = rng.integers(0, 4, size=800)
    x = (centers[y] + rng.normal(0.0, 1.0, size=(800, 16))).astype(np.float32).reshape(-1, 1, 4, 4)
    return ArrayDataset("blobs", x, y.astype(np.int64), num_classes=4)


class ServerStepFedAvg(FedAvg):
    """FedAvg with a server step size: global <- global + server_lr * (client mean - global).
    A strategy is a Flower `Strategy` factory; its own keyword arguments are set in [strategy]
    (type-checked from the defaults), and fedft passes Flower's sampling knobs through **kwargs."""

    def __init__(self, server_lr: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr
        self._global: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        self._global = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: list[Message]):
        mean, metrics = super().aggregate_train(server_round, replies)
        if mean is None or self._global is None:
            return mean, metrics
        old = {k: v.numpy() for k, v in self._global.items()}
        return ArrayRecord({k: Array(old[k] + self.server_lr * (mean[k].numpy() - old[k])) for k in old}), metrics
