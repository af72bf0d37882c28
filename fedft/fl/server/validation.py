"""Reply validation before aggregation, the same for every strategy.

A training reply must carry exactly the ArrayRecords the strategy expects
(`arrays`, plus `scaffold-dc` for SCAFFOLD), each with the global model's keys,
shapes and dtypes and only finite values, and one MetricRecord `metrics` with a
finite `num-examples` > 0 and finite metrics whose keys agree with the round's
other replies (Flower's strategies stop the whole round on a mismatch). A reply
that fails is dropped before the strategy sees it, with a logged reason naming
the node and client; the round goes on with the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord

from fedft.fl import protocol as p

log = logging.getLogger("fedft")


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str


Schema = dict[str, ArraySpec]


def schema_of(arrays: ArrayRecord) -> Schema:
    """Keys, shapes and dtypes of the global model: what every reply must match."""
    return {k: ArraySpec(tuple(a.shape), str(a.dtype)) for k, a in arrays.items()}


def _check_arrays(record: object, schema: Schema, name: str) -> str | None:
    if not isinstance(record, ArrayRecord):
        return f"'{name}' is not an ArrayRecord"
    missing, extra = [k for k in schema if k not in record], [k for k in record if k not in schema]
    if missing or extra:
        return f"'{name}' has wrong keys (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, spec in schema.items():
        array = record[key]
        if tuple(array.shape) != spec.shape:
            return f"{name}['{key}'] has shape {tuple(array.shape)}, the global model has {spec.shape}"
        if str(array.dtype) != spec.dtype:
            return f"{name}['{key}'] has dtype {array.dtype}, the global model has {spec.dtype}"
        try:
            values = array.numpy()
        except Exception as exc:  # noqa: BLE001  (a malformed payload must not stop the round)
            return f"{name}['{key}'] cannot be read ({exc})"
        if values.shape != spec.shape or str(values.dtype) != spec.dtype:
            return f"{name}['{key}'] holds {values.dtype}{values.shape}, not what its header says"
        if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
            return f"{name}['{key}'] contains NaN or Inf"
    return None


def _finite(value: object) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, (int, float)) and np.isfinite(v) for v in values)


def check_reply(msg: Message, schema: Schema, array_records: Sequence[str] = (p.ARRAYS,)) -> str | None:
    """Why this (error-free) training reply must not be aggregated, or None if it may."""
    content = msg.content
    got = sorted(content.array_records)
    if got != sorted(array_records):
        return f"carries ArrayRecords {got}, expected {sorted(array_records)}"
    for name in array_records:
        if (reason := _check_arrays(content[name], schema, name)) is not None:
            return reason
    metrics = content.get(p.METRICS)
    if sorted(content.metric_records) != [p.METRICS] or not isinstance(metrics, MetricRecord):
        return f"carries MetricRecords {sorted(content.metric_records)}, expected ['{p.METRICS}']"
    weight = metrics.get(p.NUM_EXAMPLES)
    if not isinstance(weight, (int, float)) or not _finite(weight) or weight <= 0:  # a list or None is not a weight
        return f"'{p.NUM_EXAMPLES}' is {weight!r}, not a finite number > 0"
    for key, value in metrics.items():
        if not _finite(value):
            return f"metric '{key}' is {value!r}, not finite"
    return None


def screen_replies(
    replies: Sequence[Message],
    schema: Schema,
    array_records: Sequence[str] = (p.ARRAYS,),
    describe: Callable[[Message], str] = lambda m: f"node {m.metadata.src_node_id}",
    server_round: int = 0,
) -> tuple[list[Message], list[tuple[Message, str]]]:
    """Split error-free replies into (accepted, [(rejected, reason)]) and log each rejection."""
    accepted: list[Message] = []
    rejected: list[tuple[Message, str]] = []
    for msg in replies:
        reason = check_reply(msg, schema, array_records)
        (accepted.append(msg) if reason is None else rejected.append((msg, reason)))
    if accepted:  # metric keys must agree across replies; the most common set wins (earliest on ties)
        key_sets = [frozenset(m.content[p.METRICS].keys()) for m in accepted]
        counts = Counter(key_sets)
        majority = max(key_sets, key=lambda s: (counts[s], -key_sets.index(s)))
        rejected += [(m, f"metric keys {sorted(k)} differ from the other replies' {sorted(majority)}") for m, k in zip(accepted, key_sets) if k != majority]
        accepted = [m for m, k in zip(accepted, key_sets) if k == majority]
    for msg, reason in rejected:
        log.warning("round %d: dropped the reply from %s: %s", server_round, describe(msg), reason)
    return accepted, rejected


def conform(arrays: ArrayRecord, schema: Schema) -> ArrayRecord:
    """The aggregate in the global model's dtypes (FedAdam & co. compute in float64),
    so the model never changes type or size between rounds."""
    if list(arrays.keys()) != list(schema) and sorted(arrays.keys()) != sorted(schema):
        raise RuntimeError(f"the strategy returned keys {list(arrays.keys())[:5]}..., not the model's")
    out = ArrayRecord()
    for key, spec in schema.items():
        array = arrays[key]
        if tuple(array.shape) != spec.shape:
            raise RuntimeError(f"the strategy returned '{key}' with shape {tuple(array.shape)}, not {spec.shape}")
        out[key] = array if str(array.dtype) == spec.dtype else Array(np.asarray(array.numpy(), dtype=spec.dtype))
    return out
