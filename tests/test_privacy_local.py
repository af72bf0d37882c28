"""Local DP on one client, without Ray: real Opacus DP-SGD on real mnist-5k shards."""

import json
import math

import pytest
import torch
from flwr.app import RecordDict
from opacus.accountants import PRVAccountant, RDPAccountant

from fedft.fl.client.pipeline import local_update
from fedft.fl.client.trainers import PlainTrainer
from fedft.fl.context import client_tensors, run_context
from fedft.jobs.validate import load_config
from fedft.ml.models import build_model
from fedft.privacy.accounting import dp_sgd_sample_rate, dp_sgd_steps_per_epoch
from fedft.privacy.dp_sgd import BUDGET_SPENT, EPSILON, dp_train, make_dp_compatible, plain_state
from fedft.ml.training import make_optimizer, seed_generator, train

CPU = torch.device("cpu")


def _config(**privacy) -> str:
    raw = {
        "seed": 3,
        "data": {"name": "mnist-5k", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 10},
        "model": {"name": "seed_cnn"},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 64},
        "simulation": {"rounds": 3, "clients_per_round": 10, "device": "cpu"},
        "privacy": {"mode": "local", "noise_source": "seeded", "accountant": "rdp", **privacy},  # rdp: checked against Opacus' RDPAccountant  # seeded: rounds compared bit for bit
    }
    return load_config(raw).to_json()


def _initial_state(name="seed_cnn"):
    torch.manual_seed(0)
    return {k: v.clone() for k, v in build_model(name).state_dict().items()}


@pytest.mark.slow  # seconds of compute, no process
@pytest.mark.parametrize("accountant,reference", [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_epsilon_accumulates_across_rounds_with_a_fresh_engine_each_round(accountant, reference):
    """Three rounds, each with a new PrivacyEngine restored from the node state, spend what
    one accountant stepped through all three rounds' steps spends (Opacus issue 688)."""
    config = _config(noise_multiplier=1.3, accountant=accountant)
    node_state = RecordDict()
    state = _initial_state()
    epsilons = []
    for server_round in (1, 2, 3):
        state_out, metrics = local_update(config, 4, server_round, state, node_state=node_state)
        assert list(state_out) == list(state)  # same keys, same order, no `_module.` prefix
        state = state_out
        epsilons.append(metrics[EPSILON])
    n = len(client_tensors(config, 4)[1])
    q, steps = dp_sgd_sample_rate(n, 64), 3 * dp_sgd_steps_per_epoch(n, 64)
    acc = reference()
    for _ in range(steps):
        acc.step(noise_multiplier=1.3, sample_rate=q)
    assert epsilons[0] < epsilons[1] < epsilons[2]
    assert epsilons[2] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    assert metrics["dp_steps"] == steps


def test_budget_exhaustion_refuses_training(tmp_path):
    """Target ε fits one round of 1.0-noise DP-SGD but not two: round 2 refuses and
    spends nothing; the history also survives in the state_dir file."""
    n = len(client_tensors(_config(noise_multiplier=1.0), 0)[1])
    q, steps = dp_sgd_sample_rate(n, 64), dp_sgd_steps_per_epoch(n, 64)
    one, two = RDPAccountant(), RDPAccountant()
    one.history, two.history = [(1.0, q, steps)], [(1.0, q, 2 * steps)]
    target = (one.get_epsilon(1e-5) + two.get_epsilon(1e-5)) / 2
    config = _config(noise_multiplier=1.0, target_epsilon=target, state_dir=str(tmp_path))
    node_state = RecordDict()
    state, first = local_update(config, 0, 1, _initial_state(), node_state=node_state)
    assert state is not None and first[BUDGET_SPENT] == 0 and first[EPSILON] == pytest.approx(one.get_epsilon(1e-5))
    again, second = local_update(config, 0, 2, state, node_state=node_state)
    assert again is None and second[BUDGET_SPENT] == 1
    assert second[EPSILON] == first[EPSILON] and second["dp_steps"] == first["dp_steps"]
    assert (tmp_path / "client-0.json").is_file()
    # a node restarted with empty Context.state reads its history from the file and still refuses
    again, third = local_update(config, 0, 3, state, node_state=RecordDict())
    assert again is None and third[EPSILON] == first[EPSILON]


def _single_example_update_norm(model_name: str, x: torch.Tensor, y: torch.Tensor, max_grad_norm: float) -> float:
    model = make_dp_compatible(build_model(model_name))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer("sgd", model.parameters(), lr=1.0)
    dp_train(model, x, y, epochs=1, batch_size=1, optimizer=optimizer, noise_multiplier=0.0, max_grad_norm=max_grad_norm,
             history=[], accountant="rdp", seed_parts=(0, 0, 0), device=CPU, poisson_sampling=False)
    return math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(model.parameters(), before)))


@pytest.mark.parametrize("model_name", ["seed_cnn", "seed_rnn"])
def test_every_clipped_per_sample_gradient_is_within_max_grad_norm(model_name):
    """One example, no noise, lr 1: the SGD step is exactly that example's clipped gradient."""
    torch.manual_seed(1)
    norms = [_single_example_update_norm(model_name, 30 * torch.randn(1, 1, 28, 28), torch.tensor([i]), 0.1) for i in range(6)]
    assert all(n <= 0.1 * (1 + 1e-5) for n in norms), norms
    assert max(norms) > 0.099  # the raw gradients were larger: clipping did act


@pytest.mark.parametrize("model_name", ["seed_cnn", "seed_rnn"])
def test_no_noise_no_clipping_dp_client_equals_plain_client(model_name):
    """Same batches (Poisson off), σ = 0 and a clipping bound no gradient reaches:
    Opacus' GradSampleModule + DPOptimizer (and FastDPRNN) reproduce plain SGD."""
    torch.manual_seed(2)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    plain = build_model(model_name)
    dp = make_dp_compatible(plain)
    keys = list(plain.state_dict())
    train(plain, x, y, epochs=2, batch_size=16, optimizer=make_optimizer("sgd", plain.parameters(), 0.05, momentum=0.9),
          generator=seed_generator(5, 1, 2), device=CPU)
    dp_train(dp, x, y, epochs=2, batch_size=16, optimizer=make_optimizer("sgd", dp.parameters(), 0.05, momentum=0.9),
             noise_multiplier=0.0, max_grad_norm=1e6, history=[], accountant="rdp", seed_parts=(5, 1, 2), device=CPU,
             poisson_sampling=False)
    got = plain_state(dp, keys)
    for k, v in plain.state_dict().items():
        assert torch.allclose(got[k], v, atol=1e-5, rtol=1e-4), k


def test_rnn_uses_fast_dp_rnn_with_the_plain_parameter_names():
    from fedft.ml.models.dp_rnn import FastDPRNN

    plain = build_model("seed_rnn")
    dp = make_dp_compatible(plain)
    assert isinstance(dp.rnn, FastDPRNN) and isinstance(plain.rnn, torch.nn.RNN)
    state = plain_state(dp, list(plain.state_dict()))
    assert list(state) == list(plain.state_dict())
    assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())


def test_seeded_dp_round_is_reproducible():
    config = _config(noise_multiplier=1.0)
    a, ma = local_update(config, 1, 1, _initial_state(), node_state=RecordDict())
    b, mb = local_update(config, 1, 1, _initial_state(), node_state=RecordDict())
    c, _ = local_update(config, 1, 2, _initial_state(), node_state=RecordDict())  # another round: other batches and noise
    assert all(torch.equal(a[k], b[k]) for k in a) and ma == mb
    assert not all(torch.equal(a[k], c[k]) for k in a)
    plain, _ = local_update(config, 1, 1, _initial_state(), trainer=PlainTrainer(run_context(config)))
    assert list(plain) == list(a)


@pytest.mark.parametrize("model_name", ["seed_cnn", "seed_rnn"])
def test_reused_worker_dp_model_trains_exactly_like_a_fresh_one(model_name):
    """A worker converts its DP model once; a round on the reused model (hooks removed
    after the previous round) equals the same round on a freshly converted one."""
    from fedft.privacy.dp_sgd import _worker_dp_model

    raw = json.loads(_config(noise_multiplier=1.0))
    raw["model"] = {"name": model_name}
    config = load_config(raw).to_json()
    start = _initial_state(model_name)
    local_update(config, 1, 1, start, node_state=RecordDict())  # warms the worker's model
    reused, metrics_reused = local_update(config, 1, 2, start, node_state=RecordDict())
    _worker_dp_model.cache_clear()
    fresh, metrics_fresh = local_update(config, 1, 2, start, node_state=RecordDict())
    assert all(torch.equal(reused[k], fresh[k]) for k in fresh) and metrics_reused == metrics_fresh


def test_os_noise_generator_state_is_not_a_32_bit_seed():
    """torch's CPU Mersenne Twister keeps only the low 32 bits of `manual_seed`, so 64 bits of
    os.urandom through it gave 2^32 possible noise streams. `entropy_generator` fills all 624
    state words instead: entropies equal mod 2^32 give different noise, equal ones the same."""
    from fedft.privacy.dp_sgd import entropy_generator

    seed = int.from_bytes(bytes(range(1, 9)), "little")
    twin = seed + 2**32  # the same low 32 bits
    by_manual_seed = [torch.randn(8, generator=torch.Generator().manual_seed(s)) for s in (seed, twin)]
    assert torch.equal(*by_manual_seed)  # the defect: what seeding a generator with 64 bits gave
    a, b = (torch.randn(8, generator=entropy_generator(CPU, s.to_bytes(8, "little"))) for s in (seed, twin))
    assert not torch.equal(a, b)
    assert torch.equal(a, torch.randn(8, generator=entropy_generator(CPU, seed.to_bytes(8, "little"))))
    words = entropy_generator(CPU).get_state()[24 : 24 + 624 * 8].numpy().view("<u8")
    assert len(set(words.tolist())) > 600 and int(words.max()) < 2**32  # the state words are ours: distinct 32-bit values
    draws = torch.randn(200_000, generator=entropy_generator(CPU))
    assert abs(float(draws.mean())) < 0.02 and abs(float(draws.std()) - 1) < 0.02  # still N(0, 1)


class _HeadsReshape(torch.nn.Module):
    """Like a Hugging Face attention: `view(batch, heads, -1)`, which a batch of none cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 6)
        self.out = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return self.out(h.view(h.shape[0], 2, -1).mean(1))


def test_an_empty_poisson_batch_is_a_noise_only_step_even_where_the_model_cannot_take_it():
    """4 records, batch 1: q = 1/4, so 20 steps draw some empty batches (0.75^4 = 32% each; these
    seeds draw some: without the fix the forward raises).
    Each still counts as a step of the accountant and releases noise, and the reused model
    is left with nothing of Opacus' on its modules (a failed forward used to leave its
    captured inputs, and every later round on that worker then failed)."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 0, 1])
    model = make_dp_compatible(_HeadsReshape())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = dp_train(model, x, y, epochs=5, batch_size=1, optimizer=optimizer, noise_multiplier=1.0, max_grad_norm=1.0,
                   history=[], accountant="rdp", seed_parts=(1, 2, 3), device=CPU)
    assert out.train.steps == 20 and out.history == [(1.0, 0.25, 20)]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not [m for m in model.modules() if hasattr(m, "activations") or hasattr(m, "max_batch_len")]
    again = dp_train(model, x, y, epochs=5, batch_size=1, optimizer=torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1),
                     noise_multiplier=1.0, max_grad_norm=1.0, history=out.history, accountant="rdp", seed_parts=None, device=CPU)
    assert again.history == [(1.0, 0.25, 40)]
