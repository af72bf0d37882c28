"""One client pipeline for plain and DP training: every option works under local DP too."""

import pytest
import torch
from flwr.app import RecordDict

from fedft.jobs.validate import load_config
from fedft.fl.client.attack import attack_generator, attack_update, attackers, flip_labels
from fedft.fl.client.pipeline import local_update
from fedft.fl.client.trainers import DPTrainer, PlainTrainer, trainer_for
from fedft.fl.context import RunContext, client_tensors, run_context
from fedft.privacy.dp_sgd import BUDGET_SPENT, EPSILON


def _config(privacy=None, **sections) -> str:
    raw = {
        "seed": 5,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 8},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "simulation": {"rounds": 3, "clients_per_round": 8, "device": "cpu"},
        "privacy": {"mode": "local", "noise_multiplier": 1.0, "noise_source": "seeded", **(privacy or {})},  # seeded: runs compared bit for bit
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return load_config(raw).to_json()


def _start(config_json: str) -> dict[str, torch.Tensor]:
    ctx = run_context(config_json)
    return {k: ctx.start_state[k].clone() for k in ctx.plan.sent}


def test_the_config_picks_the_trainer():
    assert isinstance(trainer_for(run_context(_config())), DPTrainer)
    assert isinstance(trainer_for(run_context(_config(privacy={"mode": "none", "noise_multiplier": None}))), PlainTrainer)


@pytest.mark.parametrize("kind", ["sign_flip", "scale", "gaussian"])
def test_update_attacks_apply_to_the_dp_trained_state(kind):
    """A DP attacker trains exactly as an honest DP client (same seeded batches and
    noise), then sends the attacked version of that state."""
    attack = {"kind": kind, "fraction": 0.25, "scale": 3.0, "noise_std": 0.5, "seed": 1}
    honest, attacked = _config(), _config(attack=attack)
    bad = min(attackers(1, 8, 0.25))
    x = _start(honest)
    y_honest, m_honest = local_update(honest, bad, 1, x, node_state=RecordDict())
    y_sent, m_sent = local_update(attacked, bad, 1, x, node_state=RecordDict())
    expected = attack_update(kind, x, y_honest, scale=3.0, noise_std=0.5, generator=attack_generator(1, 1, bad))
    assert all(torch.equal(y_sent[k], expected[k]) for k in x) and m_sent == m_honest
    assert m_sent[EPSILON] > 0 and m_sent[BUDGET_SPENT] == 0  # it was a DP round
    if kind == "sign_flip":
        for k in x:
            torch.testing.assert_close(y_sent[k], x[k] - 3.0 * (y_honest[k] - x[k]))


def test_dp_label_flip_attacker_trains_on_flipped_labels():
    attacked = _config(attack={"kind": "label_flip", "fraction": 0.25, "seed": 1})
    honest = _config()
    bad = min(attackers(1, 8, 0.25))
    x = _start(honest)
    x_tr, y_tr, x_val, y_val, classes = client_tensors(honest, bad)
    y_sent, m_sent = local_update(attacked, bad, 1, x, node_state=RecordDict())
    flipped, m_flipped = local_update(honest, bad, 1, x, (x_tr, flip_labels(y_tr, classes), x_val, y_val, classes), node_state=RecordDict())
    y_honest, _ = local_update(honest, bad, 1, x, node_state=RecordDict())
    assert all(torch.equal(y_sent[k], flipped[k]) for k in x) and m_sent == m_flipped
    assert not all(torch.equal(y_sent[k], y_honest[k]) for k in x)


def test_dp_body_lr_scale_scales_the_body_step():
    """No noise, no clipping, one full batch (q = 1): one DP-SGD step, so the body moves
    body_lr_scale times as far as at scale 1 and the head exactly as far."""
    privacy = {"noise_multiplier": 0.0, "max_grad_norm": 1e6}
    train = {"batch_size": 10_000, "momentum": 0.0}
    configs = {s: _config(privacy=privacy, train=train, finetune={"mode": "last:2", "body_lr_scale": s}) for s in (1.0, 0.1)}
    x = _start(configs[1.0])
    moved = {}
    for scale, config in configs.items():
        y, metrics = local_update(config, 0, 1, x, node_state=RecordDict())
        assert metrics["steps"] == 1
        moved[scale] = {k: y[k] - x[k] for k in x}
    plan = run_context(configs[1.0]).plan
    body = [k for k in plan.trainable if k not in plan.head]
    assert body and all(float(moved[1.0][k].abs().max()) > 0 for k in plan.sent)
    for k in body:
        torch.testing.assert_close(moved[0.1][k], 0.1 * moved[1.0][k], rtol=1e-4, atol=1e-7)
    for k in plan.head:
        torch.testing.assert_close(moved[0.1][k], moved[1.0][k], rtol=1e-5, atol=1e-8)


def test_dp_empty_shard_gets_the_plain_empty_round():
    """Nothing to train on, nothing to account: no DP metrics, the received state back."""
    config = _config()
    x = _start(config)
    x_tr, y_tr, x_val, y_val, classes = client_tensors(config, 0)
    state, metrics = local_update(config, 0, 1, x, (x_tr[:0], y_tr[:0], x_val, y_val, classes), node_state=RecordDict())
    assert metrics["num-examples"] == 0 and metrics["steps"] == 0 and EPSILON not in metrics
    assert all(torch.equal(state[k], x[k]) for k in x)


def test_a_run_context_derives_once():
    config = _config()
    ctx = run_context(config)
    assert run_context(config) is ctx and ctx.plan is ctx.plan and ctx.start_state is ctx.start_state
    assert client_tensors(config, 1) is ctx.client_tensors(1)
    assert RunContext(ctx.cfg).frozen_digest == ctx.frozen_digest == ""  # full mode: every array travels
