"""fedft vs a plain Flower app on the same workload, through the same simulation engine.

The plain app (benchmarks/flower_quickstart_app.py) is written like Flower's PyTorch
quickstart: per call it builds the model and loads its partition with flwr-datasets;
the server is Flower's FedAvg `strategy.start`; `client_resources` is Flower's default
(2 CPUs per client). Both run mnist-5k, seed_cnn, 10 clients, all per round, 2 local
epochs, batch 32, SGD lr 0.05 momentum 0.9, central evaluation each round, via
`flwr.simulation.run_simulation`: the plain app on Ray (Flower's backend), fedft with
`simulation.backend = "ray"` too (the quickstart's "auto" would pick the local pool). Round time =
time between central evaluations.

    python benchmarks/vs_flower.py [--rounds 5]
    python benchmarks/vs_flower.py --whole 3 [--rounds 5]

`--whole N` times whole processes instead, as a user waits for them (launch to exit,
start-up included), N of each, alternating: the plain app in a process of its own
(on Ray, Flower's backend) against `fedft run simulations/quickstart.toml` as shipped
(its backend "auto": the local worker pool on one Linux machine). Prints the medians
and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import ROOT, round_seconds, run_fedft

sys.path.insert(0, str(ROOT))


def run_plain_flower(rounds: int, num_clients: int) -> tuple[list[float], float]:
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    import flower_quickstart_app as plain
    from fedft.runtime import engine
    from fedft.config import SimulationConfig
    from fedft.ml.data.registry import load_dataset
    from fedft.ml.training import evaluate

    data = load_dataset("mnist-5k")
    n_train = int(len(data) * 0.8)
    x_test, y_test = torch.from_numpy(data.x[n_train:]), torch.from_numpy(data.y[n_train:])
    stamps: list[float] = []
    t0 = time.perf_counter()

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = plain.Net()
        net.load_state_dict(arrays.to_torch_state_dict())
        loss, acc = evaluate(net, x_test, y_test, torch.device("cpu"))
        stamps.append(time.perf_counter())
        return MetricRecord({"loss": loss, "accuracy": acc})

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=num_clients)
        torch.manual_seed(0)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(plain.Net().state_dict()), num_rounds=rounds,
                       train_config=ConfigRecord({"lr": 0.05, "local-epochs": 2}), evaluate_fn=central)

    sim = SimulationConfig(client_resources={"num_cpus": 2, "num_gpus": 0}, backend="ray")  # Flower's default resources and backend
    engine.simulate(server, plain.app, num_clients, sim, on_ray_started=lambda: None)
    return [b - a for a, b in zip(stamps, stamps[1:])], stamps[0] - t0


def whole_runs(repeats: int, rounds: int) -> int:
    import subprocess

    times: dict[str, list[float]] = {"plain Flower app": [], "fedft run": []}
    overrides = [f"simulation.rounds={rounds}", "simulation.device=cpu", "data.val_fraction=0.1"]  # the shipped backend ("auto")
    for i in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--plain-process", "--rounds", str(rounds)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times["plain Flower app"].append(time.perf_counter() - t0)
        times["fedft run"].append(run_fedft(ROOT / "simulations" / "quickstart.toml", overrides)["wall"])
        for name, t in times.items():
            print(f"run {i + 1} {name:<17} {t[-1]:6.1f} s", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print()
    for name, t in times.items():
        print(f"{name:<17} {' '.join(f'{x:.1f}' for x in t):<24} median {medians[name]:.1f} s")
    print(f"\nspeed-up fedft over the plain Flower app, whole-process wall time (medians): "
          f"{medians['plain Flower app'] / medians['fedft run']:.2f}x (target >= 1.5)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--whole", type=int, default=0, metavar="N", help="time N whole processes of each, alternating")
    parser.add_argument("--plain-process", action="store_true", help=argparse.SUPPRESS)  # one plain-app run, then exit (for --whole)
    args = parser.parse_args(argv)
    if args.plain_process:
        run_plain_flower(args.rounds, 10)
        return 0
    if args.whole:
        return whole_runs(args.whole, args.rounds)
    flower, flower_start = run_plain_flower(args.rounds, 10)
    fed = run_fedft(ROOT / "simulations" / "quickstart.toml", [f"simulation.rounds={args.rounds}", "simulation.device=cpu", "data.val_fraction=0.1",
                                                                 "simulation.backend=ray"])  # the same engine as the plain app
    fed_rounds = round_seconds(fed["rows"])
    f, p = statistics.median(fed_rounds), statistics.median(flower)
    print(f"plain Flower rounds (s): {' '.join('%.2f' % s for s in flower)}")
    print(f"fedft rounds (s):        {' '.join('%.2f' % s for s in fed_rounds)}")
    print()
    print(f"{'':<14}{'round (median)':>16}")
    print(f"{'plain Flower':<14}{p:>14.2f} s")
    print(f"{'fedft':<14}{f:>14.2f} s")
    print(f"\nspeed-up fedft over plain Flower, round wall time: {p / f:.2f}x (target >= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
