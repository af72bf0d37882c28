"""Scale fixes keep behaviour: fast iid shards equal flwr-datasets' IidPartitioner."""

import numpy as np
import pytest


@pytest.mark.parametrize("pool_size,num_clients", [(4000, 10), (4000, 7), (103, 10), (10, 10), (56000, 10000)])
def test_iid_shards_equal_flwr_datasets(pool_size, num_clients):
    import datasets
    from flwr_datasets.partitioner import IidPartitioner

    from fedft.ml.data.partition import iid_shards

    part = IidPartitioner(num_partitions=num_clients)
    part.dataset = datasets.Dataset.from_dict({"position": list(range(pool_size))})
    ours = iid_shards(pool_size, num_clients)
    assert len(ours) == num_clients
    for i in sorted({0, 1, num_clients // 2, num_clients - 1}):
        assert np.array_equal(ours[i], np.asarray(part.load_partition(i)["position"]))
    assert np.array_equal(np.concatenate(ours), np.arange(pool_size))
