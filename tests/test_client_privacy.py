"""Local DP on the client's side: where its noise comes from, what it sends, and a
deployed client's own policy. Real Opacus DP-SGD on real digits shards, the real
ClientApp train function with a real Flower Context; no Ray, no processes."""

import json

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from opacus.accountants import RDPAccountant

from fedft.deploy.supernode import node_config_text
from fedft.errors import FedftError
from fedft.fl.client.app import POLICY_ERROR_CODE, train
from fedft.fl.client.pipeline import local_update
from fedft.fl.context import RunContext, client_tensors
from fedft.jobs.validate import load_config
from fedft.privacy.accounting import dp_sgd_sample_rate, dp_sgd_steps_per_epoch
from fedft.privacy.client_policy import ClientPolicy
from fedft.privacy.dp_sgd import BUDGET_SPENT, EPSILON, POLICY_REFUSED
from fedft.privacy.history import STATE_KEY
from flower_messages import train_instruction


def _config(mode: str = "local", **privacy) -> str:
    return load_config({
        "seed": 5,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 4},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "simulation": {"rounds": 3, "clients_per_round": 4, "device": "cpu"},
        "privacy": {"mode": mode, **({"noise_multiplier": 1.0, "accountant": "rdp"} if mode != "none" else {}), **privacy},  # rdp: checked against Opacus' RDPAccountant
    }).to_json()


def _start(config: str) -> dict[str, torch.Tensor]:
    return RunContext(load_config(json.loads(config))).initial_state


def _rdp_epsilon(config: str, sigma: float, rounds: int, delta: float = 1e-5) -> float:
    """Opacus' RDPAccountant on `rounds` rounds of client 2's DP-SGD steps."""
    n = len(client_tensors(config, 2)[1])
    accountant = RDPAccountant()
    accountant.history = [(sigma, dp_sgd_sample_rate(n, 32), rounds * dp_sgd_steps_per_epoch(n, 32))]
    return accountant.get_epsilon(delta)


def test_os_noise_by_default_differs_between_identical_rounds_seeded_repeats():
    derived, os_noise = _config(noise_source="seeded"), _config()
    a, _ = local_update(derived, 2, 1, _start(derived), node_state=RecordDict())
    b, _ = local_update(derived, 2, 1, _start(derived), node_state=RecordDict())
    c, _ = local_update(os_noise, 2, 1, _start(os_noise), node_state=RecordDict())
    d, _ = local_update(os_noise, 2, 1, _start(os_noise), node_state=RecordDict())
    assert all(torch.equal(a[k], b[k]) for k in a)  # (seed, round, client) fixes batches and noise
    assert all(not torch.equal(c[k], d[k]) for k in c if c[k].is_floating_point())  # OS entropy: every array differs


def test_private_metrics_withheld_under_local_dp_unless_clear():
    withheld = _config()
    _, metrics = local_update(withheld, 2, 1, _start(withheld), node_state=RecordDict())
    assert not {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} & set(metrics)
    assert metrics["num-examples"] > 0 and EPSILON in metrics  # the weight and the accountant's report still travel
    clear = _config(client_metrics="clear")
    _, metrics = local_update(clear, 2, 1, _start(clear), node_state=RecordDict())
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(metrics)
    plain = _config("none")
    _, metrics = local_update(plain, 2, 1, _start(plain))
    assert "train_loss" in metrics  # without DP there is no ε to stay inside


@pytest.mark.parametrize("mode", ["local", "central"])
def test_what_replies_carry_outside_epsilon_and_how_to_keep_it_out(mode):
    """Under either DP mode the default withholds train/val metrics (central DP sent them in the
    clear before), "none" also sends num-examples as 1, and summary.json lists what stays outside ε."""
    from fedft.fl.client.pipeline import local_evaluate
    from fedft.privacy.disclosure import outside_epsilon
    from fedft.privacy.tracker import privacy_tracker

    private = {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    withheld = _config(mode)
    _, metrics = local_update(withheld, 2, 1, _start(withheld), node_state=RecordDict())
    n = len(client_tensors(withheld, 2)[1])
    assert not private & set(metrics) and metrics["num-examples"] == n
    summary = privacy_tracker(load_config(json.loads(withheld))).summary()
    assert summary["outside_epsilon"] == outside_epsilon(mode, "withheld") and any(f.startswith("num-examples") for f in summary["outside_epsilon"])
    none = _config(mode, client_metrics="none")
    _, metrics = local_update(none, 2, 1, _start(none), node_state=RecordDict())
    assert not private & set(metrics) and metrics["num-examples"] == 1.0
    assert local_evaluate(none, 2, _start(none)) == {"num-examples": 1.0}
    summary = privacy_tracker(load_config(json.loads(none))).summary()
    assert not any(f.startswith("num-examples") for f in summary["outside_epsilon"]) and summary["private"] is True
    clear = privacy_tracker(load_config(json.loads(_config(mode, client_metrics="clear")))).summary()
    assert any(f.startswith("train_loss") for f in clear["outside_epsilon"])


def test_policy_budget_is_the_clients_own_rdp_epsilon_in_its_own_folder(tmp_path):
    """ε after one round fits the client's maximum, after two it does not: round 2 is
    refused and nothing is spent; the history lives only in the node's folder."""
    config = _config(accountant="prv")  # the server's accountant does not count: the client checks RDP
    one, two = _rdp_epsilon(config, 1.0, 1), _rdp_epsilon(config, 1.0, 2)
    policy = ClientPolicy(str(tmp_path), max_epsilon=(one + two) / 2)
    state, first = local_update(config, 2, 1, _start(config), node_state=RecordDict(), policy=policy)
    assert state is not None and first[BUDGET_SPENT] == 0
    saved = json.loads((tmp_path / "client-2.json").read_text())["history"]
    node_state = RecordDict()
    again, second = local_update(config, 2, 2, state, node_state=node_state, policy=policy)
    assert again is None and second[BUDGET_SPENT] == 1 and second[POLICY_REFUSED] == 1
    assert json.loads((tmp_path / "client-2.json").read_text())["history"] == saved and STATE_KEY not in node_state


@pytest.mark.parametrize("policy,refused", [
    ({"min_noise_multiplier": 1.5}, True),  # σ = 1.0 is below the client's minimum
    ({"min_noise_multiplier": 1.0}, False),
    ({"max_epsilon": 100.0, "delta": 1e-6}, True),  # the run's δ = 1e-5 is above the client's
    ({"max_epsilon": 100.0, "delta": 1e-5}, False),
])
def test_policy_refuses_weaker_settings(tmp_path, policy, refused):
    config = _config()
    state, metrics = local_update(config, 2, 1, _start(config), node_state=RecordDict(), policy=ClientPolicy(str(tmp_path), **policy))
    assert (state is None) == refused and metrics.get(POLICY_REFUSED, 0.0) == float(refused)
    assert (tmp_path / "client-2.json").is_file() != refused  # a refused round spends nothing


def _message(config: str, server_round: int, extra: dict | None = None):
    return train_instruction(RecordDict({
        "arrays": ArrayRecord(_start(config)),
        "config": ConfigRecord({"fedft-config": config, "server-round": server_round}),
        **(extra or {}),
    }))


def _deployed(folder, **policy) -> Context:
    node_config = {"partition-id": 2, "num-partitions": 4, "state-dir": str(folder), **policy}
    return Context(run_id=3, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def test_deployed_client_ignores_accountant_state_and_state_dir_from_the_server(tmp_path):
    """A server that resends an empty accountant history (`client-state:` records, as a
    resume does) or points `privacy.state_dir` elsewhere does not reset the client's ε."""
    config = _config()
    one, two = _rdp_epsilon(config, 1.0, 1), _rdp_epsilon(config, 1.0, 2)
    node = tmp_path / "node"
    first = train(_message(config, 1), _deployed(node, **{"max-epsilon": (one + two) / 2})).content["metrics"]
    assert first[BUDGET_SPENT] == 0 and first[EPSILON] == pytest.approx(one)

    elsewhere = tmp_path / "server-chosen"
    hostile = _config(state_dir=str(elsewhere))
    reset = {"client-state:" + STATE_KEY: ConfigRecord({"noise_multipliers": [], "sample_rates": [], "steps": []})}
    context = _deployed(node, **{"max-epsilon": (one + two) / 2})  # a fresh process: empty Context.state
    reply = train(_message(hostile, 2, reset), context).content
    assert "arrays" not in reply and reply["metrics"][POLICY_REFUSED] == 1 and reply["metrics"][EPSILON] == pytest.approx(one)
    assert STATE_KEY not in context.state and not elsewhere.exists()


def test_deployed_client_with_a_policy_refuses_a_run_without_local_dp(tmp_path):
    reply = train(_message(_config("central"), 1), _deployed(tmp_path, **{"max-epsilon": 2.0}))
    assert reply.has_error() and reply.error.code == POLICY_ERROR_CODE and "local DP" in str(reply.error.reason)
    reply = train(_message(_config("none"), 1), _deployed(tmp_path))  # no policy given: no limit to enforce
    assert not reply.has_error() and "arrays" in reply.content


def test_fedft_client_policy_arguments(tmp_path):
    text = node_config_text(0, 2, state_dir=tmp_path, max_epsilon=2, min_noise_multiplier=0.8)
    assert text.endswith("max-epsilon=2.0 min-noise-multiplier=0.8 delta=1e-05")  # δ defaults to 1e-5
    for kwargs, field in (({"max_epsilon": 0.0}, "--max-epsilon"), ({"min_noise_multiplier": -1.0}, "--min-noise-multiplier"),
                          ({"max_epsilon": 2.0, "delta": 1.0}, "--delta"), ({"delta": 1e-6}, "--delta")):
        with pytest.raises(FedftError) as err:
            node_config_text(0, 2, state_dir=tmp_path, **kwargs)
        assert err.value.field == field
