"""The one place that talks to Flower's simulation engine.

fedft runs simulations in-process with `flwr.simulation.run_simulation`: the
ServerApp is built around the already-validated config, results and progress come
straight back to the caller. The clients run on one of two backends
(`simulation.backend`, `choose_backend`): Ray, started and stopped within the call
(every process it started has exited when `simulate` returns: fedft.runtime.reaping),
or a pool of local worker processes forked from this one
(fedft.runtime.local_backend), which skips Ray's start on a single machine. flwr 1.42 marks that function deprecated in favour of `flwr run`
with a managed SuperLink; fedft still works that way too (`flwr run .`, see
docs/deployment.md "Flower App"), and switching `fedft run` over is a change to this file alone.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedft.config import SimulationConfig
from fedft.fl.client.faults import CRASH_MARKER
from fedft.fl.server.nodes import NodePartitions
from fedft.runtime.engine_patches import backend_replaced, patched_engine, ray_left_running
from fedft.runtime.local_backend import LocalBackend, LocalPool, machine_cpus, pool_size
from fedft.runtime.reaping import StartedProcesses
from fedft.runtime.warm_start import WarmStart

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
    """Start Ray as Flower's RayBackend would (same arguments, workers get this process's
    sys.path); Flower then finds it running and uses it. Returns the PYTHONPATH this
    process had before, for `simulate` to put back.

    A Ray started here inherits PYTHONPATH from this process, and so do its workers:
    Flower's `runtime_env` (kept for a cluster's `address`, whose other nodes need it)
    would start every actor through Ray's runtime-env agent instead of a plain worker,
    0.4 s more CPU and wall per actor (`python benchmarks/ray_actor_start.py`)."""
    import ray

    before = os.environ.get("PYTHONPATH")
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    if "address" in init_args:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)
    else:
        ray.init(**init_args)
    return before


def uses_cuda(sim: SimulationConfig) -> bool:
    """Whether clients may use CUDA (a forked worker cannot use a CUDA context its parent made)."""
    if sim.device == "cuda" or sim.client_resources.num_gpus > 0:
        return True
    if sim.device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def choose_backend(sim: SimulationConfig, ray_running: bool, cuda: bool, linux: bool = sys.platform.startswith("linux")) -> str:
    """`simulation.backend` resolved: "auto" is "local" on one Linux machine, without CUDA,
    when this process has no Ray running already (a notebook's `ray.init()` is used, as
    before); "ray" with `ray_address` (a cluster), with CUDA, with a Ray already running, or
    off Linux (the local workers are forked, which macOS does not support reliably)."""
    if sim.backend != "auto":
        return sim.backend
    return "ray" if sim.ray_address or ray_running or cuda or not linux else "local"


def _ray_running() -> bool:
    ray = sys.modules.get("ray")  # not imported: not running (and the local backend never imports it)
    return ray is not None and ray.is_initialized()


def simulate(server_app: ServerApp, client_app: ClientApp, num_clients: int, sim: SimulationConfig, verbose: bool = False, on_ray_started: Callable[[], None] | None = None,
             node_partitions: NodePartitions | None = None, warm_start: WarmStart | None = None) -> str:
    """Run `server_app` against `num_clients` virtual SuperNodes; blocks until done and
    until every process it started has exited. Returns the backend used ("ray" or "local",
    `choose_backend`).

    Ray: started here unless this process already runs one (then it is used and left
    running); `on_ray_started` runs right after `ray.init` (fedft.runtime.interrupt takes
    SIGTERM back from Ray's handlers there). Local: a pool of forked workers
    (fedft.runtime.local_backend). `node_partitions` receives the engine's node ->
    partition mapping (fedft.runtime.engine_patches: no per-node handshake). `warm_start`:
    where the local workers come from (fedft.runtime.warm_start; `client_app` must be
    fedft's); closed here unless the local backend takes its workers (its pool stops them)."""
    backend = choose_backend(sim, _ray_running(), uses_cuda(sim))
    if warm_start is not None and backend != "local":
        warm_start.close()
    with flower_logging(verbose):
        if backend == "local":
            _simulate_local(server_app, client_app, num_clients, sim, verbose, node_partitions, warm_start)
        else:
            _simulate_ray(server_app, client_app, num_clients, sim, verbose, on_ray_started, node_partitions)
    return backend


def _simulate_local(server_app: ServerApp, client_app: ClientApp, num_clients: int, sim: SimulationConfig, verbose: bool, node_partitions: NodePartitions | None,
                    warm_start: WarmStart | None) -> None:
    from flwr.simulation import run_simulation

    resources: dict[str, Any] = {"num_cpus": sim.client_resources.num_cpus, "num_gpus": sim.client_resources.num_gpus}
    # forked now, before the engine and the ServerApp start their threads
    pool = LocalPool(client_app, pool_size(sim.ray_num_cpus or machine_cpus(), sim.client_resources.num_cpus), warm_start)
    if node_partitions is not None:
        node_partitions.workers = pool.size
    try:
        with patched_engine(node_partitions), backend_replaced(lambda: LocalBackend({"client_resources": resources}, pool)):
            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients, backend_name="local",
                           backend_config={"client_resources": resources}, verbose_logging=verbose)
    finally:
        pool.close()  # the engine closed it already unless it failed first; waits for every worker


def _simulate_ray(server_app: ServerApp, client_app: ClientApp, num_clients: int, sim: SimulationConfig, verbose: bool, on_ray_started: Callable[[], None] | None, node_partitions: NodePartitions | None) -> None:
    import ray
    from flwr.simulation import run_simulation

    config = backend_config(sim, verbose)
    started_here, pythonpath_before = False, None
    processes = StartedProcesses()
    try:
        with warnings.catch_warnings():
            # Ray's notice about a future default for accelerator env vars; fedft relies on
            # today's default (a client with num_gpus=0 sees no GPU), so it changes nothing here.
            warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)
            if not ray.is_initialized():  # else someone else's Ray (a notebook, a test session): used, left running
                pythonpath_before = start_ray(dict(config["init_args"]))
                started_here = True
                processes.note()  # GCS, raylet, agents: what this Ray start created
            if on_ray_started is not None:
                on_ray_started()
            if node_partitions is not None:  # as many as the actors Flower's RayBackend makes: the cluster's CPUs / each client's
                node_partitions.workers = pool_size(int(ray.cluster_resources().get("CPU", 1)), sim.client_resources.num_cpus)
            # Flower's RayBackend would shut Ray down itself, orphaning its workers before
            # they can be noted; it stops only its actors, and Ray is shut down below.
            with patched_engine(node_partitions), ray_left_running():  # many clients: no O(nodes x messages) scans
                run_simulation(
                    server_app=server_app,
                    client_app=client_app,
                    num_supernodes=num_clients,
                    backend_name="ray",
                    backend_config=config,
                    verbose_logging=verbose,
                )
    finally:
        if started_here:
            processes.note()  # the workers, while the raylet that started them is still their parent
            if ray.is_initialized():
                ray.shutdown()
            processes.stop()  # returns when every process this Ray start created has exited
            if pythonpath_before is None:  # this process's environment as it was before the run
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = pythonpath_before
