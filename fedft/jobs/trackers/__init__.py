"""Experiment trackers (`output.loggers`): TensorBoard, MLflow, Weights & Biases.

Each backend is one module with one class (`base.Tracker`), named in `TRACKERS`; its
package is imported only when a run uses it, so `import fedft` stays cheap. `check_loggers`
(called by `fedft.jobs.validate`) fails before a run starts when a package is missing
(a package that is there but fails to import fails at the tracker's start: a warning);
`RunTrackers` fans a run's start, rounds and end out to the configured ones, in the
driver process only. A tracker that fails mid-run prints one warning line and is
dropped; the results folder is never affected.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedft.errors import FedftError
from fedft.jobs.trackers.base import Tracker, numeric_metrics
from fedft.jobs.trackers.mlflow import MlflowTracker
from fedft.jobs.trackers.tensorboard import TensorBoardTracker
from fedft.jobs.trackers.wandb import WandbTracker
from fedft.state import atomic

TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}
IDS_FILE = "trackers.json"  # {tracker name: what its start() returned}, read back by a resumed run

__all__ = ["IDS_FILE", "TRACKERS", "RunTrackers", "Tracker", "check_loggers", "numeric_metrics"]


def check_loggers(loggers: Sequence[str], output: dict[str, Any]) -> None:
    """Raise FedftError naming `output.loggers` and the pip extra when a tracker's package is missing."""
    for name in loggers:
        for module in TRACKERS[name].required_modules(output):
            # found, not imported: importing mlflow or wandb takes seconds and starts processes
            if importlib.util.find_spec(module) is None:
                raise FedftError("output.loggers", f"\"{name}\" needs the Python package '{module}', which is not installed.",
                                 f"pip install 'fedft[{name}]', or remove \"{name}\" from output.loggers.")


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunTrackers:
    """The trackers of one run. `start` before the first round, `log_round` for every
    metrics row as it is written (from the server's thread), `finish` after summary.json."""

    def __init__(self, loggers: Sequence[str], warn: Callable[[str], None] = _warn) -> None:
        self._live: list[Tracker] = [TRACKERS[name]() for name in loggers]
        self._warn = warn
        self._lock = threading.Lock()  # rounds come from the server's thread, start/finish from the caller's

    def _failed(self, tracker: Tracker, when: str, exc: BaseException) -> None:
        self._live.remove(tracker)
        problem = " ".join(str(exc).split())[:200]
        self._warn(f"fedft: warning: the {tracker.name} tracker failed {when} ({type(exc).__name__}: {problem}); "
                   f"the run goes on without it, its results folder is complete.")

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        if not self._live:
            return
        path = Path(run_dir) / IDS_FILE
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        ids: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
        with self._lock:
            for tracker in list(self._live):
                try:
                    ids[tracker.name] = tracker.start(config, Path(run_dir), ids.get(tracker.name))
                except Exception as exc:  # noqa: BLE001  a tracker never stops the run
                    self._failed(tracker, "to start", exc)
        atomic.write_text(path, json.dumps(ids, indent=2) + "\n")

    def log_round(self, row: dict[str, Any]) -> None:
        if not self._live:
            return
        server_round, metrics = int(row.get("round", 0)), numeric_metrics(row)
        with self._lock:
            for tracker in list(self._live):
                try:
                    tracker.log_round(server_round, metrics)
                except Exception as exc:  # noqa: BLE001
                    self._failed(tracker, f"at round {server_round}", exc)

    def finish(self, run_dir: Path, status: str) -> None:
        with self._lock:
            for tracker in list(self._live):
                try:
                    tracker.finish(Path(run_dir), status)
                except Exception as exc:  # noqa: BLE001
                    self._failed(tracker, "to finish", exc)
            self._live.clear()
