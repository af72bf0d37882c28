r"""Aggregating LoRA adapters of different ranks (FlexLoRA), as pure functions of numpy arrays.

A LoRA adapter of rank r on a weight W (out x in) is B (out x r) and A (r x in), and
the layer computes (W + (alpha / r) B A) x (peft's convention; `lora.alpha`).

Clients of different ranks cannot average B and A: the shapes differ, and zero-padding
them to one rank averages the factors, not the updates. FlexLoRA (Bai et al. 2024,
"Federated Fine-tuning of Large Language Models under Heterogeneous Tasks and Client
Resources", NeurIPS 2024) averages the products instead, per adapted layer:

.. math:: \Delta W_i = \frac{\alpha}{r_i} B_i A_i, \qquad
          \bar W = \frac{\sum_i n_i \Delta W_i}{\sum_i n_i},

then gives each client the best rank-:math:`r` approximation of :math:`\bar W`
(Eckart-Young) by truncated SVD :math:`\bar W \approx U_r \Sigma_r V_r^\top`:
:math:`B = \frac{r}{\alpha} U_r \Sigma_r^{1/2}`, :math:`A = \Sigma_r^{1/2} V_r^\top`,
so that :math:`\frac{\alpha}{r} B A = U_r \Sigma_r V_r^\top` (the scaling undone).
A rank above :math:`\min(\text{out}, \text{in})` gets zero columns of B and rows of A.

Homogeneous ranks without FlexLoRA (plain FedAvg of A and of B, what FlowerTune does)
is inexact: :math:`\bar B \bar A \ne \overline{B A}` in general. Under FFA-LoRA (Sun et
al. 2024) every client shares the frozen A, so :math:`\overline{B_i A} = \bar B A` and
FedAvg of B alone is the exact average of the updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Adapter = tuple[np.ndarray, np.ndarray]  # (B: out x r, A: r x in)


def delta_weight(b: np.ndarray, a: np.ndarray, alpha: float) -> np.ndarray:
    r""":math:`\frac{\alpha}{r} B A` in float64, with r = the adapter's rank (B's columns)."""
    b, a = np.asarray(b, np.float64), np.asarray(a, np.float64)
    if b.ndim != 2 or a.ndim != 2 or b.shape[1] != a.shape[0]:
        raise ValueError(f"B {b.shape} and A {a.shape} are not an adapter pair (out x r, r x in)")
    return (alpha / b.shape[1]) * (b @ a)


def average_delta(adapters: Sequence[Adapter], weights: Sequence[float], alpha: float) -> np.ndarray:
    r""":math:`\bar W = \sum_i n_i \Delta W_i / \sum_i n_i` over clients' adapters of any ranks."""
    n = np.asarray(weights, dtype=np.float64)
    if not adapters or n.shape != (len(adapters),) or not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("need at least one adapter and one finite weight > 0 per adapter")
    deltas = [delta_weight(b, a, alpha) for b, a in adapters]
    if any(d.shape != deltas[0].shape for d in deltas):
        raise ValueError("adapters belong to layers of different shapes")
    return np.tensordot(n / n.sum(), np.stack(deltas), axes=1)


def split_delta(delta: np.ndarray, rank: int, alpha: float) -> Adapter:
    r"""(B, A) of rank `rank` with :math:`\frac{\alpha}{r} B A` = the best rank-r approximation of `delta`."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1 (got {rank})")
    u, s, vt = np.linalg.svd(np.asarray(delta, np.float64), full_matrices=False)
    k = min(rank, len(s))
    root = np.sqrt(s[:k])
    b = np.zeros((delta.shape[0], rank))
    a = np.zeros((rank, delta.shape[1]))
    b[:, :k] = (rank / alpha) * u[:, :k] * root
    a[:k] = root[:, None] * vt[:k]
    return b, a


def to_rank(b: np.ndarray, a: np.ndarray, rank: int) -> Adapter:
    r"""The same update at another rank: :math:`\frac{\alpha}{r'} B' A' = \frac{\alpha}{r} B A` when `rank` >= r
    (zero columns of B and rows of A, B scaled by r'/r); the first `rank` components, B scaled
    the same way, when `rank` < r, which is the truncated SVD when (B, A) came from `split_delta`."""
    b, a = np.asarray(b), np.asarray(a)
    r = b.shape[1]
    if b.ndim != 2 or a.ndim != 2 or a.shape[0] != r or rank < 1:
        raise ValueError(f"B {b.shape} and A {a.shape} are not an adapter pair, or rank {rank} < 1")
    keep = min(rank, r)
    b_out = np.zeros((b.shape[0], rank), dtype=b.dtype)
    a_out = np.zeros((rank, a.shape[1]), dtype=a.dtype)
    b_out[:, :keep] = (rank / r) * b[:, :keep]
    a_out[:keep] = a[:keep]
    return b_out, a_out


def lora_pairs(keys: Sequence[str]) -> list[tuple[str, str]]:
    """(B key, A key) of every adapter among peft's array names (`...lora_A...` with its `...lora_B...`)."""
    names = set(keys)
    return [(k.replace(".lora_A.", ".lora_B."), k) for k in keys if ".lora_A." in k and k.replace(".lora_A.", ".lora_B.") in names]


def flexlora(adapters: Sequence[Adapter], weights: Sequence[float], alpha: float, ranks: Sequence[int]) -> list[Adapter]:
    """One layer's FlexLoRA round: the example-weighted average update, split at each of `ranks`
    (the adapters go back in the dtype of the first client's B)."""
    dtype = np.result_type(np.asarray(adapters[0][0]).dtype, np.float32) if adapters else np.float32
    mean = average_delta(adapters, weights, alpha)
    return [(b.astype(dtype), a.astype(dtype)) for b, a in (split_delta(mean, r, alpha) for r in ranks)]


def flexlora_states(states: Sequence[dict[str, np.ndarray]], weights: Sequence[float], alpha: float) -> dict[str, np.ndarray]:
    """Every adapter pair of the clients' states (all at one rank, e.g. padded by `to_rank`)
    replaced by FlexLoRA's aggregate at that rank; other arrays are not returned."""
    out: dict[str, np.ndarray] = {}
    for key_b, key_a in lora_pairs(list(states[0])):
        (b, a), = flexlora([(s[key_b], s[key_a]) for s in states], weights, alpha, [np.asarray(states[0][key_b]).shape[1]])
        out[key_b], out[key_a] = b, a
    return out
