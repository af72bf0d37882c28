"""Swap PyTorch's recurrent layers for Opacus' DP versions and back.

Opacus cannot compute per-sample gradients through the fused `nn.LSTM`/`nn.GRU`/
`nn.RNN` kernels; its `DPLSTM`/`DPGRU`/`DPRNN` compute the same function from
per-step linear layers it can hook, and name their parameters exactly as PyTorch
does (`weight_ih_l0`, `bias_hh_l1`, ...). So `to_dp` before DP-SGD and `from_dp`
after it change no array name or shape: DP and non-DP checkpoints and client
updates are interchangeable. (Only the order of keys in `state_dict()` differs
while a DP layer is in place; `from_dp` restores PyTorch's order.)

One Opacus pitfall (1.6): a DP layer hides its internal names (`l0.ih.weight`)
only when it is the top module; nested in a model, its state-dict hook misses
the key prefix, so `model.state_dict()` carries every recurrent weight twice
and loading a plain checkpoint fails on the "missing" internal names.
`hide_dp_internal_names` registers prefix-aware hooks on the model that fix
both; `to_dp` applies it, and `char_lstm` has it from birth, so a model fixed
with Opacus' own `ModuleValidator.fix` is clean too.
"""

from __future__ import annotations

from torch import nn

_NAMES_HIDDEN = "_fedft_dp_names_hidden"  # set on a model once hide_dp_internal_names has hooked it
_KWARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size")


def _settings(layer: nn.Module) -> dict:
    kwargs = {k: getattr(layer, k) for k in _KWARGS}
    if isinstance(layer, nn.RNN):
        kwargs["nonlinearity"] = layer.nonlinearity
    elif cell_params := getattr(layer, "cell_params", None):  # DPRNN keeps its nonlinearity here
        kwargs.update(cell_params)
    return kwargs


def _convert(layer: nn.Module, target: type[nn.Module]) -> nn.Module:
    new = target(**_settings(layer))
    new.load_state_dict(layer.state_dict())
    return new.to(next(layer.parameters()).device).train(layer.training)


def _swap(model: nn.Module, mapping: dict[type, type]) -> nn.Module:
    if type(model) in mapping:
        return _convert(model, mapping[type(model)])
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in mapping:
                setattr(parent, name, _convert(child, mapping[type(child)]))
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


def _dp_classes() -> dict[type, type]:
    from opacus.layers import DPGRU, DPLSTM, DPRNN

    return {nn.LSTM: DPLSTM, nn.GRU: DPGRU, nn.RNN: DPRNN}


def to_dp(model: nn.Module) -> nn.Module:
    """Replace every nn.LSTM/GRU/RNN in `model` by its Opacus DP twin with the same
    weights (in place; returns the model, or the new layer if `model` is one)."""
    return hide_dp_internal_names(_swap(model, _dp_classes()))


def from_dp(model: nn.Module) -> nn.Module:
    """Replace every Opacus DPLSTM/DPGRU/DPRNN in `model` by the PyTorch layer with the same weights."""
    return _swap(model, {dp: plain for plain, dp in _dp_classes().items()})
