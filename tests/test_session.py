"""RunSession: however the rounds end, one summary.json says how (no engine, no process)."""

from __future__ import annotations

import json

import pytest

from fedft.errors import FedftError
from fedft.fl.server.exchange import RunInterrupted
from fedft.jobs.session import RunSession
from fedft.jobs.validate import load_config
from fedft.runtime.progress import RoundPrinter
from fedft.state.run_folder import RunWriter


def _session(tiny_config, tmp_path, **kwargs) -> RunSession:
    cfg = load_config(tiny_config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return RunSession(cfg, RunWriter(run_dir, cfg), RoundPrinter(cfg.simulation.rounds, quiet=True), **kwargs)


def _summary(session: RunSession) -> dict:
    return json.loads((session.writer.run_dir / "summary.json").read_text())


def test_rounds_that_trained_complete(tiny_config, tmp_path):
    seen = []
    with _session(tiny_config, tmp_path, on_round=seen.append, resume_hint="fedft run --resume x") as session:
        for r in range(3):
            row = {"round": r, "test_accuracy": 0.5, "clients_replied": 3, "clients_sampled": 3, "wall_seconds": 1.0}
            session.writer.record_round(row)
            session.record(row)
        session.settle()
    assert [r["round"] for r in seen] == [0, 1, 2]
    summary = _summary(session)
    assert summary["status"] == "completed" and "resume" not in summary and "error" not in summary


def test_rounds_where_no_client_replied_fail_with_the_first_client_error(tiny_config, tmp_path):
    with _session(tiny_config, tmp_path) as session:
        for r in range(3):
            session.writer.record_round({"round": r, "clients_replied": 0})
        session.settle("round 1: client 0 failed: boom")
    summary = _summary(session)
    assert summary["status"] == "failed" and summary["error"] == "every client failed in every round; first client error: round 1: client 0 failed: boom"


def test_an_interrupted_run_is_a_result_with_its_resume_command(tiny_config, tmp_path):
    with _session(tiny_config, tmp_path, resume_hint="fedft run --resume RUN", signal=lambda: "SIGTERM") as session:
        raise RunInterrupted("stop")
    summary = _summary(session)
    assert (summary["status"], summary["resume"], summary["signal"]) == ("interrupted", "fedft run --resume RUN", "SIGTERM")


def test_a_failure_is_recorded_in_one_line_and_propagates(tiny_config, tmp_path):
    session = _session(tiny_config, tmp_path)
    with pytest.raises(FedftError), session:
        raise FedftError("simulation.min_clients", "only 1 of 3 clients connected.", "start more SuperNodes.")
    summary = _summary(session)
    assert summary["status"] == "failed" and summary["error"].startswith("simulation.min_clients: only 1 of 3")


def test_keyboard_interrupt_propagates_unless_the_caller_can_abort(tiny_config, tmp_path):
    aborted = []
    with _session(tiny_config, tmp_path, on_abort=lambda: aborted.append(True)) as session:
        raise KeyboardInterrupt
    assert aborted == [True] and _summary(session)["status"] == "interrupted"
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(KeyboardInterrupt), _session(tiny_config, other):
        raise KeyboardInterrupt
