"""Cross-device runs: device profiles, deadline rounds and compressed updates, through the
real simulation; the rows against schedules recomputed from the pure functions."""

from __future__ import annotations

import numpy as np
import pytest

import fedft
from fedft.devices.deadline import plan_round
from fedft.errors import FedftError
from fedft.fl.server.policy import ClockedRounds, profiles_for
from fedft.jobs.validate import load_config


def _cross_device(tiny_config: dict, **policy) -> dict:
    tiny_config["partition"]["num_clients"] = 12
    tiny_config["simulation"].update(rounds=3, clients_per_round=4, backend="local")
    tiny_config["devices"] = {"profiles": "seeded", "dropout_probability": 0.1, "online_hours": 12.0}
    tiny_config["round_policy"] = {"name": "deadline", "deadline_seconds": 60.0, "over_selection": 0.5, **policy}
    return tiny_config


@pytest.mark.parametrize("section, values, field", [
    ("round_policy", {"name": "deadline"}, "round_policy.name"),
    ("round_policy", {"name": "fedbuff"}, "round_policy.name"),
])
def test_clocked_policies_need_devices(tiny_config, section, values, field):
    tiny_config[section] = values
    with pytest.raises(FedftError) as caught:
        load_config(tiny_config)
    assert caught.value.field == field and "devices.profiles" in caught.value.fix


@pytest.mark.parametrize("change, field", [
    ({"strategy": {"name": "scaffold"}}, "strategy.name"),
    ({"round_policy": {"buffer_size": 13}}, "round_policy.buffer_size"),
    ({"simulation": {"min_replies": 3}}, "simulation.min_replies"),
])
def test_fedbuff_refuses_what_assumes_fresh_reports(tiny_config, change, field):
    _cross_device(tiny_config, name="fedbuff", buffer_size=2)
    for section, values in change.items():
        tiny_config[section].update(values)
    with pytest.raises(FedftError) as caught:
        load_config(tiny_config)
    assert caught.value.field == field


def test_central_dp_with_poisson_sampling_is_refused_over_devices(tiny_config):
    _cross_device(tiny_config)
    tiny_config["privacy"] = {"mode": "central", "noise_multiplier": 1.0}
    with pytest.raises(FedftError) as caught:
        load_config(tiny_config)
    assert caught.value.field == "privacy.client_sampling" and "client_sampling = \"fixed\"" in caught.value.fix
    tiny_config["privacy"]["client_sampling"] = "fixed"  # no amplification: valid whoever takes part
    load_config(tiny_config)


def test_a_bad_devices_csv_exits_2_before_any_folder(tiny_config, tmp_path, capsys):
    from fedft.cli import main

    _cross_device(tiny_config)
    bad = tmp_path / "devices.csv"
    bad.write_text("client,examples_per_second,download_mbps,upload_mbps\n0,1,1,1\n")
    tiny_config["devices"]["profiles"] = str(bad)
    import tomli_w

    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps(tiny_config))
    assert main(["run", str(config)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("fedft: error: devices.profiles:") and "client 1 is missing" in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_resumed_clock_replays_the_same_rounds(tiny_config):
    cfg = load_config(_cross_device(tiny_config))
    make = lambda: ClockedRounds(cfg, profiles_for(cfg), np.full(12, 100.0), 400_000, 100_000)  # noqa: E731
    straight = make()
    plans = [straight.plan(r, frozenset()) for r in range(1, 7)]
    first = make()
    for r in range(1, 4):
        first.plan(r, frozenset())
    resumed = make()
    resumed.load_plain(first.to_plain())
    assert [resumed.plan(r, frozenset()) for r in range(4, 7)] == plans[3:]
    assert resumed.time == straight.time and resumed.joined.tolist() == straight.joined.tolist()


@pytest.mark.slow
def test_deadline_rounds_train_exactly_the_clients_the_clock_accepts(tiny_config, tmp_path, process_guard):
    """Each row's clients, bytes and virtual time are what `plan_round` gives by hand."""
    tiny_config["compression"] = {"kind": "int8"}
    cfg = load_config(_cross_device(tiny_config))
    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)
    assert result.summary["status"] == "completed", result.summary
    profiles = profiles_for(cfg)
    data = fedft.ml.data.federated_data_for(cfg)
    examples = np.array([len(train) for train, _ in data.clients], dtype=np.float64)
    rows = result.metrics[1:]
    model_bytes = rows[0]["bytes_down"] // rows[0]["clients_selected"]
    weights = sum(int(np.prod(v.shape)) for v in result.state.values())
    up = weights + 4 * len(result.state)  # int8: a byte an entry and a float32 scale a tensor
    clock = 0.0
    for row in rows:
        plan = plan_round(cfg.seed, row["round"], clock, profiles, examples, np.arange(12), 4, 0.5, 60.0, model_bytes, up)
        clock += plan.seconds
        assert (row["clients_selected"], row["clients_sampled"], row["clients_straggled"], row["clients_device_failed"]) == (
            len(plan.selected), len(plan.accepted), len(plan.stragglers), len(plan.failed))
        assert row["virtual_seconds"] == pytest.approx(plan.seconds) and row["virtual_time"] == pytest.approx(clock)
        assert row["bytes_down"] == model_bytes * len(plan.selected)
        assert up <= row["bytes_up"] / max(1, row["clients_replied"]) < up + 2 * 256 * len(result.state)  # what the npy headers add, at most
    assert result.summary["virtual_time"] == pytest.approx(clock)
    assert result.summary["rounds_joined_max"] >= 1


@pytest.mark.slow
def test_compressed_updates_compose_with_local_dp_over_deadline_rounds(tiny_config, tmp_path, process_guard):
    """Top-k updates of DP-SGD clients: compression is post-processing, so the run accounts as
    an uncompressed one would (ε within the target) while each reply carries k entries a tensor."""
    from fedft.fl.compression import encoded_bytes

    tiny_config["compression"] = {"kind": "topk", "topk_fraction": 0.1}
    tiny_config["privacy"] = {"mode": "local", "target_epsilon": 8.0}
    cfg = load_config(_cross_device(tiny_config))
    result = fedft.run(cfg, out=tmp_path / "run", quiet=True)
    assert result.summary["status"] == "completed", result.summary
    assert 0 < result.summary["epsilon"] <= 8.0 + 1e-9
    up = encoded_bytes({k: tuple(v.shape) for k, v in result.state.items()}, "topk", 0.1)
    trained = [r for r in result.metrics[1:] if r["clients_replied"] and not r["clients_refused_budget"]]  # a client past its budget sends no update
    assert trained
    for row in trained:
        assert up <= row["bytes_up"] / row["clients_replied"] < up + 2 * 256 * len(result.state)
