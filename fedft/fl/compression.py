"""Compressed client updates: 8-bit quantisation and top-k sparsification, with error feedback.

A client sends `encode(update)` of its update u = trained - received (plus, with error
feedback, the residual e it kept: u' = u + e, e <- u' - decode(encode(u'))), in the
`compressed` record instead of `arrays`; the server decodes it against the arrays it
sent. Both are post-processing of the (DP) update, so they compose with DP unchanged.

int8: per tensor, scale s = max|u'| / 127 and q = floor(u'/s + U), U ~ Uniform[0, 1) (stochastic
rounding, so E[s q] = u'), clamped to [-127, 127]: 1 byte an entry plus a 4-byte scale.
topk: per tensor, the k = ceil(fraction n) entries of largest |u'|, as int64 index and
float32 value (12 bytes an entry); the rest is zero (Aji & Heafield 2017; with error
feedback, Stich et al. 2018).
"""

from __future__ import annotations

import math

import torch

COMPRESSED = "compressed"  # up: ArrayRecord of the encoded update, instead of `arrays`
RESIDUAL = "compression-residual"  # the client's error-feedback residual, in its Context.state
_Q, _SCALE, _INDEX, _VALUE = "|q", "|scale", "|index", "|value"


def topk_count(numel: int, fraction: float) -> int:
    return max(1, math.ceil(fraction * numel))


def encode(update: dict[str, torch.Tensor], kind: str, fraction: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The wire form of a float update (`kind` "int8" or "topk")."""
    out: dict[str, torch.Tensor] = {}
    for key, u in update.items():
        flat = u.detach().to(torch.float32).flatten()
        if kind == "int8":
            scale = flat.abs().max().clamp_min(1e-30) / 127.0
            noise = torch.rand(flat.shape, generator=generator, dtype=torch.float32)
            out[key + _Q] = torch.floor(flat / scale + noise).clamp_(-127, 127).to(torch.int8).reshape(u.shape)
            out[key + _SCALE] = scale.reshape(1)
        elif kind == "topk":
            index = torch.topk(flat.abs(), topk_count(flat.numel(), fraction), sorted=False).indices.sort().values
            out[key + _INDEX], out[key + _VALUE] = index.to(torch.int64), flat[index]
        else:
            raise ValueError(f"unknown compression kind {kind!r}")
    return out


def decode(encoded: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], kind: str, fraction: float) -> dict[str, torch.Tensor]:
    """The float32 update an encoded one stands for, for exactly the keys of `shapes`.
    A client reply is hostile until checked: wrong keys, shapes, dtypes, indices out of range
    or repeated, more than k entries, or non-finite values raise ValueError with what is wrong."""
    expected = {k + suffix for k in shapes for suffix in ((_Q, _SCALE) if kind == "int8" else (_INDEX, _VALUE))}
    if set(encoded) != expected:
        raise ValueError(f"compressed keys {sorted(set(encoded) ^ expected)[:3]} do not match the model's")
    out = {}
    for key, shape in shapes.items():
        numel = math.prod(shape)
        if kind == "int8":
            q, scale = encoded[key + _Q], encoded[key + _SCALE]
            if q.dtype != torch.int8 or tuple(q.shape) != tuple(shape) or scale.dtype != torch.float32 or scale.numel() != 1 or not torch.isfinite(scale).all():
                raise ValueError(f"'{key}': int8 entries of shape {tuple(shape)} and one finite float32 scale expected")
            out[key] = q.to(torch.float32) * scale.reshape(())
        else:
            index, value = encoded[key + _INDEX], encoded[key + _VALUE]
            k = topk_count(numel, fraction)
            if index.dtype != torch.int64 or value.dtype != torch.float32 or index.dim() != 1 or index.shape != value.shape or len(index) > k:
                raise ValueError(f"'{key}': at most {k} int64 indices and as many float32 values expected")
            if len(index) and (int(index.min()) < 0 or int(index.max()) >= numel or len(torch.unique(index)) != len(index) or not torch.isfinite(value).all()):
                raise ValueError(f"'{key}': indices must be distinct and in [0, {numel}), values finite")
            flat = torch.zeros(numel, dtype=torch.float32)
            flat[index] = value
            out[key] = flat.reshape(shape)
    return out


def encoded_bytes(shapes: dict[str, tuple[int, ...]], kind: str, fraction: float) -> int:
    """Bytes of the encoded update's arrays (what bytes_up counts for it), from shapes alone."""
    if kind == "int8":
        return sum(math.prod(s) + 4 for s in shapes.values())
    if kind == "topk":
        return sum(12 * topk_count(math.prod(s), fraction) for s in shapes.values())
    return sum(4 * math.prod(s) for s in shapes.values())


def compress(update: dict[str, torch.Tensor], residual: dict[str, torch.Tensor] | None, kind: str, fraction: float, error_feedback: bool,
             generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(wire form, new residual): with error feedback the residual is what this round's
    compression left out of update + residual, added back next round; else None."""
    corrected = {k: u.to(torch.float32) + (residual[k] if residual is not None and k in residual else 0.0) for k, u in update.items()}
    wire = encode(corrected, kind, fraction, generator)
    if not error_feedback:
        return wire, None
    sent = decode(wire, {k: tuple(v.shape) for k, v in corrected.items()}, kind, fraction)
    return wire, {k: corrected[k] - sent[k] for k in corrected}


def split_update(trained: dict[str, torch.Tensor], received: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(float updates trained - received, which compression encodes; the other arrays, sent as they are)."""
    floating = {k: v.to(torch.float32) - received[k].to(torch.float32) for k, v in trained.items() if v.is_floating_point() and k in received}
    return floating, {k: v for k, v in trained.items() if k not in floating}


def restore(base: dict[str, torch.Tensor], update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The arrays a decoded update stands for: what the server sent plus the update, in the sent dtypes."""
    return {k: (base[k].to(torch.float32) + update[k]).to(base[k].dtype) for k in update}
