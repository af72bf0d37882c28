"""`simulation.ray_address`: a run on an existing two-node Ray cluster (head + worker on
loopback, each started with `ray start` and its own temp dir) uses both nodes.

`ray stop` would stop every Ray on the machine (other people's too), so the cluster is
stopped by PID: the processes whose command line names one of this test's temp dirs, and
all their descendants (Ray's workers and agents)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fedft
from conftest import _cmdline, _parent, _pids, kill_pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(temp_dirs: list[str]) -> list[int]:
    roots = {pid for pid in _pids() if any(t in _cmdline(pid) for t in temp_dirs)}
    found, grew = set(roots), True
    while grew:  # descendants of those (workers, agents), by parent chain
        grew = False
        for pid in _pids() - found:
            if _parent(pid) in found:
                found.add(pid)
                grew = True
    return sorted(found - {os.getpid()})


def _ray(*args: str) -> None:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli if os.path.exists(ray_cli) else "ray", *args], check=True, timeout=180, capture_output=True)


def _actor_logs(temp_dir: str) -> list[Path]:
    """Worker logs on one node that belong to Flower's ClientAppActor (Ray writes the
    actor name into each actor worker's log when it starts)."""
    logs = Path(temp_dir).glob("session_*/logs/worker-*")
    return [p for p in logs if ":actor_name:ClientAppActor" in p.read_text(errors="replace")]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ray") is None and not Path(sys.executable).with_name("ray").exists(), reason="ray CLI not installed")
def test_run_on_a_two_node_ray_cluster_uses_both_nodes(tiny_config, tmp_path, process_guard):
    # short paths: Ray's socket paths live under the temp dir (limit about 107 characters)
    head_dir, worker_dir = tempfile.mkdtemp(prefix="fh", dir="/tmp"), tempfile.mkdtemp(prefix="fw", dir="/tmp")
    port = _free_port()
    try:
        _ray("start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={head_dir}", "--node-ip-address=127.0.0.1",
             "--include-dashboard=false", "--disable-usage-stats")
        _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={worker_dir}", "--node-ip-address=127.0.0.1")
        cfg = dict(tiny_config, partition={"method": "iid", "num_clients": 4})
        # one round: its 4 clients already need both nodes' actors
        cfg["simulation"] = dict(cfg["simulation"], rounds=1, clients_per_round=4, ray_address=f"127.0.0.1:{port}")
        result = fedft.run(cfg, out=tmp_path / "cluster", quiet=True)
        assert result.summary["status"] == "completed"
        assert result.summary["rounds"] == 1
        # one CPU per node and one per client: Flower's pool is one actor on each node
        assert _actor_logs(head_dir), "no client actor ran on the head node"
        assert _actor_logs(worker_dir), "no client actor ran on the worker node"
    finally:
        kill_pids(_cluster_pids([head_dir, worker_dir]))
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)
