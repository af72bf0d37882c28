"""State as plain data that `torch.load(weights_only=True)` reads back bit-exact.

Checkpoints hold only tensors, numbers, strings, bytes, lists and dicts, so loading
one never runs pickled code. `encode` turns the values strategies and clients keep
(NumPy arrays and scalars, Flower records, tuples) into that form with a small type
tag, and `decode` rebuilds the same types with the same dtypes and bits.

`snapshot_object` / `restore_object` apply this to an object's attributes: that is
how any Flower strategy's state (FedOpt's `m_t`, `v_t`, FedAvgM's
`momentum_vector`, an adaptive clipping norm, a wrapped inner strategy) is kept
without strategy-specific code. Attributes that cannot be encoded (functions,
locks, loggers) are configuration rebuilt from the config, and are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy import Strategy

TAG = "__fedft__"  # key of a tagged value: {TAG: kind, "value": ...}


class Unencodable(TypeError):
    """A value with no plain form (e.g. a function); callers skip it."""


def _tagged(kind: str, value: Any) -> dict[str, Any]:
    return {TAG: kind, "value": value}


def encode(value: Any) -> Any:
    """A plain, weights_only-loadable form of `value` (raises Unencodable)."""
    if value is None or isinstance(value, (bool, int, str, bytes)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float) and not isinstance(value, np.generic):
        return value
    if isinstance(value, np.generic):
        return _tagged("np_scalar", _tensor_of(np.asarray(value)))
    if isinstance(value, np.ndarray):
        return _tagged("ndarray", _tensor_of(value))
    if isinstance(value, torch.Tensor):
        return _tagged("tensor", value.detach().cpu().clone())
    if isinstance(value, ArrayRecord):
        return _tagged("array_record", {k: _tensor_of(v.numpy()) for k, v in value.items()})
    if isinstance(value, ConfigRecord):
        return _tagged("config_record", {k: encode(v) for k, v in value.items()})
    if isinstance(value, MetricRecord):
        return _tagged("metric_record", {k: encode(v) for k, v in value.items()})
    if isinstance(value, Strategy):
        return _tagged("object", snapshot_object(value))
    if isinstance(value, (list, tuple)):
        return _tagged("list" if isinstance(value, list) else "tuple", [encode(v) for v in value])
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise Unencodable(f"dict with keys of type {sorted({type(k).__name__ for k in value})}")
        return _tagged("dict", [[k, encode(v)] for k, v in value.items()])
    raise Unencodable(type(value).__name__)


def _tensor_of(array: np.ndarray) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(array, copy=True))
    except TypeError as exc:  # object or string arrays
        raise Unencodable(f"array of dtype {array.dtype}") from exc


def decode(data: Any) -> Any:
    """Inverse of `encode` (objects come back as their attribute dict; see restore_object)."""
    if not (isinstance(data, dict) and TAG in data):
        return data
    kind, value = data[TAG], data["value"]
    if kind == "np_scalar":
        return value.numpy()[()]
    if kind == "ndarray":
        return value.numpy()
    if kind == "tensor":
        return value.clone()
    if kind == "array_record":
        return ArrayRecord({k: Array(v.numpy()) for k, v in value.items()})
    if kind == "config_record":
        return ConfigRecord({k: decode(v) for k, v in value.items()})
    if kind == "metric_record":
        return MetricRecord({k: decode(v) for k, v in value.items()})
    if kind in ("list", "tuple"):
        items = [decode(v) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: decode(v) for k, v in value}
    if kind == "object":
        return value
    raise ValueError(f"unknown tag {kind!r}")


def snapshot_object(obj: Any) -> dict[str, Any]:
    """Every encodable attribute of `obj` (nested strategies included), as plain data."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        try:
            out[name] = encode(value)
        except Unencodable:
            continue
    return out


def _same_kind(saved: Any, live: Any) -> bool:
    """May `saved` replace `live`? The same type; any real number for a number (a clipping
    norm starts as a float and becomes a NumPy float); anything for None (state a fresh
    strategy has not computed yet, e.g. FedOpt's moments)."""
    if live is None or type(saved) is type(live):
        return True
    def number(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    return number(saved) and number(live)


def restore_object(obj: Any, saved: dict[str, Any]) -> None:
    """Set the attributes saved by `snapshot_object` on a freshly built `obj`; each must
    exist on `obj` with a value of the same kind (`_same_kind`), so a crafted checkpoint
    cannot add attributes or turn a number into a string or a list."""
    live_attrs = vars(obj)
    for name, data in saved.items():
        if name not in live_attrs:
            raise ValueError(f"saved state has an attribute '{name}' that {type(obj).__name__} does not have")
        if isinstance(data, dict) and data.get(TAG) == "object":
            inner = live_attrs[name]
            if inner is None or isinstance(inner, (bool, int, float, str, bytes, list, tuple, dict, np.ndarray)):
                raise ValueError(f"saved state has a nested object '{name}' that {type(obj).__name__} does not have")
            restore_object(inner, data["value"])
            continue
        value = decode(data)
        if not _same_kind(value, live_attrs[name]):
            raise ValueError(f"saved '{type(obj).__name__}.{name}' is a {type(value).__name__}, the live strategy's is a {type(live_attrs[name]).__name__}")
        setattr(obj, name, value)
