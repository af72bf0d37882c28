"""SCAFFOLD's client half through the real ClientApp train function, with a real Flower Context."""

import torch
from flower_messages import train_instruction
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

from fedft.client import scaffold
from fedft.client.app import train
from fedft.client.local import local_update
from fedft.config import load_config
from fedft.server.evaluation import initial_state

CFG = load_config({
    "seed": 5,
    "data": {"name": "digits", "test_fraction": 0.2},
    "partition": {"method": "iid", "num_clients": 4},
    "train": {"lr": 0.05, "momentum": 0.5, "local_epochs": 1, "batch_size": 32},
    "strategy": {"name": "scaffold"},
    "simulation": {"clients_per_round": 4, "device": "cpu"},
})
ETA = 0.05 / (1 - 0.5)  # effective SGD step with momentum 0.5


def _message(global_state, control, server_round):
    return train_instruction(RecordDict({
        "arrays": ArrayRecord(global_state),
        "scaffold-c": ArrayRecord(control),
        "config": ConfigRecord({"fedft-config": CFG.to_json(), "server-round": server_round}),
    }))


def _context(node_config=None):
    return Context(run_id=3, node_id=7, node_config={"partition-id": 2, **(node_config or {})}, state=RecordDict(), run_config={})


def test_control_variates_follow_option_two_and_persist_in_context():
    x = initial_state(CFG)
    context = _context()
    zero = {k: torch.zeros_like(v) for k, v in x.items()}

    # Round 1, c = c_i = 0: dc = (x - y) / (K eta)
    reply = train(_message(x, zero, 1), context).content
    y1, steps = reply["arrays"].to_torch_state_dict(), int(reply["metrics"]["steps"])
    dc1 = reply["scaffold-dc"].to_torch_state_dict()
    for k in x:
        torch.testing.assert_close(dc1[k], (x[k] - y1[k]) / (steps * ETA))
    c1 = context.state[scaffold.STATE_KEY].to_torch_state_dict()
    assert all(torch.equal(c1[k], dc1[k]) for k in x)

    # Round 2, server c != 0: local steps use the offset c - c_i with c_i read back from Context.state
    c = {k: torch.full_like(v, 0.01) for k, v in x.items()}
    reply = train(_message(x, c, 2), context).content
    y2 = reply["arrays"].to_torch_state_dict()
    expected_y2, _ = local_update(CFG.to_json(), 2, 2, x, gradient_offset={k: c[k] - c1[k] for k in x})
    assert all(torch.equal(y2[k], expected_y2[k]) for k in x)
    dc2 = reply["scaffold-dc"].to_torch_state_dict()
    c2 = context.state[scaffold.STATE_KEY].to_torch_state_dict()
    for k in x:
        torch.testing.assert_close(dc2[k], -c[k] + (x[k] - y2[k]) / (steps * ETA))
        torch.testing.assert_close(c2[k], c1[k] + dc2[k])


def test_state_dir_keeps_control_across_a_restart(tmp_path):
    x = initial_state(CFG)
    zero = {k: torch.zeros_like(v) for k, v in x.items()}
    first = _context({"state-dir": str(tmp_path)})
    train(_message(x, zero, 1), first)
    assert list(tmp_path.glob("scaffold-run3-node7.pt"))
    restarted = _context({"state-dir": str(tmp_path)})  # empty Context.state, as after a SuperNode restart
    controls = scaffold.load_controls(_message(x, zero, 2).content, restarted)
    saved = first.state[scaffold.STATE_KEY].to_torch_state_dict()
    assert all(torch.equal(controls.client[k], saved[k]) for k in x)


def test_plain_rounds_carry_no_scaffold_records():
    x = initial_state(CFG)
    msg = train_instruction(RecordDict({"arrays": ArrayRecord(x), "config": ConfigRecord({"fedft-config": CFG.to_json(), "server-round": 1})}))
    context = _context()
    reply = train(msg, context).content
    assert sorted(reply.array_records) == ["arrays"] and scaffold.STATE_KEY not in context.state
