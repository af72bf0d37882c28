"""Shared fixtures. Every process a test starts is stopped by that test, by PID."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def _pids() -> set[int]:
    return {int(d) for d in os.listdir("/proc") if d.isdigit()}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


SPAWNED = ("ray", "raylet", "gcs_server", "flower-", "flwr", "fedft", "default_worker", "dashboard")


def new_processes(before: set[int]) -> list[int]:
    """PIDs that appeared since `before` and look like Ray/Flower/fedft processes."""
    me = os.getpid()
    return [pid for pid in _pids() - before if pid != me and any(tag in _cmdline(pid) for tag in SPAWNED)]


def kill_pids(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid) for pid in pids):
            time.sleep(0.1)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "zombie"


def _ours(pid: int, token: str) -> bool:
    """Started by this test: carries its guard token (inherited through the environment,
    so daemons re-parented to init count too) or descends from this process. Processes
    of other test sessions running at the same time are neither, and are left alone."""
    try:
        if f"{GUARD_ENV}={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return True
    except OSError:
        pass
    me, seen = os.getpid(), set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == me:
            return True
    return False


GUARD_ENV = "FEDFT_TEST_GUARD"


@pytest.fixture
def process_guard():
    """Records processes before the test; afterwards reports and kills any Ray/Flower
    process the test left behind, so one failure never leaks into the next test."""
    import uuid

    before = _pids()
    token = uuid.uuid4().hex
    os.environ[GUARD_ENV] = token
    try:
        yield before
    finally:
        os.environ.pop(GUARD_ENV, None)
    _sweep(before, token)


def _sweep(before: set[int], token: str) -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass
    deadline = time.time() + 10
    leftovers = [p for p in new_processes(before) if _ours(p, token)]
    while leftovers and time.time() < deadline:  # Ray's own shutdown finishes asynchronously
        time.sleep(0.2)
        leftovers = [p for p in new_processes(before) if "zombie" not in _status(p) and _ours(p, token)]
    kill_pids(leftovers)


@pytest.fixture
def tiny_config(tmp_path) -> dict:
    """A 3-client, 2-round run on the embedded data that takes seconds."""
    return {
        "name": "tiny",
        "seed": 7,
        "data": {"name": "mnist-5k", "test_fraction": 0.1},
        "partition": {"method": "iid", "num_clients": 3},
        "model": {"name": "seed_cnn"},
        "train": {"lr": 0.05, "momentum": 0.9, "local_epochs": 1, "batch_size": 32},
        "strategy": {"name": "fedavg"},
        "simulation": {"rounds": 2, "clients_per_round": 3, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")},
    }
