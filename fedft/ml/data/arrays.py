"""A whole labelled dataset as arrays in memory: what every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayDataset:
    """Features `x` (float32, N x C x H x W or N x T x F) and integer labels `y`."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.name, self.x[idx], self.y[idx], self.num_classes)
