"""The one-run privacy audit end to end (docs/audit.md): canaries planted in the clients'
shards, a real Flower simulation on Ray, the bound in summary.json beside ε."""

import json

import numpy as np
import pytest

import fedft
from fedft.errors import FedftError
from fedft.jobs.report import write_report
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for


def _config(tiny_config: dict, **overrides) -> dict:
    cfg = dict(tiny_config, data={"name": "digits", "test_fraction": 0.2}, partition={"method": "iid", "num_clients": 2},
               train={"lr": 0.05, "momentum": 0.9, "local_epochs": 6, "batch_size": 32},
               simulation={"rounds": 4, "clients_per_round": 2, "device": "cpu"}, audit={"canaries": 100})
    cfg.update(overrides)
    return cfg


def test_canaries_leave_the_test_set_alone_and_join_half_the_time(tiny_config):
    plain = federated_data_for(load_config(_config(tiny_config, audit={})))
    data = federated_data_for(load_config(_config(tiny_config)))
    c = data.canaries
    assert plain.canaries is None and c is not None and len(c) == 100
    assert np.array_equal(data.test, plain.test)  # accuracy numbers never see a canary
    assert not set(c.index) & set(data.test) and not set(c.index) & set(np.concatenate([v for _, v in data.clients]))
    assert np.all(data.full.y[c.index] != plain.full.y[c.index]) and np.all(data.full.y[c.index] == c.label)
    regular = set(np.concatenate([np.concatenate([t, v]) for t, v in plain.clients])) - set(c.index)
    for cid, (train, _) in enumerate(data.clients):
        planted = set(train) & set(c.index)
        assert planted == set(c.index[(c.client == cid) & c.included])
        assert set(train) - planted <= regular
    assert 30 < c.included.sum() < 70  # Binomial(100, 1/2)
    again = federated_data_for(load_config(_config(tiny_config, seed=tiny_config["seed"])))
    assert np.array_equal(again.canaries.included, c.included)  # fixed by the seed


def test_bad_audit_settings_are_one_line_errors(tiny_config):
    with pytest.raises(FedftError, match="audit.guesses"):
        load_config(_config(tiny_config, audit={"canaries": 10, "guesses": 11}))
    with pytest.raises(FedftError, match="audit.canaries"):
        federated_data_for(load_config(_config(tiny_config, audit={"canaries": 5000})))


def test_sweep_report_carries_the_lower_bound(tmp_path):
    """sweep.csv and sweep.md get the audit's columns; the plot draws with them."""
    points = []
    for i, (eps, bound) in enumerate(((1.0, 0.2), (4.0, 0.0), (8.0, 1.1))):
        name = f"p{i}"
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({
            "status": "completed", "privacy_mode": "local", "final_accuracy": 0.5 + i / 10, "epsilon": eps, "delta": 1e-5,
            "epsilon_lower_bound": bound, "audit_canaries": 100, "audit_guesses": 50, "audit_correct": 30 + i}))
        points.append({"name": name, "values": {"privacy.target_epsilon": eps}})
    (tmp_path / "points.json").write_text(json.dumps(points))
    table = write_report(tmp_path)
    header = (tmp_path / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["point", "privacy.target_epsilon"]
    assert {"epsilon_lower_bound", "audit_canaries", "audit_guesses", "audit_correct"} <= set(header)
    assert "ε lower bound (audit)" in table and "| 1.1 |" in table
    assert (tmp_path / "sweep.png").stat().st_size > 0


@pytest.mark.slow
def test_non_private_run_with_canaries_has_a_positive_lower_bound(tiny_config, tmp_path, shared_ray, process_guard):
    """No DP: the final model memorises the mislabeled canaries it saw, and the audit
    turns that into ε ≥ 1.75 (47 of 50 guesses right; 95% confidence, δ = 1e-5)."""
    result = fedft.run(_config(tiny_config), out=tmp_path / "plain", quiet=True)
    s = result.summary
    assert s["status"] == "completed"
    assert s["audit_canaries"] == 100 and s["audit_guesses"] == 50 and s["audit_delta"] == 1e-5
    assert s["audit_correct"] >= 45 and s["epsilon_lower_bound"] > 1.0
    assert s["audit_contradicts_epsilon"] is None  # no DP: no ε to refute
    assert json.loads((result.run_dir / "summary.json").read_text())["epsilon_lower_bound"] == s["epsilon_lower_bound"]


@pytest.mark.slow
def test_local_dp_run_lower_bound_stays_below_epsilon(tiny_config, tmp_path, shared_ray, process_guard):
    """Local DP-SGD (σ = 1): the audit's bound (0, 28 of 50 right) is below the ε the clients report (2.97)."""
    cfg = _config(tiny_config, privacy={"mode": "local", "noise_multiplier": 1.0, "max_grad_norm": 1.0},
                  simulation={"rounds": 2, "clients_per_round": 2, "device": "cpu"}, train={"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 32})
    s = fedft.run(cfg, out=tmp_path / "local", quiet=True).summary
    assert s["status"] == "completed" and s["privacy_mode"] == "local"
    assert s["audit_canaries"] == 100 and 0 <= s["epsilon_lower_bound"] < s["epsilon"]
    assert s["audit_contradicts_epsilon"] is False


# ---------------------------------------------------------------- canary users (user level, central DP)


def _central(tiny_config: dict, noise_multiplier: float, **privacy) -> dict:
    return _config(tiny_config, audit={"canary_users": 100}, simulation={"rounds": 2, "clients_per_round": 2, "device": "cpu"},
                   train={"lr": 0.05, "momentum": 0.0, "local_epochs": 1, "batch_size": 32},
                   privacy={"mode": "central", "noise_multiplier": noise_multiplier, "clipping_norm": 1.0, **privacy})


@pytest.mark.slow
def test_canary_users_give_a_positive_bound_without_noise_and_one_below_epsilon_with_it(tiny_config, tmp_path, shared_ray, process_guard):
    """Central DP's release with σ = 0 shows every canary user: 50 of 50 guesses right,
    the most 50 guesses can prove. Closed form (δ's term is negligible): q^50 = 0.05 at
    q = 0.05^(1/50) = 0.9418, ε = ln(q / (1 - q)) = 2.78. With σ = 2 the bound stays
    below the accountant's ε."""
    plain = fedft.run(_central(tiny_config, 0.0), out=tmp_path / "plain", quiet=True).summary
    assert plain["status"] == "completed" and plain["audit_canaries"] == 100 and plain["audit_guesses"] == 50
    assert plain["audit_correct"] == 50 and plain["epsilon_lower_bound"] == pytest.approx(np.log(0.05 ** (1 / 50) / (1 - 0.05 ** (1 / 50))), abs=0.01)
    assert plain["audit_score"].startswith("update alignment")
    noised = fedft.run(_central(tiny_config, 2.0), out=tmp_path / "noised", quiet=True).summary
    assert noised["status"] == "completed" and noised["epsilon"] > 0
    assert 0 <= noised["epsilon_lower_bound"] < noised["epsilon"] and noised["audit_contradicts_epsilon"] is False


def test_canary_users_need_central_dp_and_one_audit_at_a_time(tiny_config):
    with pytest.raises(FedftError, match=r"audit.canary_users: .*privacy.mode is \"none\""):
        load_config(_config(tiny_config, audit={"canary_users": 10}))
    with pytest.raises(FedftError, match="audit.canary_users: and audit.canaries are both set"):
        load_config(_config(tiny_config, audit={"canary_users": 10, "canaries": 10}, privacy={"mode": "central", "noise_multiplier": 1.0}))
    with pytest.raises(FedftError, match="audit.guesses: = 11 is more than audit.canary_users = 10"):
        load_config(_config(tiny_config, audit={"canary_users": 10, "guesses": 11}, privacy={"mode": "central", "noise_multiplier": 1.0}))
