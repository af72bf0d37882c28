"""One run's lifecycle, the same for a simulation (`fedft.jobs.run`) and a deployment
(`fedft.deploy.flwr_app`): every round is recorded the same way (progress line,
trackers, the caller's callback), and however the run ends, exactly one summary.json
says how (completed; failed, with why in one line; interrupted, with how to resume).

The two entry points only differ in how the rounds run, so they wrap that in

    with RunSession(cfg, writer, printer) as session:
        ...rounds, each row through session.record...
        session.settle(first_client_error)
    summary = session.summary
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from fedft.config import FedftConfig
from fedft.errors import FedftError
from fedft.fl.server.app import training_failure
from fedft.fl.server.exchange import RunInterrupted
from fedft.jobs.trackers import RunTrackers
from fedft.runtime.progress import RoundPrinter
from fedft.state import figures
from fedft.state.run_folder import RunWriter


def one_line(exc: BaseException) -> str:
    """An exception as the summary's `error`: a FedftError's own line, else its type and message."""
    return exc.one_line() if isinstance(exc, FedftError) else " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


class RunSession:
    """Owns what every run does around its rounds: trackers (output.loggers) started at the
    beginning and finished after summary.json, every row recorded, the elapsed time
    (`elapsed_before`: what a resumed run had already spent), and the final status.

    `resume_hint`: how to continue a run that did not complete (summary.json "resume");
    `on_round(row)`: the caller's own callback; `on_abort()`: called when a second Ctrl-C
    or SIGTERM (KeyboardInterrupt, SystemExit) interrupts the rounds, to stop their thread;
    `signal()`: the signal that stopped the run, if one did (summary.json "signal").
    """

    def __init__(self, cfg: FedftConfig, writer: RunWriter, printer: RoundPrinter, *, resume_hint: str | None = None,
                 on_round: Callable[[dict[str, Any]], None] | None = None, on_abort: Callable[[], None] | None = None,
                 elapsed_before: float = 0.0, signal: Callable[[], str | None] = lambda: None) -> None:
        self.cfg, self.writer, self.printer = cfg, writer, printer
        self.resume_hint, self.on_round, self.on_abort = resume_hint, on_round, on_abort
        self.elapsed_before, self.signal = elapsed_before, signal
        self.status = "failed"  # until the rounds say otherwise
        self.error: str | None = None  # why a failed run failed, one line
        self.extra: dict[str, Any] = {}  # more summary.json fields (the caller's: signal, resumed_from_round)
        self.summary: dict[str, Any] = {}
        self.trackers = RunTrackers(cfg.output.loggers)  # in this (the driver's or ServerApp's) process only
        self.trackers.start(cfg.model_dump(mode="json"), writer.run_dir)
        self._t0 = time.perf_counter()

    def record(self, row: dict[str, Any]) -> None:
        """One round's row, as the server recorded it in the results folder."""
        if row.get("round") == self.cfg.simulation.rounds - 1:  # the last round's replies are in: the plots' imports load beside its evaluation
            figures.preload_in_background()
        self.printer.on_round(row)
        self.trackers.log_round(row)
        if self.on_round is not None:
            self.on_round(dict(row))

    def settle(self, first_client_error: str | None = None, finished: bool = True) -> None:
        """The rounds returned: completed, unless no client ever replied or every round was
        skipped (`training_failure`), or the rounds did not produce a final model (`finished`)."""
        failure = training_failure(self.writer.rows, first_client_error) if finished else first_client_error
        self.status, self.error = ("completed", None) if finished and failure is None else ("failed", failure)

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        try:
            if isinstance(exc, RunInterrupted):
                self.status = "interrupted"
            elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.status = "interrupted"
                if self.on_abort is not None:
                    self.on_abort()  # e.g. stop the ServerApp thread and wait for it: nothing writes after the summary
            elif exc is not None:
                self.status, self.error = "failed", self.error or one_line(exc)
        finally:  # a signal while waiting for the rounds to stop still leaves the summary
            self._finish()
        # an interrupted run is a result; a failure propagates, and so does KeyboardInterrupt/SystemExit where no on_abort handles it
        return isinstance(exc, RunInterrupted) or (isinstance(exc, (KeyboardInterrupt, SystemExit)) and self.on_abort is not None)

    def _finish(self) -> None:
        extra = dict(self.extra)
        if self.signal():
            extra["signal"] = self.signal()
        if self.status != "completed" and self.resume_hint is not None:
            extra["resume"] = self.resume_hint
        if self.status == "failed" and self.error is not None:
            extra["error"] = self.error
        self.summary = self.writer.finish(self.status, self.elapsed_before + time.perf_counter() - self._t0, extra)
        self.trackers.finish(self.writer.run_dir, self.status)  # after summary.json and model.pt exist: they go up as artifacts
        self.printer.on_done(self.summary)
        if self.status == "failed" and self.error is not None and not self.printer.quiet:
            print(f"fedft: run failed: {self.error}", file=sys.stderr)
        if self.status == "interrupted" and self.resume_hint is not None:
            saved = len(self.writer.rows) - 1 if self.writer.rows else 0
            self.printer.say(f"fedft: interrupted; {saved} rounds are saved. Resume with: {self.resume_hint}")
