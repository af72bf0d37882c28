"""A client node's own state on its own disk (deployment): the one store for it.

In a deployment every ClientApp message runs in a fresh process started by the
SuperNode, so nothing survives in memory between rounds; state that must outlive
a round goes to the node's folder, given to the SuperNode as node config
`state-dir` (`fedft client --state-dir`, default `~/.fedft/node-<partition-id>`).
In a simulation there is no node folder (`node_dir` returns None) and callers
keep state in `context.state` as usual.

Usage (the DP accountant history, `fedft.privacy.history`, under
`privacy.state_dir`)::

    from fedft.state.node_store import load_state, save_state
    history = load_state(folder, "client-3").get("history", [])
    ...
    save_state(folder, "client-3", {"history": history})

Values are JSON (numbers, strings, lists, dicts), one `<name>.json` per name:
readable, diffable, and no pickle from disk. Writes go through
`fedft.state.atomic`, so a process killed mid-write leaves the previous state
intact. Two things a node keeps are not JSON and so are not here, but are written
with the same atomic writer: SCAFFOLD's control variate (tensors, bit-exact, in
`fedft.fl.client.scaffold`) and the cached data shard (`fedft.fl.client.node_data`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fedft.state import atomic

STATE_DIR = "state-dir"  # node config key
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def node_dir(context: Any) -> Path | None:
    """This node's state folder from its node config, or None (simulation)."""
    value = str(getattr(context, "node_config", {}).get(STATE_DIR, "") or "")
    return Path(value).expanduser() if value else None


def _path(folder: str | Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"state name {name!r} must be letters, digits, '_', '.', '-'")
    return Path(folder) / f"{name}.json"


def load_state(folder: str | Path, name: str) -> dict[str, Any]:
    """The dict last saved under `name`, or {} if none was saved yet."""
    path = _path(folder, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def save_state(folder: str | Path, name: str, state: dict[str, Any]) -> Path:
    """Replace the state saved under `name`, atomically."""
    path = _path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(path, json.dumps(state, indent=1, sort_keys=True))
