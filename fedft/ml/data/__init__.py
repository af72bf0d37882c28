"""Data: datasets by name, the server/client split, and each client's shard.

`federated_data(...)` is a pure function of plain arguments and is memoised per
process, so a Ray worker that plays many clients loads and partitions once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedft.ml.data import images as _images  # noqa: F401  (registers the offline datasets)
from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.canaries import Canaries, draw_canaries, noise_images
from fedft.ml.data.federated import FederatedData
from fedft.ml.data.partition import label_counts, partition_pool, split_pool_test, split_train_val
from fedft.ml.data.registry import check_dataset_name, dataset_names, dataset_origin, load_dataset, register_dataset
from fedft.ml.data.text import is_text_dataset, text_federated_data  # registers `text`

__all__ = [
    "ArrayDataset", "Canaries", "FederatedData", "check_dataset_name", "dataset_names", "dataset_origin", "federated_data",
    "load_dataset", "register_dataset", "label_counts",
]


@lru_cache(maxsize=4)
def federated_data(
    name: str,
    path: str,
    test_fraction: float,
    val_fraction: float,
    method: str,
    num_clients: int,
    seed: int,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    shards_per_client: int = 2,
    seq_len: int = 80,
    min_chars: int = 2000,
    small_roles: str = "drop",
    max_client_sequences: int = 0,
    canaries: int = 0,
    canary_kind: str = "mislabeled",
) -> FederatedData:
    """`canaries` > 0: that many mislabeled canary records leave the pool before it is
    partitioned and join their client's training shard with probability ½
    (`fedft.ml.data.canaries`); the test set is the same with or without them."""
    if is_text_dataset(name):  # clients are speaking roles, not label partitions (fedft/ml/data/text.py)
        return text_federated_data(name, path, test_fraction, val_fraction, num_clients, seed, seq_len, min_chars, small_roles, max_client_sequences)
    full = load_dataset(name, path)
    split = split_pool_test(full.y, test_fraction, seed)
    pool, planted = split.pool, None
    if canaries:
        pool, planted = draw_canaries(pool, full.y, full.num_classes, num_clients, canaries, seed)
        labels = full.y.copy()
        labels[planted.index] = planted.label  # these records are nobody else's: out of the pool, never in the test set
        images = noise_images(full.features(), planted.index, seed) if canary_kind == "noise" else full.x
        full = ArrayDataset(full.name, images, labels, full.num_classes)
    shards = partition_pool(full.y[pool], method, num_clients, seed, alpha, classes_per_client, shards_per_client)
    clients = []
    for cid, positions in enumerate(shards):
        train, val = split_train_val(pool[positions], val_fraction, seed, cid)
        if planted is not None:
            train = np.concatenate([train, planted.for_client(cid)])
        clients.append((train, val))
    return FederatedData(full=full, test=split.test, clients=tuple(clients), canaries=planted)


def federated_data_for(cfg) -> FederatedData:  # cfg: FedftConfig
    d, p = cfg.data, cfg.partition
    return federated_data(d.name, d.path, d.test_fraction, d.val_fraction, p.method, p.num_clients, cfg.seed, p.alpha, p.classes_per_client, p.shards_per_client,
                          d.seq_len, d.min_chars, d.small_roles, d.max_client_sequences, cfg.audit.canaries, cfg.audit.canary_kind)
