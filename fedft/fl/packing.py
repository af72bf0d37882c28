"""Many clients per worker call (`simulation.clients_per_call`): the wire format.

In simulation every sampled client is one Flower message and one worker call, which
costs milliseconds of engine work for clients whose training takes one. Packing puts
the training messages of several clients into one message of type `train.packed` for
one node; that worker trains the clients one after another, each through the same
ClientApp `train` function (mods included) with a Context of its own, and replies with
one message holding every client's reply. The server unpacks it into one reply per
client, addressed as if from that client's node, so everything after the exchange
(validation, norm bounds, aggregation, DP accounting, faults, logs) stays per client.

Request: records identical (the same object) in every client's message travel once
under their own key; the rest under `#<id>/<key>`; `pack` holds the client ids
in order. Reply: `#<id>/<key>` for each client's reply records, and a
`#<id>/error` ConfigRecord (`code`, `reason`) for a client whose call failed.

A client's persistent state cannot live in the node's Context (another node may train
it next round), so under packing it always travels with the message, as after a resume
(`fedft.state.client_records`): the server sends each client its latest state and the
reply carries it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flwr.app import ConfigRecord, Error, Message, RecordDict

PACKED_TRAIN = "train.packed"  # message type: ClientApp `@app.train("packed")`
PACK = "pack"  # ConfigRecord: `clients`, the client ids in the message, in order
CLIENTS = "clients"
ERROR = "error"  # per-client ConfigRecord in a reply: `code` and `reason`
AUTO_MIN_COHORT = 64  # clients_per_call = 0 (auto) packs from this many clients per round up
CALLS_PER_WORKER = 4  # auto: about this many calls per worker and round, for load balance


def client_key(client_id: int, key: str) -> str:
    return f"#{client_id}/{key}"


def pack_size(cohort: int, clients_per_call: int, workers: int) -> int:
    """Clients per message this round: `clients_per_call` when set (>= 1), else (0, auto)
    ceil(cohort / (workers x CALLS_PER_WORKER)): each worker gets a few calls, enough to
    balance uneven clients, few enough that per-call costs stop mattering."""
    if clients_per_call >= 1:
        return clients_per_call
    return max(1, math.ceil(cohort / (max(1, workers) * CALLS_PER_WORKER)))


def packs_run(clients_per_round: int, clients_per_call: int, straggler_probability: float) -> bool:
    """Whether a run packs: decided once per run, because under packing client state lives
    with the server. Auto packs large cohorts only, and not with injected stragglers
    (a straggler delays every client of its message)."""
    if clients_per_call >= 1:
        return clients_per_call > 1
    return clients_per_round >= AUTO_MIN_COHORT and straggler_probability == 0.0


def pack_requests(messages: Sequence[Message], client_ids: Sequence[int], size: int) -> list[tuple[Message, dict[int, Message]]]:
    """Group per-client training messages (in order) into messages of at most `size`
    clients, each sent to its first client's node: [(packed message, {client id: its own message})]."""
    packed = []
    for start in range(0, len(messages), size):
        group, ids = list(messages[start:start + size]), [int(c) for c in client_ids[start:start + size]]
        shared = {k: v for k, v in group[0].content.items() if all(k in m.content and m.content[k] is v for m in group)}
        content = RecordDict({PACK: ConfigRecord({CLIENTS: ids}), **shared})
        for cid, msg in zip(ids, group):
            for key, record in msg.content.items():
                if key not in shared:
                    content[client_key(cid, key)] = record
        packed.append((Message(content, dst_node_id=group[0].metadata.dst_node_id, message_type=PACKED_TRAIN), dict(zip(ids, group))))
    return packed


def unpack_request(content: RecordDict) -> list[tuple[int, RecordDict]]:
    """The ClientApp's side: [(client id, the content that client's own message had)]."""
    ids = [int(c) for c in content.config_records[PACK][CLIENTS]]  # type: ignore[union-attr]
    shared = {k: v for k, v in content.items() if k != PACK and not k.startswith("#")}
    out = []
    for cid in ids:
        prefix = client_key(cid, "")
        own = {k[len(prefix):]: v for k, v in content.items() if k.startswith(prefix)}
        out.append((cid, RecordDict({**shared, **own})))
    return out


def pack_replies(replies: Sequence[tuple[int, Message]]) -> RecordDict:
    """The ClientApp's side: one content holding each client's reply (or its error)."""
    content = RecordDict()
    for cid, reply in replies:
        if reply.has_error():
            content[client_key(cid, ERROR)] = ConfigRecord({"code": int(reply.error.code), "reason": str(reply.error.reason or "")})
        else:
            for key, record in reply.content.items():
                content[client_key(cid, key)] = record
    return content


def unpack_reply(reply: Message, originals: dict[int, Message]) -> list[Message]:
    """The server's side: one reply per client of a packed message, as if each came from
    that client's own node (`reply_to` its original message). A failed packed call fails
    every client in it; a client missing from the reply failed too."""
    if reply.has_error():
        return [Message(Error(code=reply.error.code, reason=reply.error.reason), reply_to=msg) for msg in originals.values()]
    out = []
    for cid, msg in originals.items():
        prefix = client_key(cid, "")
        own = {k[len(prefix):]: v for k, v in reply.content.items() if k.startswith(prefix)}
        error = own.get(ERROR)
        if isinstance(error, ConfigRecord):
            out.append(Message(Error(code=int(error.get("code", 0)), reason=str(error.get("reason", ""))), reply_to=msg))  # type: ignore[arg-type]
        elif not own:
            out.append(Message(Error(code=0, reason=f"the packed reply holds nothing for client {cid}"), reply_to=msg))
        else:
            out.append(Message(RecordDict(own), reply_to=msg))
    return out
