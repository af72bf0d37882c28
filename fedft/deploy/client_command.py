"""`fedft client` (and `fedft client keygen`): one SuperNode for one client, restarted
until it joins. Light on purpose: it imports neither torch nor Flower (the SuperNode
and its ClientApp processes do), so the wrapper that runs beside them on a client
machine starts in a fraction of a second and holds little memory."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from fedft.deploy.certs import make_key_pair, warn_insecure
from fedft.deploy.processes import ProcessSet, check_flower_tools, free_port
from fedft.deploy.supernode import node_config_text, supernode_command
from fedft.errors import FedftError
from fedft.fl.client.npz import read_npz

RETRY_PAUSE = 5.0  # seconds between a SuperNode that could not join and the next try


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
    check_flower_tools("flower-supernode")
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
