"""The ServerApp: Flower glue around the round loop.

`serve` does one run against any Grid (simulation or deployment). `make_server_app`
wraps it for `fedft run`; the module-level `app` serves `flwr run .`, reading the
config path and overrides from the Flower run config.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedft.state.model_file import save_checkpoint
from fedft.config import FedftConfig
from fedft.ml.data import federated_data_for
from fedft.ml.data.text import TextFederatedData
from fedft.errors import FedftError
from fedft.state.run_folder import RunWriter
from fedft.ml.finetune import start_state
from fedft.fl.server import text_metrics
from fedft.fl.server.evaluation import central_evaluator
from fedft.fl.server.loop import RoundCallback, run_rounds
from fedft.state.run_checkpoint import CheckpointKeeper, ServerState, restore_state
from fedft.privacy.central import wrap_strategy
from fedft.privacy.tracker import PrivacyTracker
from strategies import RunFacts, build_strategy

if TYPE_CHECKING:
    from fedft.jobs.resume import ResumePoint


def serve(grid: Grid, cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback, resume: "ResumePoint | None" = None, stop: threading.Event | None = None) -> dict[str, torch.Tensor]:
    """Run all rounds (from a checkpoint when resuming), record and checkpoint each,
    save the final model; return its state."""
    strategy = wrap_strategy(build_strategy(cfg.strategy.name, cfg.strategy.params(), RunFacts.from_config(cfg)), cfg)  # central DP wraps it
    evaluator = central_evaluator(cfg)
    privacy = PrivacyTracker(cfg)
    data = federated_data_for(cfg)
    text = isinstance(data, TextFederatedData)  # next-character data: perplexity, baseline, vocabulary
    if text:
        writer.extra.update(text_metrics.text_summary(data))
    server_state = ServerState(strategy, privacy=privacy)
    start, arrays = 0, ArrayRecord(start_state(cfg))
    if resume is not None and resume.checkpoint is not None:
        start, arrays = resume.checkpoint.round, ArrayRecord(resume.checkpoint.arrays)
        restore_state(server_state, resume.checkpoint.state)
    keeper = CheckpointKeeper(writer.run_dir, cfg, server_state, writer.rows, resume.elapsed_seconds if resume else 0.0)

    def record(row: dict) -> None:
        writer.extra.update(privacy.summary())
        if text:
            text_metrics.with_perplexity(row)
        writer.record_round(row)
        on_round(row)

    try:
        final = run_rounds(
            grid, strategy, cfg, arrays, evaluator, record, start_round=start, stop=stop,
            after_round=keeper.after_round, client_states=server_state.clients if cfg.checkpoint.client_state else None,
            privacy=privacy,
        ).to_torch_state_dict()
    except Exception:  # RunInterrupted (SIGINT/SIGTERM) or a failure: keep what is complete
        keeper.flush()  # the last completed round, if `checkpoint.every` had not written it yet
        raise
    save_checkpoint(
        writer.run_dir / "model.pt", final, architecture=cfg.model.name, num_classes=data.full.num_classes,
        input_shape=tuple(data.full.x.shape[1:]), dataset=cfg.data.name, config_json=cfg.to_json(),
        extra=text_metrics.checkpoint_extra(cfg, data) if text else None,
    )
    if cfg.audit.mia:  # empirical leakage of the final model next to the theoretical ε
        from fedft.privacy.audit import run_mia

        writer.extra.update(run_mia(cfg, final, data))
    return final


def make_server_app(cfg: FedftConfig, writer: RunWriter, on_round: RoundCallback, result: dict, resume: "ResumePoint | None" = None, stop: threading.Event | None = None, node_partitions=None) -> ServerApp:
    """`result` gets "state" (the final model) and "done", an Event set when `main` ends
    however it ends, so the caller can wait for the ServerApp thread before summarising."""
    app = ServerApp()
    done = result.setdefault("done", threading.Event())

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result["started"] = True
        if node_partitions is not None:  # simulation: the engine's own node -> partition mapping
            from fedft.runtime.engine_patches import KnownNodesGrid

            grid = KnownNodesGrid(grid, node_partitions)
        try:
            result["state"] = serve(grid, cfg, writer, on_round, resume, stop)
        finally:
            done.set()

    return app


# ---- `flwr run .`: config path and overrides come from [tool.flwr.app.config]
app = ServerApp()


@app.main()
def flwr_main(grid: Grid, context: Context) -> None:
    import time

    from fedft.deploy.run_config import config_from_run_config, results_dir
    from fedft.runtime.progress import RoundPrinter

    # `config-json` (fedft server/launch) or a `config` path, `overrides`, `out`: see fedft/deploy/run_config.py
    cfg, out = config_from_run_config(context.run_config)
    writer = RunWriter(results_dir(cfg, out), cfg)
    from fedft.ml.finetune import check_start

    check_start(cfg)  # model.init_from: absolute, readable, fits the model
    printer = RoundPrinter(cfg.simulation.rounds)
    t0 = time.perf_counter()
    status, extra = "failed", {}
    try:
        serve(grid, cfg, writer, printer.on_round)
        status = "completed"
    except Exception as exc:  # recorded in summary.json (e.g. too few clients connected), then re-raised for Flower
        extra = {"error": exc.one_line() if isinstance(exc, FedftError) else f"{type(exc).__name__}: {exc}"}
        printer.say(f"fedft: error: {extra['error']}")
        raise
    finally:
        printer.on_done(writer.finish(status, time.perf_counter() - t0, extra))
