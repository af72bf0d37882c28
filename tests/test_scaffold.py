"""SCAFFOLD's client half through the real ClientApp train function, with a real Flower Context."""

import torch
from flower_messages import train_instruction
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

from fedft.fl.client import scaffold
from fedft.fl.client.app import train
from fedft.fl.client.pipeline import local_update
from fedft.jobs.validate import load_config
from fedft.fl.context import RunContext

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
    x = RunContext(CFG).initial_state
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
    x = RunContext(CFG).initial_state
    zero = {k: torch.zeros_like(v) for k, v in x.items()}
    first = _context({"state-dir": str(tmp_path)})
    train(_message(x, zero, 1), first)
    assert list(tmp_path.glob("scaffold-run3-node7.pt"))
    restarted = _context({"state-dir": str(tmp_path)})  # empty Context.state, as after a SuperNode restart
    controls = scaffold.load_controls(_message(x, zero, 2).content, restarted)
    saved = first.state[scaffold.STATE_KEY].to_torch_state_dict()
    assert all(torch.equal(controls.client[k], saved[k]) for k in x)


def test_plain_rounds_carry_no_scaffold_records():
    x = RunContext(CFG).initial_state
    msg = train_instruction(RecordDict({"arrays": ArrayRecord(x), "config": ConfigRecord({"fedft-config": CFG.to_json(), "server-round": 1})}))
    context = _context()
    reply = train(msg, context).content
    assert sorted(reply.array_records) == ["arrays"] and scaffold.STATE_KEY not in context.state


def _quadratic_rounds(rounds: int, use_scaffold: bool) -> float:
    """Two clients with f_i(w) = h_i/2 (w - a_i)^2, h = (1, 10), a = (0, 1), K = 20 local
    SGD steps of 0.05. The minimiser of f_1 + f_2 is w* = (1*0 + 10*1)/11 = 10/11.
    FedAvg's fixed point is biased: client 1 keeps 0.95^20 of its start, client 2
    reaches 1, so w = (0.95^20 w + 1)/2, i.e. w = 1 / (2 - 0.95^20)."""
    from flower_messages import FakeGrid, server_identity, train_reply

    from fedft.fl.client.corrections import attach_gradient_corrections
    from strategies.scaffold import Scaffold

    h, a, steps, lr = (1.0, 10.0), (0.0, 1.0), 20, 0.05
    strategy = Scaffold(num_clients=2)
    x = {"w": torch.zeros(1)}
    client_controls = [{"w": torch.zeros(1)} for _ in range(2)]
    for server_round in range(1, rounds + 1):
        with server_identity():
            sent = list(strategy.configure_train(server_round, ArrayRecord(x), ConfigRecord(), FakeGrid([1, 2])))
        c = sent[0].content["scaffold-c"].to_torch_state_dict()
        replies = []
        for i in range(2):
            model = torch.nn.Module()
            model.w = torch.nn.Parameter(x["w"].clone())
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            offset = {"w": c["w"] - client_controls[i]["w"]} if use_scaffold else None
            handle = attach_gradient_corrections(optimizer, model, gradient_offset=offset)
            for _ in range(steps):
                optimizer.zero_grad()
                (0.5 * h[i] * (model.w - a[i]) ** 2).sum().backward()
                optimizer.step()
            if handle is not None:
                handle.remove()
            y = {"w": model.w.detach().clone()}
            new = scaffold.updated_control(scaffold.Controls(c, client_controls[i]), x, y, steps, lr) if use_scaffold else client_controls[i]
            dc = {"w": new["w"] - client_controls[i]["w"]}
            client_controls[i] = new
            replies.append(train_reply({"w": y["w"].numpy()}, 10.0, i + 1, {"scaffold-dc": {"w": dc["w"].numpy()}}))
        arrays, _ = strategy.aggregate_train(server_round, replies)
        x = {"w": torch.from_numpy(arrays["w"].numpy().copy())}
    return float(x["w"])


def test_scaffold_removes_the_client_drift_fedavg_keeps():
    fedavg = _quadratic_rounds(40, use_scaffold=False)
    assert abs(fedavg - 1 / (2 - 0.95**20)) < 1e-4  # FedAvg's biased fixed point, about 0.609
    assert abs(_quadratic_rounds(40, use_scaffold=True) - 10 / 11) < 1e-3  # SCAFFOLD reaches w* = 0.909
