"""`fedft.state`: the one atomic writer, the node store's file formats, and the fixed
sections of a run checkpoint (files written before this layout still load)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from flwr.app import RecordDict

from fedft.errors import FedftError
from fedft.privacy.history import load_history, save_history
from fedft.state import atomic
from fedft.state.run_checkpoint import SECTIONS, ServerState, capture_state, restore_state


class _Boom(RuntimeError):
    pass


def _fail_midway(f) -> None:
    f.write(b"half of the new cont")
    raise _Boom


@pytest.mark.parametrize("error", [_Boom, KeyboardInterrupt])
def test_failing_write_keeps_old_file_and_leaves_no_temp(tmp_path, error):
    path = tmp_path / "summary.json"
    atomic.write_text(path, "old\n")

    def fail(f) -> None:
        f.write(b"half of the new cont")
        raise error

    with pytest.raises(error):
        atomic.write_with(path, fail)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_failing_first_write_leaves_nothing(tmp_path):
    with pytest.raises(_Boom):
        atomic.write_with(tmp_path / "model.pt", _fail_midway)
    assert os.listdir(tmp_path) == []


def test_writes_replace_whole_files(tmp_path):
    path = tmp_path / "state.pt"
    atomic.write_with(path, lambda f: torch.save({"w": torch.arange(3.0)}, f))
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3.0))
    assert atomic.write_bytes(path, b"\x00\x01") == path and path.read_bytes() == b"\x00\x01"
    atomic.write_text(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    assert os.listdir(tmp_path) == ["state.pt"]


def test_private_files_are_owner_only_and_public_ones_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_bytes(tmp_path / "server.key", b"secret", private=True)
        atomic.write_bytes(tmp_path / "server.pem", b"public")
    finally:
        os.umask(old)
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "server.pem").stat().st_mode & 0o777 == 0o644


def test_history_file_written_before_the_node_store_still_loads(tmp_path):
    """`<state_dir>/client-<id>.json` as the old writer left it (compact, trailing newline)."""
    (tmp_path / "client-2.json").write_text(json.dumps({"history": [[1.1, 0.01, 40], [0.9, 0.02, 7]]}) + "\n", encoding="utf-8")
    assert load_history(RecordDict(), str(tmp_path), 2) == [(1.1, 0.01, 40), (0.9, 0.02, 7)]


def test_history_file_keeps_its_name_and_content(tmp_path):
    state = RecordDict()
    save_history(state, str(tmp_path / "node"), 3, [(1.1, 0.01, 40)])
    assert os.listdir(tmp_path / "node") == ["client-3.json"]
    assert json.loads((tmp_path / "node" / "client-3.json").read_text()) == {"history": [[1.1, 0.01, 40]]}
    assert load_history(RecordDict(), str(tmp_path / "node"), 3) == [(1.1, 0.01, 40)]  # a restarted node reads the file
    save_history(state, str(tmp_path / "node"), 3, [])
    assert load_history(state, str(tmp_path / "node"), 3) == []  # an empty history on file is still the truth
    assert load_history(RecordDict(), "", 4) == []  # no state_dir: Context.state only


class _Tracker:
    def __init__(self) -> None:
        self.data: dict = {}

    def to_plain(self) -> dict:
        return dict(self.data)

    def load_plain(self, data: dict) -> None:
        self.data = dict(data)


def test_checkpoint_sections_are_a_fixed_table(tmp_path):
    from strategies import build_strategy

    assert list(SECTIONS) == ["strategy", "clients", "privacy", "devices"]
    with pytest.raises(TypeError):
        SECTIONS["extra"] = (None, None)  # type: ignore[index]
    tracker = _Tracker()
    tracker.data = {"spent": [1], "eps": {"1": 0.5}, "steps": {"1": 40}}
    saved = capture_state(ServerState(build_strategy("fedavg", {}), privacy=tracker))
    assert list(saved) == ["strategy", "clients", "privacy", "devices"] and saved["privacy"] == tracker.data
    assert capture_state(ServerState(build_strategy("fedavg", {})))["privacy"] == {}  # no tracker: an empty section

    fresh = _Tracker()
    restore_state(ServerState(build_strategy("fedavg", {}), privacy=fresh), saved)
    assert fresh.data == tracker.data
    with pytest.raises(FedftError, match="cannot restore"):
        restore_state(ServerState(build_strategy("fedavg", {})), {**saved, "scaffold-files": {}})
