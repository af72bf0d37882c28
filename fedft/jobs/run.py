"""One federated simulation from a config to a results folder (`fedft run`, `fedft.run`).

`prepare` makes every check that can reject the input before any folder or process
exists; `run` then starts the engine with fedft's ServerApp and ClientApp, records
every round and writes the summary however the run ends (resumable when it did not finish).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.fl.client.app import app as client_app
from fedft.fl.context import check_start
from fedft.fl.server.app import ServerOutcome, make_server_app
from fedft.fl.server.nodes import NodePartitions
from fedft.fl.server.policy import profiles_for
from fedft.jobs.centralised import run_centralised
from fedft.jobs.resume import is_complete, prepare_resume, resume_command
from fedft.jobs.session import RunSession
from fedft.jobs.validate import check_lora, load_config
from fedft.ml.data import federated_data_for
from fedft.ml.data.plot import partition_title, plot_label_counts
from fedft.privacy.checks import check_privacy_data, privacy_description, warn_seeded_noise
from fedft.runtime import engine
from fedft.runtime.interrupt import stop_on_signals
from fedft.runtime.progress import RoundPrinter
from fedft.runtime.warm_start import WarmStart
from fedft.state.run_folder import RunWriter, new_run_dir, read_rows


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    state: dict[str, torch.Tensor] | None  # final global model, None if the run did not finish
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl's rows, one per round (round 0 = start)

    @property
    def accuracy(self) -> float | None:
        return self.summary.get("final_accuracy")

    def metrics_frame(self) -> Any:
        """`metrics` as a pandas DataFrame, one row per round (pandas is optional: `pip install pandas`)."""
        try:
            import pandas
        except ImportError:
            raise FedftError("RunResult.metrics_frame", "needs pandas, which is not installed.", "pip install pandas, or use RunResult.metrics (a list of dicts).") from None
        return pandas.DataFrame(self.metrics)


def prepare(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None) -> FedftConfig:
    """Everything that can reject the input, before any folder or process exists."""
    cfg = load_config(config, overrides)
    if cfg.model.name == "hf":
        check_lora(cfg, load=True)  # model.path may have been left for pretraining to write
    data = federated_data_for(cfg)  # loads and partitions: bad data or impossible splits fail here
    check_privacy_data(cfg, data)  # DP: Opacus can train the model, every client's budget covers a round
    check_start(cfg)  # model.init_from: readable, and fits this model and data
    profiles_for(cfg)  # devices.profiles: a CSV of devices is read and checked now
    warn_seeded_noise(cfg)
    return cfg


def _shape(cfg: FedftConfig) -> str:
    if cfg.simulation.centralised:
        return f"centralised on the union of {cfg.partition.num_clients} clients' data, {cfg.train.local_epochs} epochs per round"
    return f"{cfg.partition.num_clients} clients, {cfg.simulation.clients_per_round} per round"


def run(
    config: str | Path | dict | FedftConfig | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
    verbose: bool = False,
    resume: str | Path | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    warm_start: WarmStart | None = None,
) -> RunResult:
    """Run one federated simulation and write its results folder. With `resume`, continue
    the run in that folder from its last checkpoint instead (`config` and `overrides`, if
    given, must equal the folder's config). SIGINT/SIGTERM stop it cleanly: the summary
    says "interrupted" and how to resume. `on_round(row)` gets each round's metrics row as it
    is written (from the server's thread; round 0 is the initial evaluation). `warm_start`:
    a `fedft.runtime.warm_start.WarmStart` begun before this process's imports (the
    `fedft` command's), for the local backend's workers; this call closes it."""
    try:
        return _run(config, overrides, out, quiet, verbose, resume, on_round, warm_start)
    finally:
        if warm_start is not None:
            warm_start.close()  # whatever happened: it has exited, or its workers have


def _run(config: str | Path | dict | FedftConfig | None, overrides: list[str] | None, out: str | Path | None, quiet: bool, verbose: bool,
         resume: str | Path | None, on_round: Callable[[dict[str, Any]], None] | None, warm_start: WarmStart | None) -> RunResult:
    point = None
    if resume is not None:
        if out is not None:
            raise FedftError("--out", "cannot be combined with --resume: a resumed run continues in its own folder.", "drop --out.")
        cfg, point = prepare_resume(resume, config, overrides)
        if cfg.simulation.centralised:
            raise FedftError("--resume", "a centralised run (simulation.centralised) keeps no checkpoint to resume from.", "run its config again.")
        run_dir = point.run_dir
        finished = is_complete(run_dir, cfg, point)
        if finished is not None:
            RoundPrinter(cfg.simulation.rounds, quiet=quiet).say(f"fedft: {run_dir} already completed all {cfg.simulation.rounds} rounds; nothing to do.")
            state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
            return RunResult(run_dir=run_dir, summary=finished, state=state, metrics=read_rows(run_dir))
        writer = RunWriter(run_dir, cfg, write_config=False)
        writer.restore(point.rows)
    else:
        if config is None:
            raise FedftError("config", "is missing.", "give a TOML config, e.g. `fedft run simulations/quickstart.toml`, or `--resume RUN_DIR`.")
        cfg = prepare(config, overrides)
        if cfg.compare.arms:
            raise FedftError("compare.arms", f"this config compares {len(cfg.compare.arms)} arms; fedft.run runs one simulation.", "use `fedft run CONFIG` on the command line or fedft.jobs.compare.compare(CONFIG) in Python.")
        run_dir = new_run_dir(cfg, out)
        writer = RunWriter(run_dir, cfg)
        if cfg.output.plot_partitions:
            plot_label_counts(federated_data_for(cfg), run_dir / "partitions", title=partition_title(cfg))
    if warm_start is not None:
        warm_start.send_config(cfg.to_json())  # it loads the data while this process goes on
    printer = RoundPrinter(cfg.simulation.rounds, quiet=quiet)
    if point is None:
        printer.say(f"fedft: {cfg.name}: {_shape(cfg)}, {cfg.simulation.rounds} rounds, "
                    f"{privacy_description(cfg, federated_data_for(cfg))} -> {run_dir}")
    else:
        printer.say(f"fedft: {cfg.name}: resuming {run_dir} after round {point.round} of {cfg.simulation.rounds}")
    outcome = ServerOutcome()
    stop = threading.Event()
    nodes = NodePartitions()  # the engine's node -> partition mapping, instead of a handshake

    def abort() -> None:  # a second Ctrl-C, or SIGTERM after Ray installed its handler: stop the ServerApp thread too and wait for it
        stop.set()
        if outcome.started:
            outcome.done.wait(timeout=60)

    hint = resume_command(run_dir) if not cfg.simulation.centralised else "run it again: a centralised run keeps no checkpoint"
    with stop_on_signals(stop, printer.say) as caught, RunSession(cfg, writer, printer, resume_hint=hint, on_round=on_round, on_abort=abort,
                                                                  elapsed_before=point.elapsed_seconds if point else 0.0, signal=lambda: caught.signal) as session:
        if point is not None:
            session.extra["resumed_from_round"] = point.round
        if cfg.simulation.centralised:  # the reference arm: one model on the union of the clients' data, in this process
            outcome.started = True
            try:
                outcome.state = run_centralised(cfg, writer, session.record, stop)
            finally:
                outcome.done.set()
        else:
            server_app = make_server_app(cfg, writer, session.record, outcome, point.checkpoint if point else None, stop, node_partitions=nodes)
            engine.simulate(server_app, client_app, cfg.partition.num_clients, cfg.simulation, verbose, on_ray_started=caught.reinstall, node_partitions=nodes,
                            warm_start=warm_start)
        has_model = outcome.state is not None
        session.settle(outcome.first_client_error if has_model else outcome.error or outcome.first_client_error, finished=has_model)
    summary = session.summary
    return RunResult(run_dir=run_dir, summary=summary, state=outcome.state, metrics=[dict(r) for r in writer.rows])
