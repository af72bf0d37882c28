"""Training speed of char_lstm per hidden size, on one CPU thread (as one Ray client gets).

    PYTHONPATH=. python benchmarks/char_lstm_speed.py [--hidden 128 256] [--steps 10]

Prints characters per second for one SGD step on batches of 16 sequences of 80
characters (forward + backward + update), sizes measured back to back, so their
ratio holds even on a busy machine; absolute numbers do not.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fedft.ml.models import build_model


def chars_per_second(hidden: int, steps: int, batch: int = 16, seq_len: int = 80, vocab: int = 97) -> float:
    torch.manual_seed(0)
    model = build_model("char_lstm", (seq_len,), vocab, hidden_size=hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randint(1, vocab, (batch, seq_len)), torch.randint(1, vocab, (batch, seq_len))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1)).backward()
        optimizer.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * seq_len / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    speeds = {h: chars_per_second(h, args.steps) for h in args.hidden}
    base = speeds[args.hidden[0]]
    for h, s in speeds.items():
        print(f"hidden {h:>4}: {s:>9.0f} chars/s  ({base / s:.1f}x the time per character of hidden {args.hidden[0]})")


if __name__ == "__main__":
    main()
