"""Malicious clients: who attacks (a pure function of seed and client id) and what they send."""

import pytest
import torch

from fedft.fl.client.attack import attack_generator, attack_update, attacker_key, attackers, flip_labels, is_attacker
from fedft.fl.client.pipeline import local_update
from fedft.config import AttackConfig
from fedft.jobs.validate import load_config
from fedft.fl.context import RunContext


def test_attackers_are_exact_and_reproducible():
    chosen = attackers(seed=1, num_clients=10, fraction=0.2)
    assert len(chosen) == 2 and chosen == attackers(1, 10, 0.2)
    assert len(attackers(1, 10, 0.0)) == 0 and len(attackers(1, 10, 1.0)) == 10
    assert attacker_key(1, 3) == attacker_key(1, 3) and attacker_key(1, 3) != attacker_key(2, 3)
    assert len({attackers(seed, 10, 0.2) for seed in range(6)}) > 1  # the seed picks the set
    assert attackers(1, 10, 0.2) <= attackers(1, 10, 0.5)  # more attackers keep the earlier ones
    assert not is_attacker(AttackConfig(kind="none", fraction=1.0), 0, 10)


def test_update_attacks_by_hand():
    # Prepare: x = global, y = honest local model, u = y - x = (2, -1); an int buffer stays as trained
    x = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(3)}
    y = {"w": torch.tensor([3.0, 0.0]), "n": torch.tensor(4)}
    # Execute / Assert
    assert torch.equal(attack_update("sign_flip", x, y, scale=2.0)["w"], torch.tensor([-3.0, 3.0]))  # x - 2u
    assert torch.equal(attack_update("scale", x, y, scale=10.0)["w"], torch.tensor([21.0, -9.0]))  # x + 10u
    assert attack_update("sign_flip", x, y)["n"].item() == 4
    assert attack_update("label_flip", x, y) is y
    big_x, big_y = {"w": torch.zeros(20000)}, {"w": torch.ones(20000)}
    a = attack_update("gaussian", big_x, big_y, noise_std=0.5, generator=attack_generator(0, 1, 2))["w"]
    b = attack_update("gaussian", big_x, big_y, noise_std=0.5, generator=attack_generator(0, 1, 2))["w"]
    assert torch.equal(a, b) and abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 0.5) < 0.02  # noise replaces u


def test_flip_labels():
    assert flip_labels(torch.tensor([0, 3, 9]), 10).tolist() == [9, 6, 0]


@pytest.mark.slow  # seconds of compute, no process
def test_attacker_reply_is_the_flipped_honest_update():
    base = {
        "seed": 2,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 4},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "simulation": {"clients_per_round": 4, "device": "cpu"},
    }
    attacked = load_config({**base, "attack": {"kind": "sign_flip", "fraction": 0.5, "scale": 3.0, "seed": 4}})
    honest = load_config(base)
    x = RunContext(honest).initial_state
    bad = sorted(attackers(4, 4, 0.5))
    good = sorted(set(range(4)) - set(bad))
    y_honest, _ = local_update(honest.to_json(), bad[0], 1, x)
    y_sent, _ = local_update(attacked.to_json(), bad[0], 1, x)
    for k in x:
        torch.testing.assert_close(y_sent[k], x[k] - 3.0 * (y_honest[k] - x[k]))
    y_good, _ = local_update(attacked.to_json(), good[0], 1, x)
    y_good_ref, _ = local_update(honest.to_json(), good[0], 1, x)
    assert all(torch.equal(y_good[k], y_good_ref[k]) for k in x)
