"""A whole labelled dataset as arrays in memory: what every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class Pixels:
    """8-bit images that read as float32 `pixel / divisor`.

    A quarter of the memory of the float32 array they stand for, with the same values:
    indexing converts only the rows asked for, with numpy's float32 division, exactly as
    `np.asarray(raw, dtype=np.float32) / divisor` would. Fashion-MNIST's 70,000 images
    are 55 MB instead of 220 MB in every process that loads or inherits the pool
    (benchmarks/README.md, section 17)."""

    def __init__(self, raw: np.ndarray, divisor: float) -> None:
        if raw.dtype != np.uint8:
            raise TypeError(f"Pixels holds uint8 images, not {raw.dtype}")
        self.raw, self.divisor = raw, float(divisor)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.asarray(self.raw[idx], dtype=np.float32) / self.divisor

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class ArrayDataset:
    """Features `x` (float32, N x C x H x W or N x T x F; `Pixels` read as float32) and integer labels `y`."""

    name: str
    x: np.ndarray | Pixels
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.name, self.x[idx], self.y[idx], self.num_classes)

    def features(self) -> np.ndarray:
        """`x` as a numpy array (float32 copies of `Pixels`)."""
        return np.asarray(self.x)
