"""Ctrl-C and SIGTERM during a run: stop between polls, keep every completed round.

The first SIGINT or SIGTERM sets a stop event that the round loop checks while it
waits for replies and between rounds; the loop then raises `RunInterrupted`, the
simulation engine shuts Ray down, and `fedft.jobs.run.run` writes `summary.json` with
`"status": "interrupted"` and the resume command. A second signal raises
KeyboardInterrupt at once (the results folder is still consistent: every file is
written atomically, and `checkpoint.pt` always describes a completed round).

`ray.init` installs its own SIGTERM handlers in the driver (Python's `sys.exit` and
a C++ crash logger), so `fedft.runtime.engine` starts Ray itself and calls `reinstall`
right after. Should a SIGTERM still arrive as SystemExit, `fedft.jobs.run.run` handles
it like a second signal: set the stop event, wait for the ServerApp thread, write
the summary.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """Sets `stop` on the first SIGINT/SIGTERM and remembers which signal it was."""

    def __init__(self, stop: threading.Event, say: Callable[[str], None]) -> None:
        self.stop = stop
        self.say = say
        self.signal: str | None = None
        self.active = threading.current_thread() is threading.main_thread()  # only there can signals be caught

    def handler(self, signum: int, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        self.stop.set()
        self.say(f"fedft: {self.signal}: stopping; completed rounds are saved (send it again to stop at once)")

    def reinstall(self) -> None:
        """Take the signals back (after a library installed its own handlers)."""
        if self.active:
            for s in SIGNALS:
                signal.signal(s, self.handler)


@contextmanager
def stop_on_signals(stop: threading.Event, say: Callable[[str], None] = lambda _: None) -> Iterator[SignalStop]:
    """Within the block, SIGINT/SIGTERM set `stop`; the previous handlers come back after."""
    catcher = SignalStop(stop, say)
    if not catcher.active:
        yield catcher
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    catcher.reinstall()
    try:
        yield catcher
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
