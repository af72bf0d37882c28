"""Safe files: plain run names, one-line errors for unwritable folders and truncated data,
private keys 0600 from creation, no CA key beside the server's, bounded client-state
records counted in bytes_up, and checkpoint restores that keep each attribute's type."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedft.cli import main
from fedft.deploy.certs import make_certs
from fedft.errors import FedftError
from fedft.fl.client.npz import read_npz
from fedft.jobs.validate import load_config
from fedft.state import atomic, snapshot
from fedft.state.client_records import PREFIX, ClientStateStore, state_bytes
from fedft.state.run_checkpoint import ServerState, capture_state, restore_state
from fedft.state.run_folder import new_run_dir
from flower_messages import train_reply
from strategies import build_strategy


@pytest.mark.parametrize("name", ["../../tmp/x", "/abs", ".", "..", "a/b", "a b", "x\\y", "ä"])
def test_name_must_be_a_plain_file_name(name):
    with pytest.raises(FedftError) as err:
        load_config({"name": name})
    assert err.value.field == "name" and "plain file name" in err.value.one_line()


def test_plain_names_pass():
    assert load_config({"name": "quick-start_1.0"}).name == "quick-start_1.0"


def test_fedft_check_refuses_a_path_as_name(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "../../tmp/x"\n')
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedft: error: name:")


def test_unwritable_output_folder_is_one_line(tmp_path, tiny_config, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FedftError) as err:
        new_run_dir(load_config({"name": "x", "output": {"dir": str(blocker / "runs")}}))
    assert err.value.field == "output.dir"
    with pytest.raises(FedftError) as err:
        new_run_dir(load_config({"name": "x"}), out=blocker / "out")
    assert err.value.field == "--out"
    import tomli_w

    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps({**tiny_config, "output": {"dir": str(blocker / "runs")}}))
    assert main(["run", str(cfg), "--quiet"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("fedft: error: output.dir:"), lines


def test_key_files_are_0600_from_creation_and_the_ca_key_is_not_kept(tmp_path, monkeypatch):
    modes: dict[str, int] = {}
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        modes[os.path.basename(str(path))] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", spy)
    old = os.umask(0)
    try:
        paths = make_certs(tmp_path / "certs")
        make_certs(tmp_path / "certs2", ca_key=tmp_path / "offline" / "ca.key")
    finally:
        os.umask(old)
    key_files = {n: m for n, m in modes.items() if ".key." in n}
    assert key_files and all(m == 0o600 for m in key_files.values()), modes  # created 0600, not chmod'ed later
    assert sorted(p.name for p in paths.folder.iterdir()) == ["ca.crt", "server.key", "server.pem"]
    assert stat.S_IMODE((tmp_path / "offline" / "ca.key").stat().st_mode) == 0o600
    with pytest.raises(FedftError, match="--ca-key"):
        make_certs(tmp_path / "certs3", ca_key=tmp_path / "certs3" / "ca.key")


def test_client_state_records_are_checked_and_counted():
    reply = train_reply({"w": np.ones(2, np.float32)}, node_id=5)
    reply.content[PREFIX + "big"] = ArrayRecord({"v": Array(np.zeros(1000, np.float32))})
    assert state_bytes(reply) == ArrayRecord({"v": Array(np.zeros(1000, np.float32))}).count_bytes() >= 4000
    store = ClientStateStore()
    store.collect([reply], {5: 2}, max_bytes=1000)
    assert store.states == {} and not any(k.startswith(PREFIX) for k in reply.content.keys())  # dropped, not stored
    small = train_reply({"w": np.ones(2, np.float32)}, node_id=5)
    small.content[PREFIX + "s"] = ConfigRecord({"a": 1})
    store.collect([small], {5: 2}, max_bytes=1000)
    assert list(store.states[2]) == ["s"]


def _saved_fedadam():
    strategy = build_strategy("fedadam", {})
    return capture_state(ServerState(strategy))


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["strategy"].update(eta="1; import os"), "is a str"),
    (lambda s: s["strategy"].update(brand_new=1), "does not have"),
    (lambda s: s["strategy"].update(eta=snapshot.encode([1.0, 2.0])), "is a list"),
])
def test_checkpoint_restore_keeps_the_live_strategys_types(edit, needle):
    saved = _saved_fedadam()
    edit(saved)
    with pytest.raises(FedftError) as err:
        restore_state(ServerState(build_strategy("fedadam", {})), saved)
    assert err.value.field == "--resume" and needle in err.value.one_line()
    ok = _saved_fedadam()
    ok["strategy"]["eta"] = 3  # an int for a float is still a number
    ok["strategy"]["m_t"] = snapshot.encode({"w": np.zeros(2)})  # None in a fresh strategy: any state may fill it
    restore_state(ServerState(fresh := build_strategy("fedadam", {})), ok)
    assert fresh.eta == 3 and isinstance(fresh.m_t, dict)


def test_truncated_npz_is_one_error_at_client_start(tmp_path, capsys):
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.zeros((50, 1, 28, 28), np.float32), y=np.zeros(50, np.int64))
    assert read_npz(path)[0].shape == (50, 1, 28, 28)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FedftError, match="--data"):
        read_npz(path)
    argv = ["client", "--server", "127.0.0.1:1", "--partition-id", "0", "--num-partitions", "3", "--insecure", "--data", str(path), "--state-dir", str(tmp_path / "s")]
    assert main(argv) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("fedft: error: --data:") and not (tmp_path / "s").exists()
