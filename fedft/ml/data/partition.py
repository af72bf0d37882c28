"""Split a dataset into a server test set and a client pool, then the pool into clients.

The partitioners are flwr-datasets' own, run on an in-memory `datasets.Dataset`
that holds only labels: what comes back is index arrays, so the images are
never copied per client.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedft.errors import FedftError


@dataclass(frozen=True)
class Split:
    """Index arrays into the full dataset."""

    pool: np.ndarray  # what clients may ever see
    test: np.ndarray  # server-side test set, never sent to a client


def split_pool_test(labels: np.ndarray, test_fraction: float, seed: int) -> Split:
    """Seeded, stratified split, so every class is in the test set in proportion."""
    rng = np.random.default_rng([seed, 0x7E57])
    test_parts, pool_parts = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(idx) * test_fraction))
        test_parts.append(idx[:n_test])
        pool_parts.append(idx[n_test:])
    # Shuffle the pool once more so contiguous partitioners (IID) get mixed classes.
    return Split(pool=rng.permutation(np.concatenate(pool_parts)), test=np.sort(np.concatenate(test_parts)))


def _partitioner(method: str, num_clients: int, alpha: float, classes_per_client: int, shards_per_client: int, seed: int):
    from flwr_datasets import partitioner as fp

    if method == "iid":
        return fp.IidPartitioner(num_partitions=num_clients)
    if method == "dirichlet":
        return fp.DirichletPartitioner(num_partitions=num_clients, partition_by="label", alpha=alpha, min_partition_size=0, self_balancing=False, seed=seed)
    if method == "pathological":
        return fp.PathologicalPartitioner(num_partitions=num_clients, partition_by="label", num_classes_per_partition=classes_per_client, class_assignment_mode="first-deterministic", seed=seed)
    if method == "shards":
        return fp.ShardPartitioner(num_partitions=num_clients, partition_by="label", num_shards_per_partition=shards_per_client, seed=seed)
    raise FedftError("partition.method", f"unknown method '{method}'.", "use iid, dirichlet, pathological or shards.")


def partition_pool(
    pool_labels: np.ndarray,
    method: str,
    num_clients: int,
    seed: int,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """Positions into the pool for each client: disjoint, and together the whole pool
    for iid/dirichlet (shards and pathological may leave a remainder unused)."""
    if num_clients > len(pool_labels):
        raise FedftError(
            "partition.num_clients",
            f"{num_clients} clients but only {len(pool_labels)} examples in the client pool.",
            "use fewer clients or a larger dataset.",
        )
    if method == "pathological" and classes_per_client > len(np.unique(pool_labels)):
        raise FedftError("partition.classes_per_client", f"{classes_per_client} is more than the {len(np.unique(pool_labels))} classes in the data.", "lower it.")
    if method == "iid":
        return iid_shards(len(pool_labels), num_clients)
    import datasets  # 0.5 s to import: only the label-skewed partitioners need it

    table = datasets.Dataset.from_dict({"label": pool_labels.tolist(), "position": np.arange(len(pool_labels)).tolist()})
    part = _partitioner(method, num_clients, alpha, classes_per_client, shards_per_client, seed)
    part.dataset = table
    try:
        shards = [np.asarray(part.load_partition(i)["position"], dtype=np.int64) for i in range(num_clients)]
    except ValueError as exc:
        raise FedftError(f"partition ({method})", f"flwr-datasets cannot partition this data: {exc}", "use fewer clients or other partition settings.") from None
    return shards


def iid_shards(pool_size: int, num_clients: int) -> list[np.ndarray]:
    """What flwr-datasets' IidPartitioner gives (`Dataset.shard(contiguous=True)`: the
    first `pool_size % num_clients` clients get one example more), computed directly:
    its per-partition `shard` call costs milliseconds, i.e. minutes for 10,000 clients."""
    return [np.asarray(s, dtype=np.int64) for s in np.array_split(np.arange(pool_size, dtype=np.int64), num_clients)]


def split_train_val(positions: np.ndarray, val_fraction: float, seed: int, client_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A client's own seeded train/validation split of its shard."""
    rng = np.random.default_rng([seed, client_id, 0xA1])
    shuffled = rng.permutation(positions)
    n_val = int(len(shuffled) * val_fraction)
    return shuffled[n_val:], shuffled[:n_val]


def label_counts(labels: np.ndarray, shards: list[np.ndarray], num_classes: int) -> np.ndarray:
    """clients x classes matrix of example counts."""
    return np.stack([np.bincount(labels[s], minlength=num_classes) for s in shards])
