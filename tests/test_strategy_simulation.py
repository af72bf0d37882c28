"""Every registered strategy runs a real round on Flower's Ray simulation, with two
bad clients in it (a NaN update and a wrong-shape update) that must be dropped.

One simulation serves all strategies (Ray starts once): the ServerApp runs fedft's
round loop once per strategy against the same 5 virtual clients.
"""

import logging
import math
import sys

import numpy as np
import pytest
import ray.cloudpickle
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

import fedft.fl.client.app as fedft_client
from fedft.fl.context import RunContext
from fedft.fl.server.evaluation import central_evaluator
from fedft.fl.server.loop import RoundParts, RoundSettings, run_rounds
from fedft.jobs.validate import load_config
from fedft.privacy.tracker import privacy_tracker
from fedft.runtime import engine
from strategies import RunFacts, build_strategy, strategy_names

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import test modules

NAN_CLIENT, SHAPE_CLIENT = 0, 1
PARAMS = {
    "fedavg": {}, "fedavgm": {"server_momentum": 0.5}, "fedprox": {"proximal_mu": 0.1},
    "fedadam": {}, "fedyogi": {}, "fedadagrad": {}, "fedmedian": {}, "fedtrimmedavg": {"beta": 0.2},
    "krum": {"num_malicious_nodes": 1}, "multikrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 2},
    "bulyan": {}, "qfedavg": {}, "scaffold": {}, "flexlora": {},  # flexlora: FedAvg where no LoRA pairs travel
}
ROUNDS = {"fedavg": 2, "scaffold": 2}  # the run goes on after a round with rejections

bad_clients = ClientApp()


@bad_clients.query()
def identify(msg: Message, context: Context) -> Message:
    return fedft_client.identify(msg, context)


@bad_clients.train()
def train(msg: Message, context: Context) -> Message:
    """fedft's client, except that client 0 sends NaN and client 1 a wrong-shape layer."""
    reply = fedft_client.train(msg, context)
    client = int(context.node_config["partition-id"])
    arrays: ArrayRecord = reply.content["arrays"]
    first = next(iter(arrays.keys()))
    if client == NAN_CLIENT:
        bad = arrays[first].numpy().copy()
        bad.flat[0] = np.nan
        arrays[first] = Array(bad)
    elif client == SHAPE_CLIENT:
        arrays[first] = Array(np.zeros((2, 2), dtype=np.float32))
    return reply


def _config(name: str, tmp_path) -> dict:
    return {
        "name": name,
        "seed": 11,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 5},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "strategy": {"name": name, **PARAMS[name]},
        "simulation": {"rounds": ROUNDS.get(name, 1), "clients_per_round": 5, "device": "cpu"},
        "output": {"dir": str(tmp_path)},
    }


@pytest.mark.slow
def test_every_strategy_runs_a_round_and_drops_bad_updates(tmp_path, shared_ray, process_guard, caplog):
    # Prepare
    assert set(PARAMS) == set(strategy_names())
    cfgs = {name: load_config(_config(name, tmp_path)) for name in PARAMS}
    results: dict = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        for name, cfg in cfgs.items():
            rows: list = []
            strategy = build_strategy(cfg.strategy.name, cfg.strategy.params(), RunFacts.from_config(cfg))
            ctx = RunContext(cfg)
            start = ctx.initial_state
            parts = RoundParts(strategy, central_evaluator(ctx), privacy_tracker(cfg), ctx.plan, on_round=rows.append)
            final = run_rounds(grid, ArrayRecord(start), RoundSettings.from_config(cfg), parts)
            results[name] = (rows, start, final.to_torch_state_dict())

    # Execute
    with caplog.at_level(logging.WARNING, logger="fedft"):
        engine.simulate(server, bad_clients, 5, cfgs["fedavg"].simulation)

    # Assert
    assert set(results) == set(PARAMS), f"strategies that did not finish: {set(PARAMS) - set(results)}"
    for name, (rows, start, final) in results.items():
        assert [r["round"] for r in rows] == list(range(ROUNDS.get(name, 1) + 1)), name
        for row in rows[1:]:
            assert (row["clients_sampled"], row["clients_replied"], row["clients_rejected"]) == (5, 5, 2), (name, row)
            assert math.isfinite(row["test_accuracy"]) and math.isfinite(row["train_loss"]), (name, row)
        assert all(np.isfinite(v.numpy()).all() and v.shape == start[k].shape and v.dtype == start[k].dtype for k, v in final.items()), name
        assert any(not np.array_equal(final[k].numpy(), start[k].numpy()) for k in start), f"{name} did not move the model"
    assert "client 0 (node" in caplog.text and "NaN or Inf" in caplog.text
    assert "client 1 (node" in caplog.text and "has shape (2, 2)" in caplog.text
