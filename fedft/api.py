"""`fedft.run(...)`: the Python entry point; the CLI is a thin layer over it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedft.config import FedftConfig, load_config
from fedft.data import federated_data_for


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    state: dict[str, torch.Tensor] | None  # final global model, None if the run did not finish

    @property
    def accuracy(self) -> float | None:
        return self.summary.get("final_accuracy")


def prepare(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """Everything that can reject the input, before any folder or process exists."""
    cfg = load_config(config, overrides)
    federated_data_for(cfg)  # loads and partitions: bad data or impossible splits fail here
    from fedft.finetune import check_start

    check_start(cfg)  # model.init_from: readable, and fits this model and data
    return cfg


def run(
    config: str | Path | dict | FedftConfig,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
    verbose: bool = False,
) -> RunResult:
    """Run one federated simulation and write its results folder."""
    from fedft import engine
    from fedft.client.app import app as client_app
    from fedft.progress import RoundPrinter
    from fedft.results import RunWriter, new_run_dir
    from fedft.server.app import make_server_app

    cfg = prepare(config, overrides)
    if cfg.compare.arms:
        from fedft.errors import FedftError

        raise FedftError("compare.arms", f"this config compares {len(cfg.compare.arms)} arms; fedft.run runs one simulation.", "use `fedft run CONFIG` on the command line or fedft.compare.compare(CONFIG) in Python.")
    run_dir = new_run_dir(cfg, out)
    writer = RunWriter(run_dir, cfg)
    printer = RoundPrinter(cfg.simulation.rounds, quiet=quiet)
    printer.say(f"fedft: {cfg.name}: {cfg.partition.num_clients} clients, {cfg.simulation.clients_per_round} per round, {cfg.simulation.rounds} rounds -> {run_dir}")
    result: dict[str, Any] = {}
    server_app = make_server_app(cfg, writer, printer.on_round, result)
    t0 = time.perf_counter()
    status = "failed"
    try:
        engine.simulate(server_app, client_app, cfg.partition.num_clients, cfg.simulation, verbose)
        status = "completed" if "state" in result else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = writer.finish(status, time.perf_counter() - t0)
        printer.on_done(summary)
    return RunResult(run_dir=run_dir, summary=summary, state=result.get("state"))
