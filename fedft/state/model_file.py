"""Model files: a plain dict of tensors and strings, saved with `torch.save` and
read back with `torch.load(weights_only=True)`, so loading never runs pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedft import __version__
from fedft.errors import FedftError
from fedft.state import atomic

FORMAT = "fedft-model/1"


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], *, architecture: str, num_classes: int, input_shape: tuple[int, ...], dataset: str, config_json: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write atomically (`fedft.state.atomic`): a crash never leaves half a model."""
    path = Path(path)
    record = {
        "format": FORMAT,
        "architecture": architecture,
        "num_classes": int(num_classes),
        "input_shape": [int(s) for s in input_shape],
        "dataset": dataset,
        "fedft_version": __version__,
        "config": config_json,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
        **(extra or {}),
    }
    return atomic.write_with(path, lambda f: torch.save(record, f))


def load_checkpoint(path: str | Path, field: str = "model.init_from") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FedftError(field, f"checkpoint '{path}' does not exist.", "give the path of a model.pt written by fedft.")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or unsafe pickle content
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FedftError(field, f"'{path}' is not a readable fedft checkpoint ({reason}).", "re-create it with `fedft pretrain` or `fedft run`.") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("state_dict"), dict):
        raise FedftError(field, f"'{path}' is not a fedft checkpoint (format {record.get('format') if isinstance(record, dict) else type(record).__name__!r}).", "re-create it with `fedft pretrain` or `fedft run`.")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in record["state_dict"].items()):
        raise FedftError(field, f"'{path}' has a state_dict with entries that are not named tensors.", "re-create it with `fedft pretrain` or `fedft run`.")
    return record


def check_compatible(
    record: dict[str, Any],
    path: str | Path,
    *,
    architecture: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    expected: dict[str, tuple[int, ...]],
    reset_head: bool = False,
    field: str = "model.init_from",
) -> None:
    """Refuse a checkpoint that cannot start this run: another architecture, input
    shape or (without `reset_head`) class count, or tensors that do not fit the model.
    `expected` maps the keys to take from the checkpoint to the shapes the model needs."""
    again = "or re-create the checkpoint for this model"
    if record.get("architecture") != architecture:
        raise FedftError(field, f"'{path}' holds a '{record.get('architecture')}' model but model.name is '{architecture}'.", f"set model.name = \"{record.get('architecture')}\" {again}.")
    if list(record.get("input_shape", [])) != list(input_shape):
        raise FedftError(field, f"'{path}' was trained on inputs of shape {tuple(record.get('input_shape', []))}, this run's data has {tuple(input_shape)}.", f"use a checkpoint trained on {tuple(input_shape)} inputs.")
    if int(record.get("num_classes", -1)) != int(num_classes) and not reset_head:
        raise FedftError(field, f"'{path}' has a {record.get('num_classes')}-class head but the data has {num_classes} classes.", "set model.reset_head = true to start from a new head.")
    state = record["state_dict"]
    missing = [k for k in expected if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} vs {shape}" for k, shape in expected.items() if k in state and tuple(state[k].shape) != tuple(shape)]
    if missing or wrong:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"shape mismatch {'; '.join(wrong[:3])}"
        raise FedftError(field, f"'{path}' does not fit a '{architecture}' model ({detail}).", f"set model.reset_head = true if only the head differs, {again}.")
