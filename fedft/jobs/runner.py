"""Named configs run one after another, each a `fedft run` into `<out>/<name>/`.

A comparison runs its arms this way, a sweep its points (one at a time; `--parallel`
runs them as child processes, `fedft.jobs.parallel`), and the benchmarks their arms.
Each caller says what to print as a run starts and ends, and whether a run that
raises or is interrupted ends the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig
from fedft.jobs.run import run


@dataclass(frozen=True)
class FinishedRun:
    """What a caller needs to report one run of the batch and to decide whether to go on."""

    name: str
    run_dir: Path
    summary: dict[str, Any]  # empty when the run raised
    seconds: float  # wall time of the `fedft run` call
    error: Exception | None = None  # what it raised, when the batch went on after it

    @property
    def interrupted(self) -> bool:
        return self.summary.get("status") == "interrupted"


def run_each(
    configs: Iterable[tuple[str, FedftConfig]],
    out_dir: Path,
    *,
    quiet: bool = True,
    verbose: bool = False,
    on_start: Callable[[int, str], None] | None = None,
    on_finish: Callable[[FinishedRun], None] | None = None,
    keep_going_on_error: bool = False,
    stop_on_interrupt: bool = False,
) -> list[FinishedRun]:
    """Run each (name, config) with `fedft.jobs.run.run` into `<out_dir>/<name>/`, in order,
    calling `on_start(number from 1, name)` before and `on_finish(run)` after each. A run
    that raises ends the batch unless `keep_going_on_error`; with `stop_on_interrupt` an
    interrupted run (Ctrl-C, SIGTERM: its summary says so) is the last one."""
    finished: list[FinishedRun] = []
    for number, (name, cfg) in enumerate(configs, 1):
        if on_start is not None:
            on_start(number, name)
        t0 = time.perf_counter()
        try:
            result = run(cfg, out=Path(out_dir) / name, quiet=quiet, verbose=verbose)
        except Exception as exc:  # noqa: BLE001  the run's own summary says "failed"
            if not keep_going_on_error:
                raise
            done = FinishedRun(name, Path(out_dir) / name, {}, time.perf_counter() - t0, exc)
        else:
            done = FinishedRun(name, result.run_dir, result.summary, time.perf_counter() - t0)
        finished.append(done)
        if on_finish is not None:
            on_finish(done)
        if stop_on_interrupt and done.interrupted:
            break
    return finished
