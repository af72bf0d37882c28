"""Bad privacy input: one line naming the field, exit 2, nothing started."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fedft.api import prepare
from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.ml.models.registry import register_model
from fedft.privacy.checks import PrivacyWarning

ROOT = Path(__file__).resolve().parents[1]

LOCAL = "simulations/dp_local_eps3.toml"
CENTRAL = "simulations/dp_central.toml"


@pytest.mark.parametrize(
    "config,override,field",
    [
        (LOCAL, "privacy.target_epsilon=0", "privacy.target_epsilon"),
        (LOCAL, "privacy.target_epsilon=-1", "privacy.target_epsilon"),
        (LOCAL, "privacy.target_delta=0", "privacy.target_delta"),
        (LOCAL, "privacy.target_delta=1", "privacy.target_delta"),
        (LOCAL, "privacy.noise_multiplier=-0.5", "privacy.noise_multiplier"),
        (LOCAL, "privacy.max_grad_norm=0", "privacy.max_grad_norm"),
        (CENTRAL, "privacy.clipping_norm=0", "privacy.clipping_norm"),
        (CENTRAL, "privacy.clipping_norm=-1", "privacy.clipping_norm"),
        (LOCAL, "privacy.accountant=moments", "privacy.accountant"),
        (LOCAL, "privacy.mode=global", "privacy.mode"),
        (CENTRAL, "privacy.clipping=sometimes", "privacy.clipping"),
        (LOCAL, "privacy.epsilon=3", "privacy.epsilon"),  # unknown key
    ],
)
def test_bad_privacy_values_name_the_field(config, override, field):
    with pytest.raises(FedftError) as err:
        load_config(config, [override])
    assert err.value.field == field, err.value.one_line()
    assert "Fix:" in err.value.one_line() and "\n" not in err.value.one_line()


def test_dp_needs_noise_or_a_target():
    with pytest.raises(FedftError) as err:
        load_config({"privacy": {"mode": "local"}})
    assert err.value.field == "privacy.noise_multiplier"


def test_central_target_unreachable_in_the_configured_rounds():
    # noise fixed at 0.3 and a budget of 8: ten rounds at q = 1 would spend ε ≈ 104
    with pytest.raises(FedftError) as err:
        load_config(CENTRAL, ["privacy.noise_multiplier=0.3"])
    assert err.value.field == "privacy.target_epsilon" and "104" in err.value.problem


@pytest.mark.slow  # seconds of compute, no process
def test_local_target_a_client_cannot_meet_even_for_one_round():
    with pytest.raises(FedftError) as err:
        prepare(LOCAL, ["privacy.noise_multiplier=0.5", "privacy.target_epsilon=1"])
    assert err.value.field == "privacy.target_epsilon" and "one round" in err.value.problem


def test_adaptive_clipping_settings_flower_rejects():
    with pytest.raises(FedftError) as err:  # Flower: σ must stay below 2 · clients_per_round / 20
        load_config(CENTRAL, ["privacy.clipping=client_adaptive", "privacy.target_epsilon=1"])
    assert err.value.field == "privacy.clipped_count_stddev"


def test_secure_mode_is_gone_and_the_error_names_noise_source():
    # torchcsprng (Opacus' secure_mode) does not install with torch 2.13: privacy.noise_source = "os" replaces it
    with pytest.raises(FedftError) as err:
        load_config(LOCAL, ["privacy.secure_mode=true"])
    assert err.value.field == "privacy.secure_mode" and "noise_source" in err.value.fix
    with pytest.raises(FedftError) as err:
        load_config(LOCAL, ["privacy.noise_source=urandom"])
    assert err.value.field == "privacy.noise_source"


def test_the_old_derived_noise_source_is_refused_with_its_new_name():
    with pytest.raises(FedftError) as err:
        load_config(LOCAL, ["privacy.noise_source=derived"])
    assert err.value.field == "privacy.noise_source" and "seeded" in err.value.problem and "not private" in err.value.problem
    assert load_config(LOCAL).privacy.noise_source == "os"  # the default: noise no published file can reproduce
    with pytest.warns(PrivacyWarning, match="not private"):
        prepare(LOCAL, ["privacy.noise_source=seeded"])


def test_delta_at_least_one_over_n_warns():
    with pytest.warns(PrivacyWarning, match="1/n"):
        load_config(CENTRAL, ["privacy.target_delta=0.2"])  # 10 users: 1/n = 0.1
    with pytest.warns(PrivacyWarning, match="records"):
        prepare(LOCAL, ["privacy.target_delta=0.01"])  # about 360 records per client


class _ScaledLinear(nn.Module):
    """A trainable layer with a buffer: Opacus has no per-sample gradient for it and no fixer."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.01)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, x):
        return x @ self.weight.t() * self.scale


@register_model("test_unfixable")
def _unfixable(input_shape=(1, 28, 28), num_classes=10):
    return nn.Sequential(nn.Flatten(), _ScaledLinear(int(torch.tensor(input_shape).prod()), num_classes))


def test_model_opacus_cannot_fix_is_rejected():
    here = [f'plugins.modules=["{__name__}"]']  # the module that registers it, as every worker would import it
    with pytest.raises(FedftError) as err:
        prepare(LOCAL, ["model.name=test_unfixable", *here])
    assert err.value.field == "model.name" and "Opacus" in err.value.problem
    prepare(CENTRAL, ["model.name=test_unfixable", *here])  # central DP never needs per-sample gradients


def test_ready_configs_are_valid():
    for name in ("dp_local_eps1", "dp_local_eps3", "dp_local_eps8", "dp_central", "dp_central_low_noise"):
        cfg = prepare(ROOT / "simulations" / f"{name}.toml")
        assert cfg.privacy.mode in ("local", "central") and cfg.partition.num_clients >= 10


@pytest.mark.slow
def test_cli_bad_privacy_input_exits_2_before_anything_starts(tmp_path, process_guard):
    proc = subprocess.run(
        [sys.executable, "-m", "fedft", "run", str(ROOT / LOCAL), "--set", "privacy.target_epsilon=-1", "--set", f"output.dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fedft: error: privacy.target_epsilon:"), proc.stderr
    assert not (tmp_path / "runs").exists()
