"""Fine-tuning without Ray: which parameters train, what travels, checkpoints and head reset."""

import pickle
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from fedft.errors import FedftError
from fedft.fl.client.pipeline import local_update
from fedft.fl.context import RunContext
from fedft.jobs.validate import load_config
from fedft.ml.finetune import freeze, make_plan, param_groups, trainable_names
from fedft.ml.models import build_model
from fedft.state.model_file import load_checkpoint, save_checkpoint


def _cfg(tiny_config, **sections):
    raw = {**tiny_config}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return load_config(raw)


def _save(path, state, architecture="seed_cnn", num_classes=10, input_shape=(1, 28, 28)):
    return save_checkpoint(path, state, architecture=architecture, num_classes=num_classes, input_shape=input_shape, dataset="digits")


# ---------------------------------------------------------------- modes

def test_modes_pick_parameters_by_name():
    model = build_model("seed_cnn")
    names = [n for n, _ in model.named_parameters()]
    assert trainable_names(model, "full") == names
    assert trainable_names(model, "head") == ["head.weight", "head.bias"]
    assert trainable_names(model, "last:2") == ["hidden.0.weight", "hidden.0.bias", "head.weight", "head.bias"]
    assert trainable_names(model, ["features.6.*", "head.bias"]) == ["features.6.weight", "features.6.bias", "head.bias"]
    rnn = build_model("seed_rnn")
    assert trainable_names(rnn, "head") == ["head.weight", "head.bias"]
    assert trainable_names(rnn, "last:2") == [n for n, _ in rnn.named_parameters()]  # the RNN is one layer


@pytest.mark.parametrize("mode", ["last:0", "tail", "last:6", ["nothing.*"], []])
def test_bad_modes_are_config_errors(tiny_config, mode):
    with pytest.raises(FedftError) as err:
        _cfg(tiny_config, finetune={"mode": mode})
    assert err.value.field == "finetune.mode" and "Fix:" in err.value.one_line()


def test_freeze_and_per_group_learning_rates():
    model = build_model("seed_cnn")
    plan = make_plan(model, "last:2")
    freeze(model, plan)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(plan.trainable)
    assert plan.sent == plan.trainable and set(plan.frozen) == set(plan.all_keys) - set(plan.trainable)
    groups = param_groups(model, plan, lr=0.1, body_lr_scale=0.25)
    assert [g["lr"] for g in groups] == [0.1, 0.025]
    assert [len(g["params"]) for g in groups] == [2, 2]  # head weight+bias, hidden weight+bias


def test_client_trains_and_returns_only_the_head(tiny_config):
    cfg = _cfg(tiny_config, finetune={"mode": "head"})
    ctx = RunContext(cfg)
    plan, start = ctx.plan, ctx.start_state
    sent = {k: start[k].clone() for k in plan.sent}
    state, metrics = local_update(cfg.to_json(), 0, 1, sent)
    assert set(state) == {"head.weight", "head.bias"} and metrics["steps"] > 0
    assert not torch.equal(state["head.weight"], sent["head.weight"])  # it trained
    with pytest.raises(ValueError, match="do not match finetune.mode"):
        local_update(cfg.to_json(), 0, 1, start)  # the full state is not what head mode sends
    with pytest.raises(ValueError, match="frozen parameters differ"):
        local_update(cfg.to_json(), 0, 1, sent, frozen_digest="0" * 64)


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(tmp_path):
    state = build_model("seed_cnn").state_dict()
    path = save_checkpoint(tmp_path / "m.pt", state, architecture="seed_cnn", num_classes=10, input_shape=(1, 28, 28),
                           dataset="fashion-mnist", config_json="{}", extra={"val_accuracy": 0.5})
    raw = torch.load(path, weights_only=True)  # plain tensors and strings, no pickled objects
    record = load_checkpoint(path)
    assert raw["fedft_version"] == record["fedft_version"] and record["dataset"] == "fashion-mnist"
    assert (record["architecture"], record["num_classes"], record["input_shape"], record["val_accuracy"]) == ("seed_cnn", 10, [1, 28, 28], 0.5)
    assert all(torch.equal(record["state_dict"][k], v) for k, v in state.items())


def test_init_from_loads_the_checkpoint_exactly(tiny_config, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(123)
        state = build_model("seed_cnn").state_dict()
    _save(tmp_path / "m.pt", state)
    cfg = _cfg(tiny_config, model={"init_from": str(tmp_path / "m.pt")})
    assert all(torch.equal(RunContext(cfg).start_state[k], v) for k, v in state.items())


def test_reset_head_keeps_the_body_and_seeds_a_new_head(tiny_config, tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(123)
        state = build_model("seed_cnn", num_classes=5).state_dict()  # a 5-class public task
    _save(tmp_path / "m5.pt", state, num_classes=5)
    cfg = _cfg(tiny_config, model={"init_from": str(tmp_path / "m5.pt")})
    with pytest.raises(FedftError, match="5-class head but the data has 10 classes.*reset_head = true"):
        RunContext(cfg).start_state
    cfg = _cfg(tiny_config, model={"init_from": str(tmp_path / "m5.pt"), "reset_head": True})
    start, seeded = RunContext(cfg).start_state, RunContext(cfg).initial_state
    assert start["head.weight"].shape == (10, 64)
    assert torch.equal(start["head.weight"], seeded["head.weight"]) and torch.equal(start["head.bias"], seeded["head.bias"])
    assert all(torch.equal(start[k], state[k]) for k in state if not k.startswith("head."))


def _corrupt(path):
    path.write_bytes(b"not a checkpoint at all" * 10)


def _truncated(path):
    _save(path, build_model("seed_cnn").state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickled_object(path):
    with open(path, "wb") as f:
        pickle.dump({"format": "fedft-model/1", "state_dict": {}, "x": object()}, f)


def _other_architecture(path):
    _save(path, build_model("seed_rnn").state_dict(), architecture="seed_rnn")


def _wrong_shapes(path):
    _save(path, build_model("fedavg_cnn").state_dict(), architecture="seed_cnn")  # labelled seed_cnn, tensors are not


@pytest.mark.parametrize("make,message", [
    (_corrupt, "not a readable fedft checkpoint"),
    (_truncated, "not a readable fedft checkpoint"),
    (_pickled_object, "not a readable fedft checkpoint"),
    (_other_architecture, "holds a 'seed_rnn' model but model.name is 'seed_cnn'"),
    (_wrong_shapes, "does not fit a 'seed_cnn' model"),
    (None, "does not exist"),
])
def test_bad_checkpoints_are_refused(tiny_config, tmp_path, make, message):
    path = tmp_path / "bad.pt"
    if make:
        make(path)
    from fedft.api import prepare

    with pytest.raises(FedftError, match=message) as err:
        prepare({**tiny_config, "model": {"name": "seed_cnn", "init_from": str(path)}})
    assert err.value.field == "model.init_from"


@pytest.mark.slow
def test_cli_bad_checkpoint_exits_2_with_one_line_and_no_folder(tmp_path, process_guard):
    path = tmp_path / "corrupt.pt"
    _corrupt(path)
    out = tmp_path / "results"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for extra in ([f"model.init_from={path}"], [f"model.init_from={tmp_path / 'missing.pt'}"]):
        proc = subprocess.run(
            [sys.executable, "-m", "fedft.cli", "run", str(ROOT / "simulations/finetune_head.toml"), "--out", str(out), "--set", extra[0]],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fedft: error: model.init_from:"), proc.stderr
        assert not out.exists()
