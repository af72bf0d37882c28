"""A model small enough for the audit tests that train thousands of DP-SGD steps in-process."""

import math

from torch import nn


def tiny_mlp(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    """Flatten, 32 hidden ReLU units, the classes (25,450 parameters on 28x28)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, num_classes))
