"""The engine's queues: a finished simulation's threads stop waiting as soon as it stops."""

import queue
import threading
import time

import pytest

from fedft.runtime.engine_patches import StopAwareQueue


def test_items_come_out_as_from_a_plain_queue():
    q = StopAwareQueue(threading.Event())
    q.put("a")
    q.put("b")
    assert q.get(timeout=1.0) == "a" and q.get() == "b"
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_a_timed_wait_ends_once_stop_is_set_not_at_its_timeout():
    stop = threading.Event()
    q = StopAwareQueue(stop)
    waiting = threading.Event()
    outcome: list[str] = []

    def consumer() -> None:
        waiting.set()
        try:
            q.get(timeout=600.0)  # Flower's engine threads wait 1 s; a long timeout makes the point
            outcome.append("item")
        except queue.Empty:
            outcome.append("empty")

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    waiting.wait()
    started = time.monotonic()
    stop.set()
    thread.join(timeout=60)
    assert outcome == ["empty"] and time.monotonic() - started < 60


def test_an_item_put_during_a_wait_is_delivered():
    q = StopAwareQueue(threading.Event())
    threading.Timer(0.05, q.put, args=("late",)).start()
    assert q.get(timeout=600.0) == "late"
