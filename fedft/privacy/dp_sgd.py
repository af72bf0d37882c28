"""Local (record-level) DP: the DP-SGD mechanics of one client's round, on Opacus.

`dp_train` trains with Poisson-sampled batches, per-sample clipping to
`max_grad_norm` and Gaussian noise of std `noise_multiplier * max_grad_norm`, in a
fresh `PrivacyEngine` whose accountant starts from the history it is given (see
`fedft.privacy.history`). The client round around it (budget check, history kept
in the node's state) is `fedft.fl.client.trainers.DPTrainer`: if the history plus
this round's steps would exceed `target_epsilon`, the client does not train and
replies `budget_spent = 1`.

Where the randomness comes from (`privacy.noise_source`): "os", the default, gives
each of the two generators (Poisson batches, noise) its whole state from
`os.urandom` (`entropy_generator`): the server and the published files cannot
predict the noise. "seeded" seeds them from (seed, round, client), so a run is
reproducible; whoever knows the seed (it is in config.toml and model.pt) can
regenerate the noise and subtract it, so that is for experiments only. Neither is
Opacus' `secure_mode` (torchcsprng, which does not install with current torch): the
generator itself is torch's Mersenne Twister (Philox on a GPU), not a cryptographic
generator, and Opacus' defence against floating-point attacks on the Gaussian
sampler is not applied.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedft.ml.models import build_model
from fedft.ml.models.dp_layers import to_dp
from fedft.ml.training import TrainResult, run_batches
from fedft.privacy.accounting import History, calibrate_noise, dp_sgd_sample_rate, dp_sgd_steps_per_epoch, expected_participations
from fedft.privacy.fast_grad_sample import borrowed_grad_samples

BUDGET_SPENT = "budget_spent"  # reply metric: 1 = this client's budget cannot cover another round
EPSILON = "epsilon"  # reply metric: the client's ε after this round (local DP)
DP_STEPS = "dp_steps"  # reply metric: DP-SGD steps this client has taken in all
NOISE_MULTIPLIER = "noise_multiplier"
SAMPLE_RATE = "sample_rate"
POLICY_REFUSED = "policy_refused"  # reply metric, with budget_spent = 1: the round breaks the deployed client's own policy


class DPIncompatibleModel(ValueError):
    """Opacus cannot compute per-sample gradients for this model, even after fixing it."""


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of `model` that Opacus can train, with the same parameter names and values.

    RNN/LSTM/GRU become DP layers with their plain names kept (fedft's
    FastDPRNN/FastDPLSTM/FastDPGRU, Opacus' for bidirectional ones;
    `fedft.ml.models.dp_layers.to_dp`); `ModuleValidator.fix` then swaps BatchNorm for
    GroupNorm and so on. Raises `DPIncompatibleModel` listing what is left.
    """
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    projected = [name for name, m in model.named_modules() if isinstance(m, nn.LSTM) and m.proj_size]
    if projected:
        raise DPIncompatibleModel(f"LSTM {', '.join(projected)} has proj_size > 0: neither fedft nor Opacus computes per-sample gradients through LSTM projections; use proj_size = 0")
    model = to_dp(copy.deepcopy(model))  # RNN/LSTM/GRU -> DP twins, same names (fedft.ml.models.dp_layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ModuleValidator.fix(model)
    model.train()
    errors = list(ModuleValidator.validate(model, strict=False)) + list(GradSampleModule.validate(model, strict=False))
    if errors:
        raise DPIncompatibleModel("; ".join(" ".join(str(e).split()) for e in errors))
    return model


@lru_cache(maxsize=4)
def _worker_dp_model(name: str, input_shape: tuple, num_classes: int, options: tuple) -> nn.Module:
    return make_dp_compatible(build_model(name, input_shape, num_classes, **dict(options)))


def worker_dp_model(key: tuple[str, tuple], input_shape: tuple, num_classes: int) -> nn.Module:
    """This worker's DP-trainable model for `key` (`fedft.ml.models.model_key`), converted
    once and reused like the plain worker model: each round loads the global state into it,
    and `dp_train` removes Opacus' hooks when it ends (Opacus refuses to hook a model twice)."""
    name, options = key
    return _worker_dp_model(name, tuple(input_shape), num_classes, options)


def plain_state(dp_model: nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
    """The DP model's weights under the non-private model's keys, in their order
    (no `_module.` prefix from GradSampleModule, DP layers' renamed parameters)."""
    module = getattr(dp_model, "_module", dp_model)
    state = module.state_dict()
    missing = [k for k in keys if k not in state]
    if missing:
        raise RuntimeError(f"DP model lacks parameters {missing}")
    return {k: state[k].detach().cpu().clone() for k in keys}


_MT_WORDS = 624  # the CPU Mersenne Twister's state: 624 32-bit words (19,968 bits)
_MT_STATE_OFFSET = 24  # where they start in `torch.Generator.get_state()`'s bytes (after seed, left, seeded, next)


def entropy_generator(device: torch.device, entropy: bytes | None = None) -> torch.Generator:
    """A generator whose whole state comes from `entropy` (default: `os.urandom`).

    `manual_seed` is not enough on CPU: the Mersenne Twister keeps only the low 32 bits
    of a seed, so 2**32 guesses would recover the noise. Instead all 624 state words are
    filled from SHAKE-256 of `entropy` (2,496 bytes of `os.urandom` by default), the
    layout Torch's `set_state` reads. CUDA's Philox takes the full 64-bit seed, so there
    the first 8 bytes of SHAKE-256 of `entropy` seed it."""
    entropy = os.urandom(_MT_WORDS * 4) if entropy is None else entropy
    gen = torch.Generator(device=device)
    if device.type != "cpu":
        gen.manual_seed(int.from_bytes(hashlib.shake_256(entropy).digest(8), "little"))
        return gen
    gen.manual_seed(0)  # a valid state (left = 1, next = 0: the first draw regenerates from the words below)
    state = gen.get_state().numpy().copy()
    words = np.frombuffer(hashlib.shake_256(entropy).digest(_MT_WORDS * 4), dtype="<u4").astype("<u8")
    state[_MT_STATE_OFFSET : _MT_STATE_OFFSET + _MT_WORDS * 8] = np.frombuffer(words.tobytes(), dtype=np.uint8)
    gen.set_state(torch.from_numpy(state))
    return gen


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    """Seeded from `parts` (`noise_source = "seeded"`: reproducible, not private); with no
    parts, its whole state from OS entropy (`entropy_generator`)."""
    if not parts:
        return entropy_generator(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))
    return gen


class _PermutationBatches:
    """The batches of `fedft.ml.training.train`: each epoch one randperm, cut in order."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


_OPACUS_MODULE_ATTRS = ("activations", "max_batch_len")  # what Opacus' hooks leave on modules (its cleanup clears only parameters)


def empty_grad_samples(model: nn.Module) -> None:
    """An empty Poisson batch's per-sample gradients: none per trainable parameter, so
    Opacus clips nothing and the step releases only its noise, as for any batch."""
    for param in model.parameters():
        if param.requires_grad:
            setattr(param, "grad_sample", torch.zeros((0, *param.shape), dtype=param.dtype, device=param.device))  # noqa: B010  (Opacus reads it)


@dataclass(frozen=True)
class DPTrainResult:
    train: TrainResult
    history: History  # the accountant's history after this round
    sample_rate: float


def per_example_mean_loss(logits: torch.Tensor, y: torch.Tensor, examples: int) -> tuple[torch.Tensor, float]:
    """DP-SGD's batch loss: summed over all targets (a sequence is one example of T
    targets), divided by the batch's examples; an empty Poisson batch (possible) gives
    a zero loss, not NaN. Returns it with the batch's summed loss over all targets."""
    loss = F.cross_entropy(logits, y, reduction="sum") / max(examples, 1)
    return loss, float(loss.detach()) * examples


def dp_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    noise_multiplier: float,
    max_grad_norm: float,
    history: History,
    accountant: str,
    seed_parts: tuple[int, ...] | None,
    device: torch.device,
    poisson_sampling: bool = True,
) -> DPTrainResult:
    """DP-SGD on (x, y) through Opacus' `make_private`, composing onto `history`.

    `model` must come from `make_dp_compatible` and `optimizer` must hold its
    parameters. `poisson_sampling=False` keeps the shuffled fixed-size batches of
    `fedft.ml.training.train` (same order for the same seed); it exists for tests
    and voids the accounting. `seed_parts=None` draws the batches and the noise
    from OS entropy (`privacy.noise_source = "os"`, the default).
    """
    from opacus import PrivacyEngine


    parts = seed_parts or ()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        # the engine's accountant only records the (σ, q, steps) history; fedft computes ε from it
        # (fedft.privacy.accounting), so "pld", which Opacus lacks, records through "rdp"
        engine = PrivacyEngine(accountant=accountant if accountant in ("rdp", "prv", "gdp") else "rdp")
    engine.accountant.history = list(history)
    if poisson_sampling:  # make_private turns it into Poisson sampling driven by this generator
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, generator=_generator(torch.device("cpu"), *parts))
    else:
        loader = DataLoader(TensorDataset(x, y), batch_sampler=_PermutationBatches(len(y), batch_size, _generator(torch.device("cpu"), *parts)),
                            generator=torch.Generator().manual_seed(0))
    model.to(device)
    dp_model, dp_optimizer, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm, poisson_sampling=poisson_sampling,
        noise_generator=_generator(device, *parts, 0xD9) if parts else _generator(device),
    )
    dp_model.train()
    try:
        with warnings.catch_warnings(), borrowed_grad_samples():  # same gradients, one copy fewer per parameter and step
            # Opacus' per-sample hooks on the first layer, whose input needs no gradient: harmless
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            epochs_of_batches = (batch for _ in range(epochs) for batch in dp_loader)
            total_loss, correct, seen, steps = run_batches(dp_model, epochs_of_batches, dp_optimizer, device, per_example_mean_loss,
                                                           empty_batch=lambda: empty_grad_samples(model))
    finally:  # leave `model` as it came: no hooks, no per-sample attributes (it may be trained again next round)
        dp_model._close()
        for param in model.parameters():
            param.grad = None
            if hasattr(param, "summed_grad"):
                del param.summed_grad
        for module in model.modules():  # a forward that failed half-way leaves its layers' captured inputs
            for attr in _OPACUS_MODULE_ATTRS:
                if hasattr(module, attr):
                    delattr(module, attr)
    result = TrainResult(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1), num_examples=len(y), steps=steps)
    new_history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
    return DPTrainResult(train=result, history=new_history, sample_rate=1 / len(dp_loader))


def client_noise_multiplier(noise_multiplier: float | None, target_epsilon: float | None, delta: float, accountant: str,
                            num_examples: int, batch_size: int, local_epochs: int, rounds: int, clients_per_round: int,
                            num_clients: int) -> float:
    """The configured σ, or the σ that makes the client's expected steps over the
    whole run spend exactly `target_epsilon`: ceil(R · m / N) rounds of
    local_epochs · int(1/q) Poisson steps (Opacus' `get_noise_multiplier`)."""
    if noise_multiplier is not None:
        return float(noise_multiplier)
    assert target_epsilon is not None
    q = dp_sgd_sample_rate(num_examples, batch_size)
    steps = expected_participations(rounds, clients_per_round, num_clients) * local_epochs * dp_sgd_steps_per_epoch(num_examples, batch_size)
    return calibrate_noise(float(target_epsilon), float(delta), q, steps, accountant)
