"""Aggregation strategies by name, with parameters checked before any run starts.

A registry entry is a factory `(**params) -> flwr.serverapp.strategy.Strategy`.
Client sampling is fedft's job (seeded per round, see `fedft.fl.server.sampling`),
so the sampling knobs of Flower's strategies are fixed here and not user settings.

Parameters are typed from the factory's signature (the default's type, or the
annotation when there is no default): an int is accepted where a float is
expected, nothing else is converted. Rules that need the run (Krum's
n > 2f + 2 with n = clients_per_round, ...) are a per-strategy `check` that
receives :class:`RunFacts`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import Strategy

from fedft.config.plugins import calling_module, lookup
from fedft.errors import FedftError

Factory = Callable[..., Strategy]
_ORIGINS: dict[str, str] = {}  # name -> the module that registered it
_FACTORIES: dict[str, Factory] = {}


@dataclass(frozen=True)
class RunFacts:
    """What a strategy may need to know about the run it serves, taken from the config."""

    num_clients: int  # partition.num_clients (SCAFFOLD's N)
    clients_per_round: int  # simulation.clients_per_round (n in Krum's and Bulyan's bounds)
    client_learning_rate: float  # train.lr (QFedAvg's default estimate of 1/L)
    optimizer: str = "sgd"  # train.optimizer
    lora_alpha: float = 16.0  # lora.alpha (FlexLoRA's scaling)

    @classmethod
    def from_config(cls, cfg: Any) -> RunFacts:  # cfg: fedft.config.FedftConfig
        return cls(cfg.partition.num_clients, cfg.simulation.clients_per_round, cfg.train.lr, cfg.train.optimizer, cfg.lora.alpha)


RunCheck = Callable[[dict[str, Any], RunFacts], None]
_CHECKS: dict[str, RunCheck] = {}

# Set by fedft for every strategy: it samples the clients itself and hands the
# strategy exactly the chosen nodes, so the strategy must take all of them.
FIXED_BY_FEDFT = {
    "fraction_train": 1.0,
    "fraction_evaluate": 1.0,
    "min_train_nodes": 0,
    "min_evaluate_nodes": 0,
    "min_available_nodes": 0,
}
# Filled from RunFacts when a factory takes them (never user settings).
_FROM_RUN = {"num_clients": "num_clients", "lora_alpha": "lora_alpha"}
# Filled from RunFacts when a factory takes them and the user did not set them.
_DEFAULT_FROM_RUN = {"client_learning_rate": "client_learning_rate", "eta_l": "client_learning_rate"}
_NOT_USER_SETTINGS = set(FIXED_BY_FEDFT) | set(_FROM_RUN) | {
    "weighted_by_key", "arrayrecord_key", "configrecord_key", "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn",
    "selection_rule", "self",
}
_SCALARS = (bool, int, float, str)


def register_strategy(name: str, check: RunCheck | None = None) -> Callable[[Factory], Factory]:
    """Register `factory` under `name`; `check(params, run)` rejects impossible settings."""
    origin = calling_module()

    def wrap(factory: Factory) -> Factory:
        _ORIGINS[name] = origin
        _FACTORIES[name] = factory
        if check is not None:
            _CHECKS[name] = check
        return factory

    return wrap


def strategy_origin(name: str) -> str | None:
    """The module that registered `name` (None for names that are not registrations)."""
    return _ORIGINS.get(name)


def strategy_names() -> list[str]:
    return sorted(_FACTORIES)


def _factory(name: str) -> Factory:
    """A registered name, or `package.module:factory` imported in this process."""
    return lookup(_FACTORIES, name, "strategy.name", "strategy", strategy_names())


def _signature(name: str) -> inspect.Signature:
    factory = _factory(name)
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return inspect.signature(target, eval_str=True)
    except (NameError, TypeError):
        return inspect.signature(target)


def strategy_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The user-settable parameters of a strategy, from its signature."""
    return {p.name: p for p in _signature(name).parameters.values() if p.name not in _NOT_USER_SETTINGS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _expected_type(param: inspect.Parameter) -> type | None:
    if param.default is not inspect.Parameter.empty and param.default is not None:
        return type(param.default) if isinstance(param.default, _SCALARS) else None
    return param.annotation if param.annotation in _SCALARS else None


def _typed(name: str, key: str, value: Any, param: inspect.Parameter) -> Any:
    if not isinstance(value, _SCALARS):
        raise FedftError(f"strategy.{key}", f"must be a number, string or bool (got {value!r}).", "give a single value.")
    expected = _expected_type(param)
    if expected is None or type(value) is expected:
        return value
    if expected is float and type(value) is int:
        return float(value)
    raise FedftError(f"strategy.{key}", f"must be {expected.__name__} for '{name}' (got {value!r}).", f"write it as a {expected.__name__}, e.g. {key} = {param.default!r}." if param.default is not inspect.Parameter.empty else f"give a {expected.__name__}.")


def check_strategy(name: str, params: dict[str, Any], run: RunFacts | None = None) -> dict[str, Any]:
    """Reject unknown names, unknown or mistyped parameters and, given the run,
    missing required ones and impossible combinations; return the typed parameters."""
    valid = strategy_parameters(name)
    typed: dict[str, Any] = {}
    for key, value in params.items():
        if key not in valid:
            listing = ", ".join(valid) or "none"
            raise FedftError(f"strategy.{key}", f"is not a parameter of '{name}'.", f"remove it; '{name}' takes: {listing}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise FedftError(f"strategy.{key}", f"must be a finite number (got {value!r}).", "give a finite value.")
        typed[key] = _typed(name, key, value, valid[key])
    if run is not None:
        missing = [k for k, prm in valid.items() if prm.default is inspect.Parameter.empty and k not in typed and k not in _DEFAULT_FROM_RUN]
        if missing:
            raise FedftError(f"strategy.{missing[0]}", f"is required by '{name}'.", f"set strategy.{missing[0]} in the config.")
        if name in _CHECKS:
            _CHECKS[name](typed, run)
    return typed


def build_strategy(name: str, params: dict[str, Any], run: RunFacts | None = None) -> Strategy:
    """The strategy `name` with the user's `params`, fedft's fixed sampling knobs and,
    when `run` is given, the run facts the factory takes."""
    kwargs = check_strategy(name, params, run)
    parameters = _signature(name).parameters
    accepted = set(parameters)
    if any(prm.kind is prm.VAR_KEYWORD for prm in parameters.values()):  # a user's factory passing **kwargs on to a Flower strategy
        accepted |= set(FIXED_BY_FEDFT)
    kwargs.update({k: v for k, v in FIXED_BY_FEDFT.items() if k in accepted})
    if run is not None:
        kwargs.update({k: getattr(run, attr) for k, attr in _FROM_RUN.items() if k in accepted})
        kwargs.update({k: getattr(run, attr) for k, attr in _DEFAULT_FROM_RUN.items() if k in accepted and k not in kwargs})
    try:
        return _factory(name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FedftError("strategy", f"'{name}' rejected its parameters: {exc}.", "check the [strategy] values.") from None
