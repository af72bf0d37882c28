"""FedProx's client half: the proximal gradient, with and without Opacus, and its effect on drift."""

import warnings

import torch
from torch import nn

from fedft.fl.client.corrections import attach_gradient_corrections
from fedft.fl.client.pipeline import local_update
from fedft.jobs.validate import load_config
from fedft.fl.context import RunContext


def _tiny_problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    return model, x, y


def _sgd_steps(model, x, y, steps, extra_loss=None, hook_mu=0.0, offset=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = attach_gradient_corrections(opt, model, proximal_mu=hook_mu, gradient_offset=offset)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if extra_loss is not None:
            loss = loss + extra_loss(model)
        loss.backward()
        opt.step()
    if handle is not None:
        handle.remove()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_hook_equals_the_proximal_loss_term():
    # Prepare: the reference is plain autograd on F(w) + mu/2 ||w - w0||^2
    mu = 0.7
    ref_model, x, y = _tiny_problem()
    w0 = [p.detach().clone() for p in ref_model.parameters()]
    reference = _sgd_steps(ref_model, x, y, 5, extra_loss=lambda m: mu / 2 * sum(((p - q) ** 2).sum() for p, q in zip(m.parameters(), w0)))
    # Execute
    hooked_model, _, _ = _tiny_problem()
    hooked = _sgd_steps(hooked_model, x, y, 5, hook_mu=mu)
    # Assert
    for key in reference:
        torch.testing.assert_close(hooked[key], reference[key])


def test_gradient_offset_is_added_every_step():
    model, x, y = _tiny_problem()
    offset = {name: torch.full_like(p, 0.25) for name, p in model.named_parameters()}
    reference_model, _, _ = _tiny_problem()
    reference = _sgd_steps(reference_model, x, y, 3, extra_loss=lambda m: sum((0.25 * p).sum() for p in m.parameters()))  # d/dw of 0.25*sum(w)
    torch.testing.assert_close(_sgd_steps(model, x, y, 3, offset=offset)["weight"], reference["weight"])


def test_proximal_gradient_survives_opacus():
    """Under DP-SGD the gradient is rebuilt from per-sample gradients of the data loss,
    so a proximal *loss* term is silently lost; the optimizer hook is not."""
    from opacus import PrivacyEngine

    warnings.filterwarnings("ignore", module="opacus")
    mu = 5.0
    model, x, y = _tiny_problem()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: only the gradients matter
    dp_model, dp_optimizer, _ = PrivacyEngine().make_private(module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0, max_grad_norm=1e6)

    def step(extra_loss=None):
        seen = []
        spy = optimizer.register_step_pre_hook(lambda o, a, k: seen.append([p.grad.clone() for p in model.parameters()]))
        dp_optimizer.zero_grad()
        loss = nn.functional.cross_entropy(dp_model(x), y)
        (loss + extra_loss() if extra_loss else loss).backward()
        dp_optimizer.step()
        spy.remove()
        return seen[0]

    anchor = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # w - w_global = 1 everywhere
    plain = step()
    as_loss = step(lambda: mu / 2 * sum(((p - q) ** 2).sum() for p, q in zip(model.parameters(), anchor)))
    for a, b in zip(as_loss, plain):
        torch.testing.assert_close(a, b)  # the loss term left no trace
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(1.0)
    handle = attach_gradient_corrections(dp_optimizer, model, proximal_mu=mu)
    step()  # first step: the hook takes the current weights as w_global
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    hooked = step()
    handle.remove()
    for with_prox, without in zip(hooked, plain):
        torch.testing.assert_close(with_prox - without, torch.full_like(without, mu))


def _config(mu_strategy="fedprox"):
    return load_config({
        "seed": 3,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 4},
        "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 16},
        "strategy": {"name": mu_strategy},
        "simulation": {"clients_per_round": 4, "device": "cpu"},
    })


def _drift(state, reference):
    return float(sum(((state[k] - reference[k]) ** 2).sum() for k in reference)) ** 0.5


def test_fedprox_keeps_local_weights_closer_to_the_global_model():
    # Prepare: one client, the same global model, data order and steps
    cfg = _config()
    global_state = RunContext(cfg).initial_state
    # Execute
    runs = {mu: local_update(cfg.to_json(), 1, 1, global_state, proximal_mu=mu) for mu in (0.0, 0.1, 1.0)}
    drifts = {mu: _drift(state, global_state) for mu, (state, _) in runs.items()}
    # Assert: more mu, less drift ||w - w_global||; the reported train_loss stays the data loss
    print("drift ||w - w_global|| by mu:", drifts)
    assert drifts[1.0] < drifts[0.1] < drifts[0.0], drifts
    assert drifts[1.0] < 0.9 * drifts[0.0], drifts
    assert all(0.0 < metrics["train_loss"] < 5.0 for _, metrics in runs.values())


def test_client_app_reads_flowers_proximal_mu():
    """Flower's FedProx puts `proximal-mu` in the train config; fedft's ClientApp applies it."""
    from flower_messages import train_instruction
    from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict

    from fedft.fl.client.app import train

    cfg = _config()
    x = RunContext(cfg).initial_state
    config = ConfigRecord({"fedft-config": cfg.to_json(), "server-round": 1, "proximal-mu": 1.0})
    msg = train_instruction(RecordDict({"arrays": ArrayRecord(x), "config": config}))
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 1}, state=RecordDict(), run_config={})
    sent = train(msg, context).content["arrays"].to_torch_state_dict()
    expected, _ = local_update(cfg.to_json(), 1, 1, x, proximal_mu=1.0)
    assert all(torch.equal(sent[k], expected[k]) for k in x)
