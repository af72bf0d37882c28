"""Canary users: the one-run audit (fedft.privacy.one_run_audit) at user level.

For central DP the unit of privacy is a user's whole update, so the canaries are users
(Andrew et al., "One-shot empirical privacy estimation for federated learning", ICLR
2024; the bound is Steinke, Nasr & Jagielski 2023's). Canary i is a fixed random
direction uᵢ, ‖uᵢ‖₂ = 1, over the arrays the server releases. Each canary is included
with probability ½; an included one is a user like any other: it joins each round
with the run's sampling rate q and sends the update C·uᵢ (C the clipping norm in
force, so clipping leaves it as it is) into the same clipped, noised sum. Excluded
canaries never take part. After training the auditor scores canary i by the final
model's movement along its direction,

    sᵢ = ⟨θ_T − θ_0, uᵢ⟩,

guesses "in" for the highest scores and "out" for the lowest, and turns the number
of correct guesses into an ε lower bound. An honest mechanism keeps the bound below
its ε; a mechanism whose noise is smaller than the accountant is told gives itself
away (tests/test_one_run_audit.py).

Pure numpy, so the central DP release can use it without the audit's statistics
(`audit_canary_users` in fedft.privacy.one_run_audit scores and bounds).

Canaries are extra users, outside `partition.num_clients`: they add about q·m/2
updates to a round and move the model slightly (each by C/m_expected per round),
so a study reports its accuracy without them. Everything derives from (seed, canary,
round): a resumed run replays the same canaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_STREAM = 0xCA7A  # keeps the canary streams apart from sampling, training and noise


def included_canaries(seed: int, count: int) -> np.ndarray:
    """Which of `count` canary users take part at all: each independently with probability ½."""
    return np.random.default_rng([seed, _STREAM, 0]).random(count) < 0.5


def canaries_in_round(seed: int, server_round: int, included: np.ndarray, rate: float) -> list[int]:
    """The included canaries that join `server_round`: each with probability `rate` (q), like a user."""
    joins = np.random.default_rng([seed, _STREAM, 1, server_round]).random(len(included)) < rate
    return [int(i) for i in np.flatnonzero(joins & np.asarray(included, dtype=bool))]


def cyclic_canaries_in_round(seed: int, server_round: int, included: np.ndarray, period: int) -> list[int]:
    """Under cyclic sampling a canary is a user of a random one of the `period` groups: it
    joins round r when (r − 1) mod period is its group, as the users it stands for do."""
    groups = np.random.default_rng([seed, _STREAM, 3]).integers(0, period, size=len(included))
    return [int(i) for i in np.flatnonzero((groups == (server_round - 1) % period) & np.asarray(included, dtype=bool))]


def canary_direction(seed: int, canary: int, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """uᵢ: a uniformly random unit vector over arrays of `shapes` (a normalised Gaussian)."""
    rng = np.random.default_rng([seed, _STREAM, 2, canary])
    parts = [rng.standard_normal(shape) for shape in shapes]
    norm = float(np.sqrt(sum(float(np.sum(p * p)) for p in parts)))
    return [p / norm for p in parts]


def canary_scores(seed: int, count: int, movement: Sequence[np.ndarray]) -> np.ndarray:
    """sᵢ = ⟨movement, uᵢ⟩ for every canary, `movement` = θ_T − θ_0 over the released arrays."""
    shapes = [np.shape(m) for m in movement]
    return np.array([sum(float(np.sum(np.asarray(m, dtype=np.float64) * u)) for m, u in zip(movement, canary_direction(seed, i, shapes)))
                     for i in range(count)])

