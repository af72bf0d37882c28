"""Distributed DP on the client (`privacy.mode = "distributed"`): the update leaves as a share.

The client clips its update to C, scales it by 1/γ, rotates it with the round's public signs,
rounds it (conditional stochastic rounding), adds its own Skellam noise share Sk(μ/n) and
sends the result mod 2^bits (`fedft.privacy.secagg.encode_share`); the plan (γ, μ, bits,
bounds) follows from the run's config and the update's size, so every client and the server
agree on it (`fedft.privacy.distributed.distributed_plan`). The server side is
`fedft.privacy.distributed`. Flower glue like `fedft.fl.client.central_dp`.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedft.config import FedftConfig
from fedft.privacy.distributed import distributed_plan, flatten_update
from fedft.privacy.distributed_dp import skellam_noise
from fedft.privacy.secagg import SECAGG, SHARE, encode_share, rotation_signs

_NOISE_STREAM = 0xD15  # keeps a client's noise and rounding apart from its training streams


def share_generator(noise_source: str, seed: int, server_round: int, client_id: int) -> np.random.Generator:
    """The client's noise and rounding coins: OS entropy, or (seed, round, client) under noise_source = "seeded" (not private)."""
    return np.random.default_rng([seed, server_round, client_id, _NOISE_STREAM] if noise_source == "seeded" else None)


def share_records(trained: dict[str, torch.Tensor], received: dict[str, torch.Tensor], cfg: FedftConfig, server_round: int,
                  client_id: int) -> dict[str, ArrayRecord]:
    """The reply's arrays: one `secagg` record holding this client's share of trained − received."""
    update = flatten_update({k: trained[k].detach().cpu().double().numpy() for k in received},
                            {k: v.detach().cpu().double().numpy() for k, v in received.items()})
    plan = distributed_plan(cfg, update.size)
    rng = share_generator(cfg.privacy.noise_source, cfg.seed, server_round, client_id)
    signs = rotation_signs(cfg.seed, server_round, plan.padded_dim) if plan.rotation else None
    share = encode_share(update, clipping_norm=plan.clipping_norm, granularity=plan.granularity, bits=plan.bits, l2_bound=plan.l2_bound,
                         signs=signs, rng=rng, noise=skellam_noise(rng, plan.share_variance, plan.padded_dim))
    return {SECAGG: ArrayRecord({SHARE: Array(share)})}
