r"""Gradient corrections that FedProx and SCAFFOLD add to every local step.

Both change the local objective by a term that depends on the weights and on
what the server sent, never on the client's examples:

- FedProx (Li et al. 2020): :math:`F_k(w) + \frac{\mu}{2}\lVert w - w^t\rVert^2`, whose
  gradient adds :math:`\mu (w - w^t)`, with :math:`w^t` the received global model.
- SCAFFOLD (Karimireddy et al. 2020): the gradient :math:`g_i(y)` becomes
  :math:`g_i(y) + c - c_i`, a constant offset per round.

They are added to `p.grad` right before the optimizer updates the weights, by a
step pre-hook on the underlying torch optimizer. That is the same as adding
the term to the loss for plain SGD/Adam, and it also holds under Opacus: a
DPOptimizer rebuilds `p.grad` from clipped per-sample gradients of the data
loss plus noise (a parameter-only loss term would be silently dropped), then
calls the wrapped optimizer's `step`, where this hook runs. The added terms
use no example data, so adding them after the noise costs no privacy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def attach_gradient_corrections(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    *,
    proximal_mu: float = 0.0,
    gradient_offset: dict[str, torch.Tensor] | None = None,
) -> RemovableHandle | None:
    """Hook `optimizer` so each step adds mu (w - w_global) and `gradient_offset[name]`
    to the gradients of `model`'s parameters; `w_global` is the weights at the first
    step. Returns the hook's handle (call `.remove()` when done), None if nothing to add."""
    if proximal_mu < 0:
        raise ValueError("proximal_mu must be >= 0")
    if not proximal_mu and not gradient_offset:
        return None
    named = [(name, prm) for name, prm in model.named_parameters() if prm.requires_grad]
    anchors: dict[str, torch.Tensor] = {}
    offsets: dict[str, torch.Tensor] = {}
    started: list[bool] = []

    @torch.no_grad()
    def add_terms(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if not started:  # first step: the weights are still the global model, on the training device
            started.append(True)
            anchors.update({n: prm.detach().clone() for n, prm in named} if proximal_mu else {})
            offsets.update({n: gradient_offset[n].to(prm.device, prm.dtype) for n, prm in named if n in gradient_offset} if gradient_offset else {})
        for name, prm in named:
            if prm.grad is None:
                continue
            if proximal_mu:
                prm.grad.add_(prm - anchors[name], alpha=proximal_mu)
            if name in offsets:
                prm.grad.add_(offsets[name])

    base = getattr(optimizer, "original_optimizer", optimizer)  # Opacus' DPOptimizer wraps the torch optimizer
    return base.register_step_pre_hook(add_terms)

