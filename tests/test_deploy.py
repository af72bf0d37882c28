"""Real deployment: SuperLink, SuperNodes and the run as separate OS processes on
127.0.0.1, TLS on, free ports chosen at run time. Every process a test starts is
stopped by PID in a `finally` (and `process_guard` sweeps whatever is left)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch

import fedft
from fedft.deploy.processes import descendants, free_port, tagged
from fedft.fl.server.sampling import sample_clients
from fedft.state.model_file import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env.update(extra)
    return env


def _config(tmp_path: Path, seed: int = 7, **simulation) -> Path:
    cfg = {
        "name": "deploy",
        "seed": seed,
        "data": {"name": "mnist-5k", "test_fraction": 0.5},
        "partition": {"method": "iid", "num_clients": 3},
        "model": {"name": "seed_cnn"},
        "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 32},
        "simulation": {"rounds": 2, "clients_per_round": 3, "device": "cpu", "round_timeout": 120, **simulation},
        "output": {"dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "deploy.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def _fedft(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedft", *args], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env=_env(), cwd=ROOT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets fedft stop what it started; then SIGKILL whatever of the tree is left
    (children are listed first: once their parent is gone they are re-parented to init)."""
    children = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    left = [*children, *descendants(proc.pid)] + ([proc.pid] if proc.poll() is None else [])
    for pid in left:
        if any(tag in _cmdline(pid) for tag in ("flower-", "flwr", "fedft")):  # still ours, not a reused PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(timeout=10)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _assert_nothing_left(run_dir: Path) -> None:
    launch_id = json.loads((run_dir / "logs" / "processes.json").read_text())["launch_id"]
    assert tagged(launch_id) == [], "fedft left processes running"


@pytest.mark.slow
def test_launch_tls_two_supernodes_two_rounds(tmp_path, shared_ray, process_guard):
    # two nodes prove what three would (TLS, each node its own partition, the simulation's
    # numbers bit for bit); each node costs a ClientApp process per message
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(tmp_path, clients_per_round=2)
    config.write_text(config.read_text().replace("num_clients = 3", "num_clients = 2"))
    out = tmp_path / "run"
    launch = _fedft("launch", str(config), "--clients", "2", "--out", str(out), "--set", "output.loggers=['tensorboard']", log=tmp_path / "launch.log")
    try:
        assert launch.wait(timeout=600) == 0, _read(tmp_path / "launch.log")
    finally:
        _stop(launch)
    printed = _read(tmp_path / "launch.log")
    assert "(TLS)" in printed and "round   2/2" in printed and "completed" in printed

    for name in ("config.toml", "metrics.csv", "metrics.jsonl", "summary.json", "model.pt", "accuracy.png"):
        assert (out / name).is_file(), name  # the same results folder as a simulation
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2 and summary["seed"] == 7
    assert summary["final_accuracy"] > 0.3  # 2 rounds of seed_cnn on 2 clients learns something
    rows = _rows(out)
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    assert all(r["clients_sampled"] == "2" and r["clients_replied"] == "2" for r in rows[1:])
    events = EventAccumulator(str(out / "tensorboard"))  # output.loggers work in the deployed ServerApp too
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("test_accuracy")] == [(int(r["round"]), pytest.approx(float(r["test_accuracy"]), rel=1e-6)) for r in rows]
    assert rows[1]["bytes_up"] == rows[1]["bytes_down"]  # clients send back model arrays only, same size as sent

    # the same ServerApp and ClientApp as a simulation (on the shared Ray): the same numbers, to the last bit
    sim = fedft.run(str(config), out=tmp_path / "sim", quiet=True)
    assert [r["test_accuracy"] for r in _rows(sim.run_dir)] == [r["test_accuracy"] for r in _rows(out)]
    assert [r["train_loss"] for r in _rows(sim.run_dir)] == [r["train_loss"] for r in _rows(out)]
    deployed = load_checkpoint(out / "model.pt")["state_dict"]
    assert all(torch.equal(deployed[k], v) for k, v in sim.state.items())

    logs = out / "logs"
    assert "https://127.0.0.1:" in _read(logs / "superlink.log")  # TLS on the SuperLink
    for k in range(2):
        assert "Receiving: train message" in _read(logs / f"supernode-{k}.log")
    _assert_nothing_left(out)


def _seed_and_client_in_round_1_only(clients_per_round: int) -> tuple[int, int]:
    """A seed whose round-1 sample has a client that round 2 does not sample."""
    for seed in range(100):
        only = set(sample_clients(seed, 1, 3, clients_per_round)) - set(sample_clients(seed, 2, 3, clients_per_round))
        if only:
            return seed, min(only)
    raise AssertionError("no such seed")


@pytest.mark.slow
def test_supernode_killed_in_round_1_run_still_finishes(tmp_path, process_guard):
    # 2 of 3 clients per round; kill one sampled in round 1 but not in round 2, so only
    # round 1 waits out the timeout for the dead node.
    seed, victim = _seed_and_client_in_round_1_only(2)
    out = tmp_path / "run"
    launch = _fedft("launch", str(_config(tmp_path, seed, clients_per_round=2, round_timeout=20)), "--clients", "3", "--out", str(out),
                    log=tmp_path / "launch.log")
    try:
        victim_log = out / "logs" / f"supernode-{victim}.log"
        _wait_for(lambda: "Receiving: train message" in _read(victim_log), 300, "round 1 to reach the victim", launch)
        pid = json.loads((out / "logs" / "processes.json").read_text())["pids"][f"supernode-{victim}"]
        for p in [pid, *descendants(pid)]:  # a crash: the SuperNode and its ClientApp die at once
            os.kill(p, signal.SIGKILL)
        assert launch.wait(timeout=600) == 0, _read(tmp_path / "launch.log")
    finally:
        _stop(launch)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2
    r1, r2 = _rows(out)[1:]
    assert r1["clients_sampled"] == "2" and int(r1["clients_replied"]) <= 1
    assert int(r1["clients_failed"]) + int(r1["clients_timed_out"]) + int(r1.get("clients_dropped") or 0) >= 1
    assert r2["clients_sampled"] == "2"
    assert f"round 1: client {victim} (node" in _read(out / "logs" / "run.log")  # the failure is logged by node
    _assert_nothing_left(out)


def _local_dp_config(tmp_path: Path, name: str, **privacy) -> Path:
    """One client holding all of digits, σ = 1.0: one round costs it ε = 1.76 (RDP, δ = 1e-5), two 2.04."""
    cfg = {
        "name": name,
        "seed": 5,
        "data": {"name": "digits", "test_fraction": 0.2},
        "partition": {"method": "iid", "num_clients": 1},
        "train": {"lr": 0.05, "local_epochs": 1, "batch_size": 32},
        "simulation": {"rounds": 1, "clients_per_round": 1, "device": "cpu", "round_timeout": 120},
        "privacy": {"mode": "local", "noise_multiplier": 1.0, "accountant": "rdp", **privacy},  # rdp: the reference is Opacus' RDPAccountant
        "output": {"dir": str(tmp_path / "runs")},
    }
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


@pytest.mark.slow
def test_deployed_client_keeps_its_own_budget_across_a_server_restart(tmp_path, process_guard):
    """A `fedft client --max-epsilon 2` with one state folder, through two server runs
    (server and client restarted between them: Flower 1.42's SuperNode does not rejoin a
    restarted SuperLink). Run 1 (one round, ε 1.76) trains and leaves withheld metrics;
    run 2 asks for a round that would take it to 2.04 while naming the PRV accountant
    (tighter than the client's RDP bound) and pointing privacy.state_dir at an empty folder: the
    client refuses from its own history, and the server records a refused client."""
    from opacus.accountants import RDPAccountant

    state = tmp_path / "node"
    procs: list[subprocess.Popen] = []
    try:
        for name, privacy in (("first", {}), ("second", {"accountant": "prv", "state_dir": str(tmp_path / "server-chosen")})):
            port = free_port()
            server = _fedft("server", str(_local_dp_config(tmp_path, name, **privacy)), "--insecure", "--expose-control", "--host", "127.0.0.1",
                            "--port", str(port), "--out", str(tmp_path / name), log=tmp_path / f"{name}.log")
            client = _fedft("client", "--server", f"127.0.0.1:{port}", "--partition-id", "0", "--num-partitions", "1", "--insecure",
                            "--state-dir", str(state), "--max-epsilon", "2", log=tmp_path / f"client-{name}.log")
            procs += [server, client]
            # run 2 trains nothing (its only round is skipped): the run fails, the server exits 1
            assert server.wait(timeout=600) == (0 if name == "first" else 1), _read(tmp_path / f"{name}.log") + _read(tmp_path / f"client-{name}.log")[-3000:]
            _stop(server)
            _stop(client)
            if name == "first":
                history = json.loads((state / "client-0.json").read_text())["history"]
                assert len(history) == 1 and history[0][0] == 1.0  # on the client's disk
    finally:
        for proc in procs:
            _stop(proc)

    first, second = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("first", "second"))
    reference = RDPAccountant()
    reference.history = [tuple(history[0])]
    assert first["status"] == "completed" and first["epsilon"] == pytest.approx(reference.get_epsilon(1e-5)) and first["epsilon"] < 2
    assert first["noise_source"] == "os" and first["client_metrics"] == "withheld"  # deployment draws from OS entropy
    assert 'noise_source = "os"' in (tmp_path / "first" / "config.toml").read_text()
    row = _rows(tmp_path / "first")[1]
    assert row["clients_replied"] == "1" and row["train_loss"] == "" and row["test_accuracy"] != ""  # nothing computed on private data
    assert second["status"] == "failed" and second["error"].startswith("every round was skipped")
    assert second["clients_refused_policy"] == [0] and second["clients_budget_spent"] == [0]
    row = _rows(tmp_path / "second")[1]
    assert row["clients_refused_budget"] == "1" and row["round_skipped"] == "1"
    assert json.loads((state / "client-0.json").read_text())["history"] == history  # the refused round spent nothing
    assert not (tmp_path / "server-chosen").exists()


@pytest.mark.slow
def test_fedft_client_wrapper_imports_neither_torch_nor_flower():
    """`fedft client` only supervises its SuperNode (which, with its ClientApp processes, loads
    Flower and torch): the wrapper on a client machine starts at once and holds little memory."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "fedft", "client", "--server", "127.0.0.1:1", "--partition-id", "0",
                           "--num-partitions", "1", "--insecure", "--ca", "ca.crt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "fedft: error: --insecure: given together with --ca." in proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "fedft.deploy.supernode" in imported  # the command ran (importlib's own imports are not timed)
    assert not {name for name in imported if name.split(".")[0] in ("torch", "flwr", "ray", "opacus")}
