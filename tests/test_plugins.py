"""Your own model, data and strategy reach the Ray workers (`[plugins] modules`,
`package.module:function` names), `fedft check` refuses a name the workers would not
know, and a run in which no client ever trained ends `failed` with exit 1.

The user's module is examples/custom_model/my_models.py, copied into tmp_path under
another name and put on sys.path (Ray workers get the driver's sys.path as PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import tomli_w
import tomllib

import fedft
from fedft.cli import main
from fedft.fl.server.app import training_failure
from fedft.ml.models import register_model
from fedft.state.provenance import command_line, git_commit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_model"

FRAGILE = '''
import math, os
from torch import nn
from fedft.ml.models import register_model
from fedft.state.provenance import command_line, git_commit

@register_model("driver_only_mlp")
def driver_only_mlp(input_shape, num_classes):
    """Builds in the process that started the run, fails everywhere else (as a model
    registered in the user's script used to on every Ray worker)."""
    if os.getpid() != int(os.environ["FEDFT_TEST_DRIVER_PID"]):
        raise RuntimeError("driver_only_mlp cannot be built in this process")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A folder on sys.path holding the example's module as `user_models` and `user_fragile`."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "user_models.py").write_text((EXAMPLE / "my_models.py").read_text())
    (folder / "user_fragile.py").write_text(FRAGILE)
    monkeypatch.syspath_prepend(str(folder))
    for name in ("user_models", "user_fragile"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield folder
    for name in ("user_models", "user_fragile"):
        sys.modules.pop(name, None)


def _example_config(tmp_path: Path, module: str = "user_models", **sections) -> Path:
    """examples/custom_model/custom.toml with its module renamed, as a file in tmp_path."""
    text = (EXAMPLE / "custom.toml").read_text().replace("my_models", module)
    cfg = tomllib.loads(text)
    cfg["output"] = {"dir": str(tmp_path / "runs")}
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / f"{cfg['name']}-{len(list(tmp_path.glob('*.toml')))}.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def _check(path: Path, capsys) -> tuple[int, str]:
    code = main(["check", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


# ---------------------------------------------------------------- fedft check, no Ray

def test_check_resolves_plugins_and_import_paths(tmp_path, user_code, capsys):
    code, text = _check(_example_config(tmp_path), capsys)
    assert code == 0, text
    assert "tiny_mlp on user_models:blobs" in text and "user_models:ServerStepFedAvg" in text


@pytest.mark.parametrize(("sections", "field", "words"), [
    ({"model": {"name": "no_such_module:build"}}, "model.name", "cannot import 'no_such_module'"),
    ({"model": {"name": "user_models:nothing"}}, "model.name", "has no 'nothing'"),
    ({"data": {"name": "no_such_module:load"}}, "data.name", "cannot import 'no_such_module'"),
    ({"strategy": {"name": "user_models:blob"}}, "strategy.name", "has no 'blob'"),
    ({"strategy": {"server_lr": "fast"}}, "strategy.server_lr", "must be float"),
    ({"plugins": {"modules": ["user_models", "no_such_plugin"]}}, "plugins.modules", "cannot import 'no_such_plugin'"),
    # data.name imports user_models, which registers tiny_mlp here; workers would not import it
    ({"plugins": {"modules": []}}, "model.name", "'tiny_mlp' is registered by module 'user_models', which is not in [plugins] modules"),
])
def test_check_names_the_field_that_cannot_be_resolved(tmp_path, user_code, capsys, sections, field, words):
    code, text = _check(_example_config(tmp_path, **sections), capsys)
    assert code == 2, text
    assert text.startswith(f"fedft: error: {field}: ") and words in text and len(text.strip().splitlines()) == 1, text


def test_check_refuses_a_model_registered_where_workers_do_not_look(tmp_path, user_code, capsys):
    register_model("registered_in_a_test")(lambda input_shape, num_classes: None)  # as in a user's own script
    code, text = _check(_example_config(tmp_path, model={"name": "registered_in_a_test"}), capsys)
    assert code == 2 and text.startswith("fedft: error: model.name: 'registered_in_a_test' is registered by module"), text
    assert "[plugins] modules" in text


def test_a_run_that_never_trained_is_a_failure():
    rows = [{"round": 0}, {"round": 1, "clients_replied": 0, "round_skipped": 1}, {"round": 2, "clients_replied": 0, "round_skipped": 1}]
    assert training_failure(rows, "round 1: client 0 (node 7) failed: boom") == "every client failed in every round; first client error: round 1: client 0 (node 7) failed: boom"
    skipped = [{"round": 0}, {"round": 1, "clients_replied": 1, "round_skipped": 1}]
    assert training_failure(skipped).startswith("every round was skipped")
    some = [{"round": 0}, {"round": 1, "clients_replied": 0, "round_skipped": 1}, {"round": 2, "clients_replied": 2, "round_skipped": 0}]
    assert training_failure(some, "round 1: x") is None  # one round trained: completed, as before
    assert training_failure([{"round": 0}]) is None


# ---------------------------------------------------------------- through Ray

@pytest.mark.slow
def test_users_model_data_and_strategy_run_on_the_workers(tmp_path, user_code, process_guard, capsys):
    """One run: model by plugin registration, data and strategy by import path, 2 rounds.
    A worker that did not import them would fail every client, and the run would fail."""
    path = _example_config(tmp_path)
    seen: list[dict] = []
    result = fedft.run(path, out=tmp_path / "ok", quiet=True, on_round=seen.append)  # the Python API, with a callback per round
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed" and summary["rounds"] == 2 and "error" not in summary
    assert summary["git_commit"] == git_commit() and summary["command"] == command_line()  # where the result came from
    assert [r["clients_replied"] for r in rows[1:]] == [3, 3] and [r["clients_failed"] for r in rows[1:]] == [0, 0]
    assert [r["round"] for r in seen] == [r["round"] for r in result.metrics] == [0, 1, 2]
    assert [r["test_accuracy"] for r in seen] == [r["test_accuracy"] for r in result.metrics] == [r["test_accuracy"] for r in rows]
    again = fedft.run(resume=tmp_path / "ok", quiet=True)  # already complete: nothing runs, the rows come from the folder
    assert [r["test_accuracy"] for r in again.metrics] == [r["test_accuracy"] for r in rows]
    assert summary["final_accuracy"] > 0.5  # 4 blobs: chance is 0.25


@pytest.mark.slow
def test_a_run_whose_clients_all_fail_exits_1_with_the_first_error(tmp_path, user_code, process_guard, capsys, monkeypatch):
    monkeypatch.setenv("FEDFT_TEST_DRIVER_PID", str(os.getpid()))
    path = _example_config(tmp_path, plugins={"modules": ["user_models", "user_fragile"]}, model={"name": "driver_only_mlp"})
    code = main(["run", str(path), "--quiet", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert code == 1 and summary["status"] == "failed", summary
    assert summary["error"].startswith("every client failed in every round; first client error: round 1: client 0 (node ")
    assert "driver_only_mlp cannot be built in this process" in summary["error"] and "\n" not in summary["error"]
    assert f"fedft: run failed: {summary['error']}" in err
