"""The two simulation backends (`simulation.backend`): Ray by default, which one "auto" picks, that the
local worker pool gives the Ray path's results bit for bit (faults included), and that
`fedft run` returns only once every process it started has exited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import torch

import fedft
from fedft.config import SimulationConfig
from fedft.errors import FedftError
from fedft.jobs.validate import load_config
from fedft.runtime.engine import choose_backend
from fedft.runtime.local_backend import pool_size
from fedft.runtime.reaping import descendants

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- pure

@pytest.mark.parametrize(("settings", "ray_running", "cuda", "linux", "expected"), [
    ({}, False, False, True, "ray"),  # the default: Flower's simulation engine on Ray
    ({"backend": "auto"}, False, False, True, "local"),
    ({"backend": "auto", "ray_address": "auto"}, False, False, True, "ray"),
    ({"backend": "auto"}, True, False, True, "ray"),  # a notebook's ray.init(): used, as before
    ({"backend": "auto"}, False, True, True, "ray"),  # a forked worker cannot use its parent's CUDA
    ({"backend": "auto"}, False, False, False, "ray"),  # fork is Linux's
    ({"backend": "ray"}, False, False, True, "ray"),
    ({"backend": "local"}, True, True, True, "local"),
])
def test_ray_by_default_and_auto_is_local_on_one_linux_machine_without_ray_or_cuda(settings, ray_running, cuda, linux, expected):
    assert choose_backend(SimulationConfig(**settings), ray_running, cuda, linux) == expected


def test_the_pool_has_as_many_workers_as_ray_would_have_actors():
    assert pool_size(2, 1.0) == 2
    assert pool_size(2, 2.0) == 1
    assert pool_size(16, 3.0) == 5
    assert pool_size(1, 4.0) == 1  # always at least one
    assert pool_size(4, 0.5) == 8


def test_local_backend_refuses_a_cluster_address(tiny_config):
    tiny_config["simulation"].update(backend="local", ray_address="auto")
    with pytest.raises(FedftError, match="simulation.backend"):
        load_config(tiny_config)


# ---------------------------------------------------------------- end to end

def _rows(run_dir: Path) -> list[str]:
    """metrics.csv without its wall_seconds column."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    drop = lines[0].split(",").index("wall_seconds")
    return [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in lines]


@pytest.mark.slow
def test_local_and_ray_backends_give_identical_results_faults_included(tiny_config, tmp_path, shared_ray, process_guard):
    # seed 14: round 1 has a dropout and a crash among the 3 clients, round 2 a dropout
    tiny_config["seed"] = 14
    tiny_config["faults"] = {"crash_probability": 0.3, "dropout_probability": 0.2}
    tiny_config["simulation"]["min_replies"] = 1
    results = {}
    for backend in ("local", "ray"):
        tiny_config["simulation"]["backend"] = backend
        results[backend] = fedft.run(tiny_config, out=tmp_path / backend, quiet=True)
        assert results[backend].summary["status"] == "completed", results[backend].summary
    assert descendants(os.getpid()) - set(shared_ray_pids()) == set(), "the local workers outlived the run"
    local, ray = results["local"], results["ray"]
    assert _rows(local.run_dir) == _rows(ray.run_dir)
    failed = [r["clients_failed"] for r in local.metrics[1:]]
    dropped = [r["clients_dropped"] for r in local.metrics[1:]]
    assert sum(failed) >= 1 and sum(dropped) >= 1, (failed, dropped)  # crashes are failed replies, the run goes on
    assert local.state.keys() == ray.state.keys()
    for key, value in ray.state.items():
        assert local.state[key].dtype == value.dtype and local.state[key].numpy().tobytes() == value.numpy().tobytes(), key
    saved = {b: torch.load(results[b].run_dir / "model.pt", weights_only=True)["state_dict"] for b in results}
    assert all(torch.equal(saved["local"][k], saved["ray"][k]) for k in saved["ray"])


def shared_ray_pids() -> set[int]:
    from conftest import _shared_ray

    roots = _shared_ray["roots"]
    return {p for r in roots for p in descendants(r)} | set(roots)


def _session_processes(sid: int) -> list[str]:
    """Live processes of session `sid` (a `fedft run` started with its own session keeps
    everything it starts there: Ray's GCS, raylet, agents, workers; the local workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    found.append(f"{entry}: {Path(f'/proc/{entry}/cmdline').read_bytes().replace(bytes(1), b' ').decode(errors='replace')[:120]}")
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ray", "local"])
def test_fedft_run_returns_after_every_process_it_started_exited(backend, tiny_config, tmp_path, process_guard):
    tiny_config["simulation"].update(rounds=1, backend=backend, ray_num_cpus=1)  # one worker process is enough to leave behind
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny_config))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fedft", "run", str(config), "--quiet", "--out", str(tmp_path / "run")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, _ = proc.communicate(timeout=240)  # returns when fedft exits
    left = _session_processes(proc.pid)  # at once: no grace period
    assert proc.returncode == 0, output
    assert left == [], f"still running after `fedft run` ({backend}) exited:\n" + "\n".join(left)
