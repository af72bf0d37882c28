"""output.loggers: TensorBoard, MLflow and W&B get every round that metrics.jsonl gets.

The slow tests run the real packages and read back what each wrote (TensorBoard's event
files, MLflow's store, W&B's offline run folder); the fast ones cover the config rules,
the missing-package error (an import made to fail) and RunResult.metrics_frame.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import tomli_w

import fedft
from fedft.cli import main
from fedft.errors import FedftError
from fedft.jobs.run import RunResult
from fedft.jobs.trackers import IDS_FILE, TRACKERS, RunTrackers, numeric_metrics
from fedft.jobs.trackers.mlflow import default_tracking_uri
from fedft.jobs.validate import load_config
from fedft.state.run_folder import read_rows

# --- fast: config, missing packages, the row -> metrics rule, the frame ----------------


def test_loggers_default_to_none_and_accept_the_three(tiny_config):
    assert load_config(tiny_config).output.loggers == []
    cfg = load_config(tiny_config, ["output.loggers=['tensorboard','mlflow','wandb']"])
    assert cfg.output.loggers == ["tensorboard", "mlflow", "wandb"] and cfg.output.wandb_mode == "offline" and cfg.output.mlflow_tracking_uri == ""


@pytest.mark.parametrize("override, words", [
    ("output.loggers=['neptune']", "output.loggers"),
    ("output.loggers=['mlflow','mlflow']", "twice"),
    ("output.wandb_mode='cloud'", "output.wandb_mode"),
])
def test_bad_logger_settings_are_one_line_errors(tiny_config, override, words):
    with pytest.raises(FedftError) as err:
        load_config(tiny_config, [override])
    assert words in err.value.one_line() and "\n" not in err.value.one_line()


@pytest.mark.parametrize("logger, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("mlflow", "sqlalchemy"), ("wandb", "wandb")])
def test_a_missing_tracker_package_fails_check_before_any_folder(tiny_config, tmp_path, monkeypatch, capsys, logger, module):
    """`fedft check` (and so `fedft run`) exits 2 with the pip extra; nothing is written."""
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps({**tiny_config, "output": {**tiny_config["output"], "loggers": [logger]}}))
    assert main(["check", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fedft: error: output.loggers:") and f"pip install 'fedft[{logger}]'" in err and module in err
    with pytest.raises(FedftError, match="output.loggers"):
        fedft.prepare(config)
    assert not Path(tiny_config["output"]["dir"]).exists()


def test_an_mlflow_server_uri_does_not_need_sqlite_packages(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    cfg = load_config(tiny_config, ["output.loggers=['mlflow']", "output.mlflow_tracking_uri='http://127.0.0.1:5000'"])
    assert cfg.output.loggers == ["mlflow"]


def test_every_finite_number_of_a_row_is_a_metric_and_round_is_the_step():
    row = {"round": 3, "test_accuracy": 0.75, "test_loss": 0.5, "epsilon": 1.25, "bytes_up": 1024, "clients_failed": 0,
           "train_loss": float("nan"), "val_accuracy": None, "note": "text", "stopped": True, "ids": [1, 2]}
    assert numeric_metrics(row) == {"test_accuracy": 0.75, "test_loss": 0.5, "epsilon": 1.25, "bytes_up": 1024.0, "clients_failed": 0.0}


def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path, monkeypatch):
    class Breaks:
        name = "wandb"

        @staticmethod
        def required_modules(output):
            return ()

        def start(self, config, run_dir, previous):
            return {"id": "x"}

        def log_round(self, server_round, metrics):
            raise ConnectionError("backend\ngone")

        def finish(self, run_dir, status):
            raise AssertionError("a dropped tracker is not finished")

    class Counts(Breaks):
        name = "tensorboard"
        rounds: list[int] = []

        def log_round(self, server_round, metrics):
            self.rounds.append(server_round)

        def finish(self, run_dir, status):
            self.rounds.append(-1)

    monkeypatch.setitem(TRACKERS, "wandb", Breaks)
    monkeypatch.setitem(TRACKERS, "tensorboard", Counts)
    warnings: list[str] = []
    trackers = RunTrackers(["wandb", "tensorboard"], warn=warnings.append)
    trackers.start({"name": "t"}, tmp_path)
    for r in (0, 1, 2):
        trackers.log_round({"round": r, "test_accuracy": 0.5})
    trackers.finish(tmp_path, "completed")
    assert Counts.rounds == [0, 1, 2, -1]
    assert len(warnings) == 1 and "wandb tracker failed at round 0" in warnings[0] and "ConnectionError: backend gone" in warnings[0]
    assert json.loads((tmp_path / IDS_FILE).read_text()) == {"wandb": {"id": "x"}, "tensorboard": {"id": "x"}}


def test_metrics_frame_is_the_rows_as_a_dataframe(tmp_path):
    rows = [{"round": 0, "test_accuracy": 0.1}, {"round": 1, "test_accuracy": 0.6, "epsilon": 1.5}]
    frame = RunResult(run_dir=tmp_path, summary={}, state=None, metrics=rows).metrics_frame()
    assert list(frame.columns) == ["round", "test_accuracy", "epsilon"] and frame["test_accuracy"].tolist() == [0.1, 0.6]
    assert frame.loc[1, "epsilon"] == 1.5 and frame["epsilon"].isna().tolist() == [True, False]


def test_metrics_frame_without_pandas_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(FedftError, match="pip install pandas"):
        RunResult(run_dir=tmp_path, summary={}, state=None, metrics=[]).metrics_frame()


# --- slow: the real backends ---------------------------------------------------------


def _stop_wandb_service(before: set[int]) -> None:
    """wandb.init starts a `wandb-core` service; stop it (teardown), then by PID if it is still there."""
    import wandb

    from conftest import _descends_from, _pids, kill_pids

    wandb.teardown()
    me = os.getpid()
    kill_pids([p for p in _pids() - before if p != me and _descends_from(p, me) and "wandb" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")])


@pytest.mark.slow
def test_a_run_logs_every_round_to_tensorboard_mlflow_and_wandb(tiny_config, tmp_path, shared_ray, process_guard):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = dict(tiny_config, simulation={"rounds": 2, "clients_per_round": 2, "device": "cpu"})
    cfg["privacy"] = {"mode": "central", "clipping": "client_fixed", "clipping_norm": 0.5, "noise_multiplier": 0.8}  # ε in every row
    cfg["output"] = {**cfg["output"], "loggers": ["tensorboard", "mlflow", "wandb"]}
    try:
        result = fedft.run(cfg, out=tmp_path / "run", quiet=True)
    finally:
        _stop_wandb_service(process_guard)
    run_dir = result.run_dir
    assert result.summary["status"] == "completed"
    rows = read_rows(run_dir)
    assert [r["round"] for r in rows] == [0, 1, 2] and all("epsilon" in r for r in rows[1:])

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for key, want in (("test_accuracy", [0, 1, 2]), ("epsilon", [1, 2])):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == want
        assert [s.value for s in scalars] == pytest.approx([rows[step][key] for step in want], rel=1e-6)  # TensorBoard stores float32

    ids = json.loads((run_dir / IDS_FILE).read_text())
    uri = default_tracking_uri(run_dir)
    assert ids["mlflow"]["tracking_uri"] == uri and (run_dir / "mlruns" / "mlflow.db").is_file()
    client = MlflowClient(uri)
    run = client.get_run(ids["mlflow"]["run_id"])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED" and client.get_experiment(run.info.experiment_id).name == "tiny"
    assert run.data.params["train.lr"] == "0.05" and run.data.params["privacy.mode"] == "central"
    for key in ("test_accuracy", "epsilon", "bytes_up", "wall_seconds"):
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert history == {r["round"]: r[key] for r in rows if key in r}
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"model.pt", "summary.json", "config.toml"}

    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0].name.endswith(ids["wandb"]["id"])
    logged = _wandb_records(offline[0] / f"run-{ids['wandb']['id']}.wandb")
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item} for r in logged if r.WhichOneof("record_type") == "history"]
    assert [h.get("_step") for h in history] == [0, 1, 2], history
    for h, row in zip(history, rows):
        assert h["test_accuracy"] == row["test_accuracy"] and h.get("epsilon") == row.get("epsilon")
        assert {k: h.get(k) for k in numeric_metrics(row)} == numeric_metrics(row)  # every number of the row, nothing dropped
    assert [r.exit.exit_code for r in logged if r.WhichOneof("record_type") == "exit"] == [0]
    assert any(r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model" for r in logged)


def _wandb_records(path: Path) -> list:
    """The records of a W&B offline run file: LevelDB's log format (32 KiB blocks; each piece has a
    7-byte header crc32, length, type 1 full / 2 first / 3 middle / 4 last) after W&B's 7-byte
    file header ":W&B", magic, version; each record a `wandb_internal_pb2.Record`."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, record = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        piece, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        record = piece if kind in (1, 2) else record + piece
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(record))
    return out


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path):
    """A second RunTrackers in the same folder (what `fedft run --resume` makes) reopens the MLflow run in trackers.json."""
    from mlflow.tracking import MlflowClient

    config = {"name": "resumed", "output": {"mlflow_tracking_uri": ""}, "train": {"lr": 0.1}}
    first = RunTrackers(["mlflow"])
    first.start(config, tmp_path)
    first.log_round({"round": 0, "test_accuracy": 0.1})
    first.log_round({"round": 1, "test_accuracy": 0.4})
    first.finish(tmp_path, "interrupted")
    run_id = json.loads((tmp_path / IDS_FILE).read_text())["mlflow"]["run_id"]
    client = MlflowClient(default_tracking_uri(tmp_path))
    assert client.get_run(run_id).info.status == "KILLED"

    second = RunTrackers(["mlflow"])
    second.start(config, tmp_path)
    second.log_round({"round": 2, "test_accuracy": 0.7})
    second.finish(tmp_path, "completed")
    assert json.loads((tmp_path / IDS_FILE).read_text())["mlflow"]["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED" and len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert {m.step: m.value for m in client.get_metric_history(run_id, "test_accuracy")} == {0: 0.1, 1: 0.4, 2: 0.7}
