"""The ServerApp: Flower glue around the round loop.

`serve` does one run against any Grid (simulation or deployment). `make_server_app`
wraps it for `fedft run`; the module-level `app` serves `flwr run .`, reading the
config path and overrides from the Flower run config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedft.checkpoint import save_checkpoint
from fedft.config import FedftConfig, load_config
from fedft.data import federated_data_for
from fedft.results import RunWriter
from fedft.finetune import start_state
from fedft.server.evaluation import central_evaluator
from fedft.server.loop import RoundCallback, run_rounds
from strategies import build_strategy


def serve(grid: Grid, cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback) -> dict[str, torch.Tensor]:
    """Run all rounds, record each, save the final model; return its state."""
    strategy = build_strategy(cfg.strategy.name, cfg.strategy.params())
    evaluator = central_evaluator(cfg)

    def record(row: dict) -> None:
        writer.record_round(row)
        on_round(row)

    final = run_rounds(grid, strategy, cfg, ArrayRecord(start_state(cfg)), evaluator, record).to_torch_state_dict()
    data = federated_data_for(cfg)
    save_checkpoint(
        writer.run_dir / "model.pt", final, architecture=cfg.model.name, num_classes=data.full.num_classes,
        input_shape=tuple(data.full.x.shape[1:]), dataset=cfg.data.name, config_json=cfg.to_json(),
    )
    return final


def make_server_app(cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback, result: dict) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result["state"] = serve(grid, cfg, writer, on_round)

    return app


# ---- `flwr run .`: config path and overrides come from [tool.flwr.app.config]
app = ServerApp()


@app.main()
def flwr_main(grid: Grid, context: Context) -> None:
    import time

    from fedft.progress import RoundPrinter
    from fedft.results import new_run_dir

    config_path = Path(str(context.run_config.get("config", "simulations/quickstart.toml")))
    overrides = [o for o in str(context.run_config.get("overrides", "")).split(";") if o.strip()]
    cfg = load_config(config_path, overrides)
    from fedft.finetune import check_start

    check_start(cfg)  # model.init_from: absolute, readable, fits the model
    writer = RunWriter(new_run_dir(cfg), cfg)
    printer = RoundPrinter(cfg.simulation.rounds)
    t0 = time.perf_counter()
    status = "failed"
    try:
        serve(grid, cfg, writer, printer.on_round)
        status = "completed"
    finally:
        printer.on_done(writer.finish(status, time.perf_counter() - t0))
