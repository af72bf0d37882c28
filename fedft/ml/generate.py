"""`fedft generate`: sample text from a trained next-character model.

Everything comes from the model file (architecture, sizes, vocabulary), so any
run's `model.pt` works without its config or data. Sampling is seeded: the same
model, prompt, temperature and seed give the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

import torch

from fedft.errors import FedftError
from fedft.ml.data.text import Vocabulary
from fedft.ml.models import build_model
from fedft.state.model_file import load_checkpoint


class TextModel(Protocol):
    """What `generate` samples from: a model with `step` (as `CharLSTM`), the logits after
    tokens `x` and the recurrent state to continue from."""

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]: ...


def load_text_model(path: str | Path) -> tuple[TextModel, Vocabulary]:
    record = load_checkpoint(path, field="--model")
    if not isinstance(record.get("vocabulary"), str):
        raise FedftError("--model", f"'{path}' is not a text model (it has no saved vocabulary; dataset '{record.get('dataset')}').", "use the model.pt of a run on text data, e.g. simulations/shakespeare_lstm.toml.")
    vocab = Vocabulary(record["vocabulary"])
    model = build_model(record["architecture"], tuple(record["input_shape"]), int(record["num_classes"]), **dict(record.get("model_options") or {}))
    if not hasattr(model, "step"):
        raise FedftError("--model", f"architecture '{record['architecture']}' cannot generate text.", "use a char_lstm model.")
    model.load_state_dict(record["state_dict"])
    return cast(TextModel, model.eval()), vocab  # it has `step` (checked above)


@torch.no_grad()
def generate(model: TextModel, vocab: Vocabulary, prompt: str, length: int, temperature: float = 1.0, seed: int = 0) -> str:
    """`length` characters after `prompt`, each drawn from softmax(logits / temperature)
    given everything before it (temperature 0 = always the likeliest character).
    The unknown token is never drawn; an empty prompt starts after a newline."""
    if length < 0:
        raise FedftError("--length", f"must be 0 or more (got {length}).", "pass a character count, e.g. --length 300.")
    if temperature < 0:
        raise FedftError("--temperature", f"must be 0 or more (got {temperature}).", "use e.g. 0.8; 0 means greedy.")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.from_numpy(vocab.encode(prompt or "\n"))[None, :]
    logits, state = model.step(tokens)
    out: list[int] = []
    for _ in range(length):
        last = logits[0, -1].clone()
        last[0] = float("-inf")  # the unknown token
        last[vocab.size:] = float("-inf")  # ids past the vocabulary (an hf model's larger vocab_size)
        if temperature == 0:
            token = int(last.argmax())
        else:
            token = int(torch.multinomial(torch.softmax(last / temperature, dim=0), 1, generator=generator))
        out.append(token)
        logits, state = model.step(torch.tensor([[token]]), state)
    return prompt + vocab.decode(out)
