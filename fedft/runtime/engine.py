"""The one place that talks to Flower's simulation engine.

fedft runs simulations in-process with `flwr.simulation.run_simulation` (Ray
backend): the ServerApp is built around the already-validated config, results
and progress come straight back to the caller, and Ray is started and stopped
within the call. flwr 1.42 marks that function deprecated in favour of `flwr run`
with a managed SuperLink; fedft still works that way too (`flwr run .`, see
docs/deployment.md "Flower App"), and switching `fedft run` over is a change to this file alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedft.config import SimulationConfig
from fedft.fl.client.faults import CRASH_MARKER
from fedft.fl.server.nodes import NodePartitions
from fedft.runtime.engine_patches import patched_engine, ray_left_running

_DEPRECATION = "The `run_simulation` function is deprecated"


class _DropKnownDeprecation(logging.Filter):
    """fedft chose this entry point deliberately (see module doc); the notice is for
    people calling it themselves, not for fedft users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _DEPRECATION not in record.getMessage()


class _DropInjectedCrashes(logging.Filter):
    """Crashes injected with `faults.crash_probability` are expected: Flower's log of
    their tracebacks is noise (they are counted in metrics.csv as clients_failed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return CRASH_MARKER not in record.getMessage()


@contextmanager
def flower_logging(verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("flwr")
    old_level = logger.level
    drop = _DropKnownDeprecation()
    logger.addFilter(drop)
    for handler in logger.handlers:
        handler.addFilter(drop)
    drop_crashes = _DropInjectedCrashes()
    if not verbose:
        logger.addFilter(drop_crashes)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        logger.removeFilter(drop)
        logger.removeFilter(drop_crashes)
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
    elif sim.ray_num_cpus:
        init_args["num_cpus"] = sim.ray_num_cpus
    if not sim.ray_address:  # Ray's workers (the clients) run at nice 15 by default: any busy process would starve them
        init_args["_system_config"] = {"worker_niceness": 0}
    return {
        "client_resources": {"num_cpus": sim.client_resources.num_cpus, "num_gpus": sim.client_resources.num_gpus},
        "init_args": init_args,
    }


def start_ray(init_args: dict) -> str | None:
    """Start Ray exactly as Flower's RayBackend would (same arguments, workers get this
    process's sys.path); Flower then finds it running, uses it and shuts it down.
    Returns the PYTHONPATH this process had before, for `simulate` to put back."""
    import ray

    before = os.environ.get("PYTHONPATH")
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)
    return before


def simulate(server_app: ServerApp, client_app: ClientApp, num_clients: int, sim: SimulationConfig, verbose: bool = False, on_ray_started: Callable[[], None] | None = None, node_partitions: NodePartitions | None = None) -> None:
    """Run `server_app` against `num_clients` virtual SuperNodes on Ray; blocks until done.

    With `on_ray_started`, Ray is started here first and the callback runs right after
    `ray.init` (fedft.runtime.interrupt takes SIGTERM back from Ray's handlers there); Ray is
    shut down on the way out however the run ends. `node_partitions` receives the
    engine's node -> partition mapping (fedft.runtime.engine_patches: no per-node handshake)."""
    import ray
    from flwr.simulation import run_simulation

    config = backend_config(sim, verbose)
    already_running = ray.is_initialized()  # someone else's Ray (a notebook, a test session): left running afterwards
    started_here, pythonpath_before = False, None
    try:
        with flower_logging(verbose), warnings.catch_warnings():
            # Ray's notice about a future default for accelerator env vars; fedft relies on
            # today's default (a client with num_gpus=0 sees no GPU), so it changes nothing here.
            warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)
            if on_ray_started is not None:
                if not ray.is_initialized():
                    pythonpath_before = start_ray(dict(config["init_args"]))
                    started_here = True
                on_ray_started()
            keep_ray = ray_left_running() if already_running else contextlib.nullcontext()
            with patched_engine(node_partitions), keep_ray:  # many clients: no O(nodes x messages) scans
                run_simulation(
                    server_app=server_app,
                    client_app=client_app,
                    num_supernodes=num_clients,
                    backend_name="ray",
                    backend_config=config,
                    verbose_logging=verbose,
                )
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()
        if started_here:  # this process's environment as it was before the run
            if pythonpath_before is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = pythonpath_before
