"""Record-level canaries for the one-run privacy audit (`fedft.privacy.one_run_audit`).

k records are taken out of the clients' pool before it is partitioned (the test set
is never touched), relabelled with a random wrong class, assigned to a random
client and included in its training shard with probability ½, all from the run's
seed. A mislabeled record is what a model memorises, not what it generalises to,
so the final model's loss on it says whether it was trained on.

`kind = "noise"` also replaces the canaries' images by uniform noise over the data's
value range (out of distribution: nearly orthogonal to every real image and to each
other, so one record's gradient moves its own loss and little else). They are the
easier canaries to detect: the stronger audit, at the cost of a copy of the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedft.errors import FedftError


@dataclass(frozen=True)
class Canaries:
    index: np.ndarray  # indices into the dataset, whose label there is already the wrong one
    label: np.ndarray  # the wrong labels
    client: np.ndarray  # the client each canary was dealt to
    included: np.ndarray  # bool: in that client's training shard

    def __len__(self) -> int:
        return len(self.index)

    def for_client(self, client_id: int) -> np.ndarray:
        """The dataset indices of the canaries in `client_id`'s training shard."""
        return self.index[(self.client == client_id) & self.included]


def noise_images(x: np.ndarray, index: np.ndarray, seed: int) -> np.ndarray:
    """A copy of `x` whose rows `index` are uniform noise between x's min and max (seeded)."""
    rng = np.random.default_rng([seed, 0xC0DE])
    out = x.copy()
    out[index] = rng.uniform(float(x.min()), float(x.max()), size=(len(index), *x.shape[1:])).astype(x.dtype)
    return out


def draw_canaries(pool: np.ndarray, labels: np.ndarray, num_classes: int, num_clients: int, k: int, seed: int) -> tuple[np.ndarray, Canaries]:
    """(the pool without the canaries, the canaries): the first `k` records of the
    (already shuffled) pool, each with label (y + U{1..C-1}) mod C, a uniform client and
    an inclusion coin of probability ½, from a stream of their own."""
    if k >= len(pool):
        raise FedftError("audit.canaries", f"= {k} leaves no records for the clients (the pool has {len(pool)}).", f"use fewer than {len(pool)} canaries.")
    if num_classes < 2:
        raise FedftError("audit.canaries", "need at least two classes to mislabel a record.", "set audit.canaries = 0 for this dataset.")
    rng = np.random.default_rng([seed, 0xCA7A])
    index = np.asarray(pool[:k])
    wrong = (labels[index] + rng.integers(1, num_classes, size=k)) % num_classes
    client = rng.integers(0, num_clients, size=k)
    included = rng.random(k) < 0.5
    return np.asarray(pool[k:]), Canaries(index=index, label=wrong.astype(labels.dtype), client=client, included=included)
