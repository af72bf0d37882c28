"""fedft's DP-SGD fast path (fedft.privacy.fast_grad_sample) against Opacus' own per-sample
gradients, bit for bit."""

import pytest
import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.grad_sample.grad_sample_module import create_or_accumulate_grad_sample

from fedft.ml.models import build_model
from fedft.privacy.fast_grad_sample import borrowed_grad_samples, keep_or_accumulate
from fedft.privacy.dp_sgd import make_dp_compatible

SHAPES = {"seed_cnn": (1, 28, 28), "seed_rnn": (1, 28, 28), "char_lstm": (12,)}


def _per_sample_grads(model_name: str, borrowed: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    shape = SHAPES[model_name]
    options = {"hidden_size": 16, "num_layers": 1} if model_name == "char_lstm" else {}
    classes = 20 if model_name == "char_lstm" else 10
    model = GradSampleModule(make_dp_compatible(build_model(model_name, shape, classes, **options)))
    if model_name == "char_lstm":
        x = torch.randint(0, classes, (5, *shape))
        y = torch.randint(0, classes, (5, *shape))
    else:
        x, y = torch.randn(5, *shape), torch.randint(0, classes, (5,))
    logits = model(x).reshape(-1, classes)
    loss = F.cross_entropy(logits, y.reshape(-1))
    if borrowed:
        with borrowed_grad_samples():
            loss.backward()
    else:
        loss.backward()
    return {name: p.grad_sample.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("model_name", sorted(SHAPES))
def test_per_sample_gradients_are_bit_identical_to_opacus(model_name):
    expected = _per_sample_grads(model_name, borrowed=False)
    got = _per_sample_grads(model_name, borrowed=True)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_opacus_function_is_restored_after_the_block():
    from opacus.grad_sample import grad_sample_module

    with pytest.raises(RuntimeError), borrowed_grad_samples():
        assert grad_sample_module.create_or_accumulate_grad_sample is keep_or_accumulate
        raise RuntimeError
    assert grad_sample_module.create_or_accumulate_grad_sample is create_or_accumulate_grad_sample


@pytest.mark.parametrize("sizes", [(3, [3]), (4, [2]), (4, [4, 4]), (4, [4, 2]), (4, [2, 4])])
def test_keep_or_accumulate_matches_opacus_for_padding_and_accumulation(sizes):
    """Prepare: the same per-sample pieces fed to both functions (max_batch_len, batch sizes)."""
    max_batch_len, batches = sizes
    pieces = [torch.arange(n * 6, dtype=torch.float32).reshape(n, 2, 3) + 10 * i for i, n in enumerate(batches)]
    ours, theirs = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(2, 3))
    for piece in pieces:
        keep_or_accumulate(param=ours, grad_sample=piece.clone(), max_batch_len=max_batch_len)
        create_or_accumulate_grad_sample(param=theirs, grad_sample=piece.clone(), max_batch_len=max_batch_len)
    assert torch.equal(ours._current_grad_sample, theirs._current_grad_sample)


def test_accumulation_never_writes_into_a_kept_tensor():
    param = torch.nn.Parameter(torch.zeros(2))
    first = torch.ones(3, 2)
    keep_or_accumulate(param=param, grad_sample=first, max_batch_len=3)
    assert param._current_grad_sample is first  # kept, not copied
    keep_or_accumulate(param=param, grad_sample=torch.ones(3, 2), max_batch_len=3)
    assert torch.equal(first, torch.ones(3, 2))
    assert torch.equal(param._current_grad_sample, torch.full((3, 2), 2.0))

