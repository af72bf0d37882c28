"""Deployment pieces that need no Flower processes: certificates, node config, run config,
node state, private data, the input checks that must fail before anything starts, and how
fedft finds and stops the processes it started (with plain Python children)."""

from __future__ import annotations

import ipaddress
import os

import numpy as np
import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from flwr.common.config import parse_config_args

from fedft.cli import main
from fedft.fl.client.node_data import cached_shard, load_private, node_tensors
from fedft.state.node_store import load_state, save_state
from fedft.jobs.validate import load_config
from fedft.deploy.certs import make_certs, make_supernode_keys
from fedft.deploy.run_config import config_from_run_config, results_dir, write_run_config
from fedft.deploy.supernode import node_config_text
from fedft.errors import FedftError
from fedft.ml.models import build_model


def test_certs_chain_and_names(tmp_path):
    paths = make_certs(tmp_path / "certs", ["server.example.org", "10.1.2.3"])
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.issuer == ca.subject
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "server.example.org"} <= set(san.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")} <= set(san.get_values_for_type(x509.IPAddress))
    assert oct(paths.server_key.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FedftError, match="not empty"):
        make_certs(tmp_path / "certs")


def test_supernode_keys_load_as_flower_does(tmp_path):
    (key, pub), = make_supernode_keys(tmp_path, 1)
    private = load_ssh_private_key(key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert isinstance(load_ssh_public_key(pub.read_bytes()), ec.EllipticCurvePublicKey)


def test_node_config_survives_flowers_parser(tmp_path):
    data = tmp_path / "my data.npz"
    np.savez(data, x=np.zeros((2, 1, 28, 28), np.float32), y=np.array([0, 1]))
    text = node_config_text(1, 3, data_path=data, state_dir=tmp_path / "state dir")
    assert parse_config_args([text]) == {"partition-id": 1, "num-partitions": 3, "data-path": str(data), "state-dir": str(tmp_path / "state dir")}
    with pytest.raises(FedftError, match="outside"):
        node_config_text(3, 3)


def test_state_store_roundtrip_is_atomic(tmp_path):
    assert load_state(tmp_path, "dp-accountant") == {}
    save_state(tmp_path / "node", "dp-accountant", {"steps": [[1.1, 0.01, 40]]})
    save_state(tmp_path / "node", "dp-accountant", {"steps": [[1.1, 0.01, 40], [1.1, 0.01, 40]]})
    assert load_state(tmp_path / "node", "dp-accountant") == {"steps": [[1.1, 0.01, 40], [1.1, 0.01, 40]]}
    assert sorted(os.listdir(tmp_path / "node")) == ["dp-accountant.json"]  # no temp files left
    with pytest.raises(ValueError):
        save_state(tmp_path, "../escape", {})


def test_run_config_file_through_flowers_parser(tmp_path, tiny_config):
    cfg = load_config(tiny_config)
    path = write_run_config(tmp_path / "run-config.toml", cfg, tmp_path / "out")
    run_config = parse_config_args([str(path)])  # what `flwr run --run-config FILE` does
    got, out = config_from_run_config(run_config)
    assert got == cfg and out == str((tmp_path / "out").resolve())
    got, _ = config_from_run_config({**run_config, "overrides": "train.lr=0.01;simulation.rounds=1"})
    assert got.train.lr == 0.01 and got.simulation.rounds == 1


def test_relative_config_path_found_in_app_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the ServerApp's working directory is the SuperLink's, not the app's
    cfg, out = config_from_run_config({"config": "simulations/quickstart.toml", "overrides": "", "config-json": "", "out": ""})
    assert cfg.name == "quickstart" and out is None


def test_results_dir_takes_launcher_folder_but_never_overwrites(tmp_path, tiny_config):
    cfg = load_config(tiny_config)
    (tmp_path / "run" / "logs").mkdir(parents=True)
    assert results_dir(cfg, str(tmp_path / "run")) == (tmp_path / "run").resolve()
    (tmp_path / "run" / "summary.json").write_text("{}")
    with pytest.raises(FedftError, match="already holds results"):
        results_dir(cfg, str(tmp_path / "run"))


def _global_state() -> dict[str, torch.Tensor]:
    return build_model("seed_cnn", (1, 28, 28), 10).state_dict()


def test_private_data_is_checked_and_split(tmp_path):
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((50, 1, 28, 28), dtype=np.float32), y=rng.integers(0, 10, 50))
    x_tr, y_tr, x_val, y_val, classes = load_private(path, 0.2, 0, 1, "seed_cnn", _global_state())
    assert (len(y_tr), len(y_val), classes) == (40, 10, 10) and x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    np.savez(path, x=rng.random((5, 1, 28, 28), dtype=np.float32), y=np.array([0, 1, 2, 3, 12]))
    with pytest.raises(FedftError, match="labels must be integers in 0..9"):
        load_private(path, 0.2, 0, 1, "seed_cnn", _global_state())
    np.savez(path, x=rng.random((5, 3, 32, 32), dtype=np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(FedftError, match="do not fit the run's model"):
        load_private(path, 0.2, 0, 1, "seed_cnn", _global_state())
    with pytest.raises(FedftError, match="does not exist"):
        load_private(tmp_path / "missing.npz", 0.2, 0, 1, "seed_cnn", _global_state())


@pytest.mark.slow  # seconds of compute, no process
def test_node_shard_cached_on_disk_equals_partition(tmp_path, tiny_config):
    from fedft.fl.context import client_tensors

    config_json = load_config(tiny_config).to_json()
    first = cached_shard(tmp_path, config_json, 2)
    assert len(list(tmp_path.glob("shard-*-client2.npz"))) == 1
    again = cached_shard(tmp_path, config_json, 2)
    for a, b, c in zip(first[:4], again[:4], client_tensors(config_json, 2)[:4]):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert node_tensors({}, config_json, 2, {}) is None  # simulation: no node folder, no file
    with pytest.raises(FedftError, match="num-partitions"):
        node_tensors({"num-partitions": 4, "state-dir": str(tmp_path)}, config_json, 2, {})


def _write_config(tmp_path, tiny_config) -> str:
    import tomli_w

    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(tiny_config))
    return str(path)


@pytest.mark.parametrize("args, field", [
    (["launch", "{cfg}", "--certs", "{tmp}/no-certs"], "--certs"),
    (["launch", "{cfg}", "--clients", "4"], "--clients"),
    (["launch", "{cfg}", "--insecure", "--enable-supernode-auth"], "--enable-supernode-auth"),
    (["server", "{cfg}", "--insecure", "--clients", "{tmp}/c.toml"], "--clients"),
    (["server", "{cfg}", "--certs", "{tmp}/no-certs"], "--certs"),
    (["server", "{cfg}", "--certs", "{tmp}/certs"], "--clients"),  # auth is on: the clients' keys are required
    (["server", "{cfg}", "--certs", "{tmp}/certs", "--clients", "{tmp}/none.toml"], "--clients"),
    (["client", "--partition-id", "0", "--num-partitions", "3", "--insecure"], "--server"),
    (["client", "--server", "127.0.0.1:1", "--partition-id", "0", "--num-partitions", "3", "--ca", "{tmp}/none.crt"], "--ca"),
    (["client", "--server", "127.0.0.1:1", "--partition-id", "0", "--num-partitions", "3"], "--ca"),
    (["client", "--server", "127.0.0.1:1", "--partition-id", "0", "--num-partitions", "3", "--insecure", "--data", "{tmp}/none.npz"], "--data"),
])
def test_bad_deploy_input_exits_2_before_anything_starts(tmp_path, tiny_config, capsys, args, field):
    cfg = _write_config(tmp_path, tiny_config)
    make_certs(tmp_path / "certs")
    argv = [a.format(cfg=cfg, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedft: error: {field}:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no results folder


def test_client_keygen_and_clients_file(tmp_path, capsys):
    """`fedft client keygen` makes the pair on the client (private key 0600); the
    operator's clients.toml binds each public key to one partition id, checked at start."""
    from fedft.deploy.clients_file import binding_json, parse_binding, read_clients_file

    for name in ("alice", "bob"):
        assert main(["client", "keygen", "--out", str(tmp_path / name)]) == 0
    assert oct((tmp_path / "alice" / "client.key").stat().st_mode & 0o777) == "0o600"
    assert main(["client", "keygen", "--out", str(tmp_path / "alice")]) == 2  # never overwrite a registered key
    bob_line = (tmp_path / "bob" / "client.pub").read_text().strip()
    good = tmp_path / "clients.toml"
    good.write_text(f'[[client]]\npublic_key = "alice/client.pub"\npartition_id = 0\n\n[[client]]\npublic_key = "{bob_line}"\npartition_id = 2\nnum_examples = 40\n')
    clients = read_clients_file(good, 3)
    assert [(c.partition_id, c.num_examples) for c in clients] == [(0, 0), (2, 40)] and clients[1].public_key == bob_line
    assert parse_binding(binding_json({111: 0, 222: 2}, clients)) == ({111: 0, 222: 2}, {2: 40})
    assert parse_binding("") is None
    bad = {
        "partition_id = 3": ("partition_id = 2\n", "partition_id = 3\n", "partition_id"),
        "same id": ("partition_id = 2\n", "partition_id = 0\n", "partition_id"),
        "same key": ('public_key = "alice/client.pub"', f'public_key = "{bob_line}"', "public_key"),
        "not a key": ('public_key = "alice/client.pub"', 'public_key = "ecdsa-sha2-nistp384 AAAAnot"', "public_key"),
        "unknown": ("num_examples = 40\n", "num_examples = 40\nrole = 1\n", "unknown keys"),
    }
    for label, (old, new, needle) in bad.items():
        path = tmp_path / "bad.toml"
        path.write_text(good.read_text().replace(old, new, 1))
        with pytest.raises(FedftError, match=needle):
            read_clients_file(path, 3)


@pytest.mark.slow  # runs `nginx -t`, a process
@pytest.mark.skipif(not os.path.isfile("/usr/sbin/nginx"), reason="nginx is not installed (apt-get install nginx)")
@pytest.mark.parametrize("tls", [True, False])
def test_nginx_accepts_the_front_door_config_and_forwards_fleet_only(tmp_path, tls):
    import subprocess

    from fedft.deploy.proxy import nginx_config, proxy_command, write_proxy

    certs = make_certs(tmp_path / "certs") if tls else None
    conf = write_proxy(tmp_path / "ngx", "127.0.0.1", 1, 2, certs)
    text = conf.read_text()
    assert text.count("location ") == 2 and "location /v1/fleet/ {" in text and "location / { return 404; }" in text
    assert ("proxy_ssl_verify on" in text) == tls and text == nginx_config("127.0.0.1", 1, 2, certs, tmp_path / "ngx")
    check = subprocess.run([*proxy_command("/usr/sbin/nginx", tmp_path / "ngx", conf), "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


ORPHANING_PARENT = r"""
import os, subprocess, sys, time  # a fedft process test: a parent that starts a detached grandchild
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # fedft process test grandchild"], start_new_session=True)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(child.pid))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


@pytest.mark.slow
def test_process_set_finds_and_stops_a_detached_orphaned_grandchild(tmp_path):
    """What Flower's SuperLink does (a SuperExec in its own session): after its parent dies the
    grandchild is re-parented, out of any tree walk, and only its FEDFT_LAUNCH_ID finds it."""
    import signal
    import subprocess
    import sys
    import time

    from fedft.deploy.processes import ProcessSet, _alive, descendants, tagged

    procs = ProcessSet()
    pid_file = tmp_path / "grandchild.pid"
    parent = procs.start("parent", [sys.executable, "-c", ORPHANING_PARENT, str(pid_file)])
    grandchild = 0
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the parent reports its child's PID in the file
        grandchild = int(pid_file.read_text())
        assert descendants(parent.pid) == [grandchild]
        assert tagged(procs.launch_id) == sorted([parent.pid, grandchild]) == procs.pids()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert descendants(parent.pid) == [] and _alive(grandchild)  # out of the tree...
        assert procs.pids() == [grandchild]  # ...but still carries the launch id
        assert procs.stop_all(grace=5) == [grandchild]
        assert not _alive(grandchild) and tagged(procs.launch_id) == []
    finally:
        for pid in (parent.pid, grandchild):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            parent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
