"""Which clients train in a round: a pure function of (seed, round).

FedJAX-style: the randomness of round r is derived from (seed, r), never from a
generator carried across rounds, so a resumed run replays the same sampling. The one
exception is central DP's Poisson cohort under `privacy.noise_source = "os"`: its coins
come from OS entropy, because amplification by sampling needs the cohort to be secret.
Fixed-size sampling (`sample_clients`) serves every mode; central DP samples with
`poisson_sample_clients` unless privacy.client_sampling = "fixed", or with
`cyclic_sample_clients` under "cyclic".
"""

from __future__ import annotations

import numpy as np


def sample_clients(seed: int, server_round: int, num_clients: int, clients_per_round: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """`clients_per_round` distinct client ids, uniformly without replacement, sorted.

    `exclude` removes clients (e.g. those whose privacy budget is spent) before
    sampling; fewer are returned only when fewer remain.
    """
    eligible = np.array([c for c in range(num_clients) if c not in exclude], dtype=np.int64)
    rng = np.random.default_rng([seed, server_round, 0x5A3])
    k = min(clients_per_round, len(eligible))
    return sorted(int(c) for c in rng.choice(eligible, size=k, replace=False))


def poisson_sample_clients(seed: int | None, server_round: int, num_clients: int, sample_rate: float, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Each client joins independently with probability `sample_rate` (Poisson sampling, as
    central DP's amplification assumes): the cohort varies in size and may be empty.

    Every client's coin is tossed, excluded or not, so excluding one never changes the
    others' draws; excluded clients are then left out (they count as absent). `seed` None
    tosses the coins from OS entropy: privacy amplification by sampling assumes that who
    joined is secret, which it is not from whoever can replay (seed, round)."""
    rng = np.random.default_rng([seed, server_round, 0x9015] if seed is not None else None)
    joins = rng.random(num_clients) < sample_rate
    return [int(c) for c in np.flatnonzero(joins) if int(c) not in exclude]


def cyclic_sample_clients(seed: int, server_round: int, num_clients: int, clients_per_round: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Round r's group of a permutation drawn once from the seed: G = num_clients //
    clients_per_round groups of clients_per_round take turns, group (r − 1) mod G in round r,
    so every user trains every G-th round (the b-min-separated participation of correlated
    noise, b = G). The num_clients mod clients_per_round clients past the last group never train."""
    groups = max(1, num_clients // clients_per_round)
    order = np.random.default_rng([seed, 0xC1C]).permutation(num_clients)
    start = ((server_round - 1) % groups) * clients_per_round
    return sorted(int(c) for c in order[start:start + clients_per_round] if int(c) not in exclude)
