"""`fedft certs`, `fedft server`, `fedft client`, `fedft launch`: what each command does,
and the checks that must fail before any folder or process exists (exit 2). Their
arguments are in fedft.deploy.cli, which imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedft.deploy import proxy
from fedft.deploy.certs import CertPaths, make_certs
from fedft.deploy.clients_file import read_clients_file
from fedft.deploy.launch import DeployOptions, deploy
from fedft.deploy.processes import check_flower_tools
from fedft.deploy.run_config import deployment_defaults
from fedft.deploy.submit import app_dir
from fedft.errors import FedftError
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


def _prepare(args: argparse.Namespace, clients: int = 0):
    """Validate config, certificates and tools, then create the results folder."""
    cfg = deployment_defaults(prepare(_config_path(args), args.overrides))  # norm bound on, client_state off
    check_flower_tools("flower-superlink", "flwr", *(["flower-supernode"] if clients else []))
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


def cmd_certs(args: argparse.Namespace) -> int:
    paths = make_certs(args.out, args.host, args.days, ca_key=args.ca_key)
    kept = f"; the CA key in {args.ca_key} (keep it private, off the server)" if args.ca_key else "; the CA key was not kept (--ca-key FILE keeps it)"
    print(f"wrote {paths.ca_cert} (give to clients), {paths.server_cert} and {paths.server_key} (server only){kept}; "
          f"valid for {args.days} days for: localhost, 127.0.0.1, ::1{''.join(', ' + h for h in args.host)}")
    return 0
