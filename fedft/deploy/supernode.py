"""The `flower-supernode` command line for one fedft client node.

The node config is what the ClientApp reads (see `fedft.fl.client.node_data`):
`partition-id`, `num-partitions`, optionally `data-path` (a private .npz) and
`state-dir` (the node's own folder for state that outlives a round), and the
client's own privacy policy `max-epsilon`, `min-noise-multiplier`, `delta`
(`fedft.privacy.client_policy`).
"""

from __future__ import annotations

from pathlib import Path

from fedft.errors import FedftError
from fedft.privacy.client_policy import DEFAULT_DELTA, DELTA, MAX_EPSILON, MIN_NOISE_MULTIPLIER


def _toml_string(value: str, field: str) -> str:
    """A value for Flower's `--node-config` parser: quoted, and free of the quote used."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    raise FedftError(field, f"'{value}' contains both kinds of quote.", "use a path without quotes.")


def node_config_text(partition_id: int, num_partitions: int, data_path: str | Path | None = None, state_dir: str | Path | None = None,
                     max_epsilon: float | None = None, min_noise_multiplier: float | None = None, delta: float | None = None) -> str:
    """`partition-id=0 num-partitions=3 data-path='...' state-dir='...' max-epsilon=2.0 delta=1e-05` (paths
    made absolute). A policy (`max_epsilon` or `min_noise_multiplier`) needs `state_dir`, where the node
    keeps its accountant history; its δ is `delta` or 1e-5."""
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
    parts += _policy_parts(max_epsilon, min_noise_multiplier, delta, bool(state_dir))
    return " ".join(parts)


def _policy_parts(max_epsilon: float | None, min_noise_multiplier: float | None, delta: float | None, has_state_dir: bool) -> list[str]:
    if max_epsilon is not None and not max_epsilon > 0:
        raise FedftError("--max-epsilon", f"{max_epsilon} is not positive.", "pass the largest ε this client may spend, e.g. --max-epsilon 2.")
    if min_noise_multiplier is not None and not min_noise_multiplier >= 0:
        raise FedftError("--min-noise-multiplier", f"{min_noise_multiplier} is negative.", "pass the least σ this client trains with, e.g. 0.8.")
    if delta is not None and not 0 < delta < 1:
        raise FedftError("--delta", f"{delta} is outside (0, 1).", "pass this client's δ, below 1/(its records), e.g. 1e-5.")
    if max_epsilon is None and min_noise_multiplier is None:
        if delta is not None:
            raise FedftError("--delta", "given without --max-epsilon or --min-noise-multiplier.", "add --max-epsilon (the client's budget at this δ).")
        return []
    if not has_state_dir:
        raise FedftError("--max-epsilon", "needs a state folder for the client's accountant history.", "pass --state-dir.")
    parts = [f"{MAX_EPSILON}={float(max_epsilon)!r}"] if max_epsilon is not None else []
    parts += [f"{MIN_NOISE_MULTIPLIER}={float(min_noise_multiplier)!r}"] if min_noise_multiplier is not None else []
    return parts + [f"{DELTA}={float(delta if delta is not None else DEFAULT_DELTA)!r}"]


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
