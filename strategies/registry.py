"""Aggregation strategies by name, with parameters checked before any run starts.

A registry entry is a factory `(**params) -> flwr.serverapp.strategy.Strategy`.
Client sampling is fedft's job (seeded per round, see `fedft.server.sampling`),
so the sampling knobs of Flower's strategies are fixed here and not user settings.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

from flwr.serverapp.strategy import Strategy

from fedft.errors import FedftError

Factory = Callable[..., Strategy]
_FACTORIES: dict[str, Factory] = {}

# Set by fedft for every strategy: it samples the clients itself and hands the
# strategy exactly the chosen nodes, so the strategy must take all of them.
FIXED_BY_FEDFT = {
    "fraction_train": 1.0,
    "fraction_evaluate": 1.0,
    "min_train_nodes": 0,
    "min_evaluate_nodes": 0,
    "min_available_nodes": 0,
}
_NOT_USER_SETTINGS = set(FIXED_BY_FEDFT) | {"weighted_by_key", "arrayrecord_key", "configrecord_key", "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn", "self"}


def register_strategy(name: str) -> Callable[[Factory], Factory]:
    def wrap(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        return factory

    return wrap


def strategy_names() -> list[str]:
    return sorted(_FACTORIES)


def strategy_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The user-settable parameters of a strategy, from its signature."""
    factory = _FACTORIES[name]
    target = factory.__init__ if inspect.isclass(factory) else factory
    return {p.name: p for p in inspect.signature(target).parameters.values() if p.name not in _NOT_USER_SETTINGS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def check_strategy(name: str, params: dict[str, Any]) -> None:
    if name not in _FACTORIES:
        raise FedftError("strategy.name", f"unknown strategy '{name}'.", f"use one of: {', '.join(strategy_names())}.")
    valid = strategy_parameters(name)
    for key, value in params.items():
        if key not in valid:
            listing = ", ".join(valid) or "none"
            raise FedftError(f"strategy.{key}", f"is not a parameter of '{name}'.", f"remove it; '{name}' takes: {listing}.")
        if not isinstance(value, (bool, int, float, str)) or isinstance(value, float) and not math.isfinite(value):
            raise FedftError(f"strategy.{key}", f"must be a finite number, string or bool (got {value!r}).", "give a single value.")


def build_strategy(name: str, params: dict[str, Any]) -> Strategy:
    check_strategy(name, params)
    kwargs = dict(params)
    accepted = inspect.signature(_FACTORIES[name].__init__ if inspect.isclass(_FACTORIES[name]) else _FACTORIES[name]).parameters
    kwargs.update({k: v for k, v in FIXED_BY_FEDFT.items() if k in accepted})
    try:
        return _FACTORIES[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise FedftError("strategy", f"'{name}' rejected its parameters: {exc}.", "check the [strategy] values.") from None
