"""`fedft certs`, `fedft server`, `fedft client`, `fedft launch`: what each command does,
and the checks that must fail before any folder or process exists (exit 2). Their
arguments are in fedft.deploy.cli, which imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from fedft.deploy import proxy
from fedft.deploy.certs import CertPaths, make_certs, make_key_pair
from fedft.deploy.clients_file import read_clients_file
from fedft.deploy.launch import DeployOptions, deploy, warn_insecure
from fedft.deploy.processes import ProcessSet, free_port
from fedft.deploy.run_config import deployment_defaults
from fedft.deploy.submit import app_dir
from fedft.deploy.supernode import node_config_text, supernode_command
from fedft.errors import FedftError
from fedft.fl.client.node_data import read_npz
from fedft.jobs.run import prepare
from fedft.jobs.validate import load_config
from fedft.runtime.progress import RoundPrinter
from fedft.state.run_folder import new_run_dir


def _config_path(args: argparse.Namespace) -> str:
    if args.config and args.config_opt and args.config != args.config_opt:
        raise FedftError("config", f"given twice ('{args.config}' and --config '{args.config_opt}').", "pass it once.")
    path = args.config or args.config_opt
    if not path:
        raise FedftError("config", "missing.", "pass a TOML config, e.g. simulations/quickstart.toml.")
    return path


def _check_flower_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            raise FedftError(name, "is not on PATH.", "install Flower into this environment: pip install 'flwr[simulation]>=1.42,<1.43'.")


def _prepare(args: argparse.Namespace, clients: int = 0):
    """Validate config, certificates and tools, then create the results folder."""
    cfg = deployment_defaults(prepare(_config_path(args), args.overrides))  # norm bound on, client_state off
    _check_flower_tools("flower-superlink", "flwr", *(["flower-supernode"] if clients else []))
    app_dir()
    certs = None if args.insecure or not getattr(args, "certs", None) else Path(args.certs)
    if certs is not None:
        CertPaths(certs).check_server_side()
    registered = None
    if clients:  # launch: local nodes, optional auth with keys made here
        auth = args.enable_supernode_auth
        if auth and args.insecure:
            raise FedftError("--enable-supernode-auth", "needs TLS, but --insecure was given.", "drop --insecure.")
    else:  # server: only the operator's listed keys may join, unless explicitly opened
        auth = not (args.insecure or args.no_supernode_auth)
        if args.clients_file and not auth:
            raise FedftError("--clients", "needs SuperNode authentication, which --insecure or --no-supernode-auth turns off.", "drop --insecure / --no-supernode-auth.")
        if auth and not args.clients_file:
            raise FedftError("--clients", "missing: only clients whose public keys you list may join.",
                             "pass --clients clients.toml (each client's key from `fedft client keygen` and its partition id), or --no-supernode-auth to let anyone with ca.crt join.")
        registered = read_clients_file(args.clients_file, cfg.partition.num_clients) if auth else None
    opts = DeployOptions(certs=certs, insecure=args.insecure, enable_supernode_auth=auth, clients=clients, registered=registered)
    return cfg, new_run_dir(cfg, args.out), opts


def cmd_launch(args: argparse.Namespace) -> int:
    cfg = load_config(_config_path(args), args.overrides)
    clients = cfg.partition.num_clients if args.clients is None else args.clients
    if not 1 <= clients <= cfg.partition.num_clients:
        raise FedftError("--clients", f"{clients} is outside 1..partition.num_clients={cfg.partition.num_clients}.", "start at most one SuperNode per client.")
    cfg, run_dir, opts = _prepare(args, clients)
    if "min_clients" not in cfg.simulation.model_fields_set:
        cfg.simulation.min_clients = clients  # K of N partitions: start with the K nodes started here
    printer = RoundPrinter(cfg.simulation.rounds, quiet=args.quiet)
    printer.say(f"fedft launch: {cfg.name}: SuperLink + {clients} SuperNodes on 127.0.0.1 ({'insecure' if args.insecure else 'TLS'}), "
                f"{cfg.simulation.rounds} rounds -> {run_dir.resolve()} (Flower logs in logs/)")
    summary = deploy(cfg, run_dir, opts, printer)
    return 0 if summary["status"] == "completed" else 1


def cmd_server(args: argparse.Namespace) -> int:
    args.certs = None if args.insecure else args.certs
    if not args.expose_control:
        proxy.find_nginx()  # before anything starts
    cfg, run_dir, opts = _prepare(args)
    opts.host, opts.port, opts.front_door = args.host, args.port, not args.expose_control
    if args.expose_control:
        print("fedft: warning: --expose-control: the SuperLink's Control API (submit runs, register SuperNode keys, stop runs) "
              "is reachable by anyone who reaches the port; Flower's open-source Control API does not authenticate.", file=sys.stderr)
    if not opts.enable_supernode_auth and not args.insecure:
        print("fedft: warning: --no-supernode-auth: anyone who holds ca.crt and reaches the port can join as a client.", file=sys.stderr)
    printer = RoundPrinter(cfg.simulation.rounds, quiet=args.quiet)

    def ready(address: str, certs) -> None:
        tls = "--insecure" if certs is None else f"--ca {certs.ca_cert}"
        door = "Control API open too" if args.expose_control else "Fleet API only, via nginx; Control on loopback"
        printer.say(f"fedft server: listening on {args.host}:{args.port} ({'insecure' if certs is None else 'TLS'}, {door}); "
                    f"run submitted, waiting up to {cfg.simulation.round_timeout:.0f} s for {cfg.partition.num_clients} clients -> {run_dir.resolve()}")
        key = " --auth-key ~/.fedft/identity/client.key" if opts.enable_supernode_auth else ""
        printer.say(f"  on each client machine: fedft client --server <this host>:{args.port} --partition-id K "
                    f"--num-partitions {cfg.partition.num_clients} {tls}{key}")

    summary = deploy(cfg, run_dir, opts, printer, on_ready=ready)
    return 0 if summary["status"] == "completed" else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    """`fedft client keygen`: this client's key pair, made here; only the .pub leaves."""
    folder = Path(args.out or Path.home() / ".fedft" / "identity").expanduser()
    private, public = make_key_pair(folder / "client.key", folder / "client.pub")
    print(f"wrote {private} (private, stays here: fedft client --auth-key {private}) and {public}: send the .pub to the server's "
          f"operator, who lists it with your partition id in clients.toml (fedft server --clients clients.toml)")
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        return cmd_keygen(args)
    for flag, value in (("--server", args.server), ("--partition-id", args.partition_id), ("--num-partitions", args.num_partitions)):
        if value is None:
            raise FedftError(flag, "missing.", "pass --server HOST:PORT --partition-id K --num-partitions N (or `fedft client keygen`).")
    _check_flower_tools("flower-supernode")
    if args.insecure and args.ca:
        raise FedftError("--insecure", "given together with --ca.", "pass one: --ca FILE for TLS (default), or --insecure.")
    if not args.insecure and not args.ca:
        raise FedftError("--ca", "missing.", "pass the server's CA certificate (ca.crt from `fedft certs`), or --insecure.")
    if args.data:
        read_npz(args.data)  # a missing or truncated file: one error now, not one per round
    state_dir = Path(args.state_dir or Path.home() / ".fedft" / f"node-{args.partition_id}").expanduser()
    node_cfg = node_config_text(args.partition_id, args.num_partitions, data_path=args.data, state_dir=state_dir,
                                max_epsilon=args.max_epsilon, min_noise_multiplier=args.min_noise_multiplier, delta=args.delta)
    cmd = supernode_command(args.server, node_cfg, None if args.insecure else args.ca, args.port or free_port(), auth_key=args.auth_key)
    if args.insecure:
        warn_insecure()
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"fedft client: SuperNode for client {args.partition_id} of {args.num_partitions} -> {args.server} "
          f"({'insecure' if args.insecure else 'TLS'}); data: {args.data or 'its partition'}; state: {state_dir}", flush=True)
    procs = ProcessSet()
    deadline = time.monotonic() + args.wait
    try:
        while True:
            code = procs.start("supernode", cmd).wait()
            # A SuperNode exits (status 1, Flower "Exit Code: 305") when it cannot join: its key is
            # not registered yet, TLS fails, ...; the server may simply not be ready yet.
            if code in (0, -signal.SIGTERM, -signal.SIGKILL) or time.monotonic() > deadline:
                return code
            print(f"fedft client: the SuperNode could not join (see above); trying again in {RETRY_PAUSE:.0f} s "
                  f"(until {args.wait:.0f} s after start, --wait)", flush=True)
            time.sleep(RETRY_PAUSE)
    except KeyboardInterrupt:
        print("fedft client: stopping", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()


RETRY_PAUSE = 5.0


def cmd_certs(args: argparse.Namespace) -> int:
    paths = make_certs(args.out, args.host, args.days, ca_key=args.ca_key)
    kept = f"; the CA key in {args.ca_key} (keep it private, off the server)" if args.ca_key else "; the CA key was not kept (--ca-key FILE keeps it)"
    print(f"wrote {paths.ca_cert} (give to clients), {paths.server_cert} and {paths.server_key} (server only){kept}; "
          f"valid for {args.days} days for: localhost, 127.0.0.1, ::1{''.join(', ' + h for h in args.host)}")
    return 0
