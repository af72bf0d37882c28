"""Simulated secure aggregation of integer-encoded client updates, as pure functions.

The encoding is that of distributed DP under SecAgg (Kairouz, Liu & Steinke 2021, "The
Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
Sec. 4; Agarwal, Kairouz & Liu 2021, "The Skellam Mechanism for Differentially Private
Federated Learning", Sec. 4). A client's update Δ ∈ R^d (all arrays as one vector, keys in
sorted order) becomes a share y ∈ Z_M^{d'}, M = 2^bits:

1. clip:    x = Δ · min(1, C / ‖Δ‖₂)
2. scale:   x ← x / γ            (γ, the granularity: one integer step is γ in real units)
3. flatten: x ← H D pad(x)       (optional) pad with zeros to d' = 2^⌈log₂ d⌉; D = diag(±1)
            random signs drawn from (seed, round), shared by every client and public; H the
            normalised Walsh–Hadamard matrix (H = Hᵀ = H⁻¹). HD is orthogonal, so ‖HDx‖₂ = ‖x‖₂,
            and each coordinate (HDx)_j = Σ_k H_jk D_k x_k is a Rademacher sum: by Hoeffding
            P(|(HDx)_j| ≥ t) ≤ 2 exp(−t² d' / (2‖x‖₂²)), so ‖HDx‖_∞ = O(‖x‖₂ √(log d' / d'))
            where x itself could put all of ‖x‖₂ in one coordinate.
4. round:   x̃_j = ⌊x_j⌋ + Bernoulli(x_j − ⌊x_j⌋), so E[x̃] = x (unbiased), |x̃_j − x_j| < 1;
            conditional rounding (DDG Sec. 4.1) redraws until ‖x̃‖₂ ≤ Δ₂ with
              Δ₂ = min(c + √d', √(c² + d'/4 + √(2 ln(1/β)) (c + √d'/2))),   c = C / γ,
            the first bound holding always (‖x̃ − x‖₂ < √d'), the second with probability
            ≥ 1 − β per draw (β = e^{−1/2}, so a redraw is rare); after ROUNDING_TRIES draws,
            rounding toward zero is taken (‖trunc(x)‖₂ ≤ ‖x‖₂ ≤ c). So Δ₂ bounds the L2 norm
            of every rounded update exactly (its sensitivity), and Δ₁ = Δ₂ · min(√d', Δ₂) its
            L1 norm (an integer vector has |v_j| ≤ v_j², and ‖v‖₁ ≤ √d' ‖v‖₂). The condition
            biases the rounding only on the rare redraws.
5. noise:   (distributed DP) the client adds its integer noise share z_i (fedft.privacy.distributed_dp)
6. mod:     y = (x̃ + z) mod M ∈ [0, M)

SecAgg (Bonawitz et al. 2017) reveals to the server only S = Σ_{i ∈ survivors} y_i mod M, and
only if at least `min_reports` shares arrive (its threshold t): with fewer it aborts and the
round aggregates nothing. Decoding S: the centred residue s = ((S + M/2) mod M) − M/2 ∈ [−M/2, M/2),
which is the true integer sum T = Σ (x̃_i + z_i) exactly when T ∈ [−M/2, M/2); then γ s, then
D H (the inverse rotation), the first d coordinates.

Wrap-around: a coordinate whose true sum lies outside [−M/2, M/2) decodes to T − kM for an
integer k ≠ 0, off by kMγ in real units. It is post-processing of the modular sum, so it never
changes ε; it costs accuracy only. The simulation, which holds every share, counts the wrapped
coordinates each round (`wrapped_coordinates`); `fedft.privacy.distributed_dp.wrap_probability_bound`
bounds its probability and gives the bits that keep it small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

SECAGG = "secagg"  # up: the ArrayRecord holding a client's share, instead of `arrays`
SHARE = "share"  # its one array: int64 residues in [0, 2^bits), length d'
ROUNDING_BETA = math.exp(-0.5)  # β of the conditional rounding bound (DDG's choice)
ROUNDING_TRIES = 64  # redraws before rounding toward zero (each fails with probability ≤ β)
_ROTATION_STREAM = 0x5EC  # keeps the rotation's public coins apart from every other stream


def padded_dimension(dim: int, rotate: bool) -> int:
    """d' = 2^⌈log₂ d⌉ with the rotation (the Hadamard transform needs a power of two), else d."""
    if dim <= 0:
        raise ValueError("the update must have at least one coordinate")
    return 1 << (dim - 1).bit_length() if rotate else dim


def rotation_signs(seed: int, server_round: int, dim: int) -> np.ndarray:
    """D's diagonal: d' signs ±1 from (seed, round), the same for every client of the round (public)."""
    return np.where(np.random.default_rng([seed, server_round, _ROTATION_STREAM]).random(dim) < 0.5, -1.0, 1.0)


def hadamard(x: np.ndarray) -> np.ndarray:
    """H x for the normalised Walsh–Hadamard matrix H (Sylvester order, H = Hᵀ = H⁻¹), in
    O(d log d): at each stage every pair (a, b) at distance h becomes (a + b, a − b)."""
    y = np.asarray(x, dtype=np.float64).copy()
    n = y.size
    if n & (n - 1):
        raise ValueError(f"the Hadamard transform needs a power-of-two length, not {n}")
    h = 1
    while h < n:
        blocks = y.reshape(-1, 2, h)
        y = np.stack([blocks[:, 0] + blocks[:, 1], blocks[:, 0] - blocks[:, 1]], axis=1).reshape(-1)
        h *= 2
    return y / math.sqrt(n)


def rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """H D pad(x): x padded with zeros to len(signs), signs flipped, then Hadamard-transformed."""
    padded = np.zeros(len(signs), dtype=np.float64)
    padded[: x.size] = x
    return hadamard(signs * padded)


def unrotate(y: np.ndarray, signs: np.ndarray, dim: int) -> np.ndarray:
    """(HD)⁻¹ y = D H y, cut back to the first `dim` coordinates."""
    return (signs * hadamard(y))[:dim]


def clip(update: np.ndarray, clipping_norm: float) -> np.ndarray:
    """Δ · min(1, C / ‖Δ‖₂)."""
    norm = float(np.linalg.norm(update))
    return np.asarray(update, dtype=np.float64) * (min(1.0, clipping_norm / norm) if norm > 0 else 1.0)


def rounded_l2_bound(scaled_norm: float, dim: int, beta: float = ROUNDING_BETA) -> float:
    """Δ₂ = min(c + √d, √(c² + d/4 + √(2 ln(1/β)) (c + √d/2))) for ‖x‖₂ ≤ c (see the module docstring)."""
    always = scaled_norm + math.sqrt(dim)
    likely = math.sqrt(scaled_norm ** 2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (scaled_norm + math.sqrt(dim) / 2))
    return min(always, likely)


def rounded_l1_bound(l2_bound: float, dim: int) -> float:
    """Δ₁ = Δ₂ · min(√d, Δ₂): an integer vector's L1 norm is at most √d ‖v‖₂ and at most ‖v‖₂²."""
    return l2_bound * min(math.sqrt(dim), l2_bound)


def stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """⌊x⌋ + Bernoulli(x − ⌊x⌋) per coordinate, as int64: unbiased, within 1 of x."""
    floor = np.floor(x)
    return (floor + (rng.random(x.shape) < (x - floor))).astype(np.int64)


def conditional_round(x: np.ndarray, l2_bound: float, rng: np.random.Generator, tries: int = ROUNDING_TRIES) -> np.ndarray:
    """Stochastic rounding redrawn until ‖x̃‖₂ ≤ l2_bound; rounding toward zero if `tries` draws all fail
    (needs ‖x‖₂ ≤ l2_bound, which clipping guarantees). The result's norm is always within the bound."""
    if float(np.linalg.norm(x)) > l2_bound:
        raise ValueError("conditional rounding needs ‖x‖₂ within the bound (clip first)")
    for _ in range(tries):
        rounded = stochastic_round(x, rng)
        if float(np.linalg.norm(rounded.astype(np.float64))) <= l2_bound:
            return rounded
    return np.trunc(x).astype(np.int64)


def to_modular(values: np.ndarray, bits: int) -> np.ndarray:
    """values mod 2^bits, in [0, 2^bits), int64."""
    return np.mod(np.asarray(values, dtype=np.int64), np.int64(1) << bits)


def centered(residues: np.ndarray, bits: int) -> np.ndarray:
    """The representative of each residue in [−2^(bits−1), 2^(bits−1))."""
    modulus, half = np.int64(1) << bits, np.int64(1) << (bits - 1)
    return np.mod(np.asarray(residues, dtype=np.int64) + half, modulus) - half


def modular_sum(shares: Iterable[np.ndarray], bits: int) -> np.ndarray:
    """Σ shares mod 2^bits: the one value secure aggregation reveals (reduced after every add,
    so int64 never overflows for bits ≤ 62)."""
    modulus = np.int64(1) << bits
    total: np.ndarray | None = None
    for share in shares:
        s = np.mod(np.asarray(share, dtype=np.int64), modulus)
        total = s if total is None else np.mod(total + s, modulus)
    if total is None:
        raise ValueError("a modular sum of no shares")
    return total


def wrapped_coordinates(modular_total: np.ndarray, true_total: np.ndarray, bits: int) -> int:
    """Coordinates whose decoded (centred) modular sum differs from the true integer sum."""
    return int(np.count_nonzero(centered(modular_total, bits) != np.asarray(true_total, dtype=np.int64)))


def encode_share(update: np.ndarray, *, clipping_norm: float, granularity: float, bits: int, l2_bound: float,
                 signs: np.ndarray | None, rng: np.random.Generator, noise: np.ndarray | None = None) -> np.ndarray:
    """A client's share: (round(rotate(clip(Δ) / γ)) + noise) mod 2^bits, steps 1–6 of the module
    docstring; `signs` None skips the rotation; `noise` (integer, length d') is its noise share."""
    x = clip(np.asarray(update, dtype=np.float64).ravel(), clipping_norm) / granularity
    if signs is not None:
        x = rotate(x, signs)
    rounded = conditional_round(x, l2_bound, rng)
    if noise is not None:
        rounded = rounded + np.asarray(noise, dtype=np.int64)
    return to_modular(rounded, bits)


def decode_sum(modular_total: np.ndarray, *, bits: int, granularity: float, signs: np.ndarray | None, dim: int) -> np.ndarray:
    """The real-valued sum a modular sum stands for: γ · centred(S), rotated back, cut to `dim`."""
    scaled = centered(modular_total, bits).astype(np.float64) * granularity
    return unrotate(scaled, signs, dim) if signs is not None else scaled[:dim]
