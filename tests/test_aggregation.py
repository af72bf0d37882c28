"""Aggregation math against hand-computed arrays, then Flower's strategies against that math."""

import numpy as np
import pytest
from flower_messages import FakeGrid, array_record, server_identity, train_reply
from flwr.app import ConfigRecord
from flwr.serverapp import strategy as fs

from strategies.aggregation import coordinate_median, krum_scores, krum_select, trimmed_mean, weighted_mean
from strategies.scaffold import Scaffold


def model(vector, scalar):
    """A two-layer model: a 1-d layer and a 0-d layer."""
    return [np.array(vector, dtype=np.float32), np.array(scalar, dtype=np.float32)]


def test_weighted_mean_by_hand():
    # Prepare: two clients with 1 and 3 examples
    models = [model([1.0, 2.0], 3.0), model([3.0, 6.0], 5.0)]
    # Execute
    mean = weighted_mean(models, [1.0, 3.0])
    # Assert: (1*1 + 3*3)/4 = 2.5, (1*2 + 3*6)/4 = 5, (1*3 + 3*5)/4 = 4.5
    np.testing.assert_allclose(mean[0], [2.5, 5.0])
    assert mean[1].shape == () and float(mean[1]) == pytest.approx(4.5)
    assert mean[0].dtype == np.float32


def test_weighted_mean_rejects_bad_weights_and_shapes():
    with pytest.raises(ValueError):
        weighted_mean([model([1.0], 0.0)], [0.0])
    with pytest.raises(ValueError):
        weighted_mean([model([1.0], 0.0), model([1.0, 2.0], 0.0)], [1.0, 1.0])


def test_coordinate_median_odd_and_even():
    three = [model([1.0, 9.0], 4.0), model([5.0, 2.0], -1.0), model([3.0, 7.0], 0.0)]
    med = coordinate_median(three)
    np.testing.assert_allclose(med[0], [3.0, 7.0])  # middle of {1,5,3} and {9,2,7}
    assert float(med[1]) == 0.0  # middle of {4,-1,0}
    four = three + [model([100.0, 0.0], 10.0)]
    med = coordinate_median(four)
    np.testing.assert_allclose(med[0], [4.0, 4.5])  # (3+5)/2, (2+7)/2
    assert float(med[1]) == pytest.approx(2.0)  # (0+4)/2


def test_trimmed_mean_drops_floor_beta_k_from_each_end():
    five = [model([v, -v], v) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    trimmed = trimmed_mean(five, 0.2)  # floor(0.2*5) = 1 dropped per end: mean(2,3,4) = 3
    np.testing.assert_allclose(trimmed[0], [3.0, -3.0])
    assert float(trimmed[1]) == pytest.approx(3.0)
    assert float(trimmed_mean(five, 0.0)[1]) == pytest.approx(22.0)  # plain mean (1+2+3+4+100)/5
    assert float(trimmed_mean(five, 0.1)[1]) == pytest.approx(22.0)  # floor(0.5) = 0: nothing dropped
    with pytest.raises(ValueError):
        trimmed_mean(five, 0.5)


def test_krum_scores_one_dimension():
    # Prepare: 0-d models 0, 1, 2, 10; f = 0 -> each sums its K - f - 2 = 2 nearest squared distances
    models = [[np.array(v, dtype=np.float32)] for v in (0.0, 1.0, 2.0, 10.0)]
    # Execute
    scores = krum_scores(models, num_malicious=0)
    # Assert: 0 -> 1+4, 1 -> 1+1, 2 -> 1+4, 10 -> 64+81
    np.testing.assert_allclose(scores, [5.0, 2.0, 5.0, 145.0])
    assert krum_select(models, 0) == [1]


def test_krum_distances_span_all_layers():
    models = [model([0.0], 0.0), model([1.0], 0.0), model([0.0], 1.0), model([3.0], 4.0)]
    # squared distances: 01=1, 02=1, 03=9+16=25, 12=1+1=2, 13=4+16=20, 23=9+9=18
    np.testing.assert_allclose(krum_scores(models, 0), [2.0, 3.0, 3.0, 38.0])
    np.testing.assert_allclose(krum_scores(models, 1), [1.0, 1.0, 1.0, 18.0])  # max(1, 4-1-2) = 1 nearest
    assert krum_select(models, 0, num_to_select=2) == [0, 1]  # tie 1 vs 2: lower index first


# ------------------------------------------------------------ Flower agrees

def _random_models(k=7, seed=0):
    rng = np.random.default_rng(seed)
    layers = [{"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.asarray(rng.normal(), dtype=np.float32)} for _ in range(k)]
    layers[-1] = {key: v + 50.0 for key, v in layers[-1].items()}  # one far-off client
    weights = [float(w) for w in rng.integers(5, 50, size=k)]
    return layers, weights


def _replies(layers, weights):
    return [train_reply(d, num_examples=w, node_id=i + 1) for i, (d, w) in enumerate(zip(layers, weights))]


def _as_list(record):
    return [record["w"].numpy(), record["b"].numpy()]


@pytest.mark.parametrize(
    "strategy,reference",
    [
        (fs.FedAvg(), lambda m, w: weighted_mean(m, w)),
        (fs.FedMedian(), lambda m, w: coordinate_median(m)),
        (fs.FedTrimmedAvg(beta=0.2), lambda m, w: trimmed_mean(m, 0.2)),
        (fs.Krum(num_malicious_nodes=1), lambda m, w: m[krum_select(m, 1)[0]]),
        (fs.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3), lambda m, w: weighted_mean([m[i] for i in krum_select(m, 1, 3)], [w[i] for i in krum_select(m, 1, 3)])),
    ],
    ids=["fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum"],
)
def test_flower_strategies_match_the_reference_math(strategy, reference):
    layers, weights = _random_models()
    models = [[d["w"], d["b"]] for d in layers]
    arrays, _ = strategy.aggregate_train(1, _replies(layers, weights))
    for got, want in zip(_as_list(arrays), reference(models, weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_scaffold_server_update_by_hand():
    # Prepare: x = ([1, 1], 2), c = 0, N = 4 clients, two reply with 1 and 3 examples
    strategy = Scaffold(server_learning_rate=0.5, num_clients=4)
    x = {"w": np.array([1.0, 1.0], dtype=np.float32), "b": np.array(2.0, dtype=np.float32)}
    with server_identity():
        sent = list(strategy.configure_train(1, array_record(x), ConfigRecord(), FakeGrid([1, 2])))
    assert len(sent) == 2 and float(np.abs(sent[0].content["scaffold-c"]["w"].numpy()).sum()) == 0.0
    y1, y2 = {"w": [3.0, 1.0], "b": 2.0}, {"w": [1.0, 5.0], "b": 6.0}
    dc1, dc2 = {"w": [4.0, 0.0], "b": 8.0}, {"w": [0.0, 4.0], "b": 0.0}
    replies = [
        train_reply({k: np.asarray(v, dtype=np.float32) for k, v in y1.items()}, 1.0, 1, {"scaffold-dc": {k: np.asarray(v, dtype=np.float32) for k, v in dc1.items()}}),
        train_reply({k: np.asarray(v, dtype=np.float32) for k, v in y2.items()}, 3.0, 2, {"scaffold-dc": {k: np.asarray(v, dtype=np.float32) for k, v in dc2.items()}}),
    ]
    # Execute
    arrays, _ = strategy.aggregate_train(1, replies)
    # Assert: mean dy = (1*(2,0,0) + 3*(0,4,4))/4 = (0.5, 3, 3); x + 0.5*dy = (1.25, 2.5), 3.5
    np.testing.assert_allclose(arrays["w"].numpy(), [1.25, 2.5])
    assert float(arrays["b"].numpy()) == pytest.approx(3.5)
    # c = 0 + (dc1 + dc2)/N = ((4,4)/4, 8/4)
    np.testing.assert_allclose(strategy.control["w"], [1.0, 1.0])
    assert float(strategy.control["b"]) == pytest.approx(2.0)


def test_scaffold_with_zero_controls_is_fedavg():
    layers, weights = _random_models(k=4, seed=3)
    zero = {k: np.zeros_like(v) for k, v in layers[0].items()}
    strategy = Scaffold(num_clients=4)
    with server_identity():
        list(strategy.configure_train(1, array_record(layers[0]), ConfigRecord(), FakeGrid([1])))
    replies = [train_reply(d, w, i + 1, {"scaffold-dc": zero}) for i, (d, w) in enumerate(zip(layers, weights))]
    arrays, _ = strategy.aggregate_train(1, replies)
    for got, want in zip(_as_list(arrays), weighted_mean([[d["w"], d["b"]] for d in layers], weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["fedavg", "fedmedian", "krum", "fedadam"])
def test_registry_strategies_compose_with_flowers_dp_wrapper(name):
    """Server-side DP clipping wraps a registry strategy; with a huge clip and no noise it changes nothing."""
    from strategies import RunFacts, build_strategy

    run = RunFacts(num_clients=7, clients_per_round=7, client_learning_rate=0.1)
    layers, _ = _random_models()
    weights = [10.0] * len(layers)  # DP accounting wants uniform weights
    plain, wrapped = build_strategy(name, {}, run), fs.DifferentialPrivacyServerSideFixedClipping(build_strategy(name, {}, run), 0.0, 1e9, len(layers))
    results = []
    for strategy in (plain, wrapped):
        with server_identity():
            # (a reply equal to the global model would make Flower's clipping divide by a zero norm)
            list(strategy.configure_train(1, array_record({k: v + 0.125 for k, v in layers[0].items()}), ConfigRecord(), FakeGrid(list(range(1, 8)))))
        results.append(_as_list(strategy.aggregate_train(1, _replies(layers, weights))[0]))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
