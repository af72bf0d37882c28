"""Correlated noise for central DP: the matrix mechanism over rounds, as pure numpy.

Training with server learning rate η releases prefix sums of the rounds' mean updates,
θ_T = θ_0 + η Σ_{t≤T} x_t = θ_0 + η (A x)_T with A the T×T lower-triangular matrix of
ones. A factorization A = B C gives a mechanism: release C x + z, z ~ N(0, σ²C²_clip I)
per row, and decode B (C x + z) = A x + B z. Each round then applies the increment

    x̂_t = x_t + (D z)_t,   D = A⁻¹ B   (D[t] = B[t] − B[t−1]),

so the model sees correlated noise whose prefix sums are B z instead of independent
noise whose prefix sums grow like √t. One user whose (clipped, ‖·‖ ≤ C) update joins
the rounds in π ⊂ {1..T} moves C x by at most C·‖C π‖₂ when C has no negative entry
(every factorization here): the whole run is ONE Gaussian mechanism with noise
multiplier σ / sens(π), sens(π) = ‖Σ_{t∈π} C[:, t]‖₂ (Denisov et al. 2022;
Choquette-Choo et al. 2023, "Multi-epoch matrix factorization mechanisms").

Factorizations (all with C ≥ 0):
- independent: C = I, B = A; DP-FedAvg's own noise, sens² = |π|.
- tree: binary-tree aggregation (Dwork et al. 2010; Kairouz et al. 2021, "Practical and
  private (deep) learning without sampling or shuffling", DP-FTRL). C has one row per
  complete dyadic interval of [1, T]; B sums the ≤ ⌈log₂ T⌉ + 1 intervals that tile
  each prefix (the binary expansion of t; Honaker's variance-optimal decoding is not
  used). One participation is in at most ⌊log₂ T⌋ + 1 nodes.
- banded: the banded square root (Kalinin & Lampert 2024, "Banded square root matrix
  factorization for differentially private model training"; banded matrix
  factorization after Choquette-Choo et al. 2023): C lower-triangular Toeplitz with
  c_j = binom(2j, j) / 4^j, the coefficients of (1 − x)^(−1/2) (so C² = A without
  banding), cut to `bands` diagonals; B = A C⁻¹. With participations at least `bands`
  rounds apart, their columns have disjoint supports and sens² = Σ_{t∈π} ‖C e_t‖².
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MECHANISMS = ("independent", "tree", "banded")


@dataclass(frozen=True)
class Factorization:
    """A = B C for T rounds: `encoder` C (m × T), `decoder` B (T × m)."""

    name: str
    encoder: np.ndarray
    decoder: np.ndarray

    @property
    def rounds(self) -> int:
        return int(self.encoder.shape[1])

    def round_noise(self) -> np.ndarray:
        """D = A⁻¹ B (T × m): round t's noise is Σ_j D[t, j] z_j."""
        return np.diff(self.decoder, axis=0, prepend=np.zeros((1, self.decoder.shape[1])))


def prefix_sum_matrix(rounds: int) -> np.ndarray:
    """A: (A x)_t = Σ_{s≤t} x_s."""
    return np.tril(np.ones((rounds, rounds)))


def independent(rounds: int) -> Factorization:
    return Factorization("independent", np.eye(rounds), prefix_sum_matrix(rounds))


def dyadic_intervals(rounds: int) -> list[tuple[int, int]]:
    """The complete dyadic intervals [start, end) of rounds 0..T−1, level by level:
    [i·2^ℓ, (i+1)·2^ℓ) for every ℓ with (i+1)·2^ℓ ≤ T (a node that would reach past T is never released)."""
    out: list[tuple[int, int]] = []
    size = 1
    while size <= rounds:
        out.extend((start, start + size) for start in range(0, rounds - size + 1, size))
        size *= 2
    return out


def tree(rounds: int) -> Factorization:
    nodes = dyadic_intervals(rounds)
    index = {iv: k for k, iv in enumerate(nodes)}
    encoder = np.zeros((len(nodes), rounds))
    for k, (start, end) in enumerate(nodes):
        encoder[k, start:end] = 1.0
    decoder = np.zeros((rounds, len(nodes)))
    for t in range(1, rounds + 1):  # prefix [0, t): the binary expansion of t, largest interval first
        start = 0
        for level in reversed(range(t.bit_length())):
            if t >> level & 1:
                decoder[t - 1, index[(start, start + 2 ** level)]] = 1.0
                start += 2 ** level
    return Factorization("tree", encoder, decoder)


def sqrt_coefficients(count: int) -> np.ndarray:
    """c_0..c_{count−1} of (1 − x)^(−1/2): c_0 = 1, c_j = c_{j−1} (2j − 1) / (2j)."""
    c = np.ones(count)
    for j in range(1, count):
        c[j] = c[j - 1] * (2 * j - 1) / (2 * j)
    return c


def banded(rounds: int, bands: int) -> Factorization:
    if bands < 1:
        raise ValueError(f"bands must be at least 1, got {bands}")
    c = sqrt_coefficients(min(bands, rounds))
    encoder = np.zeros((rounds, rounds))
    for j, cj in enumerate(c):
        encoder += cj * np.eye(rounds, k=-j)
    decoder = prefix_sum_matrix(rounds) @ np.linalg.inv(encoder)
    return Factorization("banded", encoder, decoder)


def factorization(mechanism: str, rounds: int, bands: int | None = None) -> Factorization:
    """The named factorization for `rounds` rounds (`bands` only for "banded")."""
    if mechanism == "independent":
        return independent(rounds)
    if mechanism == "tree":
        return tree(rounds)
    if mechanism == "banded":
        return banded(rounds, int(bands or rounds))
    raise ValueError(f"unknown noise mechanism {mechanism!r}; one of {', '.join(MECHANISMS)}")


def sensitivity(encoder: np.ndarray, participation: Iterable[int]) -> float:
    """‖Σ_{t∈π} C[:, t]‖₂ for 1-based rounds π: one user's reach into the release, in
    units of the clipping norm (valid for C ≥ 0 and any directions of its updates)."""
    cols = [t - 1 for t in participation]
    if not cols:
        return 0.0
    return float(np.linalg.norm(encoder[:, cols].sum(axis=1)))


def cyclic_participation(rounds: int, period: int) -> list[list[int]]:
    """The rounds each of the `period` cyclic groups trains in: group g in g+1, g+1+period, ..."""
    return [list(range(g + 1, rounds + 1, period)) for g in range(min(period, rounds))]


def worst_sensitivity(encoder: np.ndarray, patterns: Iterable[Iterable[int]]) -> float:
    """max over participation patterns of `sensitivity`."""
    return max((sensitivity(encoder, p) for p in patterns), default=0.0)


def planned_sensitivity(encoder: np.ndarray, client_sampling: str, period: int) -> float:
    """The sensitivity the noise is calibrated for: every cyclic group's rounds under
    "cyclic" (period = num_clients // clients_per_round), every round under "fixed" (a
    randomly drawn fixed-size cohort can contain a user every round)."""
    rounds = encoder.shape[1]
    if client_sampling == "cyclic":
        return worst_sensitivity(encoder, cyclic_participation(rounds, period))
    return sensitivity(encoder, range(1, rounds + 1))


def noise_std_of_sum(fact: Factorization, noise_multiplier: float, clipping_norm: float, expected_cohort: float) -> tuple[float, float]:
    """(the final model's noise std per coordinate, the mean over rounds of the prefix sums'):
    σ C ‖B[t]‖₂ / m, in the units of the mean update summed over rounds."""
    row_norms = np.linalg.norm(fact.decoder, axis=1) * noise_multiplier * clipping_norm / expected_cohort
    return float(row_norms[-1]), float(math.sqrt(np.mean(row_norms ** 2)))


_CORRELATED_STREAM = 0xC0EE


def round_noise(coefficients: np.ndarray, key: int, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Σ_j D[t, j] z_j for one round's row D[t] of `Factorization.round_noise`, z_j ~ N(0, I)
    drawn from (key, j): each z_j is regenerated, never stored, so a resumed run (which
    keeps `key`) adds the same noise."""
    out = [np.zeros(s) for s in shapes]
    for j in np.flatnonzero(coefficients):
        rng = np.random.default_rng([key, int(j), _CORRELATED_STREAM])
        for k, s in enumerate(shapes):
            out[k] += coefficients[j] * rng.standard_normal(s)
    return out
