"""The `fedft` command's warm start (fedft.runtime.warm_start): the local workers are forked
from a process that imported and loaded the data beside the driver's start-up. Same
results as workers forked from the driver, no process left behind, and bad input still
exits at once with code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch

import fedft
from test_backends import _rows, _session_processes

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

# A fresh process, as the `fedft` command: the workers' imports, the fork, then the rest.
MECHANICS = r"""
import json, os, sys
import fedft.fl.client.app
from fedft.runtime.warm_start import WarmStart

unused = WarmStart.begin()  # a run that never needs it (Ray, a failure): stopped and reaped
unused.close()
gone = not os.path.exists(f"/proc/{unused.pid}")

warm = WarmStart.begin()
from fedft.jobs.validate import load_config  # the driver's own imports go on meanwhile
warm.send_config(load_config(json.loads(sys.argv[1])).to_json())
ends = warm.request_workers(2)
pids = warm.collect_workers()
parent = lambda pid: int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
parents = [parent(p) for p in pids]
for end in ends:
    end.send(None)  # stop
os.waitpid(pids[0], 0)  # the first worker reaps the ones it forked before it exits
print(json.dumps({"me": os.getpid(), "unused_gone": gone, "pids": pids, "parents": parents,
                  "left": [p for p in pids[1:] if os.path.exists(f"/proc/{p}")]}))
"""


@pytest.mark.slow
def test_the_warm_process_forks_the_other_workers_and_serves_as_the_first(tiny_config, process_guard):
    out = subprocess.run([sys.executable, "-c", MECHANICS, json.dumps(tiny_config)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["unused_gone"], "a WarmStart closed unused must have exited"
    first, second = seen["pids"]
    assert seen["parents"] == [seen["me"], first]  # the driver's child forked the other worker
    assert seen["left"] == []


FALLBACK = r"""
import json, os, signal
from fedft.fl.client.app import app
from fedft.runtime.warm_start import WarmStart
from fedft.runtime.local_backend import LocalPool

warm = WarmStart.begin()
os.kill(warm.pid, signal.SIGKILL)  # it died (out of memory, say) before the driver needed its workers
os.waitpid(warm.pid, 0)
pool = LocalPool(app, 2, warm)
pids = pool.pids()
parent = lambda pid: int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
parents = [parent(p) for p in pids]
pool.close()
print(json.dumps({"me": os.getpid(), "pids": pids, "parents": parents, "left": [p for p in pids if os.path.exists(f"/proc/{p}")]}))
"""


@pytest.mark.slow
def test_without_the_warm_process_the_driver_forks_the_workers_itself(process_guard):
    out = subprocess.run([sys.executable, "-c", FALLBACK], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen["pids"]) == 2 and seen["parents"] == [seen["me"], seen["me"]]
    assert seen["left"] == []


def _session_parents(sid: int) -> dict[int, int]:
    """{pid: parent pid} of the live processes in session `sid`."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found[int(entry)] = int(fields[1])
    return found


def _cli(config: Path, out: Path) -> tuple[subprocess.CompletedProcess, list[str], bool]:
    """`fedft run` in its own session: (its result, its processes still alive once it exited,
    whether a child of the driver forked a process of its own while it ran: a worker
    forked by the warm process)."""
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "fedft", "run", str(config), "--quiet", "--out", str(out)], cwd=ROOT, env=ENV,
                                stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        parent_of: dict[int, int] = {}
        try:
            while proc.poll() is None:  # until it exits: what forked what, seen as it happens
                parent_of.update(_session_parents(proc.pid))
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=240)
    left = _session_processes(proc.pid)  # at once: no grace period
    children = {pid for pid, parent in parent_of.items() if parent == proc.pid}
    grandchild = any(parent in children for parent in parent_of.values())
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text()), left, grandchild


@pytest.mark.slow
def test_the_fedft_command_gives_the_results_of_workers_forked_from_the_driver(tiny_config, tmp_path, process_guard):
    # seed 14: round 1 has a dropout and a crash among the 3 clients, round 2 a dropout (as in test_backends)
    tiny_config["seed"] = 14
    tiny_config["faults"] = {"crash_probability": 0.3, "dropout_probability": 0.2}
    tiny_config["simulation"].update(min_replies=1, backend="local", ray_num_cpus=2)  # two workers: the second forked by the first
    config = tmp_path / "tiny.toml"
    config.write_text(tomli_w.dumps(tiny_config))
    done, left, worker_forked_worker = _cli(config, tmp_path / "cli")
    assert done.returncode == 0, done.stdout
    assert left == [], "still running after `fedft run` exited:\n" + "\n".join(left)
    assert worker_forked_worker, "the second worker should be forked by the first (the warm start), not by the driver"
    driver = fedft.run(tiny_config, out=tmp_path / "api", quiet=True)  # torch is imported here: workers forked from this process
    assert driver.summary["status"] == "completed"
    assert _rows(tmp_path / "cli") == _rows(driver.run_dir)
    saved = torch.load(tmp_path / "cli" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in driver.state.items())


@pytest.mark.slow
def test_bad_input_still_exits_with_code_2_and_leaves_no_process(tiny_config, tmp_path, process_guard):
    tiny_config["data"] = {"name": "fashion-mnist", "path": str(tmp_path / "missing")}  # valid config, unreadable data
    tiny_config["simulation"]["backend"] = "local"
    config = tmp_path / "bad.toml"
    config.write_text(tomli_w.dumps(tiny_config))
    done, left, _ = _cli(config, tmp_path / "run")
    assert done.returncode == 2, done.stdout
    assert done.stdout.count("\n") == 1 and "fedft: error: data" in done.stdout, done.stdout
    assert left == []
    assert not (tmp_path / "run").exists()
