"""Build Flower Messages in tests without a running SuperLink (explicit metadata)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict


def _metadata(src_node_id: int, dst_node_id: int) -> Metadata:
    return Metadata(run_id=1, message_id=f"m{src_node_id}-{dst_node_id}", src_node_id=src_node_id, dst_node_id=dst_node_id,
                    reply_to_message_id="", group_id="", created_at=0.0, ttl=1e9, message_type="train")


def array_record(layers: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in layers.items()})


def train_reply(layers: dict[str, np.ndarray], num_examples: float = 10.0, node_id: int = 1, extra_arrays: dict | None = None, metrics: dict | None = None) -> Message:
    """A client's reply to a train message: `arrays`, `metrics` (+ extra ArrayRecords)."""
    content = RecordDict({"arrays": array_record(layers), "metrics": MetricRecord({"num-examples": num_examples, "train_loss": 1.0, **(metrics or {})})})
    for name, record in (extra_arrays or {}).items():
        content[name] = array_record(record)
    return Message(content, metadata=_metadata(node_id, 0))


def train_instruction(content: RecordDict, node_id: int = 7) -> Message:
    """A server -> node train message, as a ClientApp receives it."""
    return Message(content, metadata=_metadata(0, node_id))


@contextmanager
def server_identity() -> Iterator[None]:
    """What a ServerApp process has set when a strategy builds messages (restored after)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class FakeGrid:
    """The one thing strategies ask a grid for in configure_train."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


__all__ = ["array_record", "train_reply", "train_instruction", "ConfigRecord", "RecordDict"]
