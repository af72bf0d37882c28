import pytest
import torch
from opacus.validators import ModuleValidator

from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.ml.models import build_model, model_names, model_options

EXPECTED_PARAMS = {"seed_cnn": 93_322, "fedavg_cnn": 1_663_370, "dp_cnn": 26_010}  # dp_cnn: Papernot et al. 2021


@pytest.mark.parametrize("name", ["seed_cnn", "fedavg_cnn", "dp_cnn", "seed_rnn"])
def test_output_shape_and_opacus_validity(name):
    model = build_model(name, (1, 28, 28), 10)
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    assert ModuleValidator.validate(model, strict=False) == []


@pytest.mark.parametrize("name,count", EXPECTED_PARAMS.items())
def test_parameter_counts_match_the_papers(name, count):
    assert sum(p.numel() for p in build_model(name).parameters()) == count


def test_class_count_is_respected():
    assert build_model("seed_cnn", (1, 28, 28), 3)(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_rnn_reads_rows():
    # Elman recurrence h_t = tanh(W x_t + U h_{t-1} + b) over 28 steps of 28 features.
    model = build_model("seed_rnn")
    assert model.rnn.input_size == 28 and model.rnn.nonlinearity == "tanh"


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(FedftError, match="model.name.*seed_cnn"):
        build_model("resnet999")


def test_names_registered():
    assert {"seed_cnn", "fedavg_cnn", "seed_rnn"} <= set(model_names())


@pytest.mark.parametrize("name", ["seed_cnn", "fedavg_cnn", "dp_cnn"])
@pytest.mark.parametrize("activation, norm", [("tanh", "none"), ("relu", "group"), ("tanh", "group")])
def test_dp_options_build_and_pass_opacus(name, activation, norm):
    """model.activation / model.norm: tanh replaces every ReLU, GroupNorm follows each conv;
    Opacus' strict validator accepts the result as is (no fixing needed)."""
    model = build_model(name, (1, 28, 28), 10, activation=activation, norm=norm)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert ModuleValidator.validate(model, strict=True) == []
    layers = list(model.modules())
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in layers)
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in layers) == (convs if norm == "group" else 0)
    assert not any(isinstance(m, torch.nn.Tanh if activation == "relu" else torch.nn.ReLU) for m in layers)
    norm_params = sum(2 * m.num_channels for m in layers if isinstance(m, torch.nn.GroupNorm))
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name] + norm_params


def test_dp_options_come_from_the_config():
    cfg = load_config({"model": {"name": "seed_cnn", "activation": "tanh", "norm": "group"}})
    model = build_model(cfg.model.name, **model_options(cfg.model))
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules()) and any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    with pytest.raises(FedftError, match="model.activation"):
        load_config({"model": {"activation": "sigmoid"}})
