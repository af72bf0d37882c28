"""Scale: 10,000 virtual clients with 100 per round vs 100 clients with 100 per round.

Both runs train seed_cnn on fashion-mnist (offline) with about 5-6 training examples per
client, so each round does the same client work; only the number of idle clients
differs. To keep per-client data equal, the 100-client run holds out more data for the
server test set; central evaluation of that larger set is timed here and subtracted
("round - eval" column), the raw round time is shown as well. Peak memory is the RSS
summed over the whole process tree (driver, raylet, GCS, workers), sampled every 0.5 s.

    python benchmarks/scale.py [--rounds 3] [--clients 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import ROOT, round_seconds, run_fedft

sys.path.insert(0, str(ROOT))


def eval_seconds(overrides: list[str], repeats: int = 3) -> float:
    from fedft.api import prepare
    from fedft.server.evaluation import central_evaluator, initial_state

    cfg = prepare(ROOT / "simulations" / "quickstart.toml", overrides)
    run, state = central_evaluator(cfg), initial_state(cfg)
    run(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args(argv)
    common = ["data.name=fashion-mnist", "data.val_fraction=0.0", "train.local_epochs=1", "train.batch_size=32",
              f"simulation.rounds={args.rounds}", f"simulation.clients_per_round={args.per_round}", "simulation.device=cpu"]
    pool = 70_000
    per_client = 0.8 * pool / args.clients
    small_test = 1 - per_client * args.per_round / pool
    cases = {
        f"{args.clients} clients": common + [f"partition.num_clients={args.clients}", "data.test_fraction=0.2"],
        f"{args.per_round} clients": common + [f"partition.num_clients={args.per_round}", f"data.test_fraction={small_test:.6f}"],
    }
    results = {}
    for name, overrides in cases.items():
        ev = eval_seconds(overrides)
        r = run_fedft(ROOT / "simulations" / "quickstart.toml", overrides)
        rounds = round_seconds(r["rows"])
        results[name] = dict(r, eval=ev, round=statistics.median(rounds), handshake=float(r["rows"][0]["wall_seconds"]))
        print(f"{name}: rounds {['%.2f' % s for s in rounds]}, round 0 (eval + handshake) {results[name]['handshake']:.1f} s", flush=True)
    print()
    print(f"{'run':<16}{'peak RSS (tree)':>17}{'start->round 0':>16}{'round 0':>9}{'round (median)':>16}{'round - eval':>14}{'total':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['peak_rss'] / 2**30:>14.2f} GiB{r['first_row_at'] or float('nan'):>14.1f} s{r['handshake']:>7.1f} s"
              f"{r['round']:>14.2f} s{r['round'] - r['eval']:>12.2f} s{r['wall']:>7.1f} s")
    big, small = results.values()
    print(f"\nratio {args.clients}/{args.per_round} clients: per-round {big['round'] / small['round']:.2f}x "
          f"(eval-adjusted {(big['round'] - big['eval']) / (small['round'] - small['eval']):.2f}x), "
          f"peak RSS {big['peak_rss'] / small['peak_rss']:.2f}x ({big['peak_rss'] / 2**30:.2f} GiB; target < 4 GiB, per-round <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
