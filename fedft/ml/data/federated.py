"""A dataset split between the server's test set and the clients' shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.canaries import Canaries


@dataclass(frozen=True)
class FederatedData:
    full: ArrayDataset
    test: np.ndarray  # indices into `full`
    clients: tuple[tuple[np.ndarray, np.ndarray], ...]  # per client: (train, val) indices into `full`
    canaries: Canaries | None = None  # the audit's planted records (`audit.canaries`), included ones already in `clients`

    @property
    def test_set(self) -> ArrayDataset:
        return self.full.subset(self.test)

    def client_sets(self, client_id: int) -> tuple[ArrayDataset, ArrayDataset]:
        train, val = self.clients[client_id]
        return self.full.subset(train), self.full.subset(val)

    def client_labels(self) -> list[np.ndarray]:
        return [np.concatenate([t, v]) for t, v in self.clients]
