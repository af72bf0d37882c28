"""Client state that must survive a resume: carried by the server's checkpoint.

In simulation a client's persistent state (a DP accountant's history, SCAFFOLD's
client control variate, ...) lives in its Flower `Context.state`, which lives in
the simulation engine and dies with the process. So, when `checkpoint.client_state`
is on, each client returns every record of its `Context.state` with its training
reply, under keys `client-state:<name>`; the server strips them off before the
strategy sees the reply (Flower strategies expect one ArrayRecord and one
MetricRecord), keeps the latest per client id, and writes them into
`checkpoint.pt`. After a resume, the server sends each client its saved records
with its training messages until a successful reply comes back, and the client puts them back into
its `Context.state` before it does anything else.

Not restored: state a client changed in a round whose reply never reached the
server (a straggler past the timeout, a crash), because the server never saw it.
They are bytes a client sends, so `bytes_up` counts them (`state_bytes`). A client
chooses what it sends, so the server keeps a client's records only if each is a
Flower record and all together stay within `max_bytes` (`collect`); otherwise it
drops them and logs why. In a real deployment clients keep their own state on their
own disk: `fedft server`/`launch` set `checkpoint.client_state = false` unless the
config sets it, and a deployed node discards any `client-state:` records it is sent
(`discard`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedft.fl import protocol as p
from fedft.state import snapshot

PREFIX = p.CLIENT_STATE
log = logging.getLogger("fedft")


# ---- client side (ClientApp)

def restore_into_context(msg: Message, context: Context) -> None:
    """Move `client-state:*` records the server sent back into `context.state`."""
    for key in [k for k in msg.content.keys() if k.startswith(PREFIX)]:
        context.state[key[len(PREFIX):]] = msg.content[key]
        del msg.content[key]


def discard(msg: Message) -> None:
    """Drop `client-state:*` records unread: a deployed node takes no state from the server."""
    for key in [k for k in msg.content.keys() if k.startswith(PREFIX)]:
        del msg.content[key]


def attach_to_reply(content: RecordDict, context: Context) -> None:
    """Add every record of `context.state` to a reply's content."""
    for key, record in context.state.items():
        content[PREFIX + key] = record


# ---- server side (round loop)

class ClientStateStore:
    """The latest reported state of each client id, and who still needs theirs back."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, Any]] = {}  # client id -> {record name: record}
        self.pending: set[int] = set()  # restored from a checkpoint, not yet sent back

    def collect(self, replies: Iterable[Message], client_of_node: dict[int, int], max_bytes: int = 2**62) -> None:
        """Strip `client-state:*` records from successful replies; keep them if they pass
        `check_state` (Flower records, at most `max_bytes` in all), else log and drop them."""
        for msg in replies:
            if msg.has_error():
                continue
            keys = [k for k in msg.content.keys() if k.startswith(PREFIX)]
            if not keys:
                continue
            client = client_of_node[msg.metadata.src_node_id]
            records = {k[len(PREFIX):]: msg.content[k] for k in keys}
            for k in keys:
                del msg.content[k]
            if (reason := check_state(records, max_bytes)) is not None:
                log.warning("client %s (node %s): its client-state records are not kept: %s", client, msg.metadata.src_node_id, reason)
                continue
            self.states[client] = records
            self.pending.discard(client)

    def attach(self, messages: Iterable[Message], client_of_node: dict[int, int], every_client: bool = False) -> None:
        """Give each client whose state came from a checkpoint its records back, until a
        successful reply shows it has them (a crashed call does not update a Context);
        `every_client` (packed training, fedft.fl.packing): every client its latest state,
        every round. A strategy may give all its messages one content object, so a message
        that gets records gets a content of its own."""
        for msg in messages:
            client = client_of_node.get(msg.metadata.dst_node_id)
            if client in self.states and (every_client or client in self.pending):
                own = {PREFIX + name: record for name, record in self.states[client].items()}
                msg.content = RecordDict({**dict(msg.content.items()), **own})

    def to_plain(self) -> list[list[Any]]:
        return [[cid, {name: snapshot.encode(rec) for name, rec in recs.items()}] for cid, recs in sorted(self.states.items())]

    def load_plain(self, data: list[list[Any]]) -> None:
        self.states = {int(cid): {name: snapshot.decode(rec) for name, rec in recs.items()} for cid, recs in data}
        self.pending = set(self.states)


_RECORD_TYPES = (ArrayRecord, ConfigRecord, MetricRecord)


def check_state(records: dict[str, Any], max_bytes: int) -> str | None:
    """Why a client's state records must not be kept, or None if they may."""
    for name, record in records.items():
        if not isinstance(record, _RECORD_TYPES):
            return f"'{name}' is a {type(record).__name__}, not a Flower record"
    size = sum(record.count_bytes() for record in records.values())
    return f"{size} bytes, more than the limit of {max_bytes}" if size > max_bytes else None


DEVICE_ONLY = (PREFIX + "compression-residual",)  # state a deployed client never sends: it travels in simulation only to be checkpointed


def state_bytes(msg: Message) -> int:
    """Bytes of the `client-state:*` records a reply carries (counted in `bytes_up`), except
    `DEVICE_ONLY` ones (compression's error-feedback residual, fedft.fl.compression)."""
    return 0 if msg.has_error() else sum(msg.content[k].count_bytes() for k in msg.content.keys() if k.startswith(PREFIX) and k not in DEVICE_ONLY)


def strip(replies: Iterable[Message]) -> None:
    """Drop `client-state:*` records from replies when nobody keeps them (checkpointing
    of client state off), so they never reach validation or aggregation."""
    for msg in replies:
        if msg.has_error():
            continue
        for key in [k for k in msg.content.keys() if k.startswith(PREFIX)]:
            del msg.content[key]
