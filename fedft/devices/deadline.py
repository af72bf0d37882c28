"""Synchronous rounds on the virtual clock, with over-selection and a deadline
(Bonawitz et al. 2019, "Towards Federated Learning at Scale: System Design", sec. 2.2).

The server selects m = ceil(K (1 + over_selection)) of the online clients (uniformly,
from (seed, round)), and the round closes at the K-th report or at the deadline, whichever
comes first; later reports (stragglers) and failed tasks are discarded. With
over_selection = 0 this is plain synchronous FedAvg: wait for all selected, up to the deadline.

    reports   = selected tasks that do not fail, ordered by (finish time, client id)
    closes_at = finish of the K-th report if it is at most the deadline, else the deadline
    accepted  = reports finished by closes_at (at most K)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedft.devices.clock import fails, online, task_seconds
from fedft.devices.profiles import DeviceProfiles


@dataclass(frozen=True)
class RoundPlan:
    selected: tuple[int, ...]  # told to train: each downloads the model
    accepted: tuple[int, ...]  # reported by the time the round closed: these updates are aggregated
    stragglers: tuple[int, ...]  # would have reported after the round closed
    failed: tuple[int, ...]  # dropped out or went offline before reporting
    seconds: float  # the round's virtual duration
    versions: tuple[int, ...] = ()  # fedbuff: the model version each accepted client trained from (same order); () = the current one


def select(seed: int, server_round: int, candidates: np.ndarray, count: int) -> np.ndarray:
    """`count` distinct candidates, uniformly, sorted; a function of (seed, round) and the candidates."""
    rng = np.random.default_rng([seed, server_round, 0xDEAD11])
    return np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False)) if len(candidates) else np.zeros(0, dtype=np.int64)


def plan_round(seed: int, server_round: int, start: float, profiles: DeviceProfiles, examples: np.ndarray, eligible: np.ndarray,
               target: int, over_selection: float, deadline: float, bytes_down: float, bytes_up: float) -> RoundPlan:
    """Round `server_round` starting at virtual time `start`: who trains, who counts, how long.
    `examples[c]`: records client c trains per task (epochs x its training set); `eligible`:
    the clients that may be selected (not excluded), of which those online at `start` are."""
    candidates = online(profiles, start, eligible)
    chosen = select(seed, server_round, candidates, math.ceil(target * (1.0 + over_selection)))
    seconds = task_seconds(profiles, chosen, examples[chosen], bytes_down, bytes_up)
    coins = np.random.default_rng([seed, server_round, 0xD409]).random(len(chosen))
    failed = fails(profiles, chosen, coins, start, seconds)
    order = sorted((float(s), int(c)) for s, c, f in zip(seconds, chosen, failed, strict=True) if not f)
    k = min(target, len(chosen))
    closes = order[k - 1][0] if k and len(order) >= k and order[k - 1][0] <= deadline else deadline
    accepted = [c for s, c in order if s <= closes][:k]
    kept = set(accepted)
    late = sorted(c for _, c in order if c not in kept)
    return RoundPlan(tuple(int(c) for c in chosen), tuple(sorted(accepted)), tuple(late), tuple(sorted(int(c) for c in chosen[failed])), float(closes))
