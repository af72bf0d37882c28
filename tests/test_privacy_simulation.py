"""Local and central DP end to end through Flower's simulation engine on Ray."""

import csv
import json

import pytest
from opacus.accountants import RDPAccountant

import fedft
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for
from fedft.ml.models import build_model
from fedft.privacy.accounting import dp_sgd_sample_rate, dp_sgd_steps_per_epoch


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _rdp(noise_multiplier, sample_rate, steps, delta=1e-5, alphas=None):
    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return acc.get_epsilon(delta=delta, alphas=alphas)


@pytest.mark.slow
def test_local_dp_run_accounts_refuses_and_excludes(tiny_config, tmp_path, shared_ray, process_guard):
    """3 clients, 2 per round, 3 rounds; the budget covers exactly one round per client,
    so later rounds meet refusals, and a refused client is never sampled again."""
    cfg = dict(tiny_config, train={"lr": 0.05, "local_epochs": 1, "batch_size": 64}, simulation={"rounds": 3, "clients_per_round": 2, "device": "cpu"},
               data={"name": "mnist-5k", "test_fraction": 0.7})  # 450 records per client: 8 DP-SGD steps a round
    sizes = {len(train) for train, _ in federated_data_for(load_config(cfg)).clients}
    assert len(sizes) == 1  # equal IID shards: one (q, steps) for every client
    n = sizes.pop()
    q, steps = dp_sgd_sample_rate(n, 64), dp_sgd_steps_per_epoch(n, 64)
    one_round = _rdp(1.0, q, steps)
    target = (one_round + _rdp(1.0, q, 2 * steps)) / 2
    cfg["privacy"] = {"mode": "local", "noise_multiplier": 1.0, "target_epsilon": target, "max_grad_norm": 1.0, "accountant": "rdp"}  # rdp: against Opacus' RDPAccountant

    result = fedft.run(cfg, out=tmp_path / "local", quiet=True)
    summary = result.summary
    assert summary["status"] == "completed"
    assert summary["privacy_mode"] == "local" and summary["accountant"] == "rdp" and summary["delta"] == 1e-5
    assert summary["epsilon"] == pytest.approx(one_round, rel=1e-9) and summary["epsilon"] <= target
    assert summary["steps_max"] == steps and summary["sample_rate"] == q and summary["noise_multiplier"] == 1.0
    assert summary["max_grad_norm"] == 1.0
    assert json.loads((result.run_dir / "summary.json").read_text())["epsilon"] == summary["epsilon"]
    rows = _rows(result.run_dir)
    for row in rows[1:]:
        assert {"epsilon", "epsilon_mean", "delta", "noise_multiplier", "clipping_norm", "clients_refused_budget"} <= set(row)
        assert float(row["epsilon"]) == pytest.approx(one_round, rel=1e-9)
    refusals = sum(int(r["clients_refused_budget"]) for r in rows[1:])
    spent = summary["clients_budget_spent"]
    assert refusals >= 1 and refusals == len(spent)  # each refuses once, then is never sampled again
    assert int(rows[3]["clients_sampled"]) == min(2, 3 - int(rows[2]["clients_refused_budget"]))
    assert list(result.state) == list(build_model("seed_cnn").state_dict())  # no `_module.` keys reach the server
    # nothing computed on private data leaves a client by default; the server's own evaluation and plot stay
    assert summary["noise_source"] == "os" and summary["client_metrics"] == "withheld" and summary["private"] is True
    assert summary["epsilon_client_history"] == [[1.0, q, steps]]  # the server's own count of the worst client's steps
    assert all(r["train_loss"] == r["val_accuracy"] == "" and r["test_accuracy"] != "" for r in rows[1:])
    assert (result.run_dir / "accuracy.png").is_file()


@pytest.mark.slow
def test_central_dp_run_reports_user_level_epsilon(tiny_config, tmp_path, shared_ray, process_guard):
    """DP-FedAvg, client-side fixed clipping (Flower's fixedclipping_mod on the clients), Poisson
    client sampling at q = 2/3: ε per round equals an RDP accountant stepped once per round at
    q = 2/3 (integer orders 2..256, fedft's central orders)."""
    cfg = dict(tiny_config, simulation={"rounds": 2, "clients_per_round": 2, "device": "cpu"})
    cfg["privacy"] = {"mode": "central", "clipping": "client_fixed", "clipping_norm": 0.5, "noise_multiplier": 0.8, "accountant": "rdp"}  # rdp: against Opacus' RDPAccountant
    result = fedft.run(cfg, out=tmp_path / "central", quiet=True)
    summary = result.summary
    assert summary["status"] == "completed" and summary["privacy_mode"] == "central"
    rows = _rows(result.run_dir)
    orders = list(range(2, 257))
    for r in (1, 2):
        assert float(rows[r]["epsilon"]) == pytest.approx(_rdp(0.8, 2 / 3, r, alphas=orders), rel=1e-9)
        assert float(rows[r]["clipping_norm"]) == 0.5 and rows[r]["clients_replied"] == rows[r]["clients_sampled"]
    assert summary["epsilon"] == pytest.approx(_rdp(0.8, 2 / 3, 2, alphas=orders), rel=1e-9)
    assert summary["sample_rate"] == pytest.approx(2 / 3) and summary["releases"] == 2 and summary["noise_multiplier"] == 0.8
    # train metrics are computed on private data: withheld under central DP too, and what stays outside ε is listed
    assert all(r["train_loss"] == r["train_accuracy"] == "" and r["test_accuracy"] != "" for r in rows[1:])
    assert summary["private"] is True and any(f.startswith("num-examples") for f in summary["outside_epsilon"])
