"""Image CNNs. No BatchNorm anywhere, so Opacus' per-sample gradients apply as is."""

from __future__ import annotations

import torch
from torch import nn

from fedft.ml.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}  # tanh: the tempered sigmoid of Papernot et al. 2021, which suits DP-SGD's clipped, noisy gradients


def _conv_block(conv: nn.Conv2d, activation: str, norm: str) -> list[nn.Module]:
    """conv [GroupNorm(8 groups)] activation: GroupNorm normalises within one example, so
    Opacus' per-sample gradients stay per-sample (BatchNorm mixes the batch and is refused)."""
    return [conv, *([nn.GroupNorm(8, conv.out_channels)] if norm == "group" else []), ACTIVATIONS[activation]()]


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class _ConvNet(nn.Module):
    """features -> hidden (dense + activation) -> head: the parts fine-tuning names
    (`finetune.mode = "head"`, last-K) and the checkpoints' keys."""

    def __init__(self, features: nn.Module, input_shape: tuple[int, ...], hidden: int, num_classes: int, activation: str) -> None:
        super().__init__()
        self.features = features
        self.hidden = nn.Sequential(nn.Linear(_flat_size(features, input_shape), hidden), ACTIVATIONS[activation]())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(x)))


class SeedCNN(_ConvNet):
    """The Keras MNIST example: conv32-pool-conv64-pool-conv64-dense64-dense10 (93,322 params on 28x28).
    `activation`, `norm`: see `_conv_block` (the defaults are the Keras model)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> None:
        features = nn.Sequential(
            *_conv_block(nn.Conv2d(input_shape[0], 32, 3), activation, norm), nn.MaxPool2d(2),
            *_conv_block(nn.Conv2d(32, 64, 3), activation, norm), nn.MaxPool2d(2),
            *_conv_block(nn.Conv2d(64, 64, 3), activation, norm),
            nn.Flatten(),
        )
        super().__init__(features, input_shape, 64, num_classes, activation)


class FedAvgCNN(_ConvNet):
    """McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
    Decentralized Data": two 5x5 convs (32, 64) each with 2x2 max pooling, 512 dense,
    softmax output (1,663,370 params on 28x28; the softmax lives in the loss). `activation`, `norm`: see `_conv_block`."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> None:
        features = nn.Sequential(
            *_conv_block(nn.Conv2d(input_shape[0], 32, 5, padding=2), activation, norm), nn.MaxPool2d(2),
            *_conv_block(nn.Conv2d(32, 64, 5, padding=2), activation, norm), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        super().__init__(features, input_shape, 512, num_classes, activation)


class DPCNN(_ConvNet):
    """The small CNN of the DP-SGD literature (Papernot et al. 2021, "Tempered Sigmoid Activations
    for Deep Learning with Differential Privacy"; Tramèr & Boneh 2021): conv16 8x8 stride 2 -
    maxpool 2 stride 1 - conv32 4x4 stride 2 - maxpool 2 stride 1 - dense32 - dense10 (26,010
    params on 28x28). Few parameters (less noise in total) and strided convolutions (cheap per-sample
    gradients): a DP-SGD round costs about half of seed_cnn's on a CPU (benchmarks/dp_cost.py). Papernot et al. use tanh
    (`activation = "tanh"`); `norm`: see `_conv_block`."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> None:
        features = nn.Sequential(
            *_conv_block(nn.Conv2d(input_shape[0], 16, 8, stride=2, padding=3), activation, norm), nn.MaxPool2d(2, 1),
            *_conv_block(nn.Conv2d(16, 32, 4, stride=2), activation, norm), nn.MaxPool2d(2, 1),
            nn.Flatten(),
        )
        super().__init__(features, input_shape, 32, num_classes, activation)


@register_model("seed_cnn")
def seed_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> nn.Module:
    return SeedCNN(input_shape, num_classes, activation, norm)


@register_model("fedavg_cnn")
def fedavg_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> nn.Module:
    return FedAvgCNN(input_shape, num_classes, activation, norm)


@register_model("dp_cnn")
def dp_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, activation: str = "relu", norm: str = "none") -> nn.Module:
    return DPCNN(input_shape, num_classes, activation, norm)
