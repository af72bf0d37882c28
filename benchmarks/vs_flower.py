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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
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
