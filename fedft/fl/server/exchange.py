"""Sending a round's messages and collecting replies, stoppable between polls.

Flower's `Grid.send_and_receive` blocks until every reply is in or the timeout
passes. fedft polls with the Grid's own `push_messages`/`pull_messages` instead,
so that Ctrl-C or SIGTERM (a set `stop` event) ends the wait within a poll
interval rather than after `simulation.round_timeout`; otherwise it is the same.
"""

from __future__ import annotations

import threading
import time

from flwr.app import Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from fedft.fl.packing import pack_requests, unpack_reply

POLL_SECONDS = 0.02  # Flower's grid polls at 0.1 s; a round ends up to 0.1 s sooner (fedft.runtime.engine_patches dispatches at 0.02 s too)


class RunInterrupted(Exception):
    """The run was asked to stop (SIGINT/SIGTERM); completed rounds are all on disk.

    An Exception, not a BaseException, so Flower's ServerApp thread hands it to the
    main thread like any ServerApp error and shuts the simulation engine down."""


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise RunInterrupted("stopped by signal")


def send_and_receive(grid: Grid, messages: list[Message], timeout: float, stop: threading.Event | None = None) -> list[Message]:
    """Push `messages`; return the replies that arrive within `timeout` seconds."""
    check_stop(stop)
    if not messages:  # an empty cohort (Poisson sampling)
        return []
    waiting = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout
    replies: list[Message] = []
    while waiting:
        got = list(grid.pull_messages(waiting))
        replies.extend(got)
        waiting.difference_update(m.metadata.reply_to_message_id for m in got)
        if not waiting or time.monotonic() >= deadline:
            break
        check_stop(stop)
        time.sleep(POLL_SECONDS)
    check_stop(stop)
    return replies


def send_packed(grid: Grid, messages: list[Message], client_ids: list[int], size: int, timeout: float,
                stop: threading.Event | None = None) -> list[Message]:
    """`send_and_receive` with `size` clients per message (fedft.fl.packing): the replies
    come back one per client, as from that client's node; a packed message without a
    reply in time leaves all its clients without one (timed out)."""
    packed = pack_requests(messages, client_ids, size)
    replies = send_and_receive(grid, [msg for msg, _ in packed], timeout, stop)
    by_id = {msg.metadata.message_id: originals for msg, originals in packed}  # ids: set when pushed
    out: list[Message] = []
    for reply in replies:
        out.extend(unpack_reply(reply, by_id[reply.metadata.reply_to_message_id]))
    return out


def is_dropout(msg: Message) -> bool:
    """An error reply saying the node was unavailable (gone offline)."""
    return msg.has_error() and msg.error.code == ErrorCode.NODE_UNAVAILABLE
