"""Clients of different LoRA ranks (`lora.ranks`): each gets the global adapter at its own rank.

The server keeps one adapter at the largest rank, in FlexLoRA's SVD form (the
`flexlora` strategy writes it so). Before sending, each message's adapters are cut to
its client's rank (the first r components: FlexLoRA's redistribution); each reply is
zero-padded back to the server's rank with B rescaled, which leaves the client's update
(alpha / r) B A unchanged (`strategies.flexlora.to_rank`). Byte counts are taken on the
wire side of both steps. A reply whose adapters do not have its client's rank is left
as it came and fails the loop's schema check.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Array, ArrayRecord, Message, RecordDict

from fedft.fl import protocol as p
from strategies.flexlora import lora_pairs, to_rank


@dataclass(frozen=True)
class ClientRanks:
    ranks: tuple[int, ...]  # cycled over client ids

    @property
    def server_rank(self) -> int:
        return max(self.ranks)

    def rank_of(self, client_id: int) -> int:
        return self.ranks[client_id % len(self.ranks)]


def adapter_ranks(arrays: ArrayRecord) -> set[int]:
    """The ranks of the adapter pairs in `arrays` (B's columns and A's rows)."""
    found: set[int] = set()
    for key_b, key_a in lora_pairs(list(arrays.keys())):
        b, a = arrays[key_b].shape, arrays[key_a].shape
        found |= {b[-1] if len(b) == 2 else -1, a[0] if len(a) == 2 else -1}
    return found


def at_rank(arrays: ArrayRecord, rank: int) -> ArrayRecord:
    """`arrays` with every adapter pair moved to `rank`; other arrays as they are."""
    out = dict(arrays.items())
    for key_b, key_a in lora_pairs(list(arrays.keys())):
        b, a = to_rank(arrays[key_b].numpy(), arrays[key_a].numpy(), rank)
        out[key_b], out[key_a] = Array(b), Array(a)
    return ArrayRecord(out)


def _with_arrays(content: RecordDict, arrays: ArrayRecord) -> RecordDict:
    """A new content with `arrays` in place of the arrays (strategies share one content between messages)."""
    return RecordDict({**dict(content.items()), p.ARRAYS: arrays})


def send_at_client_ranks(messages: list[Message], client_of: dict[int, int], ranks: ClientRanks) -> None:
    """Give each train message its client's rank of the adapters (messages changed in place)."""
    for msg in messages:
        rank = ranks.rank_of(client_of[msg.metadata.dst_node_id])
        if rank != ranks.server_rank:
            msg.content = _with_arrays(msg.content, at_rank(msg.content.array_records[p.ARRAYS], rank))


def pad_replies(replies: list[Message], client_of: dict[int, int], ranks: ClientRanks) -> None:
    """Bring each reply's adapters back to the server's rank (in place)."""
    for msg in replies:
        rank = ranks.rank_of(client_of.get(msg.metadata.src_node_id, 0))
        arrays = msg.content.array_records.get(p.ARRAYS)
        if rank != ranks.server_rank and arrays is not None and adapter_ranks(arrays) == {rank}:
            msg.content = _with_arrays(msg.content, at_rank(arrays, ranks.server_rank))
