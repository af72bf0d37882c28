"""`fedft server` and `fedft launch`: a SuperLink, optional local SuperNodes, one run.

Everything is Flower's own: `flower-superlink`, `flower-supernode`, and `flwr run`
to submit the run (the fedft Flower App, with the resolved config as JSON and the
results folder in the run config). The ServerApp runs in a process the
SuperLink starts on this machine and writes the results folder itself; fedft
follows `metrics.jsonl` there to print progress. On the way out (run over,
error, Ctrl-C or SIGTERM) every process started here is stopped by PID, children
included (see `fedft.deploy.processes`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig
from fedft.deploy import proxy, submit
from fedft.deploy.certs import CertPaths, make_certs, make_supernode_keys, warn_insecure
from fedft.deploy.clients_file import RegisteredClient, binding_json
from fedft.deploy.processes import ProcessSet, free_port, sigterm_as_interrupt
from fedft.deploy.run_config import write_run_config
from fedft.deploy.superlink import local_address, superlink_command, tail, wait_until_ready
from fedft.deploy.supernode import node_config_text, supernode_command
from fedft.errors import FedftError
from fedft.state.run_folder import RunWriter, read_rows, read_summary


@dataclass
class DeployOptions:
    certs: Path | None = None  # folder from `fedft certs`; None: launch makes one, server requires one
    insecure: bool = False
    host: str = "127.0.0.1"  # where the SuperLink listens (server: 0.0.0.0 for other machines)
    port: int = 0  # 0 = a free port chosen now
    clients: int = 0  # SuperNodes to start on this machine (launch)
    enable_supernode_auth: bool = False
    registered: list[RegisteredClient] | None = None  # server: the operator's client keys (--clients), registered here
    front_door: bool = False  # server: SuperLink on loopback, nginx forwards only the Fleet API from host:port (fedft.deploy.proxy)
    startup_timeout: float = 60.0


def _finish_here(cfg: FedftConfig, run_dir: Path, status: str, wall: float, error: str) -> dict[str, Any]:
    """summary.json when the ServerApp could not write one (it never started, or was killed)."""
    writer = RunWriter(run_dir, cfg)
    writer.rows = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in read_rows(run_dir)]
    return writer.finish(status, wall, {"error": error} if error else None)


def _tls(opts: DeployOptions, scratch: Path, make_if_missing: bool) -> CertPaths | None:
    if opts.insecure:
        warn_insecure()
        return None
    if opts.certs is None:
        if not make_if_missing:
            raise FedftError("--certs", "no certificate folder given.", "create one with `fedft certs --out certs/` and pass --certs certs/, or pass --insecure.")
        return make_certs(scratch / "certs")
    certs = CertPaths(Path(opts.certs))
    certs.check_server_side()
    return certs


def deploy(cfg: FedftConfig, run_dir: Path, opts: DeployOptions, printer, on_ready: Callable[[str, CertPaths | None], None] | None = None) -> dict[str, Any]:
    """Start the SuperLink (+ `opts.clients` SuperNodes), submit the run, follow it to
    the end, stop everything; return the run's summary (status in summary["status"])."""
    run_dir = Path(run_dir).resolve()
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fedft-deploy-"))
    scratch_extra: list[Path] = []  # nginx's prefix folder
    procs = ProcessSet()
    t0 = time.perf_counter()
    summary: dict[str, Any] | None = None
    status, error = "failed", ""
    try:
        with sigterm_as_interrupt():
            certs = _tls(opts, scratch, make_if_missing=opts.clients > 0)
            ca = certs.ca_cert.resolve() if certs else None
            port = opts.port or free_port(opts.host if opts.host not in ("0.0.0.0", "::") else "127.0.0.1")
            link_host, link_port = ("127.0.0.1", free_port()) if opts.front_door else (opts.host, port)
            address = local_address(link_host, link_port)  # the SuperLink itself: Control, Fleet and Runtime APIs
            cli_home = submit.write_flower_home(scratch / "cli", address, ca)
            superlink = procs.start("superlink", superlink_command(link_host, link_port, certs, opts.enable_supernode_auth),
                                    logs / "superlink.log", env={"FLWR_HOME": str(scratch / "superlink")}, cwd=scratch)
            _write_pids(logs, procs)
            wait_until_ready(address, ca, superlink, logs / "superlink.log", opts.startup_timeout)
            if opts.front_door:  # outside callers reach nginx, which forwards /v1/fleet/ only
                prefix = Path(tempfile.mkdtemp(prefix="fedft-nginx-"))
                scratch_extra.append(prefix)
                conf = proxy.write_proxy(prefix, opts.host, port, link_port, certs)
                nginx = procs.start("nginx", proxy.proxy_command(proxy.find_nginx(), prefix, conf), logs / "nginx.log", cwd=prefix)
                _write_pids(logs, procs)
                proxy.wait_until_listening(local_address(opts.host, port), ca, nginx, prefix / "error.log", opts.startup_timeout)
            keys = _supernode_keys(opts, scratch)
            node_ids = {_register(procs, public, cli_home, logs): pid for pid, public in keys.get("public", {}).items()}
            clients_json = binding_json(node_ids, opts.registered) if opts.registered else ""
            for k in range(opts.clients):
                node_home = scratch / f"node-{k}"
                node_cfg = node_config_text(k, cfg.partition.num_clients, state_dir=node_home / "state")
                cmd = supernode_command(address, node_cfg, ca, free_port(), auth_key=keys.get("private", {}).get(k))
                procs.start(f"supernode-{k}", cmd, logs / f"supernode-{k}.log", env={"FLWR_HOME": str(node_home)}, cwd=scratch)
            run_config = write_run_config(scratch / "run-config.toml", cfg, run_dir, clients_json)
            run = procs.start("flwr-run", submit.flwr_run_command(submit.app_dir(), run_config), logs / "run.log",
                              env={"FLWR_HOME": str(cli_home)}, cwd=scratch)
            _write_pids(logs, procs)
            if on_ready is not None:
                on_ready(address, certs)
            _follow(run_dir, run, superlink, printer)
            summary = _wait_summary(run_dir)
            if summary is None:
                error = f"the run ended without a summary; last lines of {logs / 'run.log'}:\n{tail(logs / 'run.log')}"
    except FedftError as exc:  # the deployment itself failed (bad input was checked before the folder existed)
        error = exc.one_line()
    except KeyboardInterrupt:
        status, error = "interrupted", "stopped by Ctrl-C or SIGTERM"
        printer.say("fedft: interrupted, stopping every process started here")
    finally:
        try:
            procs.stop_all()  # holds Ctrl-C/SIGTERM until done; one that arrived meanwhile lands here
        except KeyboardInterrupt:
            if summary is None:
                status, error = "interrupted", "stopped by Ctrl-C or SIGTERM"
        for folder in (scratch, *scratch_extra):
            shutil.rmtree(folder, ignore_errors=True)
    if summary is None:
        summary = _finish_here(cfg, run_dir, status, time.perf_counter() - t0, error)
    if summary.get("error"):
        printer.say(f"fedft: error: {summary['error']}")
    printer.on_done(summary)
    return summary


def _supernode_keys(opts: DeployOptions, scratch: Path) -> dict[str, Any]:
    """{"public": {partition id: .pub file to register}, "private": {k: key file}} when auth is
    on: for `launch` a fresh pair per local node; for `server` the operator's listed keys."""
    if not opts.enable_supernode_auth:
        return {}
    if opts.clients:
        pairs = make_supernode_keys(scratch / "supernode-keys", opts.clients)
        return {"public": {k: pub for k, (_, pub) in enumerate(pairs)}, "private": {k: key for k, (key, _) in enumerate(pairs)}}
    folder = scratch / "registered"
    folder.mkdir()
    public = {}
    for c in opts.registered or []:
        public[c.partition_id] = folder / f"client-{c.partition_id}.pub"
        public[c.partition_id].write_text(c.public_key + "\n", encoding="utf-8")
    return {"public": public}


def _register(procs: ProcessSet, public: Path, home: Path, logs: Path) -> int:
    """Register one public key with the SuperLink (locally, through its Control API);
    the node id Flower gives it."""
    log = logs / f"register-{public.stem}.log"
    proc = procs.start(f"register-{public.stem}", submit.register_command(public), log, env={"FLWR_HOME": str(home)})
    match = re.search(r'"node-id":\s*(\d+)', tail(log, 50)) if proc.wait(timeout=120) == 0 else None
    if match is None:
        raise FedftError("--clients", f"`flwr supernode register {public}` failed:\n{tail(log)}", "check the key file.")
    return int(match.group(1))


def _write_pids(logs: Path, procs: ProcessSet) -> None:
    info = {"launch_id": procs.launch_id, "pids": {name: p.pid for name, p in procs.procs.items()}}
    (logs / "processes.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def _follow(run_dir: Path, run, superlink, printer, poll: float = 0.5) -> None:
    """Print each round as the ServerApp records it, until `flwr run --stream` ends
    (it ends with the run)."""
    done = 0
    while True:
        done = _print_new_rows(run_dir, done, printer)
        if run.poll() is not None:
            break
        if superlink.poll() is not None:
            raise FedftError("SuperLink", f"exited with code {superlink.returncode} during the run.", f"see {run_dir / 'logs' / 'superlink.log'}.")
        time.sleep(poll)
    _print_new_rows(run_dir, done, printer)


def _print_new_rows(run_dir: Path, done: int, printer) -> int:
    """Print the rounds recorded after the first `done`; returns how many are recorded."""
    rows = read_rows(run_dir)
    for row in rows[done:]:
        printer.on_round(row)
    return len(rows)


def _wait_summary(run_dir: Path, timeout: float = 15.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = read_summary(run_dir)
        if summary is not None:
            return summary
        time.sleep(0.3)
    return None

