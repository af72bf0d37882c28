"""Distributed DP: the Skellam mechanism on the securely aggregated sum, as pure functions.

Agarwal, Kairouz & Liu 2021, "The Skellam Mechanism for Differentially Private Federated
Learning" (NeurIPS); the encoding (clip, scale, rotate, round, mod) is `fedft.privacy.secagg`.

Noise. Sk(v) = Poisson(v/2) − Poisson(v/2): integer, mean 0, variance v. Independent Skellams
add, Sk(a) + Sk(b) = Sk(a + b) (Poisson's additivity), so when each of the n planned clients
adds its share Z_i ~ Sk(μ/n) per coordinate, the k shares that arrive sum to exactly Sk(kμ/n):
the full cohort gives the sum variance μ; a client that drops adds no noise, and the sum
carries only k/n of it. The ε of a round uses the variance actually present, μ_r = k_r μ / n.

RDP (Agarwal et al. 2021, Thm. 3.5 and its multi-dimensional Corollary). For integer α > 1, an
integer-valued query with L2 and L1 sensitivities Δ₂, Δ₁ plus i.i.d. Sk(μ) noise on every
coordinate is (α, ε(α))-RDP with

    ε(α) = α Δ₂² / (2μ) + min( ((2α − 1) Δ₂² + 6 Δ₁) / (4μ²),  3 Δ₁ / (2μ) ).

The first term is the Gaussian mechanism's RDP at variance μ; the second vanishes as μ grows
relative to Δ₂², so the Skellam ε tends to the Gaussian one from above. The query here is the
sum of the clients' rounded updates; neighbouring is zero-out (one user's update replaced by
zero; fixed-size cohorts, no amplification claimed), and Δ₂, Δ₁ are the conditional rounding's
bounds (`secagg.rounded_l2_bound`, `secagg.rounded_l1_bound`), which include the rounding's norm
inflation. Rounds compose by adding RDP at each α; (ε, δ) = min_α [Σ_r ε_r(α) + log((α−1)/α)
− (log δ + log α)/(α − 1)] (Balle et al. 2020, the conversion Opacus and dp-accounting use),
over α = 2..256. A round SecAgg aborts (fewer than min_reports shares) releases nothing.
Wrap-around is post-processing of the modular sum: ε is the same whatever wraps.

Noise level. `noise_multiplier` σ keeps its central-DP meaning, the sum's noise std over the
clipping norm in real units: μ = (σ c)², c = C / γ. With `target_epsilon`, μ is the smallest
variance for which `rounds` full-cohort rounds spend at most target_epsilon (bisection).

Granularity (when not configured). A coordinate of the sum is signal + rounding + noise. After
the rotation the signal is sub-Gaussian with variance proxy ‖Σ x_i‖² / d' ≤ n² C² / d' (aligned
updates, the worst case), rounding adds n γ² / 4 at most, the noise σ² C². γ is chosen so that
k standard deviations of that fit in half the range, k γ⁻¹ √(n² C²/d' + n γ²/4 + σ² C²) = M/2:

    γ = C √(n²/d' + σ²) / √(M² / (4k²) − n/4),   k = Φ⁻¹(1 − 0.01 / (2d'))

(the heuristic of Kairouz et al. 2021 and TFF's distributed DP; k makes a Gaussian of that variance
leave the range on 0.01 coordinates per round in expectation). Without the rotation one
coordinate may carry all of n C, so d' is replaced by 1 there: a far coarser grid.

Wrap-around tail bound (`wrap_probability_bound`). Coordinate j of the true integer sum is
A_j + R_j + Z_j: signal A_j, rounding |R_j| < n, noise Z_j ~ Sk(μ). With the rotation, Hoeffding
gives P(|A_j| ≥ a) ≤ 2 exp(−a² d' / (2 n² c²)); without it |A_j| ≤ n c. Chernoff on the Skellam
MGF E e^{tZ} = exp(μ (cosh t − 1)) at sinh t = z/μ gives P(|Z_j| ≥ z) ≤ 2 exp(−z asinh(z/μ)
+ √(μ² + z²) − μ). A coordinate wraps only if |A_j + R_j + Z_j| ≥ M/2, so for any split a,

    P(some coordinate wraps) ≤ d' · min_a [P(|A_j| ≥ a) + P(|Z_j| ≥ M/2 − n − a)],

and `bits_for_wrap` is the fewest bits for which this is at most a given β.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from fedft.privacy.accounting import UnreachableBudget
from fedft.privacy.secagg import padded_dimension, rounded_l1_bound, rounded_l2_bound

SKELLAM_ORDERS: tuple[int, ...] = tuple(range(2, 257))  # the Skellam bound holds at integer α > 1
WRAP_RATE = 0.01  # the granularity heuristic's expected wrapped coordinates per round (Gaussian approximation)
MAX_VARIANCE = 1e30


def skellam_noise(rng: np.random.Generator, variance: float, size: int) -> np.ndarray:
    """Sk(variance) per coordinate: Poisson(variance/2) − Poisson(variance/2), int64 (zeros for variance 0)."""
    if variance <= 0:
        return np.zeros(size, dtype=np.int64)
    return rng.poisson(variance / 2, size).astype(np.int64) - rng.poisson(variance / 2, size).astype(np.int64)


def skellam_rdp(orders: Sequence[float], l2_sensitivity: float, l1_sensitivity: float, variance: float) -> np.ndarray:
    """ε(α) of one Skellam release of variance μ at each (integer) order α (module docstring); ∞ at μ = 0."""
    a = np.asarray(orders, dtype=np.float64)
    if variance <= 0:
        return np.full(a.shape, math.inf)
    d2sq, d1, mu = l2_sensitivity ** 2, l1_sensitivity, variance
    return a * d2sq / (2 * mu) + np.minimum(((2 * a - 1) * d2sq + 6 * d1) / (4 * mu ** 2), 3 * d1 / (2 * mu))


def rdp_to_epsilon(rdp: np.ndarray, orders: Sequence[float], delta: float) -> float:
    """ε = min_α [RDP(α) + log((α−1)/α) − (log δ + log α)/(α − 1)] (Balle et al. 2020), at least 0."""
    a = np.asarray(orders, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        eps = rdp + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    eps = eps[np.isfinite(eps)]
    return max(0.0, float(eps.min())) if eps.size else math.inf


def skellam_epsilon(variances: Sequence[float], l2_sensitivity: float, l1_sensitivity: float, delta: float,
                    orders: Sequence[int] = SKELLAM_ORDERS) -> float:
    """ε after one Skellam release per entry of `variances` (the variance present in each round), composed in RDP."""
    if not variances:
        return 0.0
    counts: dict[float, int] = {}
    for v in variances:
        counts[float(v)] = counts.get(float(v), 0) + 1
    total = sum(k * skellam_rdp(orders, l2_sensitivity, l1_sensitivity, v) for v, k in counts.items())
    return rdp_to_epsilon(np.asarray(total), orders, delta)


@lru_cache(maxsize=256)
def calibrate_variance(target_epsilon: float, delta: float, rounds: int, l2_sensitivity: float, l1_sensitivity: float) -> float:
    """The smallest sum variance μ (within a relative 1e-9) for which `rounds` releases spend at most
    `target_epsilon`. Raises UnreachableBudget past μ = 1e30."""
    if rounds <= 0:
        return 0.0

    def eps(mu: float) -> float:
        return rdp_to_epsilon(rounds * skellam_rdp(SKELLAM_ORDERS, l2_sensitivity, l1_sensitivity, mu), SKELLAM_ORDERS, delta)

    high = max(l2_sensitivity ** 2, 1.0)
    while eps(high) > target_epsilon:
        high *= 4
        if high > MAX_VARIANCE:
            raise UnreachableBudget(f"no Skellam variance up to 1e30 reaches ε={target_epsilon} in {rounds} rounds")
    low = 0.0
    while high - low > 1e-9 * high:
        mid = (low + high) / 2
        if eps(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high


def wrap_confidence(dim: int) -> float:
    """k = Φ⁻¹(1 − WRAP_RATE / (2d')): the standard deviations the granularity heuristic fits in half the range."""
    return NormalDist().inv_cdf(1 - WRAP_RATE / (2 * dim))


def derived_granularity(clipping_norm: float, noise_multiplier: float, cohort: int, dim: int, bits: int, rotation: bool) -> float:
    """γ = C √(n²/d' + σ²) / √(M²/(4k²) − n/4) (module docstring; d' → 1 without the rotation).
    Raises ValueError when 2^bits is too small to hold k standard deviations of the rounding alone."""
    k = wrap_confidence(dim)
    room = (2.0 ** bits) ** 2 / (4 * k * k) - cohort / 4
    if room <= 0:
        raise ValueError(f"2^{bits} cannot hold the sum of {cohort} rounded updates; more bits are needed")
    spread = cohort ** 2 / (dim if rotation else 1) + noise_multiplier ** 2
    return clipping_norm * math.sqrt(spread) / math.sqrt(room)


def _noise_tail(z: np.ndarray, variance: float) -> np.ndarray:
    """2 P(Z ≥ z) ≤ 2 exp(−z asinh(z/μ) + √(μ² + z²) − μ) for Z ~ Sk(μ), z > 0 (Chernoff)."""
    if variance <= 0:
        return np.where(z > 0, 0.0, 1.0)
    with np.errstate(over="ignore"):
        return np.minimum(1.0, 2 * np.exp(-z * np.arcsinh(z / variance) + np.sqrt(variance ** 2 + z ** 2) - variance))


def wrap_probability_bound(bits: int, scaled_norm: float, cohort: int, dim: int, variance: float, rotation: bool) -> float:
    """An upper bound on P(some coordinate of the round's sum wraps) for n = `cohort` updates of
    norm ≤ c = `scaled_norm` (integer units), d' coordinates and Sk(variance) noise (module docstring)."""
    room = 2.0 ** (bits - 1) - cohort
    if room <= 0:
        return 1.0
    a = np.linspace(0.0, room, 2001)
    signal_norm = cohort * scaled_norm
    if rotation:
        signal = np.minimum(1.0, 2 * np.exp(-(a ** 2) * dim / (2 * signal_norm ** 2))) if signal_norm > 0 else np.zeros_like(a)
    else:
        signal = np.where(a >= signal_norm, 0.0, 1.0)
    per_coordinate = float(np.min(signal + _noise_tail(room - a, variance)))
    return min(1.0, dim * per_coordinate)


def bits_for_wrap(beta: float, scaled_norm: float, cohort: int, dim: int, variance: float, rotation: bool) -> int | None:
    """The fewest bits (≤ 62) for which `wrap_probability_bound` is at most β at this granularity, or None."""
    for bits in range(2, 63):
        if wrap_probability_bound(bits, scaled_norm, cohort, dim, variance, rotation) <= beta:
            return bits
    return None


@dataclass(frozen=True)
class DistributedPlan:
    """Everything clients and server must agree on in a run, from the config and the model's size."""

    dim: int  # d: coordinates of the update (all sent arrays)
    padded_dim: int  # d': the share's length (a power of two with the rotation)
    rotation: bool
    bits: int  # shares and the sum live in Z_{2^bits}
    cohort: int  # n: the planned (fixed) cohort, each adding Sk(μ/n)
    min_reports: int  # SecAgg's threshold: fewer shares and the round aggregates nothing
    clipping_norm: float  # C, real units
    granularity: float  # γ, the real value of one integer step
    l2_bound: float  # Δ₂ of a rounded update, integer units
    l1_bound: float  # Δ₁
    variance: float  # μ: the sum's noise variance with the full cohort, integer units

    @property
    def share_variance(self) -> float:
        """μ/n: each client's share."""
        return self.variance / self.cohort

    @property
    def noise_multiplier(self) -> float:
        """σ = γ √μ / C: the full sum's noise std over the clipping norm, as in central DP."""
        return self.granularity * math.sqrt(self.variance) / self.clipping_norm

    def present_variance(self, survivors: int) -> float:
        """μ k / n: the noise variance in a sum of k shares."""
        return self.variance * survivors / self.cohort

    def epsilon(self, variances: Sequence[float], delta: float) -> float:
        return skellam_epsilon(variances, self.l2_bound, self.l1_bound, delta)

    def wrap_bound(self) -> float:
        """P(some coordinate wraps in a full round) ≤ this."""
        return wrap_probability_bound(self.bits, self.clipping_norm / self.granularity, self.cohort, self.padded_dim, self.variance, self.rotation)

    def bits_for_wrap(self, beta: float) -> int | None:
        return bits_for_wrap(beta, self.clipping_norm / self.granularity, self.cohort, self.padded_dim, self.variance, self.rotation)


@lru_cache(maxsize=64)
def make_plan(*, dim: int, clipping_norm: float, noise_multiplier: float | None, target_epsilon: float | None, delta: float, rounds: int,
              cohort: int, bits: int, min_reports: int, rotation: bool, granularity: float | None) -> DistributedPlan:
    """The run's plan. With `noise_multiplier`: μ = (σ C/γ)². Else μ calibrated to `target_epsilon`
    over `rounds` full rounds; a derived γ depends on σ and Δ₂ on γ, so γ and μ are iterated
    (four passes from σ = 1; the last μ is calibrated at the last γ, so ε ≤ target holds exactly).
    Raises ValueError (too few bits) or UnreachableBudget."""
    padded = padded_dimension(dim, rotation)

    def at(gamma: float, sigma: float | None) -> DistributedPlan:
        l2 = rounded_l2_bound(clipping_norm / gamma, padded)
        l1 = rounded_l1_bound(l2, padded)
        if sigma is not None:
            mu = (sigma * clipping_norm / gamma) ** 2
        else:
            assert target_epsilon is not None
            mu = calibrate_variance(float(target_epsilon), float(delta), int(rounds), l2, l1)
        return DistributedPlan(dim, padded, rotation, bits, cohort, min_reports, clipping_norm, gamma, l2, l1, mu)

    if granularity is not None:
        return at(float(granularity), noise_multiplier)
    if noise_multiplier is not None:
        return at(derived_granularity(clipping_norm, noise_multiplier, cohort, padded, bits, rotation), noise_multiplier)
    sigma = 1.0
    for _ in range(4):
        plan = at(derived_granularity(clipping_norm, sigma, cohort, padded, bits, rotation), None)
        sigma = plan.noise_multiplier
    return plan
