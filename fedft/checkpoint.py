"""Model files: a plain dict of tensors and strings, saved with `torch.save` and
read back with `torch.load(weights_only=True)`, so loading never runs pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fedft.errors import FedftError

FORMAT = "fedft-model/1"


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], *, architecture: str, num_classes: int, input_shape: tuple[int, ...], dataset: str, config_json: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a model."""
    from fedft import __version__

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
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)
    return path


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
    return record
