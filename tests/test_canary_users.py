"""Canary users (fedft/privacy/canary_users.py): directions, inclusion and participation
from the seed alone, and the alignment scores against hand-built model movements."""

import numpy as np
import pytest

from fedft.privacy.canary_users import canaries_in_round, canary_direction, canary_scores, included_canaries
from fedft.privacy.central import CanaryUsers, noised_mean_update
from fedft.privacy.one_run_audit import audit_canary_users

SHAPES = [(30, 20), (20,)]


def test_a_direction_is_a_unit_vector_fixed_by_seed_and_canary():
    u = canary_direction(1, 5, SHAPES)
    assert [p.shape for p in u] == SHAPES
    assert np.sqrt(sum(np.sum(p * p) for p in u)) == pytest.approx(1.0)
    assert all(np.array_equal(a, b) for a, b in zip(u, canary_direction(1, 5, SHAPES)))
    assert not np.allclose(u[0], canary_direction(1, 6, SHAPES)[0])


def test_about_half_are_included_and_included_ones_join_at_the_users_rate():
    included = included_canaries(0, 4000)
    assert abs(included.mean() - 0.5) < 0.03  # 4 standard deviations of Binomial(4000, 1/2) / 4000
    joins = [len(canaries_in_round(0, r, included, 0.1)) for r in range(1, 201)]
    assert abs(np.mean(joins) / included.sum() - 0.1) < 0.01
    assert all(i in np.flatnonzero(included) for r in (1, 2) for i in canaries_in_round(0, r, included, 0.1))
    assert canaries_in_round(0, 3, included, 0.1) == canaries_in_round(0, 3, included, 0.1)  # a resume replays them


def test_scores_pick_out_the_canaries_that_moved_the_model():
    # Prepare: the model moved by exactly the included canaries' directions (no noise, no other users)
    m = 40
    included = included_canaries(3, m)
    movement = [np.zeros(s) for s in SHAPES]
    for i in np.flatnonzero(included):
        movement = [a + u for a, u in zip(movement, canary_direction(3, int(i), SHAPES))]
    # Execute
    scores = canary_scores(3, m, movement)
    # Assert: an included canary scores 1 plus its near-orthogonal neighbours; an excluded one only those
    assert scores[included].min() > scores[~included].max()
    audit = audit_canary_users(3, m, movement, 20, 1e-5, 0.95)
    assert audit["audit_correct"] == 20 and audit["epsilon_lower_bound"] > 0


def test_the_release_carries_each_joining_canary_at_the_clipping_norm():
    canaries = CanaryUsers(seed=2, count=10, rate=1.0)  # every included canary joins
    updates = canaries.updates(1, SHAPES, clipping_norm=0.5)
    assert len(updates) == included_canaries(2, 10).sum()
    assert all(np.sqrt(sum(np.sum(p * p) for p in u)) == pytest.approx(0.5) for u in updates)
    release = noised_mean_update(updates, [np.zeros(s) for s in SHAPES], 0.0, 0.5, expected_cohort=10.0)
    expected = [sum(u[k] for u in updates) / 10.0 for k in range(len(SHAPES))]  # no noise: the plain sum over m = 10
    assert all(np.allclose(a, b) for a, b in zip(release, expected))
