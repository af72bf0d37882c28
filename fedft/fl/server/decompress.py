"""Compressed replies (`compression.kind`) back to whole arrays, before the usual screening.

A reply's `compressed` record is decoded against the arrays the server sent that client
(`fedft.fl.compression.decode` checks every key, shape, dtype and index); a reply that
fails is rejected with the reason, the round goes on with the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import ArrayRecord, Message

from fedft.fl import compression
from fedft.fl import protocol as p

log = logging.getLogger("fedft")


def decode_replies(replies: list[Message], sent_to: Callable[[Message], ArrayRecord], kind: str, fraction: float,
                   describe: Callable[[Message], str], server_round: int) -> tuple[list[Message], list[tuple[Message, str]]]:
    """(replies with `arrays` rebuilt from `compressed`, [(rejected, reason)]). `sent_to(m)`:
    the arrays the server sent m's client this round; uncompressed replies pass as they are."""
    ok: list[Message] = []
    rejected: list[tuple[Message, str]] = []
    for msg in replies:
        if compression.COMPRESSED not in msg.content:
            ok.append(msg)
            continue
        base = sent_to(msg).to_torch_state_dict()
        other = msg.content.array_records.get(p.ARRAYS)
        plain = other.to_torch_state_dict() if other is not None else {}
        shapes = {k: tuple(v.shape) for k, v in base.items() if v.is_floating_point() and k not in plain}
        try:
            encoded = msg.content.array_records[compression.COMPRESSED].to_torch_state_dict()
            update = compression.decode(encoded, shapes, kind, fraction)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            reason = f"compressed update: {exc}"
            log.warning("round %d: dropped the reply from %s: %s", server_round, describe(msg), reason)
            rejected.append((msg, reason))
            continue
        del msg.content[compression.COMPRESSED]
        msg.content[p.ARRAYS] = ArrayRecord({**compression.restore(base, update), **plain})
        ok.append(msg)
    return ok, rejected
