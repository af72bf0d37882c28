"""What every experiment tracker implements, and the plain data it is given.

A tracker mirrors a run into an outside tool: the resolved config at the start, each
round's metrics row (step = round) as the server writes it, and the final model and
summary at the end. The results folder stays the record; a tracker only copies it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """One backend (TensorBoard, MLflow, W&B). Called only in the driver process, from
    one thread at a time; any method may raise, and the run goes on without it."""

    name: str  # as in output.loggers

    @staticmethod
    def required_modules(output: dict[str, Any]) -> tuple[str, ...]:
        """Python modules this backend needs with these `[output]` settings (checked before a run starts)."""
        ...

    def start(self, config: dict[str, Any], run_dir: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
        """Open the tracker's run for `config` (the resolved config as JSON-able data).
        `previous` is what an earlier `start` in this folder returned (a resumed run);
        return what a resume needs to continue the same tracker run (ids), or {}."""
        ...

    def log_round(self, server_round: int, metrics: dict[str, float]) -> None:
        """Log one round's numeric metrics at step `server_round` (0 = initial evaluation)."""
        ...

    def finish(self, run_dir: Path, status: str) -> None:
        """Upload the final files (model.pt, summary.json, config.toml where present) and close;
        `status` is summary.json's: completed, failed or interrupted."""
        ...


FINAL_FILES = ("model.pt", "summary.json", "config.toml")  # what finish() hands over, those that exist


def numeric_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, `round` itself left out (it is the step):
    accuracy, loss, ε, bytes, wall seconds, ... whatever metrics.jsonl holds."""
    return {k: float(v) for k, v in row.items()
            if k != "round" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def flat_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.lr": 0.05, ...}: nested config sections as dotted keys (MLflow params)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flat_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def final_files(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in FINAL_FILES if (run_dir / name).is_file()]
