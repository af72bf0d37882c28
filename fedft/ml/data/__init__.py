"""Data: datasets by name, the server/client split, and each client's shard.

`federated_data(...)` is a pure function of plain arguments and is memoised per
process, so a Ray worker that plays many clients loads and partitions once.
"""

from __future__ import annotations

from functools import lru_cache

from fedft.ml.data import images as _images  # noqa: F401  (registers the offline datasets)
from fedft.ml.data.arrays import ArrayDataset
from fedft.ml.data.federated import FederatedData
from fedft.ml.data.partition import label_counts, partition_pool, split_pool_test, split_train_val
from fedft.ml.data.registry import check_dataset_name, dataset_names, dataset_origin, load_dataset, register_dataset
from fedft.ml.data.text import is_text_dataset, text_federated_data  # registers `text`

__all__ = [
    "ArrayDataset", "FederatedData", "check_dataset_name", "dataset_names", "dataset_origin", "federated_data",
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
) -> FederatedData:
    if is_text_dataset(name):  # clients are speaking roles, not label partitions (fedft/ml/data/text.py)
        return text_federated_data(name, path, test_fraction, val_fraction, num_clients, seed, seq_len, min_chars, small_roles, max_client_sequences)
    full = load_dataset(name, path)
    split = split_pool_test(full.y, test_fraction, seed)
    shards = partition_pool(full.y[split.pool], method, num_clients, seed, alpha, classes_per_client, shards_per_client)
    clients = []
    for cid, positions in enumerate(shards):
        train, val = split_train_val(split.pool[positions], val_fraction, seed, cid)
        clients.append((train, val))
    return FederatedData(full=full, test=split.test, clients=tuple(clients))


def federated_data_for(cfg) -> FederatedData:  # cfg: FedftConfig
    d, p = cfg.data, cfg.partition
    return federated_data(d.name, d.path, d.test_fraction, d.val_fraction, p.method, p.num_clients, cfg.seed, p.alpha, p.classes_per_client, p.shards_per_client,
                          d.seq_len, d.min_chars, d.small_roles, d.max_client_sequences)
