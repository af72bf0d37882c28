"""Name the clients (and their nodes) that failed or did not reply in a round.

`metrics.csv` counts them (`clients_failed`, `clients_timed_out`); this log says
which ones, through Flower's logger, so it reaches `flwr run --stream`, the
SuperLink log and `fedft launch`'s logs/run.log alike.
"""

from __future__ import annotations

from logging import WARNING

from flwr.app import Message
from flwr.common.logger import log


def round_failures(messages: list[Message], replies: list[Message], client_of: dict[int, int]) -> list[str]:
    """One line per sampled client without a good reply: failed (with Flower's reason) or no reply."""
    lines = []
    replied = {m.metadata.src_node_id: m for m in replies}
    for msg in sorted(messages, key=lambda m: client_of.get(m.metadata.dst_node_id, -1)):
        node = msg.metadata.dst_node_id
        client = client_of.get(node, "?")
        reply = replied.get(node)
        if reply is None:
            lines.append(f"client {client} (node {node}) did not reply in time")
        elif reply.has_error():
            lines.append(f"client {client} (node {node}) failed: {reply.error.reason}".strip())
    return lines


def log_round_failures(server_round: int, messages: list[Message], replies: list[Message], client_of: dict[int, int]) -> None:
    for line in round_failures(messages, replies, client_of):
        log(WARNING, "round %s: %s", server_round, line)


def first_error(failed: list[Message], client_of: dict[int, int]) -> str:
    """The first failed reply of a round, as one line (a traceback's last line is its message)."""
    first = min(failed, key=lambda m: client_of.get(m.metadata.src_node_id, -1))
    node = first.metadata.src_node_id
    lines = [line.strip() for line in (first.error.reason or "").strip().splitlines() if line.strip()]
    reason = " ".join(" ".join(lines[-1:]).split())[:300] if lines else f"error code {first.error.code}"
    return f"client {client_of.get(node, '?')} (node {node}) failed: {reason}"
