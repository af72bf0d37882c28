"""A recurrent image classifier: reads the image row by row."""

from __future__ import annotations

import torch
from torch import nn

from fedft.ml.models.registry import register_model


class SeedRNN(nn.Module):
    """Elman RNN over rows: h_t = tanh(W x_t + U h_{t-1} + b), classify from h_T.

    A 28x28 image is 28 steps of 28 features. `nn.RNN` is swapped for fedft's
    `FastDPRNN` (same parameter names; fedft.ml.models.dp_rnn) when DP-SGD needs
    per-sample gradients.
    """

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, hidden_size: int = 128) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.rnn = nn.RNN(input_size=channels * width, hidden_size=hidden_size, nonlinearity="tanh", batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(batch, height, channels * width)
        out, _ = self.rnn(rows)
        return self.head(out[:, -1])


@register_model("seed_rnn")
def seed_rnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    return SeedRNN(input_shape, num_classes)
