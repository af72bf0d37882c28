"""Local training and evaluation: plain PyTorch loops over in-memory tensors.

No DataLoader on the hot path: a client's shard is a few hundred examples, and
indexing one tensor with a seeded permutation is both faster and reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedft.errors import FedftError


@dataclass(frozen=True)
class TrainResult:
    loss: float  # mean training loss over all steps
    accuracy: float  # training accuracy over all examples seen
    num_examples: int  # size of the local training set
    steps: int  # optimizer steps taken


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FedftError("simulation.device", "is 'cuda' but no CUDA GPU is visible.", "use device = \"auto\" or \"cpu\".")
    return torch.device(device)


def make_optimizer(name: str, params: Iterable[nn.Parameter] | Iterable[dict[str, Any]], lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'")


def flat_targets(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence targets (B x T, logits B x T x V) become B*T examples of V classes;
    class targets (B) pass through. Losses and accuracies are then per target."""
    if y.dim() > 1:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


def seed_generator(*parts: int) -> torch.Generator:
    """A torch generator seeded from (seed, round, client, ...), never from global state."""
    gen = torch.Generator()
    gen.manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))
    return gen


@contextmanager
def seeded_global_rng(device: torch.device, *parts: int) -> Iterator[None]:
    """Inside: torch's global generator (and the device's) seeded from `parts`; outside: as before.
    Dropout (an hf model's, `lora.dropout`) draws from it, so a client's round is reproducible."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))
        yield


BatchLoss = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, float]]  # (logits, targets, examples) -> (loss, summed loss)


def mean_loss(logits: torch.Tensor, y: torch.Tensor, examples: int) -> tuple[torch.Tensor, float]:
    """Plain training: the mean cross-entropy over the batch's targets."""
    loss = F.cross_entropy(logits, y)
    return loss, float(loss.detach()) * len(y)


def run_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer,
                device: torch.device, batch_loss: BatchLoss = mean_loss, empty_batch: Callable[[], None] | None = None) -> tuple[float, int, int, int]:
    """The one batch loop of plain and DP training: (summed loss, correct, targets seen, steps).

    Sequence targets count per target (`flat_targets`). `batch_loss` is the only
    difference between the trainers: plain training takes the mean over targets, DP-SGD
    the sum over targets divided by the batch's examples (Opacus clips per example).
    `empty_batch` (DP-SGD: Poisson sampling can draw no example) runs instead of the
    forward and backward of a batch of none, which not every model accepts (a Hugging
    Face attention reshapes with -1); the optimizer still steps (DP-SGD: noise only)."""
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad(set_to_none=True)
        examples = len(yb)
        if examples == 0 and empty_batch is not None:
            empty_batch()
            optimizer.step()
            steps += 1
            continue
        logits, targets = flat_targets(model(xb), yb)
        loss, summed = batch_loss(logits, targets, examples)
        loss.backward()
        optimizer.step()
        total_loss += summed
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
        steps += 1
    return total_loss, correct, seen, steps


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each epoch one seeded permutation, cut in order into batches of `batch_size`."""
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
) -> TrainResult:
    model.to(device).train()
    total_loss, correct, seen, steps = run_batches(model, shuffled_batches(x, y, batch_size, epochs, generator), optimizer, device)
    return TrainResult(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1), num_examples=len(y), steps=steps)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) per target; (nan, nan) on an empty set."""
    if len(y) == 0:
        return float("nan"), float("nan")
    model.to(device).eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        logits, yb = flat_targets(model(xb), yb)
        total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return total_loss / y.numel(), correct / y.numel()
