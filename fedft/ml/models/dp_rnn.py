"""Recurrent layers for DP-SGD whose per-sample gradients cost one product per weight.

Opacus' `DPRNN`/`DPLSTM`/`DPGRU` build every time step from hooked linear layers,
so Opacus computes a per-sample gradient of every weight at every step and adds it
up: T products of shape (batch, gates·hidden, inputs) and T accumulations per
batch. On `char_lstm` (80 steps, 2 layers of 256) that is about 30x a plain
batch, on `seed_rnn` about 10x (benchmarks/dp_cost.py).

These layers compute PyTorch's recurrence (the equations, parameter names, shapes
and order of `nn.RNN`/`nn.LSTM`/`nn.GRU`) as a loop of fused matrix products over
time, and keep what per-sample gradients need: δ_t, the gradient of the loss with
respect to the gate pre-activations `x_t W_ihᵀ + b_ih (+ b_hh)` at each step, caught
by one tensor hook in the backward pass. For each example b,

    ∂l_b/∂W_ih = Σ_t δ_{b,t} x_{b,t}ᵀ        ∂l_b/∂b_ih = Σ_t δ_{b,t}
    ∂l_b/∂W_hh = Σ_t δʰ_{b,t} h_{b,t-1}ᵀ     ∂l_b/∂b_hh = Σ_t δʰ_{b,t}

one batched product per weight over all steps. δʰ = δ, because the recurrent term
enters the gates by addition; in a GRU the candidate gate's recurrent term is scaled
by the reset gate r, so there δʰ_n = r ⊙ δ_n. The grad sampler registered with Opacus
(`register_with_opacus`) returns these; clipping, noise and accounting are
Opacus' as for every other layer. tests/test_dp_rnn.py checks them against
per-example gradients of PyTorch's own layers.

Not covered: bidirectional layers (`fedft.ml.models.dp_layers.to_dp` uses Opacus'
layers for them) and LSTM projections (`proj_size`, which Opacus does not cover either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


@dataclass
class _Tape:
    """What one forward pass leaves for its per-sample gradients."""

    inputs: list[torch.Tensor] = field(default_factory=list)  # each layer's input x, batch first
    previous: list[torch.Tensor] = field(default_factory=list)  # each layer's h_{t-1} for every t
    resets: list[torch.Tensor] = field(default_factory=list)  # GRU: each layer's reset gate r_t
    deltas: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> δ (batch, T, gates·hidden)
    output_grad: list[torch.Tensor] = field(default_factory=list)  # dL/d(output) as autograd saw it


class FastDPRecurrent(nn.Module):
    """A drop-in `nn.RNN`/`nn.LSTM`/`nn.GRU` (unidirectional, no projection) for Opacus."""

    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0, nonlinearity: str | None = None) -> None:
        super().__init__()
        if bidirectional or proj_size:
            raise ValueError(f"{type(self).__name__} supports neither bidirectional layers nor proj_size; use Opacus' DP layers for them.")
        if nonlinearity is not None:
            if self.mode not in ("RNN_TANH", "RNN_RELU") or nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"nonlinearity {nonlinearity!r} does not apply to {type(self).__name__}")
            self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = False, 0
        gates = GATES[self.mode] * hidden_size
        bound = 1 / math.sqrt(hidden_size)  # PyTorch's initialisation
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else hidden_size
            shapes: dict[str, tuple[int, ...]] = {f"weight_ih_l{layer}": (gates, inputs), f"weight_hh_l{layer}": (gates, hidden_size)}
            if bias:
                shapes |= {f"bias_ih_l{layer}": (gates,), f"bias_hh_l{layer}": (gates,)}
            for name, shape in shapes.items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
        self._tapes: list[_Tape] = []

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.mode == "RNN_RELU" else "tanh"

    def _weights(self, layer: int) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter | None, nn.Parameter | None]:
        get = self._parameters.get
        return get(f"weight_ih_l{layer}"), get(f"weight_hh_l{layer}"), get(f"bias_ih_l{layer}"), get(f"bias_hh_l{layer}")  # type: ignore[return-value]

    def __call__(self, input: torch.Tensor, hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None):
        """`layer(input, hx)` as for PyTorch's layers. Opacus' hooks see the state tensors
        first and `input` last (never None, never a tuple): it reads the batch size from
        the last argument. In training, `input` requires a gradient, so that Opacus' full
        backward hook fires after the whole backward pass through this layer (with no
        input needing a gradient it would fire on the output's gradient, before δ exists)."""
        if self.training and torch.is_grad_enabled() and not input.requires_grad:
            input = input.detach().requires_grad_()
        if hx is None:
            return super().__call__(input)
        return super().__call__(*(hx if isinstance(hx, tuple) else (hx,)), input)

    def forward(self, *args: torch.Tensor):
        *state, x = args  # () or (h0,) or (h0, c0), then the input
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
            state = [s.unsqueeze(1) for s in state]
        if not self.batch_first:
            x = x.transpose(0, 1)
        lstm = self.mode == "LSTM"
        if not state:
            state = [x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)] * (2 if lstm else 1)
        h0, c0 = state[0], (state[1] if lstm else None)
        record = self.training and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        self._tapes = [t for t in self._tapes if len(t.deltas) < self.num_layers]  # drop tapes no grad sampler took
        tape = _Tape() if record else None
        last_h: list[torch.Tensor] = []
        last_c: list[torch.Tensor] = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            out, h, c, resets = self._layer(layer, x, h0[layer], c0[layer] if c0 is not None else None, tape)
            if tape is not None:
                tape.inputs.append(x.detach())
                tape.previous.append(torch.cat([h0[layer].unsqueeze(1), out[:, :-1]], 1).detach())
                if resets is not None:
                    tape.resets.append(resets)
            last_h.append(h)
            last_c.append(c)
            x = out
        if tape is not None and x.requires_grad:
            x.register_hook(tape.output_grad.append)
            self._tapes.append(tape)
        out = x if self.batch_first else x.transpose(0, 1)
        final = [torch.stack(last_h)] + ([torch.stack(last_c)] if lstm else [])
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            final = [f.squeeze(1) for f in final]
        return out, (final[0], final[1]) if lstm else final[0]

    def _layer(self, layer: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, tape: _Tape | None):
        """One layer over all steps: (output, h_T, c_T, reset gates or None)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer)
        gru = self.mode == "GRU"
        bias = b_ih + b_hh if b_ih is not None and b_hh is not None and not gru else b_ih  # the recurrent bias enters by addition except in a GRU
        gates_x = F.linear(x, w_ih, bias)
        if tape is not None and gates_x.requires_grad:
            gates_x.register_hook(lambda grad, layer=layer: tape.deltas.__setitem__(layer, grad))
        outputs, resets = [], []
        w_hh_t = w_hh.t()
        cell_state = c if c is not None else h  # read only by an LSTM, which always has c
        for g in gates_x.unbind(1):
            if self.mode == "LSTM":
                i, f, cell, o = torch.addmm(g, h, w_hh_t).chunk(4, 1)
                cell_state = torch.sigmoid(f) * cell_state + torch.sigmoid(i) * torch.tanh(cell)
                h = torch.sigmoid(o) * torch.tanh(cell_state)
            elif gru:
                recurrent = torch.addmm(b_hh, h, w_hh_t) if b_hh is not None else h @ w_hh_t
                xr, xz, xn = g.chunk(3, 1)
                hr, hz, hn = recurrent.chunk(3, 1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h = n + z * (h - n)
                resets.append(r.detach())
            else:
                pre = torch.addmm(g, h, w_hh_t)
                h = torch.tanh(pre) if self.mode == "RNN_TANH" else torch.relu(pre)
            outputs.append(h)
        return torch.stack(outputs, 1), h, (cell_state if self.mode == "LSTM" else None), (torch.stack(resets, 1) if gru else None)

    def per_sample_gradients(self, backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        """The grad sampler: per-example gradients of the last forward pass whose backward ran.

        Opacus hands in `backprops`, the gradient of the first output as it wants it
        scaled (times the batch size for a mean loss); the δ the hooks caught carry
        autograd's scale, so they are rescaled by the same factor."""
        tape = self._tapes.pop()
        raw = tape.output_grad[0]
        raw_norm = float(raw.norm())
        batch = tape.inputs[0].shape[0]
        scale = 1.0
        if raw_norm > 0:
            ratio = float(backprops.norm()) / raw_norm
            scale = float(batch) if abs(ratio - batch) < abs(ratio - 1.0) else 1.0  # Opacus scales by exactly 1 or the batch size
        grads: dict[nn.Parameter, torch.Tensor] = {}
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            if layer not in tape.deltas:  # nothing in this layer needed a gradient
                continue
            delta = tape.deltas[layer] * scale
            recurrent = delta
            if self.mode == "GRU":
                hidden = self.hidden_size
                recurrent = torch.cat([delta[..., : 2 * hidden], delta[..., 2 * hidden :] * tape.resets[layer]], -1)
            if w_ih.requires_grad:
                grads[w_ih] = torch.bmm(delta.transpose(1, 2), tape.inputs[layer].to(delta.dtype))
            if w_hh.requires_grad:
                grads[w_hh] = torch.bmm(recurrent.transpose(1, 2), tape.previous[layer].to(delta.dtype))
            if b_ih is not None and b_ih.requires_grad:
                grads[b_ih] = delta.sum(1)
            if b_hh is not None and b_hh.requires_grad:
                grads[b_hh] = recurrent.sum(1)
        return grads


class FastDPRNN(FastDPRecurrent):
    """`nn.RNN` (tanh or relu) with fast per-sample gradients."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0, nonlinearity: str = "tanh") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, nonlinearity)


class FastDPLSTM(FastDPRecurrent):
    """`nn.LSTM` (no projection) with fast per-sample gradients."""

    mode = "LSTM"


class FastDPGRU(FastDPRecurrent):
    """`nn.GRU` with fast per-sample gradients."""

    mode = "GRU"


def _grad_sampler(layer: FastDPRecurrent, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    return layer.per_sample_gradients(backprops)


def register_with_opacus() -> None:
    """Tell Opacus' GradSampleModule to use `per_sample_gradients` for these layers (idempotent)."""
    from opacus.grad_sample import GradSampleModule

    for cls in (FastDPRNN, FastDPLSTM, FastDPGRU):
        GradSampleModule.GRAD_SAMPLERS[cls] = _grad_sampler
