"""`fedft server --clients clients.toml`: the operator's list of client public keys, each
bound to one partition id.

    [[client]]
    public_key = "alice.pub"   # the .pub file from `fedft client keygen` (relative to this file), or its one line
    partition_id = 0
    num_examples = 0           # optional: the most num-examples this client may claim (0 = its partition's size)

`fedft server` registers every key with the SuperLink itself and hands the ServerApp
{node id: partition id} (`binding_json`), so a node's claimed partition id must be the
one its key is listed with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from fedft.errors import FedftError

FIX = "list each client as [[client]] with public_key (a .pub file from `fedft client keygen`) and partition_id."


@dataclass(frozen=True)
class RegisteredClient:
    public_key: str  # one OpenSSH line, e.g. "ecdsa-sha2-nistp384 AAAA..."
    partition_id: int
    num_examples: int = 0  # 0 = the partition's training-set size


def _key_line(value: Any, base: Path, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    if not isinstance(value, str) or not value.strip():
        raise FedftError(f"{where}.public_key", "is missing or not a string.", FIX)
    text = value.strip()
    if not text.startswith("ecdsa-"):
        path = (base / text).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FedftError(f"{where}.public_key", f"'{path}' cannot be read ({exc.strerror}).", FIX) from None
    try:
        key = load_ssh_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise FedftError(f"{where}.public_key", f"is not an OpenSSH public key ({exc}).", FIX) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise FedftError(f"{where}.public_key", "is not an EC key, which Flower's SuperNode authentication needs.", "make the pair with `fedft client keygen`.")
    return " ".join(text.split()[:2])  # type and key; the comment does not identify anyone


def read_clients_file(path: str | Path, num_clients: int) -> list[RegisteredClient]:
    """The listed clients, or one FedftError naming the entry: ids in 0..num_clients-1,
    no id and no key listed twice."""
    path = Path(path).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FedftError("--clients", f"'{path}' cannot be read ({exc.strerror}).", FIX) from None
    except tomllib.TOMLDecodeError as exc:
        raise FedftError("--clients", f"'{path}' is not valid TOML ({exc}).", FIX) from None
    entries = raw.get("client")
    if set(raw) != {"client"} or not isinstance(entries, list) or not entries:
        raise FedftError("--clients", f"'{path}' has no [[client]] entries (or other keys: {sorted(set(raw) - {'client'})}).", FIX)
    out: list[RegisteredClient] = []
    for i, entry in enumerate(entries):
        where = f"--clients client[{i}]"
        unknown = sorted(set(entry) - {"public_key", "partition_id", "num_examples"})
        if unknown:
            raise FedftError(where, f"has unknown keys {unknown}.", FIX)
        pid, n = entry.get("partition_id"), entry.get("num_examples", 0)
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < num_clients:
            raise FedftError(f"{where}.partition_id", f"{pid!r} is not an id in 0..{num_clients - 1}.", "give each client its partition id.")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise FedftError(f"{where}.num_examples", f"{n!r} is not a count >= 0.", "give the client's number of training examples, or 0.")
        out.append(RegisteredClient(_key_line(entry.get("public_key"), path.parent, where), pid, n))
    for what, values in (("partition_id", [str(c.partition_id) for c in out]), ("public_key", [c.public_key for c in out])):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise FedftError(f"--clients {what}", f"{twice[0][:60]} is listed twice.", "list each client once, with its own key and id.")
    return out


def binding_json(node_ids: dict[int, int], clients: list[RegisteredClient]) -> str:
    """{"nodes": {node id: partition id}, "num_examples": {partition id: cap}} for the ServerApp."""
    return json.dumps({"nodes": {str(n): p for n, p in node_ids.items()},
                       "num_examples": {str(c.partition_id): c.num_examples for c in clients if c.num_examples}})


def parse_binding(text: str) -> tuple[dict[int, int], dict[int, int]] | None:
    """({node id: partition id}, {partition id: num-examples cap}) from `binding_json`; None for ""."""
    if not text.strip():
        return None
    data = json.loads(text)
    return {int(n): int(p) for n, p in data["nodes"].items()}, {int(p): int(c) for p, c in data.get("num_examples", {}).items()}
