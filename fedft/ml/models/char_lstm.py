"""Next-character LSTM (LEAF's Shakespeare model): embedding -> stacked LSTM -> linear.

Input: int64 token ids, batch x T. Output: logits for the next character at every
position, batch x T x vocabulary. LEAF's sizes are embedding 8, two LSTM layers of
256 units, sequences of 80; fedft's defaults are the same (`[model]` keys
`embedding_dim`, `hidden_size`, `num_layers`). For DP-SGD, `fedft.ml.models.dp_layers.to_dp`
swaps the `nn.LSTM` for fedft's `FastDPLSTM` (fedft.ml.models.dp_rnn) with identical parameter names.
"""

from __future__ import annotations

import torch
from torch import nn

from fedft.ml.models.dp_layers import hide_dp_internal_names
from fedft.ml.models.registry import register_model

State = tuple[torch.Tensor, torch.Tensor]


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int = 8, hidden_size: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)
        hide_dp_internal_names(self)  # clean array names even after Opacus' ModuleValidator.fix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x)[0]

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits and the LSTM state after `x`, starting from `state` (for sampling)."""
        out, state = self.lstm(self.embedding(x), state)
        return self.head(out), state


@register_model("char_lstm")
def char_lstm(input_shape: tuple[int, ...] = (80,), num_classes: int = 97, embedding_dim: int = 8, hidden_size: int = 256, num_layers: int = 2) -> nn.Module:
    """`num_classes` is the vocabulary size; the sequence length in `input_shape` does not change the model."""
    return CharLSTM(num_classes, embedding_dim, hidden_size, num_layers)
