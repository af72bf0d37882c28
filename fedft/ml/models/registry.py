"""Models by name. A builder takes the input shape and class count, so one
architecture serves every dataset it fits."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from fedft.config.plugins import calling_module, lookup

Builder = Callable[..., nn.Module]  # (input_shape=(C, H, W), num_classes=int) -> module
_ORIGINS: dict[str, str] = {}  # name -> the module that registered it
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    origin = calling_module()

    def wrap(fn: Builder) -> Builder:
        _ORIGINS[name] = origin
        _BUILDERS[name] = fn
        return fn

    return wrap


def model_origin(name: str) -> str | None:
    """The module that registered `name` (None for names that are not registrations)."""
    return _ORIGINS.get(name)


def model_names() -> list[str]:
    return sorted(_BUILDERS)


def _builder(name: str) -> Builder:
    """A registered name, or `package.module:function` imported in this process."""
    return lookup(_BUILDERS, name, "model.name", "model", model_names())


def check_model_name(name: str) -> None:
    _builder(name)


def build_model(name: str, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, **options: Any) -> nn.Module:
    """`options` (e.g. ModelConfig's sizes) reach only builders that take them by name."""
    builder = _builder(name)
    accepted = inspect.signature(builder).parameters
    return builder(input_shape=tuple(input_shape), num_classes=num_classes, **{k: v for k, v in options.items() if k in accepted})


def model_options(model_cfg: Any, lora_cfg: Any = None, rank: int | None = None) -> dict[str, Any]:
    """The architecture options in a ModelConfig (sizes, CNN activation and norm; and `model.path`, and a LoraConfig's adapter
    settings for `hf`, at `rank` when given), as keyword arguments for `build_model`."""
    options = {k: getattr(model_cfg, k) for k in ("embedding_dim", "hidden_size", "num_layers", "activation", "norm")}
    if model_cfg.name == "hf":
        options["path"] = model_cfg.path
        if lora_cfg is not None:
            server_rank = max(lora_cfg.ranks) if lora_cfg.ranks else lora_cfg.rank  # mixed ranks: the server keeps the largest
            options.update(lora_rank=server_rank if rank is None else rank, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                           lora_target_modules=tuple(lora_cfg.target_modules), lora_mode=lora_cfg.mode)
    return options


def model_key(model_cfg: Any, lora_cfg: Any = None, rank: int | None = None) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """(model name, sorted options): what a worker's cached model objects are keyed by."""
    return model_cfg.name, tuple(sorted(model_options(model_cfg, lora_cfg, rank).items()))
