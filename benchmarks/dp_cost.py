"""What DP-SGD costs per client round on seed_cnn and seed_rnn: wall time of a DP round over a plain one.

One client of simulations/dp_local_eps3.toml (mnist-5k, about 360 records, batch 32,
1 local epoch: 12 steps either way) runs its round in-process, plain
(`fedft.fl.client.pipeline.local_update` with `PlainTrainer`) and with Opacus
DP-SGD (`DPTrainer`, `fedft.fl.client.trainers`: per-sample gradients, clipping,
noise, Poisson batches, accountant), alternating, so both see the same machine load.
Prints the median wall time of each and their ratio, per model (`--model a,b`).
Another workload: `--config` and `--set`, e.g. the LEAF-sized char_lstm on a play:

    python benchmarks/dp_cost.py [--repeats 15] [--device cpu|cuda] [--model seed_cnn,seed_rnn] [--profile 15]
    python benchmarks/dp_cost.py --model char_lstm --config simulations/shakespeare_lstm.toml \
        --set data.path=PATH/tinyshakespeare.txt --set data.max_client_sequences=64 --set train.local_epochs=1 \
        --set privacy.mode=local --set privacy.noise_multiplier=1.0 --set privacy.max_grad_norm=1.0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="seed_cnn,seed_rnn", help="comma-separated model names")
    parser.add_argument("--client", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "simulations" / "dp_local_eps3.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also print cProfile's top N functions (by own time) over 10 DP rounds")
    args = parser.parse_args(argv)
    ratios = [(m, measure(args, m)) for m in args.model.split(",")]
    print()
    for m, (p, d) in ratios:
        print(f"{m:<10} plain {p * 1000:6.0f} ms  DP-SGD {d * 1000:6.0f} ms  DP / plain {d / p:.2f}x")
    return 0


def measure(args, model: str) -> tuple[float, float]:
    import torch
    from flwr.app import RecordDict

    from fedft.api import prepare
    from fedft.fl.client.pipeline import local_update
    from fedft.fl.client.trainers import DPTrainer, PlainTrainer
    from fedft.fl.context import run_context

    args.model = model
    cfg = prepare(args.config, [f"simulation.device={args.device}", f"model.name={args.model}", *args.overrides])
    config_json = cfg.to_json()
    ctx = run_context(config_json)
    state = ctx.initial_state
    n = len(ctx.client_tensors(args.client)[1])

    def plain() -> float:
        t0 = time.perf_counter()
        local_update(config_json, args.client, 1, state, trainer=PlainTrainer(ctx))
        return time.perf_counter() - t0

    def private() -> float:
        t0 = time.perf_counter()
        local_update(config_json, args.client, 1, state, trainer=DPTrainer(ctx, RecordDict()))
        return time.perf_counter() - t0

    plain(), private()  # warm-up: data, caches, noise calibration
    times: dict[str, list[float]] = {"plain": [], "dp": []}
    for _ in range(args.repeats):
        times["plain"].append(plain())
        times["dp"].append(private())
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [private() for _ in range(10)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    p, d = statistics.median(times["plain"]), statistics.median(times["dp"])
    print(f"{args.model} on {args.device} ({torch.get_num_threads()} torch threads), client {args.client}: {n} records, "
          f"batch {cfg.train.batch_size}, {cfg.train.local_epochs} epoch, {args.repeats} alternating repeats")
    print(f"plain round  median {p * 1000:.0f} ms  (min {min(times['plain']) * 1000:.0f})")
    print(f"DP-SGD round median {d * 1000:.0f} ms  (min {min(times['dp']) * 1000:.0f})")
    print(f"DP / plain wall-time ratio: {d / p:.2f}x (medians), {min(times['dp']) / min(times['plain']):.2f}x (minima)")
    return p, d


if __name__ == "__main__":
    sys.exit(main())
