"""The DP planner behind `fedft plan-dp`: σ for a population, cohort, rounds and (ε, δ), and
what that σ means for the model, before anything trains.

For user-level DP-FedAvg (McMahan et al. 2018) the round's mean update carries Gaussian
noise of std σ·C/m per coordinate (C the clipping norm, m the cohort), so a larger cohort
at the same sampling rate buys less noise per coordinate; the planner reports that std, the
std on the sum over all rounds (what the final model carries: σC√T/m for independent noise,
σC‖B_T‖/m for a correlated factorization, fedft.privacy.matrix_mechanism), and the
smallest cohort whose per-coordinate noise is at most a target. pfl-research's noise-cohort
simulation follows from it: train a small cohort with `privacy.noise_cohort_size` set to
the planned cohort, so the simulated model sees the planned deployment's noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedft.privacy import matrix_mechanism as mm
from fedft.privacy.accounting import GAUSSIAN_RDP_ORDERS, calibrate_noise, central_rdp_orders, epsilon, gaussian_epsilon

SAMPLINGS = ("poisson", "fixed", "cyclic")


@dataclass(frozen=True)
class DPPlan:
    population: int
    cohort: int
    rounds: int
    epsilon: float
    delta: float
    sampling: str
    mechanism: str
    accountant: str
    noise_multiplier: float  # σ: noise std on the round's sum / C
    effective_noise_multiplier: float  # σ / sens of the whole run (correlated) or σ per round (independent)
    sensitivity: float  # one user's reach into the release, in clipping norms (√k for independent noise)
    noise_std_round: float  # per coordinate of the round's mean update: σC/m
    noise_std_final: float  # per coordinate of the sum over all rounds (the final model's)
    epsilon_rdp: float  # the same σ under RDP, a looser bound, as a cross-check

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def accounted_rounds(rounds: int, cohort: int, population: int, sampling: str) -> int:
    """Rounds one user can be in: every round, or ceil(R / (N // m)) when the cohorts take turns."""
    return math.ceil(rounds / max(1, population // cohort)) if sampling == "cyclic" else rounds


def plan_dp(population: int, cohort: int, rounds: int, target_epsilon: float, delta: float, sampling: str = "poisson",
            mechanism: str = "independent", bands: int | None = None, clipping_norm: float = 1.0, accountant: str = "pld") -> DPPlan:
    """The σ that spends `target_epsilon` over the run, and the noise it puts on the model."""
    if not 0 < cohort <= population:
        raise ValueError(f"cohort must be between 1 and the population ({population}), got {cohort}")
    if mechanism != "independent" and sampling == "poisson":
        raise ValueError(f"{mechanism} noise is accounted for fixed or cyclic participation, not Poisson")
    period = max(1, population // cohort)
    if mechanism == "independent":
        q = cohort / population if sampling == "poisson" else 1.0
        k = accounted_rounds(rounds, cohort, population, sampling)
        sigma = calibrate_noise(target_epsilon, delta, q, k, accountant, rdp_orders=central_rdp_orders(q))
        sens = math.sqrt(k) if q >= 1 else 1.0  # q = 1: k rounds are one Gaussian of multiplier σ/√k
        effective = sigma / sens
        final = sigma * clipping_norm * math.sqrt(rounds) / cohort
        eps_rdp = epsilon([(sigma, q, k)], delta, "rdp", central_rdp_orders(q))
    else:
        fact = mm.factorization(mechanism, rounds, bands or (period if sampling == "cyclic" else rounds))
        sens = mm.planned_sensitivity(fact.encoder, sampling, period)
        effective = calibrate_noise(target_epsilon, delta, 1.0, 1, accountant, rdp_orders=GAUSSIAN_RDP_ORDERS)
        sigma = effective * sens
        final, _ = mm.noise_std_of_sum(fact, sigma, clipping_norm, cohort)
        eps_rdp = gaussian_epsilon(effective, delta, "rdp")
    return DPPlan(population, cohort, rounds, target_epsilon, delta, sampling, mechanism, accountant, sigma, effective, sens,
                  sigma * clipping_norm / cohort, final, eps_rdp)


def cohort_for_noise(target_noise_std: float, population: int, rounds: int, target_epsilon: float, delta: float, **options: Any) -> int | None:
    """The smallest cohort whose round noise σ(m)·C/m is at most `target_noise_std` (None: not even
    the whole population). σ(m)/m falls as m grows, so the search doubles, then bisects."""
    def ok(m: int) -> bool:
        return plan_dp(population, m, rounds, target_epsilon, delta, **options).noise_std_round <= target_noise_std

    if not ok(population):
        return None
    low, high = 0, 1
    while high < population and not ok(high):
        low, high = high, min(population, 2 * high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high
