"""The one-run audit's bound (Steinke, Nasr & Jagielski 2023) against closed forms and
an independent math.comb evaluation of the paper's Algorithm 2, and the guessing rule."""

import math

import numpy as np
import pytest

from fedft.privacy.one_run_audit import contradicts, correct_guesses, epsilon_lower_bound, guess_split, p_value


def _tail(r: int, v: int, q: float) -> float:
    return sum(math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(v, r + 1))


def _pmf(r: int, j: int, q: float) -> float:
    return math.comb(r, j) * q**j * (1 - q) ** (r - j)


def _paper_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The paper's Algorithm 2, term by term with exact binomial coefficients."""
    q = math.exp(eps) / (1 + math.exp(eps))
    alpha, below = 0.0, 0.0
    for i in range(1, v + 1):
        below += _pmf(r, v - i, q)
        alpha = max(alpha, below / i)
    return min(_tail(r, v, q) + 2 * m * delta * alpha, 1.0)


@pytest.mark.parametrize("m, r, v, eps, delta", [(100, 100, 100, 2.0, 0.0), (1000, 60, 45, 0.7, 0.0), (1000, 60, 45, 0.7, 1e-5),
                                                 (500, 200, 150, 1.3, 1e-4), (50, 10, 1, 0.2, 1e-3), (10, 10, 0, 1.0, 1e-5)])
def test_p_value_is_the_papers_algorithm(m, r, v, eps, delta):
    assert p_value(m, r, v, eps, delta) == pytest.approx(_paper_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15)


def test_all_correct_without_delta_has_a_closed_form():
    """δ = 0, v = r: P[Bin(r, q) ≥ r] = q^r = β, so ε = logit(β^(1/r))."""
    for r, conf in ((100, 0.95), (20, 0.95), (1000, 0.99)):
        q = (1 - conf) ** (1 / r)
        assert epsilon_lower_bound(r, r, r, 0.0, conf) == pytest.approx(math.log(q / (1 - q)), rel=1e-9)
    assert epsilon_lower_bound(100, 100, 100, 0.0) == pytest.approx(3.4930, abs=1e-4)


def test_bound_is_where_the_binomial_tail_crosses_beta():
    """δ = 0: at the bound the binomial tail equals β (scipy-free check with math.comb)."""
    m, r, v = 1000, 200, 150
    eps = epsilon_lower_bound(m, r, v, 0.0, 0.95)
    q = lambda e: math.exp(e) / (1 + math.exp(e))  # noqa: E731
    assert 0 < eps < 2
    assert _tail(r, v, q(eps)) == pytest.approx(0.05, rel=1e-6)
    assert _tail(r, v, q(eps * 0.99)) < 0.05 < _tail(r, v, q(eps * 1.01))


def test_bound_grows_with_correct_guesses_and_delta_lowers_it():
    m, r = 1000, 100
    bounds = [epsilon_lower_bound(m, r, v, 1e-5) for v in range(0, r + 1, 5)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    assert bounds[0] == 0.0 and bounds[10] == 0.0  # 0 or 50 of 100 right: what chance gives
    assert bounds[-1] > 3
    assert epsilon_lower_bound(m, r, 90, 1e-3) < epsilon_lower_bound(m, r, 90, 1e-5) < epsilon_lower_bound(m, r, 90, 0.0)
    assert epsilon_lower_bound(m, r, 90, 0.0, 0.99) < epsilon_lower_bound(m, r, 90, 0.0, 0.95)


def test_more_guesses_at_perfect_accuracy_bound_more():
    assert epsilon_lower_bound(1000, 50, 50, 1e-5) < epsilon_lower_bound(1000, 100, 100, 1e-5) < epsilon_lower_bound(1000, 1000, 1000, 1e-5)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        p_value(10, 11, 5, 1.0, 0.0)
    with pytest.raises(ValueError):
        epsilon_lower_bound(10, 10, 5, 0.0, confidence=1.0)


def test_guesses_take_the_best_and_worst_scores():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.3])
    included = np.array([True, False, True, True, False, False])
    assert guess_split(4) == (2, 2) and guess_split(3) == (2, 1)
    assert correct_guesses(scores, included, 4) == 3  # in: 0.9 ✓, 0.8 ✓; out: 0.1 ✓, 0.2 ✗
    assert correct_guesses(scores, included, 1) == 1
    assert correct_guesses(scores, ~included, 4) == 1
    assert correct_guesses(scores, included, 0) == 0


def test_a_bound_above_epsilon_refutes_it_at_the_same_delta():
    audit = {"epsilon_lower_bound": 2.5, "audit_delta": 1e-5}
    assert contradicts(2.0, 1e-5, audit) is True
    assert contradicts(3.0, 1e-5, audit) is False
    assert contradicts(2.0, 1e-6, audit) is None  # another δ: not comparable
    assert contradicts(None, None, audit) is None  # no DP: nothing to refute


# ---------------------------------------------------------------- the audit against the mechanism
# User-level canaries on fedft's own central DP release (clip_update, noised_mean_update,
# noise_generator) and its own accountant (central_epsilon): canary users send a fixed random
# unit direction, each present with probability 1/2; the auditor scores a canary by the
# release's projection on its direction. One round, every user present (q = 1).
CANARIES, GUESSES, DIM, OTHERS, DELTA = 200, 100, 4000, 20, 1e-5


def _audit_one_release(noise_multiplier_used: float, noise_multiplier_told: float, seed: int = 3) -> tuple[float, float, int]:
    from fedft.privacy.accounting import central_epsilon
    from fedft.privacy.central import clip_update, noise_generator, noised_mean_update

    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((CANARIES, DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)  # norm 1 = C: clipping leaves them as they are
    included = rng.random(CANARIES) < 0.5
    updates = [[directions[i]] for i in np.flatnonzero(included)] + [[3.0 * rng.standard_normal(DIM)] for _ in range(OTHERS)]
    clipped = [clip_update(u, 1.0)[0] for u in updates]
    noise = [noise_generator(seed, 1).standard_normal(DIM)]
    release = noised_mean_update(clipped, noise, noise_multiplier_used, 1.0, expected_cohort=CANARIES + OTHERS)[0]
    correct = correct_guesses(directions @ release, included, GUESSES)
    return epsilon_lower_bound(CANARIES, GUESSES, correct, DELTA), central_epsilon(noise_multiplier_told, 1.0, 1, DELTA), correct


def test_audit_of_the_honest_central_release_stays_below_its_epsilon():
    bound, epsilon, correct = _audit_one_release(noise_multiplier_used=2.0, noise_multiplier_told=2.0)
    assert epsilon == pytest.approx(2.17, abs=0.01)  # the accountant at σ = 2, q = 1, one round, δ = 1e-5
    assert bound < epsilon, (bound, correct)


def test_audit_catches_noise_switched_off_while_the_accountant_is_told_it_is_on():
    # the broken mechanism: no noise, the accountant still told σ = 2 -> its ε = 2.17 is a lie
    bound, epsilon, correct = _audit_one_release(noise_multiplier_used=0.0, noise_multiplier_told=2.0)
    assert correct == GUESSES  # without noise every canary's presence shows
    assert bound == pytest.approx(3.49, abs=0.01)  # the most 100 correct guesses can prove at β = 0.05
    assert bound > epsilon and contradicts(epsilon, DELTA, {"epsilon_lower_bound": bound, "audit_delta": DELTA})
