"""Flower's own Message-API strategies, registered under their lower-case names.

Each is used as Flower ships it (see the class docstrings for the papers); the
checks here reject what Flower would accept and then fail on, or silently
misuse, mid-run:

- Krum / MultiKrum (Blanchard et al. 2017) need n > 2f + 2, Bulyan (El Mhamdi
  et al. 2018) needs n >= 4f + 3, with n = simulation.clients_per_round and
  f = num_malicious_nodes; MultiKrum selects 1 <= m <= n - f updates.
- FedTrimmedAvg's cut fraction `beta` lies in [0, 0.5).
- Learning rates, tau and q are positive (q >= 0), momenta and betas in [0, 1).
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import strategy as fs

from fedft.errors import FedftError
from strategies.registry import RunFacts, register_strategy


def _range(params: dict[str, Any], key: str, default: float, low: float, high: float | None = None, low_open: bool = False) -> None:
    """`key` (or its default) must lie in [low, high) (or (low, high) when `low_open`; no upper end when `high` is None)."""
    value = params.get(key, default)
    if (value <= low if low_open else value < low) or (high is not None and value >= high):
        if high is None:
            wanted = f"{'>' if low_open else '>='} {low}"
        else:
            wanted = f"in {'(' if low_open else '['}{low}, {high})"
        raise FedftError(f"strategy.{key}", f"must be {wanted} (got {value}).", f"choose {key} {wanted}.")


def _malicious(params: dict[str, Any]) -> int:
    _range(params, "num_malicious_nodes", 0, 0)
    return int(params.get("num_malicious_nodes", 0))


def _byzantine_bound(name: str, run: RunFacts, f: int, need: int, relation: str, per: int) -> None:
    """Refuse a sample of n = clients_per_round that cannot outvote f malicious clients:
    it must be at least `need` (= per * f + 3); `relation` is how the paper states it."""
    n = run.clients_per_round
    if n < need:
        fix = f"lower num_malicious_nodes to {(n - 3) // per} or less" if n >= 3 else "sample more clients"
        shown = f"{n} <= {need - 1}" if relation == ">" else f"{n} < {need}"
        bound = f"{per}*num_malicious_nodes + {2 if relation == '>' else 3}"
        raise FedftError(
            "strategy.num_malicious_nodes",
            f"{name} needs clients_per_round {relation} {bound}, but {shown}.",
            f"{fix}, or raise simulation.clients_per_round to {need}.",
        )


def check_krum(params: dict[str, Any], run: RunFacts) -> None:
    """Krum's score sums distances to the n - f - 2 nearest updates: it needs n > 2f + 2."""
    f = _malicious(params)
    _byzantine_bound("Krum", run, f, 2 * f + 3, ">", 2)


def check_multikrum(params: dict[str, Any], run: RunFacts) -> None:
    check_krum(params, run)
    m, limit = params.get("num_nodes_to_select", 1), run.clients_per_round - _malicious(params)
    if not 1 <= m <= limit:
        raise FedftError("strategy.num_nodes_to_select", f"must be in [1, clients_per_round - num_malicious_nodes] = [1, {limit}] (got {m}).", f"choose num_nodes_to_select between 1 and {limit}.")


def check_bulyan(params: dict[str, Any], run: RunFacts) -> None:
    """Bulyan selects n - 2f by Krum, then averages the n - 4f closest to the median: n >= 4f + 3."""
    f = _malicious(params)
    _byzantine_bound("Bulyan", run, f, 4 * f + 3, ">=", 4)


def check_trimmed(params: dict[str, Any], run: RunFacts) -> None:
    _range(params, "beta", 0.2, 0.0, 0.5)


def check_fedavgm(params: dict[str, Any], run: RunFacts) -> None:
    _range(params, "server_learning_rate", 1.0, 0.0, low_open=True)
    _range(params, "server_momentum", 0.0, 0.0, 1.0)


def check_fedprox(params: dict[str, Any], run: RunFacts) -> None:
    _range(params, "proximal_mu", 0.0, 0.0)


def _check_fedopt(defaults: dict[str, float]) -> Any:
    def check(params: dict[str, Any], run: RunFacts) -> None:
        for key in ("eta", "eta_l", "tau"):
            _range(params, key, defaults[key], 0.0, low_open=True)
        for key in ("beta_1", "beta_2"):
            if key in defaults:
                _range(params, key, defaults[key], 0.0, 1.0)

    return check


def check_qfedavg(params: dict[str, Any], run: RunFacts) -> None:
    _range(params, "q", 0.1, 0.0)
    _range(params, "client_learning_rate", run.client_learning_rate, 0.0, low_open=True)


register_strategy("fedavg")(fs.FedAvg)  # McMahan et al. 2017
register_strategy("fedavgm", check_fedavgm)(fs.FedAvgM)  # Hsu et al. 2019
register_strategy("fedprox", check_fedprox)(fs.FedProx)  # Li et al. 2020; the client half is fedft.fl.client.corrections
register_strategy("fedadam", _check_fedopt({"eta": 0.1, "eta_l": 0.1, "tau": 1e-3, "beta_1": 0.9, "beta_2": 0.99}))(fs.FedAdam)  # Reddi et al. 2021
register_strategy("fedyogi", _check_fedopt({"eta": 0.01, "eta_l": 0.0316, "tau": 1e-3, "beta_1": 0.9, "beta_2": 0.99}))(fs.FedYogi)
register_strategy("fedadagrad", _check_fedopt({"eta": 0.1, "eta_l": 0.1, "tau": 1e-3}))(fs.FedAdagrad)
register_strategy("fedmedian")(fs.FedMedian)  # Yin et al. 2018
register_strategy("fedtrimmedavg", check_trimmed)(fs.FedTrimmedAvg)  # Yin et al. 2018
register_strategy("krum", check_krum)(fs.Krum)  # Blanchard et al. 2017
register_strategy("multikrum", check_multikrum)(fs.MultiKrum)
register_strategy("bulyan", check_bulyan)(fs.Bulyan)  # El Mhamdi et al. 2018
register_strategy("qfedavg", check_qfedavg)(fs.QFedAvg)  # Li et al. 2020 (client_learning_rate defaults to train.lr)
