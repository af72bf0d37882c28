"""Reply validation before aggregation, the same for every strategy.

A training reply must carry exactly the ArrayRecords the strategy expects
(`arrays`, plus `scaffold-dc` for SCAFFOLD), each with the global model's keys,
shapes and dtypes and only finite values, and one MetricRecord `metrics` with a
finite `num-examples` > 0 and finite metrics whose keys agree with the round's
other replies (Flower's strategies stop the whole round on a mismatch). A reply
that fails is dropped before the strategy sees it, with a logged reason naming
the node and client; the round goes on with the rest.

Then every accepted reply is bounded (`bound_replies`), so no single client steers
the aggregate: its `num-examples` is capped at what the server knows of that client
(its partition's training-set size), and its update's L2 distance from the global
model is bounded (`strategy.max_update_norm`, `strategy.max_update_norm_median`),
by clipping or rejecting it (`strategy.update_norm_action`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

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


# ---- bounded updates: one client cannot steer the aggregate

@dataclass(frozen=True)
class UpdateBounds:
    """The bounds a round applies to each accepted reply (plain values from [strategy])."""

    max_norm: float = 0.0  # absolute L2 bound on ||y - x||; 0 = none
    median_factor: float = 0.0  # bound = factor * the round's lower-median update norm; 0 = none
    action: Literal["clip", "reject"] = "clip"
    example_caps: tuple[int, ...] = ()  # client id -> largest num-examples it may claim; () = no cap


def update_norm(local: dict[str, np.ndarray], global_: dict[str, np.ndarray]) -> float:
    """||y - x||_2 over the floating-point arrays, computed in float64: values near
    float32's maximum (3e38) square to 9e76, far inside float64's range, so the norm
    of a huge update is a large finite number, never inf. Integer buffers do not count."""
    total = 0.0
    for key, y in local.items():
        if np.issubdtype(y.dtype, np.inexact):
            d = y.astype(np.float64) - np.asarray(global_[key], dtype=np.float64)
            total += float(np.dot(d.ravel(), d.ravel()))
    return float(np.sqrt(total))


def norm_bound(norms: Sequence[float], max_norm: float, median_factor: float) -> float | None:
    """The round's bound B = min(max_norm, median_factor * lower median of `norms`), each
    term only when its setting is > 0; None = unbounded. The lower median (the
    ceil(n/2)-th smallest) is an honest client's norm whenever fewer than half the
    replies are attackers, also for n = 2, where the mean of the middle two is not."""
    bounds = [max_norm] if max_norm > 0 else []
    if median_factor > 0 and norms:
        bounds.append(median_factor * sorted(norms)[(len(norms) - 1) // 2])
    return min(bounds) if bounds else None


def clip_update(local: dict[str, np.ndarray], global_: dict[str, np.ndarray], bound: float, norm: float) -> dict[str, np.ndarray]:
    """x + (y - x) * min(1, B / ||y - x||) per floating-point array (computed in float64,
    returned in each array's dtype); integer arrays as sent. Its norm is min(norm, B)."""
    scale = 1.0 if norm <= bound else bound / norm
    out = {}
    for key, y in local.items():
        if np.issubdtype(y.dtype, np.inexact) and scale < 1.0:
            x = np.asarray(global_[key], dtype=np.float64)
            out[key] = (x + (y.astype(np.float64) - x) * scale).astype(y.dtype)
        else:
            out[key] = y
    return out


def bound_replies(
    replies: Sequence[Message],
    global_arrays: ArrayRecord,
    bounds: UpdateBounds,
    client_of: dict[int, int],
    describe: Callable[[Message], str] = lambda m: f"node {m.metadata.src_node_id}",
    server_round: int = 0,
) -> tuple[list[Message], list[tuple[Message, str]], dict[str, int]]:
    """Cap each reply's `num-examples` and bound its update's norm, in place; return
    (kept, [(rejected, reason)], {"clients_capped": .., "clients_clipped": ..}).
    Replies must have passed `screen_replies` (keys, shapes, dtypes, finite values)."""
    counts = {"clients_capped": 0, "clients_clipped": 0}
    caps = bounds.example_caps
    for msg in replies:
        client = client_of.get(msg.metadata.src_node_id, -1)
        metrics = msg.content.metric_records[p.METRICS]
        weight = float(p.number(metrics, p.NUM_EXAMPLES))
        if 0 <= client < len(caps) and (cap := caps[client]) < weight:
            metrics[p.NUM_EXAMPLES] = float(cap)
            counts["clients_capped"] += 1
            log.warning("round %d: %s claimed num-examples %g, capped at its %d", server_round, describe(msg), weight, cap)
    if bounds.max_norm <= 0 and bounds.median_factor <= 0:
        return list(replies), [], counts
    global_np = {k: a.numpy() for k, a in global_arrays.items()}
    locals_ = [{k: a.numpy() for k, a in m.content.array_records[p.ARRAYS].items()} for m in replies]
    norms = [update_norm(y, global_np) for y in locals_]
    bound = norm_bound(norms, bounds.max_norm, bounds.median_factor)
    kept: list[Message] = []
    rejected: list[tuple[Message, str]] = []
    for msg, local, norm in zip(replies, locals_, norms):
        if bound is None or norm <= bound:
            kept.append(msg)
        elif bounds.action == "reject":
            rejected.append((msg, f"update norm {norm:.4g} exceeds the bound {bound:.4g}"))
            log.warning("round %d: dropped the reply from %s: update norm %.4g exceeds the bound %.4g", server_round, describe(msg), norm, bound)
        else:
            msg.content[p.ARRAYS] = ArrayRecord({k: Array(v) for k, v in clip_update(local, global_np, bound, norm).items()})
            counts["clients_clipped"] += 1
            kept.append(msg)
            log.warning("round %d: clipped the update from %s: norm %.4g -> %.4g", server_round, describe(msg), norm, bound)
    return kept, rejected, counts
