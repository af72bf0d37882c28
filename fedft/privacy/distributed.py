"""Distributed DP under simulated secure aggregation: the server side (`privacy.mode = "distributed"`).

Each sampled client encodes its update itself (`fedft.fl.client.distributed_dp`): clip to C,
scale by 1/γ, rotate, round, add its Skellam noise share Sk(μ/n), take it mod 2^bits
(`fedft.privacy.secagg`, `fedft.privacy.distributed_dp`). `DistributedDP` wraps a FedAvg-family
strategy like `fedft.privacy.central.CentralDP` does, but it never sees an update: it adds the
shares mod 2^bits (all that SecAgg would reveal), aborts the round when fewer than
`min_reports` shares arrived, decodes the sum (centred residue, × γ, inverse rotation),
divides it by the fixed planned cohort n = clients_per_round, and hands the inner strategy one
synthetic reply current + sum / n, as CentralDP does (FedAdam & co. take it as their
pseudo-gradient). A missing share is a zero update that also took its noise with it: the
tracker (`fedft.privacy.distributed_tracker`) accounts each round with the noise present.

Simulated: this process holds every share (and the simulation's clients' updates); the one
thing it computes from single shares is the round's wrap-around count, which only a simulation
can know (`secagg_wrapped`). In a deployment Flower's SecAgg+ computes the modular sum.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedft.config import FedftConfig
from fedft.privacy.central import ReleaseWrapper, synthetic_reply  # the same one-reply hand-over as central DP
from fedft.privacy.distributed_dp import DistributedPlan, make_plan
from fedft.privacy.secagg import SECAGG, SHARE, centered, decode_sum, modular_sum, rotation_signs, wrapped_coordinates

log = logging.getLogger("fedft")


def secagg_min_reports(cfg: FedftConfig) -> int:
    """SecAgg's threshold: `privacy.secagg_min_reports`, or 0 for a majority of clients_per_round."""
    return cfg.privacy.secagg_min_reports or cfg.simulation.clients_per_round // 2 + 1


def update_dimension(shapes: Iterable[tuple[int, ...]]) -> int:
    """d: the coordinates of an update over arrays of these shapes."""
    return int(sum(math.prod(s) for s in shapes))


def distributed_plan(cfg: FedftConfig, dim: int) -> DistributedPlan:
    """The run's plan (noise, granularity, bounds) for a model of `dim` coordinates: the same on
    the server and on every client, which derive it from the config each receives."""
    pc = cfg.privacy
    return make_plan(dim=dim, clipping_norm=float(pc.clipping_norm), noise_multiplier=None if pc.noise_multiplier is None else float(pc.noise_multiplier),
                     target_epsilon=None if pc.target_epsilon is None else float(pc.target_epsilon), delta=float(pc.target_delta),
                     rounds=cfg.simulation.rounds, cohort=cfg.simulation.clients_per_round, bits=pc.secagg_bits,
                     min_reports=secagg_min_reports(cfg), rotation=pc.secagg_rotation,
                     granularity=None if pc.granularity is None else float(pc.granularity))


def flatten_update(trained: dict[str, np.ndarray], received: dict[str, np.ndarray]) -> np.ndarray:
    """trained − received over the received keys in sorted order, as one float64 vector."""
    return np.concatenate([(np.asarray(trained[k], dtype=np.float64) - np.asarray(received[k], dtype=np.float64)).ravel() for k in sorted(received)])


def wrap_distributed(strategy: Strategy, cfg: FedftConfig, dim: int) -> Strategy:
    """`strategy` unchanged unless privacy.mode is "distributed"; then wrapped in DistributedDP."""
    if cfg.privacy.mode != "distributed":
        return strategy
    return DistributedDP(strategy, distributed_plan(cfg, dim), seed=cfg.seed)


@dataclass(frozen=True)
class SecAggRound:
    """What one round's secure aggregation did (the tracker reads it)."""

    survivors: int  # shares summed
    wrapped: int  # coordinates of the sum that wrapped around (simulation only)
    released: bool  # False: fewer than min_reports shares, SecAgg aborted


class DistributedDP(ReleaseWrapper):
    """Wraps a FedAvg-family strategy: modular sum of the shares, decoded, over the fixed cohort
    (see the module docstring). Replies carry one record `secagg` with one int64 array `share`."""

    reply_array_records = (SECAGG,)

    def __init__(self, strategy: Strategy, plan: DistributedPlan, seed: int) -> None:
        self.strategy = strategy
        self.plan = plan
        self.seed = seed  # the rotation's public coins: (seed, round)
        self.current_arrays = ArrayRecord()
        self.weight_key = str(getattr(strategy, "weighted_by_key", "num-examples"))
        self.last_round: SecAggRound | None = None

    @property
    def reply_arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """What a reply's `secagg` record must hold, {key: (shape, dtype)} (the loop screens replies against it)."""
        return {SHARE: ((self.plan.padded_dim,), "int64")}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self.current_arrays = arrays
        self.last_round = None
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        plan = self.plan
        shares = [np.asarray(m.content.array_records[SECAGG][SHARE].numpy(), dtype=np.int64) for m in replies
                  if not m.has_error() and SECAGG in m.content.array_records]
        if len(shares) < plan.min_reports:
            log.warning("round %d: secure aggregation aborted: %d shares arrived, secagg_min_reports is %d", server_round, len(shares), plan.min_reports)
            self.last_round = SecAggRound(len(shares), 0, False)
            return None, None
        total = modular_sum(shares, plan.bits)  # all that SecAgg reveals
        true_total = np.sum([centered(s, plan.bits) for s in shares], axis=0)  # simulation only: exact while no single share wraps
        self.last_round = SecAggRound(len(shares), wrapped_coordinates(total, true_total, plan.bits), True)
        signs = rotation_signs(self.seed, server_round, plan.padded_dim) if plan.rotation else None
        mean = decode_sum(total, bits=plan.bits, granularity=plan.granularity, signs=signs, dim=plan.dim) / plan.cohort
        released, offset = ArrayRecord(), 0
        for key in sorted(self.current_arrays.keys()):
            current = self.current_arrays[key].numpy()
            size = current.size
            released[key] = Array(np.asarray(current.astype(np.float64) + mean[offset:offset + size].reshape(current.shape)).astype(current.dtype))
            offset += size
        ordered = ArrayRecord({k: released[k] for k in self.current_arrays.keys()})
        return self.strategy.aggregate_train(server_round, [synthetic_reply(ordered, self.weight_key)])
