"""A client node's own state on its own disk (deployment), e.g. a DP accountant.

In a deployment every ClientApp message runs in a fresh process started by the
SuperNode, so nothing survives in memory between rounds; state that must outlive
a round (privacy accountant history, cached data shard) goes to the node's
folder, given to the SuperNode as node config `state-dir` (`fedft client
--state-dir`, default `~/.fedft/node-<partition-id>`). In a simulation there is
no node folder (`node_dir` returns None) and callers keep state in
`context.state` as usual.

Usage (e.g. a privacy accountant)::

    from fedft.state.node_store import load_state, node_dir, save_state
    folder = node_dir(context)
    if folder is not None:
        history = load_state(folder, "dp-accountant").get("steps", [])
        ...
        save_state(folder, "dp-accountant", {"steps": history})

Values are JSON (numbers, strings, lists, dicts): readable, diffable, and no
pickle from disk. Writes are atomic (temp file + fsync + rename), so a process
killed mid-write leaves the previous state intact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
