"""Which clients train in a round: a pure function of (seed, round).

FedJAX-style: the randomness of round r is derived from (seed, r), never from a
generator carried across rounds, so a resumed run replays the same sampling.
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
