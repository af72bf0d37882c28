"""Where a deployed client's examples come from: its partition, or its own file.

Node config (set with `flower-supernode --node-config` or `fedft client`):

- `partition-id`, `num-partitions`: this node is client `partition-id` of
  `num-partitions` (must equal the run's `partition.num_clients`); without
  `data-path` it loads the same shard a simulation would give that client;
- `data-path`: an `.npz` with `x` (one example per row, shaped like the run's
  dataset: float images, e.g. N x 1 x 28 x 28, or int64 token ids N x T for text)
  and `y` (integer labels, N or N x T): truly private
  data that only this node ever reads; `partition-id` is then only the client's
  id for sampling;
- `state-dir`: the node's own folder (see `fedft.state.node_store`); the shard
  is cached there, so rounds after the first skip loading and partitioning.

In a simulation none of `data-path`/`state-dir` is set and `node_tensors`
returns None: the caller uses `fedft.fl.context.RunContext.client_tensors` as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedft.errors import FedftError
from fedft.fl import protocol as p
from fedft.fl.client.npz import read_npz
from fedft.fl.context import ClientTensors, client_tensors, run_context
from fedft.ml.data.partition import split_train_val
from fedft.ml.models import build_model, model_options
from fedft.state import atomic
from fedft.state.node_store import STATE_DIR

DATA_PATH = "data-path"


def num_classes_of(state: Mapping[str, torch.Tensor]) -> int:
    """Classes of a classifier state: the size of its output bias (`head.bias` in
    every fedft model; otherwise the last 1-D tensor)."""
    if "head.bias" in state:
        return int(state["head.bias"].shape[0])
    return int([v for v in state.values() if v.ndim == 1][-1].shape[0])


def _check_partitions(node_config: Mapping[str, Any], num_clients: int) -> None:
    n = node_config.get(p.NUM_PARTITIONS)
    if n is not None and int(n) != num_clients:
        raise FedftError("num-partitions", f"this node says {n}, the run has partition.num_clients={num_clients}.", f"start the node with num-partitions={num_clients}.")


def load_private(path: str | Path, val_fraction: float, seed: int, client_id: int, model_name: str, global_state: Mapping[str, torch.Tensor],
                 model_kwargs: Mapping[str, Any] | None = None) -> ClientTensors:
    """Read and check a node's own `.npz`, then split it like any client shard."""
    x, y = read_npz(path)
    x = x.astype(np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32)  # token ids stay integers
    num_classes = num_classes_of(global_state)
    if x.ndim < 2 or len(x) != len(y) or len(y) == 0:
        raise FedftError("--data", f"x has shape {x.shape} and y {y.shape}: need N examples of each, N > 0.", "store one example per row of x and one label per entry of y.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise FedftError("--data", f"labels must be integers in 0..{num_classes - 1} (got {y.dtype}, {y.min()}..{y.max()}).", "map labels to the run's class ids.")
    try:
        build_model(model_name, tuple(x.shape[1:]), num_classes, **dict(model_kwargs or {})).load_state_dict(dict(global_state))
    except (RuntimeError, ValueError) as exc:
        raise FedftError("--data", f"examples shaped {tuple(x.shape[1:])} do not fit the run's model '{model_name}' ({str(exc).splitlines()[0]}).", "store examples shaped like the run's dataset, e.g. 1 x 28 x 28.") from None
    train, val = split_train_val(np.arange(len(y)), val_fraction, seed, client_id)
    as_t = torch.from_numpy
    return as_t(x[train]), as_t(y[train].astype(np.int64)), as_t(x[val]), as_t(y[val].astype(np.int64)), num_classes


def _shard_key(config_json: str, client_id: int) -> str:
    raw = json.loads(config_json)
    what = {k: raw.get(k) for k in ("seed", "data", "partition")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16] + f"-client{client_id}"


def cached_shard(folder: str | Path, config_json: str, client_id: int) -> ClientTensors:
    """This client's partition, from `folder` if cached there, else computed and saved."""
    path = Path(folder).expanduser() / f"shard-{_shard_key(config_json, client_id)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return (torch.from_numpy(f["x_train"]), torch.from_numpy(f["y_train"]), torch.from_numpy(f["x_val"]),
                    torch.from_numpy(f["y_val"]), int(f["num_classes"]))
    tensors = client_tensors(config_json, client_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda f: np.savez(f, x_train=tensors[0].numpy(), y_train=tensors[1].numpy(), x_val=tensors[2].numpy(), y_val=tensors[3].numpy(), num_classes=tensors[4]))
    return tensors


def node_tensors(node_config: Mapping[str, Any], config_json: str, client_id: int, global_state: Mapping[str, torch.Tensor]) -> ClientTensors | None:
    """This node's (x_train, y_train, x_val, y_val, num_classes), or None in a simulation."""
    data_path = str(node_config.get(DATA_PATH, "") or "")
    state_dir = str(node_config.get(STATE_DIR, "") or "")
    if not data_path and not state_dir:
        return None
    cfg = run_context(config_json).cfg
    _check_partitions(node_config, cfg.partition.num_clients)
    if data_path:
        return load_private(data_path, cfg.data.val_fraction, cfg.seed, client_id, cfg.model.name, global_state, model_options(cfg.model))
    return cached_shard(state_dir, config_json, client_id)
