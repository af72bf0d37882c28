"""Bytes one client receives (and sends back) per round: full fine-tuning vs LoRA vs FFA-LoRA.

    PYTHONPATH=. python benchmarks/lora_bytes.py [--layers 12 --width 768 --heads 12] [--rank 8]

Builds a randomly initialised GPT-2-shaped causal LM with fedft's 256-id character-level
vocabulary (default: GPT-2 small's 12 layers x 768 wide), writes it with `save_pretrained`
into a temporary folder, and measures, for each arm, the Flower ArrayRecord of exactly the
arrays that travel (`RunContext`-equivalent plan: `fedft.ml.finetune.make_plan`), which is
what the round loop counts as `bytes_down` / `bytes_up` per client (tests/test_lora.py
checks that equality on real 2-round runs). No training, so the numbers are exact.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from flwr.app import ArrayRecord

from fedft.ml.finetune import make_plan
from fedft.ml.models import ADAPTER_PATTERNS, build_model


def sent_bytes(path: str, rank: int, mode: str, seq_len: int = 80) -> tuple[int, int]:
    """(bytes of the arrays that travel, their parameter count) for one arm."""
    options = {"path": path, "lora_rank": rank, "lora_alpha": 2.0 * max(rank, 1), "lora_target_modules": ("c_attn", "c_proj", "c_fc"), "lora_mode": mode}
    model = build_model("hf", (seq_len,), 97, **options)
    plan = make_plan(model, ADAPTER_PATTERNS[mode] if rank else "full")
    state = model.state_dict()
    record = ArrayRecord({k: state[k].detach().contiguous() for k in plan.sent})
    return record.count_bytes(), sum(state[k].numel() for k in plan.sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.width, vocab_size=256, n_positions=256,
                                   bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
        arms = {"full fine-tuning": sent_bytes(folder, 0, "lora"), f"LoRA r={args.rank}": sent_bytes(folder, args.rank, "lora"),
                f"FFA-LoRA r={args.rank}": sent_bytes(folder, args.rank, "ffa")}
    full, lora = arms["full fine-tuning"][0], arms[f"LoRA r={args.rank}"][0]
    print(f"GPT-2-shaped, {args.layers} layers x {args.width}, vocab 256; adapters on c_attn, c_proj, c_fc")
    print(f"{'arm':<20} {'parameters sent':>16} {'bytes per client per direction':>32} {'vs full':>9} {'vs LoRA':>9}")
    for name, (nbytes, count) in arms.items():
        print(f"{name:<20} {count:>16,} {nbytes:>32,} {nbytes / full:>8.2%} {nbytes / lora:>8.1%}")


if __name__ == "__main__":
    main()
