"""The strategy registry: every name builds; bad names, parameters and combinations fail early."""

import subprocess
import sys

import pytest
from flwr.serverapp.strategy import Strategy

from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from strategies import RunFacts, build_strategy, check_strategy, strategy_names

QUICKSTART = "simulations/quickstart.toml"
ALL = {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan", "qfedavg", "scaffold", "flexlora"}


def test_every_strategy_is_registered_and_builds():
    assert set(strategy_names()) == ALL
    run = RunFacts(num_clients=10, clients_per_round=10, client_learning_rate=0.05)
    for name in ALL:
        assert isinstance(build_strategy(name, {}, run), Strategy), name


def test_fedft_fixes_sampling_and_fills_run_facts():
    run = RunFacts(num_clients=20, clients_per_round=8, client_learning_rate=0.03)
    krum = build_strategy("krum", {"num_malicious_nodes": 2}, run)
    assert (krum.fraction_train, krum.min_available_nodes, krum.num_malicious_nodes) == (1.0, 0, 2)
    assert build_strategy("qfedavg", {}, run).client_learning_rate == 0.03  # defaults to train.lr
    assert build_strategy("qfedavg", {"client_learning_rate": 0.1}, run).client_learning_rate == 0.1
    assert build_strategy("scaffold", {}, run).num_clients == 20
    assert build_strategy("fedtrimmedavg", {"beta": 0}, run).beta == 0.0  # an int is a fine float


@pytest.mark.parametrize(
    "params,field,needle",
    [
        ({"betaa": 0.1}, "strategy.betaa", "takes: beta"),
        ({"beta": "high"}, "strategy.beta", "must be float"),
        ({"beta": True}, "strategy.beta", "must be float"),
        ({"beta": [0.1]}, "strategy.beta", "single value"),
    ],
)
def test_unknown_or_mistyped_parameters(params, field, needle):
    with pytest.raises(FedftError) as err:
        check_strategy("fedtrimmedavg", params)
    assert err.value.field == field and needle in err.value.one_line()


def test_unknown_name_lists_all():
    with pytest.raises(FedftError, match="bulyan.*fedavg.*scaffold"):
        check_strategy("fedsgd", {})


def _load(*overrides):
    return load_config(QUICKSTART, list(overrides))


@pytest.mark.parametrize(
    "overrides,field",
    [
        (["strategy.name=krum", "strategy.num_malicious_nodes=4"], "strategy.num_malicious_nodes"),  # 10 > 2*4+2 fails
        (["strategy.name=multikrum", "strategy.num_malicious_nodes=1", "strategy.num_nodes_to_select=10"], "strategy.num_nodes_to_select"),
        (["strategy.name=bulyan", "strategy.num_malicious_nodes=2"], "strategy.num_malicious_nodes"),  # 10 < 4*2+3
        (["strategy.name=krum", "strategy.num_malicious_nodes=-1"], "strategy.num_malicious_nodes"),
        (["strategy.name=krum", "strategy.num_malicious_nodes=1.5"], "strategy.num_malicious_nodes"),
        (["strategy.name=fedtrimmedavg", "strategy.beta=0.5"], "strategy.beta"),
        (["strategy.name=fedtrimmedavg", "strategy.beta=-0.1"], "strategy.beta"),
        (["strategy.name=fedavgm", "strategy.server_momentum=1.0"], "strategy.server_momentum"),
        (["strategy.name=fedprox", "strategy.proximal_mu=-1"], "strategy.proximal_mu"),
        (["strategy.name=fedadam", "strategy.tau=0"], "strategy.tau"),
        (["strategy.name=qfedavg", "strategy.q=-1"], "strategy.q"),
        (["strategy.name=scaffold", "train.optimizer=adam"], "train.optimizer"),
        (["attack.kind=scale"], "attack.scale"),
        (["attack.kind=sign-flip"], "attack.kind"),
        (["attack.fraction=1.5"], "attack.fraction"),
    ],
)
def test_impossible_combinations_fail_before_anything_runs(overrides, field):
    with pytest.raises(FedftError) as err:
        _load(*overrides)
    assert err.value.field == field, err.value.one_line()
    assert "Fix:" in err.value.one_line()


def test_bounds_are_exact():
    _load("strategy.name=krum", "strategy.num_malicious_nodes=3")  # 10 > 8
    _load("simulation.clients_per_round=7", "strategy.name=krum", "strategy.num_malicious_nodes=2")  # 7 > 6
    with pytest.raises(FedftError, match="raise simulation.clients_per_round to 7"):
        _load("simulation.clients_per_round=6", "strategy.name=krum", "strategy.num_malicious_nodes=2")
    _load("strategy.name=bulyan", "strategy.num_malicious_nodes=1")  # 10 >= 7
    _load("partition.num_clients=11", "simulation.clients_per_round=11", "strategy.name=bulyan", "strategy.num_malicious_nodes=2")  # 11 >= 11
    _load("strategy.name=fedtrimmedavg", "strategy.beta=0.0")
    _load("strategy.name=multikrum", "strategy.num_malicious_nodes=2", "strategy.num_nodes_to_select=8")  # m <= n - f


@pytest.mark.slow
def test_cli_exits_2_with_one_line_and_no_results_folder(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "fedft", "run", QUICKSTART, "--set", "strategy.name=bulyan", "--set", "strategy.num_malicious_nodes=3", "--set", f"output.dir={out}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "4*num_malicious_nodes + 3" in proc.stderr
    assert not out.exists()
