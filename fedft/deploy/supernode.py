"""The `flower-supernode` command line for one fedft client node.

The node config is what the ClientApp reads (see `fedft.fl.client.node_data`):
`partition-id`, `num-partitions`, optionally `data-path` (a private .npz) and
`state-dir` (the node's own folder for state that outlives a round).
"""

from __future__ import annotations

from pathlib import Path

from fedft.errors import FedftError


def _toml_string(value: str, field: str) -> str:
    """A value for Flower's `--node-config` parser: quoted, and free of the quote used."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    raise FedftError(field, f"'{value}' contains both kinds of quote.", "use a path without quotes.")


def node_config_text(partition_id: int, num_partitions: int, data_path: str | Path | None = None, state_dir: str | Path | None = None) -> str:
    """`partition-id=0 num-partitions=3 data-path='...' state-dir='...'` (paths made absolute)."""
    if not 0 <= partition_id < num_partitions:
        raise FedftError("--partition-id", f"{partition_id} is outside 0..{num_partitions - 1}.", "pass an id below --num-partitions.")
    parts = [f"partition-id={partition_id}", f"num-partitions={num_partitions}"]
    if data_path:
        path = Path(data_path).expanduser().resolve()
        if not path.is_file():
            raise FedftError("--data", f"'{path}' does not exist.", "pass the path of this node's .npz file (arrays x and y).")
        parts.append(f"data-path={_toml_string(str(path), '--data')}")
    if state_dir:
        parts.append(f"state-dir={_toml_string(str(Path(state_dir).expanduser().resolve()), '--state-dir')}")
    return " ".join(parts)


def supernode_command(superlink: str, node_config: str, ca_cert: str | Path | None, runtime_port: int, auth_key: str | Path | None = None, max_wait_time: float | None = None) -> list[str]:
    """`ca_cert=None` means --insecure. `runtime_port` is the node's local Runtime API
    (ClientApp processes talk to it); nodes on one machine each need their own."""
    cmd = ["flower-supernode", "--superlink", superlink, "--node-config", node_config, "--port", str(runtime_port)]
    if ca_cert is None:
        cmd.append("--insecure")
    else:
        path = Path(ca_cert).expanduser()
        if not path.is_file():
            raise FedftError("--ca", f"'{path}' does not exist.", "copy the server's ca.crt to this machine (made by `fedft certs`), or pass --insecure.")
        cmd += ["--root-certificates", str(path.resolve())]
    if auth_key:
        key = Path(auth_key).expanduser()
        if not key.is_file():
            raise FedftError("--auth-key", f"'{key}' does not exist.", "pass this node's private key (made by `fedft certs --supernode-keys N`).")
        cmd += ["--auth-supernode-private-key", str(key.resolve())]
    if max_wait_time is not None:
        cmd += ["--max-wait-time", str(max_wait_time)]
    return cmd
