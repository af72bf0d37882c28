"""The one place that talks to Flower's simulation engine.

fedft runs simulations in-process with `flwr.simulation.run_simulation` (Ray
backend): the ServerApp is built around the already-validated config, results
and progress come straight back to the caller, and Ray is started and stopped
within the call. flwr 1.42 marks that function deprecated in favour of `flwr run`
with a managed SuperLink; fedft still works that way too (`flwr run .`, see
README), and switching `fedft run` over is a change to this file alone.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedft.config import SimulationConfig

_DEPRECATION = "The `run_simulation` function is deprecated"


class _DropKnownDeprecation(logging.Filter):
    """fedft chose this entry point deliberately (see module doc); the notice is for
    people calling it themselves, not for fedft users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _DEPRECATION not in record.getMessage()


@contextmanager
def flower_logging(verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("flwr")
    old_level = logger.level
    drop = _DropKnownDeprecation()
    logger.addFilter(drop)
    for handler in logger.handlers:
        handler.addFilter(drop)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        logger.removeFilter(drop)
        for handler in logger.handlers:
            handler.removeFilter(drop)


def backend_config(sim: SimulationConfig, verbose: bool = False) -> dict:
    init_args: dict = {
        "include_dashboard": False,
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    if sim.ray_address:
        init_args["address"] = sim.ray_address
    return {
        "client_resources": {"num_cpus": sim.client_resources.num_cpus, "num_gpus": sim.client_resources.num_gpus},
        "init_args": init_args,
    }


def simulate(server_app: ServerApp, client_app: ClientApp, num_clients: int, sim: SimulationConfig, verbose: bool = False) -> None:
    """Run `server_app` against `num_clients` virtual SuperNodes on Ray; blocks until done."""
    from flwr.simulation import run_simulation

    with flower_logging(verbose), warnings.catch_warnings():
        # Ray's notice about a future default for accelerator env vars; fedft relies on
        # today's default (a client with num_gpus=0 sees no GPU), so it changes nothing here.
        warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_clients,
            backend_name="ray",
            backend_config=backend_config(sim, verbose),
            verbose_logging=verbose,
        )
