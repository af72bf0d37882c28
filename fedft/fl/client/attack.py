"""Simulated malicious clients: who attacks, and what they do to their reply.

Who: every client gets a key u(seed, client id) in [0, 1) from its own seed
sequence; the round(fraction * num_clients) clients with the smallest keys
attack, in every round they are sampled. So the attacker set is reproducible,
has exactly the configured size, and a client's key never depends on others.

What, with x the received global model, y the honestly trained one and
u = y - x (floating-point arrays only; integer buffers are sent as trained):

- sign_flip: x - scale * u   (pushes the model uphill; scale > 1 outweighs honest clients)
- scale:     x + scale * u   (an honest direction with a boosted norm)
- gaussian:  x + e, e ~ N(0, noise_std^2) per coordinate, seeded by (seed, round, client)
- label_flip: honest training on labels c -> C - 1 - c (a data-poisoning attack)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from fedft.ml.training import seed_generator

_TAG = 0xA77AC  # keeps attacker keys independent of the other per-client streams


def attacker_key(seed: int, client_id: int) -> float:
    """The client's rank for being an attacker: uniform in [0, 1), a pure function of (seed, client id)."""
    return float(np.random.default_rng([seed, client_id, _TAG]).random())


@lru_cache(maxsize=64)
def attackers(seed: int, num_clients: int, fraction: float) -> frozenset[int]:
    """The round(fraction * num_clients) clients with the smallest keys."""
    count = int(round(fraction * num_clients))
    ranked = sorted(range(num_clients), key=lambda c: (attacker_key(seed, c), c))
    return frozenset(ranked[:count])


def is_attacker(attack, client_id: int, num_clients: int) -> bool:  # attack: fedft.config.AttackConfig
    return attack.kind != "none" and client_id in attackers(attack.seed, num_clients, attack.fraction)


def flip_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label c becomes C - 1 - c (every class moves, none stays)."""
    return (num_classes - 1) - y


def attack_update(
    kind: str,
    global_state: dict[str, torch.Tensor],
    local_state: dict[str, torch.Tensor],
    *,
    scale: float = 1.0,
    noise_std: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The state an attacker sends instead of `local_state` (see the module doc)."""
    if kind in ("none", "label_flip"):
        return local_state
    out: dict[str, torch.Tensor] = {}
    for key, y in local_state.items():
        x = global_state[key].to(y.device, y.dtype)
        if not torch.is_floating_point(y):
            out[key] = y
        elif kind == "sign_flip":
            out[key] = x - scale * (y - x)
        elif kind == "scale":
            out[key] = x + scale * (y - x)
        elif kind == "gaussian":
            out[key] = x + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        else:
            raise ValueError(f"unknown attack kind '{kind}'")
    return out


def attack_generator(seed: int, server_round: int, client_id: int) -> torch.Generator:
    return seed_generator(seed, server_round, client_id, _TAG)
