"""Aggregation math as small pure functions of plain numpy arrays.

A model is a list of layers (numpy arrays of any shape, 0-d included); `models`
is one such list per client, all with the same shapes. Every function works
layer by layer and coordinate by coordinate unless it says otherwise, computes
in float64 and returns arrays in the inputs' floating dtype. These are the
reference definitions fedft's tests hold Flower's strategies to, and what
fedft's own strategies (SCAFFOLD) aggregate with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Model = Sequence[np.ndarray]


def _stacked(models: Sequence[Model]) -> list[np.ndarray]:
    """Layer l of every model stacked on a new first axis: K x (shape of layer l)."""
    if not models:
        raise ValueError("no models to aggregate")
    num_layers = len(models[0])
    if any(len(m) != num_layers for m in models):
        raise ValueError("models have different numbers of layers")
    out = []
    for layer in range(num_layers):
        arrays = [np.asarray(m[layer]) for m in models]
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"layer {layer} has different shapes across models")
        out.append(np.stack(arrays).astype(np.float64))
    return out


def _dtype(models: Sequence[Model], layer: int) -> np.dtype:
    return np.result_type(np.asarray(models[0][layer]).dtype, np.float32)


def weighted_mean(models: Sequence[Model], weights: Sequence[float]) -> list[np.ndarray]:
    r"""FedAvg (McMahan et al. 2017): :math:`\bar w = \sum_k n_k w_k / \sum_k n_k`.

    `weights` are the clients' :math:`n_k` (e.g. `num-examples`), all > 0.
    """
    n = np.asarray(weights, dtype=np.float64)
    if n.shape != (len(models),) or not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("need one finite weight > 0 per model")
    factors = n / n.sum()
    return [np.tensordot(factors, stack, axes=1).astype(_dtype(models, i)) for i, stack in enumerate(_stacked(models))]


def coordinate_median(models: Sequence[Model]) -> list[np.ndarray]:
    r"""FedMedian (Yin et al. 2018): for every coordinate j, :math:`\mathrm{med}_k\, w_{k,j}`;
    with an even number of models, the mean of the two middle values."""
    return [np.median(stack, axis=0).astype(_dtype(models, i)) for i, stack in enumerate(_stacked(models))]


def trimmed_mean(models: Sequence[Model], beta: float) -> list[np.ndarray]:
    r"""Coordinate-wise trimmed mean (Yin et al. 2018): sort the K values of every
    coordinate, drop the :math:`b = \lfloor \beta K \rfloor` smallest and the b largest,
    and average the :math:`K - 2b` left, :math:`0 \le \beta < 1/2`."""
    if not 0.0 <= beta < 0.5:
        raise ValueError("beta must be in [0, 0.5)")
    k = len(models)
    b = int(beta * k)
    return [np.sort(stack, axis=0)[b : k - b].mean(axis=0).astype(_dtype(models, i)) for i, stack in enumerate(_stacked(models))]


def flatten(model: Model) -> np.ndarray:
    """All layers of one model as one float64 vector (the space Krum measures distances in)."""
    return np.concatenate([np.asarray(layer, dtype=np.float64).ravel() for layer in model])


def krum_scores(models: Sequence[Model], num_malicious: int) -> np.ndarray:
    r"""Krum scores (Blanchard et al. 2017): :math:`s_i = \sum_{j \in N_i} \lVert w_i - w_j \rVert^2`,
    where :math:`N_i` are the :math:`\max(1, K - f - 2)` models nearest to :math:`w_i`
    (itself excluded) over all layers flattened into one vector; lower is more central."""
    _stacked(models)  # shape checks
    flat = np.stack([flatten(m) for m in models])
    k = len(models)
    dist = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            dist[i, j] = dist[j, i] = float(np.square(flat[i] - flat[j]).sum())
    nearest = max(1, k - num_malicious - 2)
    scores = np.empty(k)
    for i in range(k):
        others = np.delete(dist[i], i)
        scores[i] = np.sort(others)[:nearest].sum()
    return scores


def krum_select(models: Sequence[Model], num_malicious: int, num_to_select: int = 1) -> list[int]:
    """Indices of the `num_to_select` lowest Krum scores (ties: lower index first);
    Krum keeps one model, Multi-Krum averages the selected ones."""
    scores = krum_scores(models, num_malicious)
    return [int(i) for i in np.argsort(scores, kind="stable")[:num_to_select]]
