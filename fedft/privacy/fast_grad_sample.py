"""One scoped fix to Opacus 1.6's per-sample gradient hooks: no zero-filled copy.

For every parameter and every step, `opacus.grad_sample.grad_sample_module.
create_or_accumulate_grad_sample` allocates a zero tensor of shape
(max_batch_len, *param.shape) and copies the freshly computed per-sample gradients
into it, even when they already have exactly that shape (every layer that runs once
per batch: all of fedft's CNNs, the Linear and Embedding layers of its RNNs). On
seed_cnn at batch 32 that allocation and copy is about 15% of a DP-SGD step
(benchmarks/dp_cost.py).

`borrowed_grad_samples` replaces it, for the duration of one DP training loop, with
a version that keeps the computed tensor when its batch size is already
`max_batch_len`, and otherwise does what Opacus does. Accumulation (a layer called
several times per batch, e.g. Opacus' DPLSTM gates once per time step) never writes into
a kept tensor: the first sum goes into a copy this module owns, later ones into that
copy, so no tensor that autograd or a grad sampler still holds is modified. Per-sample gradients, clipping and noise are unchanged;
tests/test_dp_fast_paths.py checks them bit for bit against Opacus' own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_OWNED = "_fedft_owned"  # set on the sums this module allocated; only those are added into in place
_GRAD_SAMPLE = "_current_grad_sample"  # where Opacus' hooks collect a parameter's per-sample gradients


def keep_or_accumulate(*, param: torch.Tensor, grad_sample: torch.Tensor, max_batch_len: int) -> None:
    """Opacus' `create_or_accumulate_grad_sample`, minus the copy when none is needed."""
    if not param.requires_grad:
        return
    n = grad_sample.shape[0]
    current = getattr(param, _GRAD_SAMPLE, None)
    if current is None and n == max_batch_len:
        setattr(param, _GRAD_SAMPLE, grad_sample)  # borrowed: never written to
        return
    if current is None or not getattr(current, _OWNED, False):  # first padded piece, or first sum onto a borrowed one
        if current is None:
            owned = torch.zeros((max_batch_len, *grad_sample.shape[1:]), device=grad_sample.device, dtype=grad_sample.dtype)
        else:
            owned = current.clone()  # a borrowed piece always has max_batch_len rows
        setattr(owned, _OWNED, True)
        setattr(param, _GRAD_SAMPLE, owned)
        current = owned
    current[:n] += grad_sample


@contextmanager
def borrowed_grad_samples() -> Iterator[None]:
    """Use `keep_or_accumulate` inside Opacus' backward hooks while the block runs."""
    from opacus.grad_sample import grad_sample_module

    original = grad_sample_module.create_or_accumulate_grad_sample
    grad_sample_module.create_or_accumulate_grad_sample = keep_or_accumulate
    try:
        yield
    finally:
        grad_sample_module.create_or_accumulate_grad_sample = original
