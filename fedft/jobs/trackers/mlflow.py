"""MLflow: experiment = config name, run name = results folder name, step = round.

Uses `mlflow.tracking.MlflowClient` (no fluent API, so no process-wide active run).
`output.mlflow_tracking_uri` "" means `sqlite:///<run dir>/mlruns/mlflow.db` with the
artifacts in `<run dir>/mlruns/artifacts/`: MLflow 3 refuses its old `file:` store
unless MLFLOW_ALLOW_FILE_STORE=true, and needs SQLAlchemy and Alembic for SQLite
(both in `fedft[mlflow]`). A resumed run reopens the same MLflow run (its id is in
trackers.json).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fedft.jobs.trackers.base import final_files, flat_config

MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit
MAX_PARAM_LENGTH = 6000  # MLflow 3's longest param value
END_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def default_tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'mlruns' / 'mlflow.db').resolve()}"


def tracking_uri(output: dict[str, Any], run_dir: Path) -> str:
    return str(output.get("mlflow_tracking_uri") or default_tracking_uri(run_dir))


class MlflowTracker:
    name = "mlflow"

    def __init__(self) -> None:
        self._client: Any = None
        self._run_id = ""

    @staticmethod
    def required_modules(output: dict[str, Any]) -> tuple[str, ...]:
        uri = str(output.get("mlflow_tracking_uri") or "")
        return ("mlflow", "sqlalchemy", "alembic") if uri == "" or uri.startswith("sqlite:") else ("mlflow",)

    def start(self, config: dict[str, Any], run_dir: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(config.get("output", {}), run_dir)
        own_store = uri == default_tracking_uri(run_dir)  # the run folder's: artifacts go beside it
        if own_store:
            (run_dir / "mlruns").mkdir(exist_ok=True)
        self._client = client = MlflowClient(uri)
        if previous and previous.get("run_id") and previous.get("tracking_uri") == uri:
            self._run_id = previous["run_id"]
            client.update_run(self._run_id, status="RUNNING")
            return dict(previous)
        experiment = client.get_experiment_by_name(config["name"])
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = (run_dir / "mlruns" / "artifacts").resolve().as_uri() if own_store else None  # else the server's / MLflow's default
            experiment_id = client.create_experiment(config["name"], artifact_location=artifacts)
        run = client.create_run(experiment_id, run_name=run_dir.name, tags={"fedft.run_dir": str(run_dir.resolve())})
        self._run_id = run.info.run_id
        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in flat_config(config).items()]
        for i in range(0, len(params), MAX_PARAMS_PER_CALL):
            client.log_batch(self._run_id, params=params[i:i + MAX_PARAMS_PER_CALL])
        return {"run_id": self._run_id, "tracking_uri": uri}

    def log_round(self, server_round: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self._run_id, metrics=[Metric(k, v, now, server_round) for k, v in metrics.items()])

    def finish(self, run_dir: Path, status: str) -> None:
        for path in final_files(run_dir):
            self._client.log_artifact(self._run_id, str(path))
        self._client.set_terminated(self._run_id, END_STATUS.get(status, "FAILED"))

