"""Swap PyTorch's recurrent layers for DP versions and back.

Opacus cannot compute per-sample gradients through the fused `nn.LSTM`/`nn.GRU`/
`nn.RNN` kernels. `to_dp` swaps them for fedft's `FastDPLSTM`/`FastDPGRU`/`FastDPRNN`
(`fedft.ml.models.dp_rnn`: one per-sample product per weight over all time steps)
or, for bidirectional layers, which those do not cover, Opacus'
`DPLSTM`/`DPGRU`/`DPRNN`. Both name their parameters exactly as PyTorch does
(`weight_ih_l0`, `bias_hh_l1`, ...). So `to_dp` before DP-SGD and `from_dp`
after it change no array name or shape: DP and non-DP checkpoints and client
updates are interchangeable. (With an Opacus layer in place only the order of keys in
`state_dict()` differs; `from_dp` restores PyTorch's order.)

One Opacus pitfall (1.6): a DP layer hides its internal names (`l0.ih.weight`)
only when it is the top module; nested in a model, its state-dict hook misses
the key prefix, so `model.state_dict()` carries every recurrent weight twice
and loading a plain checkpoint fails on the "missing" internal names.
`hide_dp_internal_names` registers prefix-aware hooks on the model that fix
both; `to_dp` applies it, and `char_lstm` has it from birth, so a model fixed
with Opacus' own `ModuleValidator.fix` is clean too.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedft.ml.models.dp_rnn import FastDPGRU, FastDPLSTM, FastDPRNN, register_with_opacus

_NAMES_HIDDEN = "_fedft_dp_names_hidden"  # set on a model once hide_dp_internal_names has hooked it
_KWARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size")


def _settings(layer: nn.Module) -> dict:
    kwargs = {k: getattr(layer, k) for k in _KWARGS}
    if not kwargs["proj_size"]:
        del kwargs["proj_size"]  # nn.GRU and nn.RNN refuse the argument, even at its default 0
    if isinstance(layer, (nn.RNN, FastDPRNN)):
        kwargs["nonlinearity"] = layer.nonlinearity
    elif cell_params := getattr(layer, "cell_params", None):  # DPRNN keeps its nonlinearity here
        kwargs.update(cell_params)
    return kwargs


def _convert(layer: nn.Module, target: type[nn.Module]) -> nn.Module:
    new = target(**_settings(layer))
    new.load_state_dict(layer.state_dict())
    return new.to(next(layer.parameters()).device).train(layer.training)


def _swap(model: nn.Module, target: Callable[[nn.Module], type[nn.Module] | None]) -> nn.Module:
    """Convert every layer for which `target` names a class (the model itself, or in place)."""
    if (cls := target(model)) is not None:
        return _convert(model, cls)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (cls := target(child)) is not None:
                setattr(parent, name, _convert(child, cls))
    return model


def _internal_names(model: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """(internal key, public key) for every Opacus DP layer inside `model`."""
    pairs = []
    for name, sub in model.named_modules():
        for old, new in (getattr(sub, "old_to_new", None) or {}).items():
            base = f"{prefix}{name}." if name else prefix
            pairs.append((base + old, base + new))
    return pairs


def _drop_internal(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for internal, _ in _internal_names(module, prefix):
        state_dict.pop(internal, None)


def _fill_internal(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
    for internal, public in _internal_names(module, prefix):
        if public in state_dict and internal not in state_dict:
            state_dict[internal] = state_dict[public]  # the same Parameter is loaded under both names


def hide_dp_internal_names(model: nn.Module) -> nn.Module:
    """Make `model.state_dict()`/`load_state_dict()` use only PyTorch's names for any
    Opacus DP layer inside it, now or swapped in later (idempotent)."""
    if not getattr(model, _NAMES_HIDDEN, False):
        model.register_state_dict_post_hook(_drop_internal)
        model.register_load_state_dict_pre_hook(_fill_internal)
        setattr(model, _NAMES_HIDDEN, True)
    return model


def _opacus_classes() -> dict[type, type]:
    from opacus.layers import DPGRU, DPLSTM, DPRNN

    return {nn.LSTM: DPLSTM, nn.GRU: DPGRU, nn.RNN: DPRNN}


def _fast_classes() -> dict[type, type]:
    register_with_opacus()
    return {nn.LSTM: FastDPLSTM, nn.GRU: FastDPGRU, nn.RNN: FastDPRNN}


def dp_class(layer: nn.Module) -> type[nn.Module] | None:
    """The DP layer that replaces `layer` (None: not a PyTorch recurrent layer)."""
    plain = type(layer)
    if plain not in (nn.LSTM, nn.GRU, nn.RNN) or getattr(layer, "proj_size", None):
        return None  # Opacus has no DP layer for LSTM projections either: its validator reports the layer
    if layer.bidirectional:
        return _opacus_classes()[plain]
    return _fast_classes()[plain]


def to_dp(model: nn.Module) -> nn.Module:
    """Replace every nn.LSTM/GRU/RNN in `model` by its DP twin with the same weights
    (in place; returns the model, or the new layer if `model` is one)."""
    return hide_dp_internal_names(_swap(model, dp_class))


def from_dp(model: nn.Module) -> nn.Module:
    """Replace every DP recurrent layer in `model` (fedft's or Opacus') by the PyTorch layer with the same weights."""
    plain = {dp: p for table in (_opacus_classes(), _fast_classes()) for p, dp in table.items()}
    return _swap(model, lambda layer: plain.get(type(layer)))
