"""TensorBoard: event files in `<run dir>/tensorboard/` (`tensorboard --logdir <run dir>`).

Scalars per round under their metrics.jsonl names, the config and the summary as text.
TensorBoard has no artifact store: model.pt stays beside the event files in the run
folder. A resumed run appends a new event file to the same folder, steps continuing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self) -> None:
        self._writer: Any = None

    @staticmethod
    def required_modules(output: dict[str, Any]) -> tuple[str, ...]:
        return ("tensorboard",)

    def start(self, config: dict[str, Any], run_dir: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self._writer.add_text("config", "```json\n" + json.dumps(config, indent=2) + "\n```", global_step=0)
        self._writer.flush()
        return {}

    def log_round(self, server_round: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, global_step=server_round)
        self._writer.flush()  # a reader (or a crash) sees every finished round

    def finish(self, run_dir: Path, status: str) -> None:
        summary = run_dir / "summary.json"
        if summary.is_file():
            self._writer.add_text("summary", "```json\n" + summary.read_text(encoding="utf-8") + "\n```")
        self._writer.close()
