"""Many clients per worker call (`simulation.clients_per_call`, fedft/fl/packing.py): the wire
format both ways, the packed ClientApp call against one call per client, the client state
that must travel with a packed client, and whole runs bit for bit against unpacked ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict

import fedft
from fedft.fl import packing
from fedft.fl import protocol as p
from fedft.fl.client.app import POLICY_ERROR_CODE, app
from fedft.fl.context import RunContext
from fedft.jobs.validate import load_config
from fedft.state.client_records import PREFIX, ClientStateStore
from flower_messages import array_record, server_identity, train_instruction

# ---------------------------------------------------------------- pure


def test_pack_size_is_the_setting_or_a_few_calls_per_worker():
    assert packing.pack_size(1000, 7, workers=2) == 7
    assert packing.pack_size(1000, 0, workers=2) == 125  # ceil(1000 / (2 x 4))
    assert packing.pack_size(1001, 0, workers=2) == 126
    assert packing.pack_size(5, 0, workers=16) == 1


def test_auto_packs_large_cohorts_without_stragglers_and_an_explicit_setting_decides():
    assert not packing.packs_run(10, 0, 0.0)
    assert packing.packs_run(64, 0, 0.0)
    assert not packing.packs_run(1000, 0, 0.1)  # a straggler would hold back every client of its call
    assert packing.packs_run(3, 2, 0.0) and packing.packs_run(3, 2, 0.5)
    assert not packing.packs_run(1000, 1, 0.0)


def _messages(contents: list[RecordDict], nodes: list[int]) -> list[Message]:
    with server_identity():
        return [Message(c, dst_node_id=n, message_type="train") for c, n in zip(contents, nodes)]


def test_shared_records_travel_once_and_each_client_gets_back_exactly_its_own_message():
    # Prepare: one content object for all (as Flower's strategies build them), one client with its own state
    arrays = array_record({"w": np.arange(4.0)})
    shared = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 3})})
    own = RecordDict({"arrays": arrays, "config": shared["config"], PREFIX + "acct": ConfigRecord({"steps": 12})})
    messages = _messages([shared, own, shared], [11, 12, 13])
    # Execute
    with server_identity():
        packed = packing.pack_requests(messages, [4, 5, 6], size=2)
    # Assert
    assert [list(originals) for _, originals in packed] == [[4, 5], [6]]
    first, _ = packed[0]
    assert first.metadata.dst_node_id == 11 and first.metadata.message_type == packing.PACKED_TRAIN
    assert first.content["arrays"] is arrays and "#4/arrays" not in first.content  # once, not per client
    assert set(first.content.keys()) == {packing.PACK, "arrays", "config", f"#5/{PREFIX}acct"}
    unpacked = dict(packing.unpack_request(first.content))
    assert set(unpacked[4].keys()) == {"arrays", "config"}
    assert set(unpacked[5].keys()) == {"arrays", "config", PREFIX + "acct"} and unpacked[5][PREFIX + "acct"]["steps"] == 12


def test_a_packed_reply_becomes_one_reply_per_client_from_that_clients_node():
    originals = dict(zip([4, 5, 6], _messages([RecordDict()] * 3, [11, 12, 13])))
    replies = [(4, Message(RecordDict({"metrics": MetricRecord({"num-examples": 9.0})}), reply_to=originals[4])),
               (5, Message(Error(code=2, reason="boom"), reply_to=originals[5]))]
    with server_identity():
        packed = Message(RecordDict(), dst_node_id=11, message_type=packing.PACKED_TRAIN)
    reply = Message(packing.pack_replies(replies), reply_to=packed)
    out = packing.unpack_reply(reply, originals)
    assert [m.metadata.src_node_id for m in out] == [11, 12, 13]
    assert out[0].content["metrics"]["num-examples"] == 9.0
    assert out[1].has_error() and (out[1].error.code, out[1].error.reason) == (2, "boom")
    assert out[2].has_error() and "nothing for client 6" in out[2].error.reason  # a client the worker left out failed
    failed = packing.unpack_reply(Message(Error(code=5, reason="worker died"), reply_to=packed), originals)
    assert [(m.metadata.src_node_id, m.error.reason) for m in failed] == [(11, "worker died"), (12, "worker died"), (13, "worker died")]


def test_restored_state_goes_to_its_own_client_when_a_strategy_gives_every_message_one_content():
    content = RecordDict({"arrays": array_record({"w": np.zeros(2)})})  # the same object in every message
    messages = _messages([content, content, content], [11, 12, 13])
    store = ClientStateStore()
    store.load_plain([[0, {}], [1, {}]])
    store.states = {0: {"acct": ConfigRecord({"steps": 10})}, 1: {"acct": ConfigRecord({"steps": 20})}}
    store.attach(messages, {11: 0, 12: 1, 13: 2})
    assert messages[0].content[PREFIX + "acct"]["steps"] == 10
    assert messages[1].content[PREFIX + "acct"]["steps"] == 20
    assert PREFIX + "acct" not in messages[2].content and PREFIX + "acct" not in content


# ---------------------------------------------------------------- the ClientApp, in this process


def _context(partition: int, node_config: dict | None = None) -> Context:
    return Context(run_id=1, node_id=7, node_config={p.PARTITION_ID: partition, p.NUM_PARTITIONS: 3, **(node_config or {})},
                   state=RecordDict(), run_config={})


def test_a_packed_call_gives_each_client_what_its_own_call_gives(tiny_config):
    tiny_config["strategy"]["name"] = "scaffold"  # client state (the control variate) that must travel
    cfg = load_config(tiny_config)
    arrays = ArrayRecord(RunContext(cfg).initial_state)
    config = ConfigRecord({p.CONFIG_JSON: cfg.to_json(), p.SERVER_ROUND: 1})
    content = RecordDict({p.ARRAYS: arrays, p.CONFIG: config, p.SCAFFOLD_CONTROL: ArrayRecord({k: torch.zeros_like(v) for k, v in RunContext(cfg).initial_state.items()})})
    singles = {c: app(train_instruction(content, node_id=7), _context(c)) for c in (0, 2)}
    messages = _messages([content, content], [7, 8])
    with server_identity():
        (packed, originals), = packing.pack_requests(messages, [0, 2], size=2)
    reply = app(packed, _context(1))  # node 7 holds partition 1 but trains 0 and 2, as a worker does
    out = dict(zip(originals, packing.unpack_reply(reply, originals)))
    for c, single in singles.items():
        assert not out[c].has_error(), out[c].error.reason if out[c].has_error() else ""
        for key in (p.ARRAYS, p.SCAFFOLD_DELTA):
            mine, theirs = out[c].content[key].to_torch_state_dict(), single.content[key].to_torch_state_dict()
            assert all(torch.equal(mine[k], theirs[k]) for k in theirs), (c, key)
        assert dict(out[c].content[p.METRICS]) == dict(single.content[p.METRICS])
        assert any(k.startswith(PREFIX) for k in out[c].content.keys())  # its state goes back to the server


def test_a_deployed_node_refuses_packed_training(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    content = RecordDict({packing.PACK: ConfigRecord({packing.CLIENTS: [0, 1]}), p.CONFIG: ConfigRecord({p.CONFIG_JSON: cfg.to_json()})})
    with server_identity():
        msg = Message(content, dst_node_id=7, message_type=packing.PACKED_TRAIN)
    reply = app(msg, _context(0, {"state-dir": str(tmp_path)}))
    assert reply.has_error() and reply.error.code == POLICY_ERROR_CODE and "only its own partition" in reply.error.reason


# ---------------------------------------------------------------- whole runs


def _rows(run_dir) -> list[str]:
    """metrics.csv without its wall_seconds and train_calls columns."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = {header.index("wall_seconds"), header.index("train_calls")}
    return [",".join(v for i, v in enumerate(line.split(",")) if i not in drop) for line in lines]


@pytest.mark.slow
def test_packed_and_unpacked_runs_are_identical_scaffold_and_faults_included(tiny_config, tmp_path, shared_ray, process_guard):
    # seed 14: round 1 has a dropout and a crash among the 3 clients, round 2 a dropout
    tiny_config["seed"] = 14
    tiny_config["faults"] = {"crash_probability": 0.3, "dropout_probability": 0.2}
    tiny_config["strategy"]["name"] = "scaffold"
    tiny_config["partition"]["method"] = "dirichlet"
    tiny_config["simulation"]["min_replies"] = 1
    results = {}
    for per_call in (1, 2):
        tiny_config["simulation"]["clients_per_call"] = per_call
        results[per_call] = fedft.run(tiny_config, out=tmp_path / f"per-call-{per_call}", quiet=True)
        assert results[per_call].summary["status"] == "completed", results[per_call].summary
    one, two = results[1], results[2]
    assert [r["train_calls"] for r in one.metrics[1:]] == [3, 3]
    assert [r["train_calls"] for r in two.metrics[1:]] == [2, 2]  # 3 clients, 2 per call
    assert _rows(one.run_dir) == _rows(two.run_dir)
    assert sum(r["clients_failed"] + r["clients_dropped"] for r in two.metrics[1:]) >= 2
    for key, value in one.state.items():
        assert two.state[key].numpy().tobytes() == value.numpy().tobytes(), key
