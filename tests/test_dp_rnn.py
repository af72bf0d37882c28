"""fedft's fast DP recurrent layers (fedft.ml.models.dp_rnn) against PyTorch's own layers:
the same function, and Opacus' per-sample gradients equal to per-example autograd
gradients of `nn.RNN`/`nn.LSTM`/`nn.GRU`, one example at a time (float64)."""

import warnings

import pytest
import torch
from opacus import GradSampleModule
from torch import nn

from fedft.ml.models.dp_layers import from_dp, to_dp
from fedft.ml.models.dp_rnn import FastDPGRU, FastDPLSTM, FastDPRNN, register_with_opacus

LAYERS = {"rnn_tanh": (nn.RNN, FastDPRNN, {}), "rnn_relu": (nn.RNN, FastDPRNN, {"nonlinearity": "relu"}),
          "lstm": (nn.LSTM, FastDPLSTM, {}), "gru": (nn.GRU, FastDPGRU, {})}
BATCH, STEPS, INPUTS, HIDDEN = 4, 6, 5, 7


def _pair(kind: str, batch_first: bool, bias: bool = True):
    plain_cls, fast_cls, options = LAYERS[kind]
    plain = plain_cls(INPUTS, HIDDEN, num_layers=2, batch_first=batch_first, bias=bias, **options).double()
    fast = fast_cls(INPUTS, HIDDEN, num_layers=2, batch_first=batch_first, bias=bias, **options).double()
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def _state(kind: str, batch: int, generator: torch.Generator):
    h = torch.randn(2, batch, HIDDEN, generator=generator, dtype=torch.float64)
    return (h, torch.randn(2, batch, HIDDEN, generator=generator, dtype=torch.float64)) if kind == "lstm" else h


def _example(value, b: int, batch_first: bool):
    """Example b of an input (batch first or not) or of a state (batch second)."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_example(v, b, False) for v in value)
    return value[b : b + 1] if batch_first else value[:, b : b + 1]


def _loss(out, state, weights, batch_first: bool) -> torch.Tensor:
    """Per-example losses through the output sequence and the final hidden state."""
    h_n = state[0] if isinstance(state, tuple) else state
    return (out * weights).sum(dim=(1, 2) if batch_first else (0, 2)) + (h_n**2).sum(dim=(0, 2))


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("batch_first", [True, False])
def test_same_function_names_and_order_as_pytorch(kind, batch_first):
    plain, fast = _pair(kind, batch_first)
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in plain.named_parameters()]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, STEPS, INPUTS, generator=g, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)
    for state in (None, _state(kind, BATCH, g)):
        (out_p, state_p), (out_f, state_f) = plain(x, state), fast(x, state)
        assert torch.allclose(out_f, out_p, atol=1e-12)
        for a, b in zip(state_f if isinstance(state_f, tuple) else (state_f,), state_p if isinstance(state_p, tuple) else (state_p,)):
            assert torch.allclose(a, b, atol=1e-12)
    unbatched = x[0] if batch_first else x[:, 0]
    assert torch.allclose(fast(unbatched)[0], plain(unbatched)[0], atol=1e-12)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("loss_reduction", ["mean", "sum"])
def test_per_sample_gradients_equal_per_example_autograd_of_pytorch_layers(kind, batch_first, with_state, loss_reduction):
    """Prepare: a fast layer with a plain layer's weights; the loss reads every output step and h_n.
    Execute: one batched backward through Opacus' GradSampleModule.
    Assert: each example's gradient equals autograd's on the plain layer for that example alone."""
    register_with_opacus()
    plain, fast = _pair(kind, batch_first, bias=kind != "gru" or with_state)  # a GRU without biases too
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, STEPS, INPUTS, generator=g, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1).contiguous()
    state = _state(kind, BATCH, g) if with_state else None
    weights = torch.randn(x.shape[:2] + (HIDDEN,), generator=g, dtype=torch.float64)
    model = GradSampleModule(fast, batch_first=batch_first, loss_reduction=loss_reduction)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_example = _loss(*model(x, state), weights, batch_first)
            (per_example.mean() if loss_reduction == "mean" else per_example.sum()).backward()
        plain_params = dict(plain.named_parameters())
        for b in range(BATCH):
            out, last = plain(_example(x, b, batch_first), _example(state, b, False))
            expected = torch.autograd.grad(_loss(out, last, _example(weights, b, batch_first), batch_first).sum(), list(plain_params.values()))
            for (name, param), grad in zip(fast.named_parameters(), expected, strict=True):
                assert torch.allclose(param.grad_sample[b], grad, atol=1e-10), (name, b)
    finally:
        model._close()


def test_only_trainable_weights_get_per_sample_gradients():
    register_with_opacus()
    _, fast = _pair("lstm", True)
    fast.weight_ih_l0.requires_grad_(False)
    model = GradSampleModule(fast)
    try:
        model(torch.randn(3, STEPS, INPUTS, dtype=torch.float64))[0].sum().backward()
        assert not hasattr(fast.weight_ih_l0, "grad_sample") or fast.weight_ih_l0.grad_sample is None
        assert all(p.grad_sample.shape == (3, *p.shape) for p in fast.parameters() if p.requires_grad)
    finally:
        model._close()


def test_to_dp_picks_the_fast_layer_and_opacus_for_bidirectional_and_from_dp_restores_pytorch():
    from opacus.layers import DPGRU

    for plain, expected in ((nn.LSTM(3, 4, 2, batch_first=True), FastDPLSTM), (nn.GRU(3, 4), FastDPGRU),
                            (nn.RNN(3, 4, nonlinearity="relu"), FastDPRNN), (nn.GRU(3, 4, bidirectional=True), DPGRU)):
        reference = {k: v.clone() for k, v in plain.state_dict().items()}
        dp = to_dp(plain)
        assert type(dp) is expected
        back = from_dp(dp)
        assert type(back) is type(plain) and list(back.state_dict()) == list(reference)
        assert all(torch.equal(back.state_dict()[k], v) for k, v in reference.items())
        assert getattr(back, "nonlinearity", None) == getattr(plain, "nonlinearity", None)


def test_lstm_projection_is_reported_as_not_dp_compatible():
    from fedft.privacy.dp_sgd import DPIncompatibleModel, make_dp_compatible

    with pytest.raises(DPIncompatibleModel, match="proj_size"):
        make_dp_compatible(nn.Sequential(nn.LSTM(3, 4, proj_size=2)))


def test_the_layer_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="bidirectional"):
        FastDPLSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="nonlinearity"):
        FastDPLSTM(3, 4, nonlinearity="relu")
