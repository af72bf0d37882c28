"""The centralised reference arm (simulation.centralised): one model on the union of the
clients' data, record-level DP-SGD accounted for the steps it takes, beside federated runs."""

import json
import math

import pytest

from fedft.errors import FedftError
from fedft.jobs.centralised import union_noise_multiplier
from fedft.jobs.run import prepare, run
from fedft.jobs.validate import load_config
from fedft.ml.data import federated_data_for
from fedft.privacy.accounting import calibrate_noise


def _config(tmp_path, **privacy):
    return {
        "name": "central-ref",
        "seed": 1,
        "data": {"name": "mnist-5k", "test_fraction": 0.2, "val_fraction": 0.95},  # 1,000 test records; 200 train over 2 clients (the union)
        "partition": {"method": "iid", "num_clients": 2},
        "model": {"name": "dp_cnn", "activation": "tanh"},
        "train": {"lr": 1.0, "local_epochs": 1, "batch_size": 64},
        "simulation": {"rounds": 2, "clients_per_round": 2, "device": "cpu", "centralised": True, "evaluate_every": 2},
        "privacy": privacy,
        "output": {"dir": str(tmp_path / "runs")},
    }


def test_union_noise_is_calibrated_for_one_holder_of_all_records():
    """σ for q = 1/ceil(N/B) of the union and R·E·ceil(N/B) steps (every round, no client sampling)."""
    cfg = load_config({"simulation": {"rounds": 3, "clients_per_round": 2, "centralised": True}, "partition": {"num_clients": 4},
                       "train": {"batch_size": 100, "local_epochs": 2}, "privacy": {"mode": "local", "target_epsilon": 3.0}})
    assert union_noise_multiplier(cfg, 1000) == calibrate_noise(3.0, 1e-5, 0.1, 3 * 2 * 10, "pld")
    assert union_noise_multiplier(load_config({**cfg.model_dump(mode="json"), "privacy": {"mode": "local", "noise_multiplier": 1.3}}), 1000) == 1.3


def test_centralised_run_rejects_user_level_dp():
    with pytest.raises(FedftError, match="simulation.centralised"):
        load_config({"simulation": {"centralised": True}, "privacy": {"mode": "central", "target_epsilon": 3.0}})


@pytest.mark.slow  # a real DP-SGD training run: seconds of compute
def test_centralised_dp_epsilon_is_accounted_for_the_steps_taken(tmp_path):
    """The run trains on all clients' training records; the history it reports is what Opacus
    sampled (q = 1/ceil(N/B), one step per batch drawn), and its ε equals an independent
    RDP analysis of that (σ, q, steps) by Google's dp-accounting, at or under the target."""
    dp_accounting = pytest.importorskip("dp_accounting")
    cfg = _config(tmp_path, mode="local", target_epsilon=3.0, accountant="rdp")  # rdp: checked against dp-accounting's RDP
    data = federated_data_for(prepare(cfg))
    n = sum(len(train) for train, _ in data.clients)
    result = run(cfg, quiet=True)
    s = result.summary
    assert s["status"] == "completed" and s["training"] == "centralised" and s["train_examples"] == n
    batches = math.ceil(n / 64)
    assert s["sample_rate"] == pytest.approx(1 / batches)  # 64/200 rounded up to 1/4: never understated
    assert s["steps_max"] == 2 * batches == sum(r["train_steps"] for r in result.metrics if r["round"] > 0)
    sigma = s["noise_multiplier"]
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))  # Opacus' default RDP orders
    acc = dp_accounting.rdp.RdpAccountant(orders)
    acc.compose(dp_accounting.PoissonSampledDpEvent(1 / batches, dp_accounting.GaussianDpEvent(sigma)), 2 * batches)
    independent = acc.get_epsilon(1e-5)
    assert s["epsilon"] == pytest.approx(independent, rel=0.01)  # the libraries' subsampled-Gaussian RDP bounds differ slightly at fractional orders
    assert 2.9 <= s["epsilon"] <= 3.0
    assert [r["epsilon"] for r in result.metrics if r["round"] > 0] == sorted(r["epsilon"] for r in result.metrics if r["round"] > 0)
    assert result.metrics[-1]["epsilon"] == pytest.approx(s["epsilon"])
    on_disk = json.loads((result.run_dir / "summary.json").read_text())
    assert on_disk["epsilon_rdp"] == s["epsilon"] and 0 < on_disk["epsilon_prv"] <= s["epsilon"]
    assert on_disk["privacy_mode"] == "local" and on_disk["privacy_unit"] == "record" and on_disk["final_accuracy"] == s["final_accuracy"]
    assert (result.run_dir / "model.pt").exists() and (result.run_dir / "accuracy.png").exists()


@pytest.mark.slow
def test_centralised_arm_lands_in_the_sweep_table(tmp_path, shared_ray, process_guard):
    """A sweep of federated local DP and the centralised DP-SGD arm at the same ε: both points
    complete, sweep.csv says which trained centrally, the table and figure name the arm."""
    from fedft.jobs.report import sweep_rows, sweep_title
    from fedft.jobs.sweep import sweep

    raw = _config(tmp_path, mode="local", target_epsilon=8.0)
    raw["simulation"] = {**raw["simulation"], "rounds": 1, "centralised": False}
    raw["sweep"] = {"simulation": {"centralised": [False, True]}}
    result = sweep(raw, out=tmp_path / "sw", quiet=True)
    rows = {r["simulation.centralised"]: r for r in sweep_rows(result.sweep_dir)}
    assert rows[True]["status"] == rows[False]["status"] == "completed"
    assert rows[True]["training"] == "centralised" and rows[False]["training"] == "federated"
    assert 0 < rows[True]["epsilon"] <= 8.0 and 0 < rows[False]["epsilon"] <= 8.0
    assert "centralised" in (result.sweep_dir / "sweep.csv").read_text() and (result.sweep_dir / "sweep.png").exists()
    assert "local DP and centralised DP-SGD" in sweep_title(list(rows.values()), "x")
