"""`fedft certs`, `fedft server`, `fedft client`, `fedft launch`: their arguments.

What they do is in fedft.deploy.commands (fedft.deploy.client_command for `fedft client`),
imported only when one of them runs: building fedft's parser (every command, `fedft --help`)
then costs no Flower or torch import, and `fedft client` none at all.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable


def _command(name: str, interruptible: bool = False, module: str = "commands") -> Callable[[argparse.Namespace], int]:
    """fedft.deploy.<module>.<name>, imported when called; `interruptible`: the whole command
    treats SIGTERM like Ctrl-C, so its cleanup always runs."""
    def run(args: argparse.Namespace) -> int:
        from fedft.deploy.processes import sigterm_as_interrupt

        func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"fedft.deploy.{module}"), name)
        if not interruptible:
            return func(args)
        with sigterm_as_interrupt():
            return func(args)

    return run


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None, help="TOML config, e.g. simulations/quickstart.toml (or --config)")
    p.add_argument("--config", dest="config_opt", default=None, metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--out", default=None, help="results folder (default: <output.dir>/<name>-<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--insecure", action="store_true", help="no TLS (prints a warning); TLS is the default")



def add_deploy_commands(sub) -> None:
    """Register the deployment subcommands on fedft's argparse subparsers."""
    p = sub.add_parser("certs", help="self-signed CA + server certificate for a SuperLink (TLS)")
    p.add_argument("--out", required=True, help="new folder for ca.crt, ca.key, server.pem, server.key")
    p.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP", help="a host name or IP clients dial, besides loopback (repeatable)")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--ca-key", default=None, metavar="FILE", help="keep the CA's private key in FILE, outside --out (default: not kept)")
    p.set_defaults(func=_command("cmd_certs"))

    p = sub.add_parser("server", help="start a Flower SuperLink here and submit the run; clients join with `fedft client`")
    _add_config_args(p)
    p.add_argument("--certs", default="certs", help="folder from `fedft certs` (default: certs)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all interfaces)")
    p.add_argument("--port", type=int, default=9092, help="SuperLink port for SuperNodes and `flwr` (default: 9092)")
    p.add_argument("--clients", dest="clients_file", default=None, metavar="TOML", help="the clients allowed to join: [[client]] public_key (from `fedft client keygen`) + partition_id")
    p.add_argument("--expose-control", action="store_true", help="serve Flower's Control API on --host:--port too (prints a warning); default: Fleet API only, via nginx")
    p.add_argument("--no-supernode-auth", action="store_true", help="let any SuperNode that holds ca.crt join (prints a warning); default: only --clients keys")
    p.set_defaults(func=_command("cmd_server", interruptible=True))

    p = sub.add_parser("client", help="start a Flower SuperNode for one client (runs until stopped); `fedft client keygen` makes its key pair")
    p.add_argument("action", nargs="?", choices=["keygen"], help="keygen: make this client's key pair in --out (default ~/.fedft/identity)")
    p.add_argument("--out", default=None, help="keygen: folder for client.key and client.pub")
    p.add_argument("--server", default=None, metavar="HOST:PORT", help="the SuperLink, e.g. server.example.org:9092")
    p.add_argument("--partition-id", type=int, default=None, help="this client's id, 0..num-partitions-1")
    p.add_argument("--num-partitions", type=int, default=None, help="the run's partition.num_clients")
    p.add_argument("--ca", default=None, help="the server's CA certificate (ca.crt) to verify it")
    p.add_argument("--insecure", action="store_true", help="no TLS (prints a warning)")
    p.add_argument("--data", default=None, metavar="NPZ", help="this node's own data (.npz with x, y) instead of partition K of the run's dataset")
    p.add_argument("--state-dir", default=None, help="this node's folder for state across rounds (default: ~/.fedft/node-K)")
    p.add_argument("--auth-key", default=None, help="this node's private key (client.key from `fedft client keygen`)")
    p.add_argument("--port", type=int, default=0, help="local port for the SuperNode's Runtime API (default: a free one)")
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS", help="keep trying to join this long after start (default: 120)")
    g = p.add_argument_group("this client's own privacy policy (local DP; history kept in --state-dir, refused rounds get no update)")
    g.add_argument("--max-epsilon", type=float, default=None, help="refuse a round that would take this client's ε (RDP, at --delta) past this")
    g.add_argument("--min-noise-multiplier", type=float, default=None, metavar="SIGMA", help="refuse a round with less noise than this")
    g.add_argument("--delta", type=float, default=None, help="this client's δ (default 1e-5); refuse a run whose target_delta is larger")
    p.set_defaults(func=_command("cmd_client", interruptible=True, module="client_command"))

    p = sub.add_parser("launch", help="SuperLink + N SuperNodes + the run, as separate processes on this machine")
    _add_config_args(p)
    p.add_argument("--clients", type=int, default=None, help="SuperNodes to start (default: partition.num_clients)")
    p.add_argument("--enable-supernode-auth", action="store_true", help="only SuperNodes with keys made for this launch may join (needs TLS)")
    p.add_argument("--certs", default=None, help="folder from `fedft certs` (default: fresh certificates for this launch)")
    p.set_defaults(func=_command("cmd_launch", interruptible=True))
