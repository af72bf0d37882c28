import subprocess
import sys

import pytest

from fedft.config import FedftConfig, parse_override
from fedft.errors import FedftError
from fedft.jobs.validate import load_config

QUICKSTART = "simulations/quickstart.toml"


def test_quickstart_is_valid():
    cfg = load_config(QUICKSTART)
    assert (cfg.data.name, cfg.model.name, cfg.strategy.name, cfg.partition.num_clients) == ("mnist-5k", "seed_cnn", "fedavg", 10)


def test_overrides_are_typed():
    cfg = load_config(QUICKSTART, ["train.lr=0.01", "partition.method=dirichlet", "simulation.client_resources.num_cpus=2", "name=x"])
    assert cfg.train.lr == 0.01 and cfg.partition.method == "dirichlet"
    assert cfg.simulation.client_resources.num_cpus == 2.0 and cfg.name == "x"


def test_parse_override_reads_toml_values():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("data.name=digits") == (["data", "name"], "digits")


def test_json_round_trip():
    cfg = load_config(QUICKSTART, ["strategy.name=fedavg"])
    assert FedftConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "override,field",
    [
        ("data.name=imagenet", "data.name"),
        ("model.name=resnet", "model.name"),
        ("strategy.name=fedfoo", "strategy.name"),
        ("strategy.bogus=1", "strategy.bogus"),
        ("simulation.clients_per_round=11", "simulation.clients_per_round"),
        ("train.lr=0", "train.lr"),
        ("train.lr=-1", "train.lr"),
        ("partition.alpha=0", "partition.alpha"),
        ("partition.method=random", "partition.method"),
        ("train.lrr=0.1", "train.lrr"),
        ("nonsense=1", "nonsense"),
        ("data.test_fraction=1.5", "data.test_fraction"),
        ("partition.num_clients=0", "partition.num_clients"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(FedftError) as err:
        load_config(QUICKSTART, [override])
    assert err.value.field.startswith(field), err.value.one_line()
    assert "Fix:" in err.value.one_line() and "\n" not in err.value.one_line()


def test_unknown_key_lists_valid_keys():
    with pytest.raises(FedftError, match="local_epochs"):
        load_config(QUICKSTART, ["train.epochs=3"])


def test_malformed_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n[data")
    with pytest.raises(FedftError, match="not valid TOML"):
        load_config(bad)


def test_missing_file():
    with pytest.raises(FedftError, match="does not exist"):
        load_config("nope.toml")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "train.lr=-1"], "train.lr"),
        (["--set", "partition.num_clients=5000"], "partition.num_clients"),
        (["--set", "data.name=nope"], "data.name"),
    ],
)
@pytest.mark.slow
def test_cli_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, args, needle):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "fedft", "run", QUICKSTART, "--set", f"output.dir={out}", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fedft: error: ") and needle in lines[0], proc.stderr
    assert not out.exists(), "a rejected run must leave no results folder"
