"""Overhead vs the floor: `fedft run` vs a plain sequential PyTorch loop doing the same work.

Same config (default: simulations/quickstart.toml with fewer rounds): same data
partition, model, clients per round, local epochs, batch size, optimizer, seeds. The
plain loop runs in this one process with no Flower, no Ray and no messages: for each
round and each sampled client it builds the model, loads the global state, evaluates it
on the client's validation split, trains, then takes the example-weighted mean of the
states (FedAvg) and evaluates centrally - exactly the work of a fedft round. torch uses
all cores in the plain loop (its default); fedft runs `cores / num_cpus` clients at once.
Under local DP (`--set privacy.mode=local ...`) the loop calls fedft's client pipeline
(`fedft.fl.client.pipeline.local_update`: evaluation, then Opacus DP-SGD) for each client
directly, with the same all-core threads: the same client work, none of the federation.

The ratio compares round-loop wall times per round: fedft's from when metrics.csv's row 0
appeared to when its last row did, over the rounds (`_common.round_period`: every
round's training and evaluation as a user waits for them), against the loop's mean
round. fedft's `wall_seconds` column is printed too, but not compared: a round's central
evaluation runs while the next round trains, so each row's span overlaps the next
round. Start-up (process launch to row 0) is reported separately.

    python benchmarks/overhead.py [--rounds 5] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import ROOT, round_period, round_seconds, run_fedft

sys.path.insert(0, str(ROOT))


def plain_loop(config, overrides: list[str]) -> tuple[list[float], float]:
    """Per-round wall times of the plain loop, and its set-up time (imports excluded)."""
    t_setup = time.perf_counter()
    import torch
    from flwr.app import RecordDict

    from fedft.api import prepare
    from fedft.fl.client.pipeline import local_update
    from fedft.fl.context import RunContext
    from fedft.fl.server.evaluation import central_evaluator
    from fedft.fl.server.sampling import sample_clients
    from fedft.ml.data import federated_data_for
    from fedft.ml.models import build_model, model_options
    from fedft.ml.training import evaluate, make_optimizer, resolve_device, seed_generator, train
    from fedft.runtime.local_backend import machine_cpus

    cfg = prepare(config, overrides)
    data = federated_data_for(cfg)
    device = resolve_device(cfg.simulation.device)
    tensors = {}
    for c in range(cfg.partition.num_clients):
        tr, val = data.client_sets(c)
        tensors[c] = tuple(torch.from_numpy(a) for a in (tr.x, tr.y, val.x, val.y))
    ctx = RunContext(cfg)
    central = central_evaluator(ctx)
    state = ctx.initial_state
    central(state)
    own = cfg.model_copy(deep=True)
    own.simulation.client_resources.num_cpus = machine_cpus()  # local_update sets torch's threads to this: all cores, as below
    config_json, node_states = own.to_json(), {}
    setup = time.perf_counter() - t_setup
    t = cfg.train
    times = []
    for server_round in range(1, cfg.simulation.rounds + 1):
        t0 = time.perf_counter()
        clients = sample_clients(cfg.seed, server_round, cfg.partition.num_clients, cfg.simulation.clients_per_round)
        states, weights = [], []
        for c in clients:
            if cfg.privacy.mode == "local":  # DP-SGD: fedft's client pipeline itself (Opacus), called directly: no Flower, no Ray, no messages
                new, metrics = local_update(config_json, c, server_round, state, node_state=node_states.setdefault(c, RecordDict()))
                states.append(new)
                weights.append(metrics["num-examples"])
                continue
            x_tr, y_tr, x_val, y_val = tensors[c]
            model = build_model(cfg.model.name, tuple(x_tr.shape[1:]), data.full.num_classes, **model_options(cfg.model))
            model.load_state_dict(state)
            evaluate(model, x_val, y_val, device)
            opt = make_optimizer(t.optimizer, model.parameters(), t.lr, t.momentum, t.weight_decay)
            res = train(model, x_tr, y_tr, epochs=t.local_epochs, batch_size=t.batch_size, optimizer=opt,
                        generator=seed_generator(cfg.seed, server_round, c), device=device)
            states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
            weights.append(res.num_examples)
        total = sum(weights)
        state = {k: sum(s[k].double() * (w / total) for s, w in zip(states, weights)).to(states[0][k].dtype) for k in state}
        central(state)
        times.append(time.perf_counter() - t0)
    return times, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "simulations" / "quickstart.toml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    overrides = [f"simulation.rounds={args.rounds}", "simulation.device=cpu", *args.overrides]
    t_imp = time.perf_counter()
    import torch  # noqa: F401  (timed: the plain loop's import cost)

    import fedft.ml.training  # noqa: F401
    imports = time.perf_counter() - t_imp
    loop, setup = plain_loop(args.config, overrides)
    fed = run_fedft(args.config, overrides)
    fed_rounds = round_seconds(fed["rows"])
    plain, fedft_r = statistics.mean(loop), round_period(fed["rows_at"])
    print(f"workload: {args.config} with {overrides}")
    print(f"plain loop rounds (s): {' '.join(f'{s:.2f}' for s in loop)}")
    print(f"fedft rows appeared at (s from launch): {' '.join(f'{s:.2f}' for s in fed['rows_at'])}")
    print(f"fedft wall_seconds, rounds 1.. (each overlaps the next round; not compared): {' '.join(f'{s:.2f}' for s in fed_rounds)}")
    print()
    print(f"{'':<12}{'start-up':>12}{'round (mean)':>16}{'total':>10}")
    print(f"{'plain loop':<12}{imports + setup:>10.1f} s{plain:>14.2f} s{imports + setup + sum(loop):>8.1f} s")
    print(f"{'fedft run':<12}{fed['rows_at'][0]:>10.1f} s{fedft_r:>14.2f} s{fed['wall']:>8.1f} s")
    print(f"\nratio fedft / plain loop, round wall time: {fedft_r / plain:.2f}x (target <= 1.15); "
          f"total incl. start-up: {fed['wall'] / (imports + setup + sum(loop)):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
