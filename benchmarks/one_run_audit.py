"""The one-run privacy audit (docs/audit.md) on two small runs: no DP, and local DP-SGD at σ = 1.

digits, 2 IID clients, seed_cnn, 100 mislabeled canaries (each in its client's shard with
probability 1/2), 50 guesses, 95% confidence, δ = 1e-5; the same runs as
tests/test_audit_simulation.py. Prints ε (the accountant's), the audit's ε lower bound,
the correct guesses and the test accuracy of each run.

    python benchmarks/one_run_audit.py [--seed 7] [--canaries 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fedft  # noqa: E402


def configs(seed: int, canaries: int, out: str) -> dict[str, dict]:
    base = {"seed": seed, "data": {"name": "digits", "test_fraction": 0.2}, "partition": {"method": "iid", "num_clients": 2},
            "model": {"name": "seed_cnn"}, "strategy": {"name": "fedavg"}, "audit": {"canaries": canaries}, "output": {"dir": out}}
    return {
        "no DP (4 rounds x 6 epochs)": {**base, "name": "audit-plain", "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 6, "batch_size": 32},
                                        "simulation": {"rounds": 4, "clients_per_round": 2, "device": "cpu"}},
        "local DP, sigma 1 (2 rounds x 1 epoch)": {**base, "name": "audit-local", "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 32},
                                                   "simulation": {"rounds": 2, "clients_per_round": 2, "device": "cpu"},
                                                   "privacy": {"mode": "local", "noise_multiplier": 1.0, "max_grad_norm": 1.0}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--canaries", type=int, default=100)
    args = parser.parse_args(argv)
    print("| run | ε | ε lower bound (audit) | correct / guesses | test accuracy | wall s |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for name, cfg in configs(args.seed, args.canaries, out).items():
            start = time.perf_counter()
            s = fedft.run(cfg, quiet=True).summary
            eps = "∞ (no DP)" if s.get("epsilon") is None else f"{s['epsilon']:.3g}"
            print(f"| {name} | {eps} | {s['epsilon_lower_bound']:.3g} | {s['audit_correct']} / {s['audit_guesses']} | {s['final_accuracy']:.3f} | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
