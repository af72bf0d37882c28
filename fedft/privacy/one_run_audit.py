"""Empirical ε lower bound from one training run (Steinke, Nasr & Jagielski, "Privacy
Auditing with One (1) Training Run", NeurIPS 2023).

The game: m canaries, each included in the training data independently with
probability ½. After training the auditor scores every canary, guesses "in" for the
k₊ best scores and "out" for the k₋ worst, abstains on the rest: r = k₊ + k₋
guesses, v of them correct. If training is ε-DP with respect to each canary, the
number of correct guesses is stochastically dominated by Binomial(r, q) with
q = e^ε / (1 + e^ε), the accuracy of ε-DP randomised response (the paper's Theorem 1):

    P[v' ≥ v] ≤ P[Binomial(r, q) ≥ v].

For (ε, δ)-DP the paper's Theorem 3 adds a δ term; its Algorithm 2 computes it as

    p(ε, δ) = P[Binomial(r, q) ≥ v] + 2 m δ · max_{1 ≤ i ≤ v} P[v - i ≤ Binomial(r, q) < v] / i.

p(ε, δ) grows with ε. The lower bound at confidence 1 - β is the largest ε with
p(ε, δ) < β: any smaller ε is rejected at level β, so the run is not (ε, δ)-DP for
those ε unless an event of probability below β happened. 0 when even ε = 0 is not
rejected (v is what chance gives).

Pure functions of numbers and arrays; the canaries themselves are planted in
`fedft.ml.data.canaries` and scored by `audit_canaries`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedft.privacy.audit import per_example_losses
from fedft.privacy.canary_users import canary_scores, included_canaries

log = logging.getLogger("fedft")


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Probability of at least `v` correct guesses out of `r` (m canaries) if training
    is (eps, delta)-DP: the bound p(ε, δ) of the module docstring, capped at 1."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got m={m}, r={r}, v={v}")
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and 0 <= delta <= 1, got eps={eps}, delta={delta}")
    from scipy import stats  # 0.4 s to import: only runs that audit pay it

    q = 1.0 / (1.0 + math.exp(-eps))  # accuracy of eps-DP randomised response
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = np.cumsum(stats.binom.pmf(v - np.arange(1, v + 1), r, q))  # i -> P[v - i <= Binomial(r, q) < v]
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2 * m * delta * alpha, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95, steps: int = 60) -> float:
    """The largest ε whose p-value is below β = 1 - confidence (bisection, `steps` halvings
    of a bracket found by doubling): an ε lower bound that holds with probability `confidence`."""
    beta = 1.0 - confidence
    if not 0 < beta < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0  # p(low) < beta <= p(high)
    while p_value(m, r, v, high, delta) < beta:
        low, high = high, 2 * high
        if high > 1e4:  # v correct guesses out of r cannot bound ε beyond this: no finite ε explains them at level beta
            return math.inf
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if p_value(m, r, v, mid, delta) < beta else (low, mid)
    return low


def guess_split(guesses: int) -> tuple[int, int]:
    """(k₊, k₋): "in" guesses for the best scores, "out" guesses for the worst; evenly, k₊ gets the odd one."""
    return (guesses + 1) // 2, guesses // 2


def correct_guesses(scores: np.ndarray, included: np.ndarray, guesses: int) -> int:
    """v: guess "in" for the k₊ highest `scores`, "out" for the k₋ lowest (`guess_split`),
    count the guesses that match `included`. Ties break by canary order (stable sort)."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    if not 0 <= guesses <= len(scores):
        raise ValueError(f"guesses must be in 0..{len(scores)}, got {guesses}")
    k_in, k_out = guess_split(guesses)
    order = np.argsort(-scores, kind="stable")  # best score first
    return int(included[order[:k_in]].sum() + (~included[order[len(order) - k_out:]]).sum())


def contradicts(epsilon: float | None, delta: float | None, audit: dict[str, Any]) -> bool | None:
    """Whether the audit refutes the reported (ε, δ): its lower bound, at the same δ, is above ε.
    None when there is nothing to compare (no DP, or the audit used another δ)."""
    if epsilon is None or delta is None or audit.get("audit_delta") != delta:
        return None
    return bool(audit["epsilon_lower_bound"] > float(epsilon))  # float(): an unbounded ε is recorded as "inf" (JSON has no infinity)


def audit_canaries(model: nn.Module, state: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray, included: np.ndarray,
                   guesses: int, delta: float, confidence: float) -> dict[str, Any]:
    """Score each canary (x, y) by minus the final model's loss on it (a memorised
    canary has low loss), make `guesses` guesses and bound ε; summary.json keys."""
    model.load_state_dict(state)
    losses = per_example_losses(model, torch.from_numpy(x), torch.from_numpy(y)).astype(np.float64)
    big = np.finfo(np.float64).max  # a diverged model (NaN/inf loss) says "not memorised"
    scores = -np.nan_to_num(losses, nan=big, posinf=big, neginf=-big)
    return scored_audit(scores, included, guesses, delta, confidence, "minus loss")


def audit_canary_users(seed: int, count: int, movement: Sequence[np.ndarray], guesses: int, delta: float, confidence: float) -> dict[str, Any]:
    """Score the canary users (fedft.privacy.canary_users) on the final model's movement,
    make `guesses` guesses and bound ε; the same summary.json keys as `audit_canaries`."""
    return scored_audit(canary_scores(seed, count, movement), included_canaries(seed, count), guesses, delta, confidence,
                        "update alignment (canary users)")


def scored_audit(scores: np.ndarray, included: np.ndarray, guesses: int, delta: float, confidence: float, score: str) -> dict[str, Any]:
    """Guesses on `scores` (best = "in"), counted against `included`, and the bound; summary.json keys."""
    v = correct_guesses(scores, included, guesses)
    m = len(included)
    return {
        "epsilon_lower_bound": epsilon_lower_bound(m, guesses, v, delta, confidence),
        "audit_canaries": m,
        "audit_canaries_included": int(np.sum(included)),
        "audit_guesses": guesses,
        "audit_correct": v,
        "audit_delta": delta,
        "audit_confidence": confidence,
        "audit_score": score,
    }


def record_audit(summary: dict[str, Any], audit: dict[str, Any]) -> None:
    """Add the audit's keys to a run's summary (its `epsilon` and `delta` already there) with
    whether it refutes that ε; if it does, the accounting (or the mechanism it describes)
    is wrong for this run: say so where the user looks, in the log too."""
    audit["audit_contradicts_epsilon"] = refuted = contradicts(summary.get("epsilon"), summary.get("delta"), audit)
    if refuted:
        log.warning("privacy audit: ε lower bound %.3g is above the reported ε %.3g: the reported ε is wrong for this run",
                    audit["epsilon_lower_bound"], float(summary["epsilon"]))
    summary.update(audit)
