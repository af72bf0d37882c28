"""Deployment security with real processes on 127.0.0.1 (slow: each start of a SuperLink
and SuperNodes costs many seconds on a small machine, so checks share process starts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fedft.fl.context import RunContext
from fedft.jobs.validate import load_config
from fedft.state.model_file import load_checkpoint
from test_deploy import ROOT, _assert_nothing_left, _config, _env, _fedft, _read, _rows, _stop, _wait_for

needs_nginx = pytest.mark.skipif(not any(Path(d, "nginx").is_file() for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin")),
                                 reason="nginx is not installed (apt-get install nginx; .ci/run installs it when it can)")


def _attack_from_outside(tmp_path: Path, port: int, ca: Path) -> dict[str, tuple[int, str]]:
    """What a caller holding only ca.crt tries against the public port: register its own
    key (`flwr supernode register`) and submit a run (`flwr run`). {name: (exit code, output)}."""
    from fedft.deploy import submit
    from fedft.deploy.certs import make_key_pair
    from fedft.deploy.run_config import write_run_config
    from fedft.jobs.validate import load_config

    home = submit.write_flower_home(tmp_path / "attacker-home", f"127.0.0.1:{port}", ca)
    _, pub = make_key_pair(tmp_path / "attacker" / "client.key", tmp_path / "attacker" / "client.pub")
    run_config = write_run_config(tmp_path / "attacker-run.toml", load_config({"name": "evil"}), tmp_path / "evil-out")
    results = {}
    for name, cmd in (("register", submit.register_command(pub)), ("run", submit.flwr_run_command(ROOT, run_config, stream=False))):
        proc = subprocess.run(cmd, env=_env(FLWR_HOME=str(home)), capture_output=True, text=True, timeout=180)
        results[name] = (proc.returncode, proc.stdout + proc.stderr)
    return results


@pytest.mark.slow
def test_launch_three_of_ten_partitions_finishes_with_three_clients(tmp_path, process_guard, monkeypatch):
    """`fedft launch --clients 3` with partition.num_clients = 10: the server starts with the
    3 nodes it launched (simulation.min_clients defaults to --clients) and samples only them;
    deployment's default norm bound clips an attacker sending x + 1e30 * u and claiming
    1e9 examples (recorded in clients_clipped and clients_capped), so the global model
    moves by a bounded amount. The run is a user's, as examples/custom_model has it: their
    folder holds my_models.py and the config, `fedft launch` starts there, and the
    SuperNodes and the ServerApp process import the user's model (a plugin) and strategy
    (module:function) themselves."""
    import tomllib

    import tomli_w

    user = tmp_path / "user"
    user.mkdir()
    (user / "my_models.py").write_text((ROOT / "examples" / "custom_model" / "my_models.py").read_text())
    cfg = tomllib.loads(_config(tmp_path, rounds=1, clients_per_round=10).read_text())
    cfg["partition"]["num_clients"] = 10
    cfg["plugins"] = {"modules": ["my_models"]}
    cfg["model"] = {"name": "tiny_mlp"}
    cfg["strategy"] = {"name": "my_models:ServerStepFedAvg"}
    # client 0 (attack.seed 0, fraction 0.1 of 10) sends x + 1e30 * u with num-examples 1e9: clipped and capped
    cfg["attack"] = {"kind": "scale", "fraction": 0.1, "scale": 1e30, "num_examples": 1e9}
    config = user / "three.toml"
    config.write_text(tomli_w.dumps(cfg))
    monkeypatch.syspath_prepend(str(user))  # for this test's own look at the start state
    out = tmp_path / "run"
    t0 = time.monotonic()
    launch = subprocess.Popen([sys.executable, "-m", "fedft", "launch", "three.toml", "--clients", "3", "--out", str(out)],
                              stdout=open(tmp_path / "launch.log", "wb"), stderr=subprocess.STDOUT, env=_env(), cwd=user, start_new_session=True)
    try:
        assert launch.wait(timeout=600) == 0, _read(tmp_path / "launch.log")
    finally:
        _stop(launch)
    print(f"launch 3 of 10: {time.monotonic() - t0:.1f} s")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    rows = _rows(out)
    assert rows[0]["clients_joined"] == "3" and rows[0]["nodes_refused"] == "0"
    assert rows[1]["clients_sampled"] == "3" and rows[1]["clients_replied"] == "3" and rows[1]["clients_clipped"] == "1"
    assert rows[1]["clients_capped"] == "1"  # and its num-examples = 1e9 is capped at its partition's size
    start = RunContext(load_config(str(config))).start_state
    final = load_checkpoint(out / "model.pt")["state_dict"]
    moved = float(torch.sqrt(sum(((final[k].double() - start[k].double()) ** 2).sum() for k in start)))
    assert moved < 100.0, moved  # unbounded, a third of 1e30 * |u| would land in the model
    _assert_nothing_left(out)


@pytest.mark.slow
@needs_nginx
def test_server_admits_only_listed_keys_each_for_its_own_partition_and_closes_control(tmp_path, process_guard):
    """`fedft server --clients clients.toml` (2 partitions, keys of A for 0 and B for 1):
    A joins as 0; B, registered, claims A's id 0 and is refused (logged), never fatal by
    itself; C's key is not listed, so C cannot join at all. A SuperNode with another CA's
    certificate, and plain Flower with no CA, fail the TLS handshake and never join. From
    outside, a caller holding ca.crt can neither register its own key nor submit a run:
    nginx forwards the Fleet API only. With one of two valid clients the run stops with
    one error as soon as both listed clients have answered, not after round_timeout."""
    from fedft.deploy.certs import make_certs, make_key_pair
    from fedft.deploy.processes import free_port

    certs, other_ca = make_certs(tmp_path / "certs").folder, make_certs(tmp_path / "other-ca").folder
    keys = {n: make_key_pair(tmp_path / n / "client.key", tmp_path / n / "client.pub") for n in ("a", "b", "c")}
    clients = tmp_path / "clients.toml"
    clients.write_text('[[client]]\npublic_key = "a/client.pub"\npartition_id = 0\n\n[[client]]\npublic_key = "b/client.pub"\npartition_id = 1\n')
    config = _config(tmp_path, round_timeout=40)
    config.write_text(config.read_text().replace("num_clients = 3", "num_clients = 2").replace("clients_per_round = 3", "clients_per_round = 2"))
    port, out = free_port(), tmp_path / "run"
    t0 = time.monotonic()
    server = _fedft("server", str(config), "--certs", str(certs), "--host", "127.0.0.1", "--port", str(port), "--out", str(out),
                    "--clients", str(clients), log=tmp_path / "server.log")
    nodes = {name: _fedft("client", "--server", f"127.0.0.1:{port}", "--partition-id", pid, "--num-partitions", "2", "--ca", str(certs / "ca.crt"),
                          "--auth-key", str(keys[name][0]), "--state-dir", str(tmp_path / f"state-{name}"), log=tmp_path / f"{name}.log")
             for name, pid in (("a", "0"), ("b", "0"), ("c", "1"))}
    nodes["wrong-ca"] = _fedft("client", "--server", f"127.0.0.1:{port}", "--partition-id", "1", "--num-partitions", "2", "--ca", str(other_ca / "ca.crt"),
                               "--auth-key", str(keys["c"][0]), "--state-dir", str(tmp_path / "state-wrong-ca"), log=tmp_path / "wrong-ca.log")
    # plain Flower, no --root-certificates: only the system's trusted CAs
    nodes["no-ca"] = subprocess.Popen(["flower-supernode", "--superlink", f"127.0.0.1:{port}", "--node-config", "partition-id=1 num-partitions=2",
                                       "--port", str(free_port())], stdout=open(tmp_path / "no-ca.log", "wb"), stderr=subprocess.STDOUT,
                                      env=_env(), start_new_session=True)
    try:
        _wait_for(lambda: "fedft server: listening on" in _read(tmp_path / "server.log"), 300, "the server to start", server)
        attacks = _attack_from_outside(tmp_path, port, certs / "ca.crt")
        assert server.wait(timeout=600) == 1, _read(tmp_path / "server.log")
    finally:
        for proc in [server, *nodes.values()]:
            _stop(proc)
    print(f"server with listed keys: {time.monotonic() - t0:.1f} s")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "only 1 of 2 client nodes gave a valid partition id (every listed client has answered" in summary["error"], summary
    logs = "".join(_read(p) for p in (out / "logs").glob("*.log")) + _read(tmp_path / "server.log")
    assert "claimed partition id 0, but its key is listed for 1" in logs, logs[-3000:]
    assert "SuperNode ID" in _read(tmp_path / "a.log") and "SuperNode ID" in _read(tmp_path / "b.log")
    assert "SuperNode ID" not in _read(tmp_path / "c.log")  # an unlisted key is never let in
    for name in ("wrong-ca", "no-ca"):  # TLS: a node that cannot verify the server's certificate never joins
        text = _read(tmp_path / f"{name}.log")
        assert "SuperNode ID" not in text and "CERTIFICATE_VERIFY_FAILED" in text, (name, text[-2000:])
    for name, (code, text) in attacks.items():  # nginx answers 404 for anything but /v1/fleet/
        # (`flwr supernode register --format json` exits 0 even when it fails; its JSON says so)
        assert (code != 0 or '"success": false' in text) and "registered successfully" not in text and "404" in text, (name, text[-2000:])
    _assert_nothing_left(out)
