"""Weights & Biases: project = config name, run name = results folder name, step = round.

`output.wandb_mode` "offline" (the default) writes `<run dir>/wandb/offline-run-*/`
and sends nothing (`wandb sync <that folder>` uploads it later); "online" logs live
(after `wandb login`). The final model.pt and summary.json go up as a "model" artifact.
A resumed run uses the same W&B run id (stored in trackers.json) with resume="allow".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fedft.jobs.trackers.base import final_files

END_EXIT_CODE = {"completed": 0}  # anything else ends the W&B run as failed (exit code 1)


class WandbTracker:
    name = "wandb"

    def __init__(self) -> None:
        self._run: Any = None

    @staticmethod
    def required_modules(output: dict[str, Any]) -> tuple[str, ...]:
        return ("wandb",)

    def start(self, config: dict[str, Any], run_dir: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
        import wandb

        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
        run_id = (previous or {}).get("id")
        self._run = wandb.init(
            project=config["name"], name=run_dir.name, dir=str(run_dir), mode=config.get("output", {}).get("wandb_mode", "offline"),
            config=config, id=run_id, resume="allow" if run_id else None, reinit="create_new", settings=settings,
        )
        return {"id": self._run.id}

    def log_round(self, server_round: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=server_round)

    def finish(self, run_dir: Path, status: str) -> None:
        import wandb

        files = [p for p in final_files(run_dir) if p.name != "config.toml"]
        if files:
            artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "_", f"{run_dir.name}-model"), type="model", metadata={"status": status})
            for path in files:
                artifact.add_file(str(path))
            self._run.log_artifact(artifact)
        self._run.finish(exit_code=END_EXIT_CODE.get(status, 1))
