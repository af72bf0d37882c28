"""Shared fixtures. Every process a test starts is stopped by that test, by PID."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Debian's dataset-fashion-mnist is optional: tests that need it skip, with the fix, where it is absent.
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # fedft.ml.data.images.FASHION_MNIST_DIR
HAS_FASHION_MNIST = any((FASHION_MNIST / f"train-images-idx3-ubyte{ext}").is_file() for ext in (".gz", ""))
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST, reason=f"Fashion-MNIST is not in {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")


# --- `slow` is checked, not trusted -------------------------------------------------
# Every test that starts a process (Ray, a SuperLink/SuperNode, a `fedft` subprocess)
# must be marked `slow`, so `pytest -m "not slow"` stays a fast loop. An audit hook
# (PEP 578) sees every process start; in an unmarked test it fails with the fix.
_PROCESS_EVENTS = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec", "os.spawn"}
_running = {"slow": True}  # outside a test (collection, session fixtures) anything goes


def _refuse_processes_in_fast_tests(event: str, args: tuple) -> None:
    if event in _PROCESS_EVENTS and not _running["slow"]:
        raise RuntimeError(f"this test starts a process ({event}: {str(args)[:120]}); mark it @pytest.mark.slow so `pytest -m 'not slow'` stays fast")


sys.addaudithook(_refuse_processes_in_fast_tests)

# matplotlib builds its font cache on first import, running `fc-list` where fontconfig is
# installed: do it here, outside any test, so a fast test that plots on a new machine does not
# trip the hook above.
import matplotlib.font_manager  # noqa: E402,F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run order: slow tests that share one Ray, then slow tests that need it stopped
    (`process_guard` stops the shared Ray; the next `shared_ray` test starts it again),
    then the other slow tests, then the fast ones; file order within each group. Fewer Ray
    restarts, and the long tests start first, so the two xdist workers finish together."""
    def group(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 3
        names = getattr(item, "fixturenames", ())
        return 0 if "shared_ray" in names else 1 if "process_guard" in names else 2

    items.sort(key=group)  # stable; the same order in every xdist worker


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running["slow"] = item.get_closest_marker("slow") is not None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _running["slow"] = True


def _pids() -> set[int]:
    return {int(d) for d in os.listdir("/proc") if d.isdigit()}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


SPAWNED = ("ray", "raylet", "gcs_server", "flower-", "flwr", "fedft", "default_worker", "dashboard")


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from(pid: int, ancestor: int) -> bool:
    """True if `ancestor` is on pid's parent chain. Other people's processes on a shared
    machine (another test session, another run) are never ours to kill."""
    for _ in range(64):
        pid = _parent(pid)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def new_processes(before: set[int]) -> list[int]:
    """PIDs that appeared since `before`, descend from this process and look like Ray/Flower/fedft processes."""
    me = os.getpid()
    return [pid for pid in _pids() - before if pid != me and any(tag in _cmdline(pid) for tag in SPAWNED) and _descends_from(pid, me)]


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




# --- one Ray for the tests that can share it ---------------------------------------
# Starting Ray costs seconds; tests that run fedft in this process with default Ray
# settings ask for `shared_ray` and reuse one local Ray (fedft leaves a Ray it did not
# start running: fedft.runtime.engine_patches.ray_left_running). Any other test that
# uses `process_guard` gets it stopped first, so it starts from a clean slate.
_shared_ray: dict[str, set[int]] = {"roots": set()}  # the shared Ray's own processes (GCS, raylet, ...)


def _stop_shared_ray() -> None:
    import ray

    roots, _shared_ray["roots"] = _shared_ray["roots"], set()
    tree = {p for p in _pids() if p in roots or any(_descends_from(p, r) for r in roots)}
    if ray.is_initialized():
        ray.shutdown()
    kill_pids(sorted(p for p in tree if Path(f"/proc/{p}").exists()))


def _in_shared_ray(pid: int) -> bool:
    roots = _shared_ray["roots"]
    return pid in roots or any(_descends_from(pid, r) for r in roots)


def shared_ray_cpus() -> int:
    """This test process's share of the machine's cores (xdist runs one shared Ray per
    worker). Each run starts one Ray actor per CPU, and an actor's start (a process that
    imports torch, Flower and fedft) costs more than the tiny runs' training: the simulation
    tests spent 179 s of CPU with a 2-CPU Ray, 119 s with 1 CPU (benchmarks/README.md, 14)."""
    from fedft.runtime.local_backend import machine_cpus

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, machine_cpus() // workers)


@pytest.fixture(scope="session")
def _ray_session():
    yield
    if _shared_ray["roots"]:
        _stop_shared_ray()


@pytest.fixture
def shared_ray(_ray_session):
    """A local Ray started once (as `fedft run` starts it) and kept for the next test that asks."""
    import ray

    from fedft.config import SimulationConfig
    from fedft.runtime.engine import backend_config, start_ray

    if not ray.is_initialized():
        before = _pids()
        start_ray(dict(backend_config(SimulationConfig(ray_num_cpus=shared_ray_cpus()))["init_args"]))
        _shared_ray["roots"] = set(new_processes(before))
    yield


@pytest.fixture
def process_guard(request):
    """Records processes before the test; afterwards reports and kills any Ray/Flower
    process the test left behind, so one failure never leaks into the next test."""
    sharing = "shared_ray" in request.fixturenames
    if not sharing and _shared_ray["roots"]:
        _stop_shared_ray()  # this test wants its own Ray, or none
    before = _pids()
    yield before
    ours = {p for p in new_processes(before) if not _in_shared_ray(p)}  # while the process tree is intact; Ray's shutdown may orphan some
    try:
        import ray

        if ray.is_initialized() and not (sharing and _shared_ray["roots"]):
            ray.shutdown()
    except ImportError:
        pass
    deadline = time.time() + 10
    def alive_ours() -> list[int]:
        found = {p for p in new_processes(before) if not _in_shared_ray(p)} | {p for p in ours if any(tag in _cmdline(p) for tag in SPAWNED)}
        return [p for p in sorted(found) if Path(f"/proc/{p}").exists() and "zombie" not in _status(p)]

    leftovers = alive_ours()
    while leftovers and time.time() < deadline:  # Ray's own shutdown finishes asynchronously
        time.sleep(0.2)
        leftovers = alive_ours()
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


@pytest.fixture(scope="session")
def play(tmp_path_factory):
    """A small generated play (tests/plays.py): the text tests never read outside the repo."""
    from plays import write_play

    return write_play(tmp_path_factory.mktemp("play") / "play.txt")
