"""The ServerApp and ClientApp that Flower's own tools run (`flwr run .`, SuperLink and
SuperNodes started by `fedft server`, `fedft client` and `fedft launch`).

pyproject.toml names them as the Flower App's components. The ServerApp reads the
config from Flower's run config (`fedft.deploy.run_config`), writes the results
folder and runs `fedft.fl.server.app.serve`; the ClientApp is fedft's own, and
pyproject.toml names `fedft.fl.client.app:app` directly: a SuperNode starts one
process per message, and that module alone imports nothing of the server side
(`client_app` here is the same object).
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedft.deploy.clients_file import parse_binding
from fedft.deploy.run_config import CLIENTS_JSON, config_from_run_config, results_dir
from fedft.errors import FedftError
from fedft.fl.client.app import app as client_app
from fedft.fl.context import check_start
from fedft.fl.server.app import serve
from fedft.jobs.session import RunSession
from fedft.runtime.progress import RoundPrinter
from fedft.state.run_folder import RunWriter

server_app = ServerApp()
__all__ = ["client_app", "server_app"]


@server_app.main()
def flwr_main(grid: Grid, context: Context) -> None:
    # `config-json` (fedft server/launch) or a `config` path, `overrides`, `out`: see fedft/deploy/run_config.py
    cfg, out = config_from_run_config(context.run_config)
    if cfg.devices.profiles:
        raise FedftError("devices.profiles", "simulates devices on a virtual clock; a deployment's devices are real.", "drop [devices] and round_policy from the deployed config.")
    cfg.privacy.noise_source = "os"  # DP noise from OS entropy whatever the config says: clients' (local) and the server's (central)
    writer = RunWriter(results_dir(cfg, out), cfg)
    check_start(cfg)  # model.init_from: absolute, readable, fits the model
    client_errors: list[str] = []
    with RunSession(cfg, writer, RoundPrinter(cfg.simulation.rounds)) as session:  # an exception is recorded in summary.json (e.g. too few clients connected), then re-raised for Flower
        serve(grid, cfg, writer, session.record, binding=parse_binding(str(context.run_config.get(CLIENTS_JSON, ""))), on_client_error=client_errors.append)
        session.settle(client_errors[0] if client_errors else None)
