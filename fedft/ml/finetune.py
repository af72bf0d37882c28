"""Fine-tuning plans: which parameters train and what travels, as pure functions of a model.

`finetune.mode` picks the trainable parameters by name:

- `full`: every parameter trains and the whole state travels (the plain FedAvg case);
- `head`: only the last parameterised layer (the classifier);
- `last:K`: the last K parameterised layers, in the order the model registers them;
- a list of glob patterns (`fnmatch`) over parameter names, e.g. `["hidden.*", "head.*"]`.

Frozen parameters get `requires_grad = False` on the client and never travel:
the server sends, and the client returns, only the `sent` keys (trainable
parameters plus the buffers of the layers that own them). Both sides rebuild the
frozen part from the same start state (`fedft.fl.context.RunContext.start_state`:
the seeded init, or the `model.init_from` checkpoint), and a digest of the frozen
tensors in every train message (`frozen_digest`) lets a client refuse to train on
a frozen part that differs from the server's.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedft.config import FinetuneMode, check_mode_syntax
from fedft.errors import FedftError
from fedft.ml.models import build_model, model_options

_LAST_K = re.compile(r"^last:(\d+)$")
Mode = FinetuneMode


def layers(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Parameterised layers in registration order: (module name, its own parameter names)."""
    out: list[tuple[str, list[str]]] = []
    for module_name, module in model.named_modules():
        own = [f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False)]
        if own:
            out.append((module_name, own))
    return out


def head_names(model: nn.Module) -> list[str]:
    """Parameter names of the last parameterised layer (the classifier in every fedft model)."""
    found = layers(model)
    return found[-1][1] if found else []


def trainable_names(model: nn.Module, mode: Mode) -> list[str]:
    """Parameter names that train under `mode`, in the model's order."""
    check_mode_syntax(mode)
    names = [n for n, _ in model.named_parameters()]
    if mode == "full":
        return names
    if mode == "head":
        return head_names(model)
    if isinstance(mode, str):
        k = int(_LAST_K.match(mode).group(1))  # type: ignore[union-attr]
        found = layers(model)
        if k > len(found):
            raise FedftError("finetune.mode", f"'{mode}' asks for {k} layers but the model has {len(found)} parameterised layers.", f"use last:1 .. last:{len(found)}, or full.")
        chosen = {n for _, own in found[-k:] for n in own}
        return [n for n in names if n in chosen]
    for pattern in mode:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise FedftError("finetune.mode", f"pattern '{pattern}' matches no parameter.", f"parameters are: {', '.join(names)}.")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in mode)]


@dataclass(frozen=True)
class FinetunePlan:
    """What trains and what travels for one model and mode."""

    trainable: tuple[str, ...]  # parameter names with requires_grad = True
    head: tuple[str, ...]  # the last layer's parameter names
    sent: tuple[str, ...]  # state_dict keys in every train message, both directions
    all_keys: tuple[str, ...]  # every state_dict key

    @property
    def sends_everything(self) -> bool:
        return len(self.sent) == len(self.all_keys)

    @property
    def frozen(self) -> tuple[str, ...]:
        sent = set(self.sent)
        return tuple(k for k in self.all_keys if k not in sent)


def make_plan(model: nn.Module, mode: Mode) -> FinetunePlan:
    trainable = trainable_names(model, mode)
    all_keys = list(model.state_dict().keys())
    if mode == "full":
        sent = all_keys
    else:
        owners = {n.rsplit(".", 1)[0] if "." in n else "" for n in trainable}
        buffers = [f"{m}.{b}" if m else b for m, mod in model.named_modules() if m in owners for b, _ in mod.named_buffers(recurse=False)]
        chosen = set(trainable) | set(buffers)
        sent = [k for k in all_keys if k in chosen]
    return FinetunePlan(tuple(trainable), tuple(head_names(model)), tuple(sent), tuple(all_keys))


def freeze(model: nn.Module, plan: FinetunePlan) -> None:
    """requires_grad = False on every parameter that does not train."""
    trainable = set(plan.trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


def param_groups(model: nn.Module, plan: FinetunePlan, lr: float, body_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer groups: the head at `lr`, other trainable parameters at `lr * body_lr_scale`."""
    trainable, head = set(plan.trainable), set(plan.head)
    head_params = [p for n, p in model.named_parameters() if n in trainable and n in head]
    body_params = [p for n, p in model.named_parameters() if n in trainable and n not in head]
    groups = [{"params": head_params, "lr": lr}] if head_params else []
    if body_params:
        groups.append({"params": body_params, "lr": lr * body_lr_scale})
    return groups


def frozen_digest(state: dict[str, torch.Tensor], plan: FinetunePlan) -> str:
    """sha256 over the frozen tensors' names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for key in plan.frozen:
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------- config-level helpers

def check_finetune(cfg) -> None:
    """Config-time check that `finetune.mode` names parameters this model has
    (parameter names do not depend on the input shape or class count)."""
    if cfg.finetune.mode != "full":
        trainable_names(build_model(cfg.model.name, **model_options(cfg.model, cfg.lora)), cfg.finetune.mode)
