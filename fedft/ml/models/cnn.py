"""Image CNNs. No BatchNorm anywhere, so Opacus' per-sample gradients apply as is."""

from __future__ import annotations

import torch
from torch import nn

from fedft.ml.models.registry import register_model


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class SeedCNN(nn.Module):
    """The Keras MNIST example: conv32-pool-conv64-pool-conv64-dense64-dense10 (93,322 params on 28x28)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(_flat_size(self.features, input_shape), 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(x)))


class FedAvgCNN(nn.Module):
    """McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
    Decentralized Data": two 5x5 convs (32, 64) each with 2x2 max pooling, 512 dense,
    softmax output (1,663,370 params on 28x28; the softmax lives in the loss)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(_flat_size(self.features, input_shape), 512), nn.ReLU())
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(x)))


@register_model("seed_cnn")
def seed_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    return SeedCNN(input_shape, num_classes)


@register_model("fedavg_cnn")
def fedavg_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    return FedAvgCNN(input_shape, num_classes)
