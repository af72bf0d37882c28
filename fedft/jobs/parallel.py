"""Sweep points side by side, each in its own `fedft run` process with its own local Ray.

Points of one sweep cannot share one Ray cluster well: Flower's Ray backend sizes its
actor pool to the whole cluster, so a second simulation's actors would wait for the
first's. Instead each point runs as a child process (`python -m fedft run`) whose local
Ray may use `cpus // parallel` CPUs (`simulation.ray_num_cpus`) and sees its share of the
GPUs (`CUDA_VISIBLE_DEVICES`, `visible_gpus`). The parent only starts
children, waits, and reports each one's exit; the point's own summary.json says how it
ended, and a point without a completed summary is rerun by the next resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fedft.config import FedftConfig, to_toml
from fedft.errors import FedftError

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60.0  # a child that got SIGTERM checkpoints and shuts Ray down within this


def cpus_per_point(configs: list[FedftConfig], parallel: int, cpus: int) -> int:
    """CPUs each point's local Ray may use; refuses a split that cannot place one client."""
    share = cpus // parallel
    if share < 1:
        raise FedftError("--parallel", f"{parallel} points at once on {cpus} CPUs leaves less than one CPU per point.", f"use --parallel {cpus} or fewer.")
    for cfg in configs:
        if cfg.simulation.ray_address:
            raise FedftError("--parallel", f"the points would share the Ray cluster at simulation.ray_address={cfg.simulation.ray_address!r}.", "drop --parallel; a cluster runs one point at a time.")
        need = cfg.simulation.client_resources.num_cpus
        if need > share:
            raise FedftError("--parallel", f"gives each point {share} of {cpus} CPUs, but a client needs client_resources.num_cpus={need:g}.", f"use --parallel {max(1, int(cpus // need))} or fewer.")
    return share


def visible_gpus(slot: int, parallel: int, gpus: list[str]) -> str | None:
    """CUDA_VISIBLE_DEVICES for the point running in `slot` (0..parallel-1) of `gpus` (the
    parent's visible devices): disjoint equal shares when there are enough, else one GPU
    each, round-robin (points then share GPUs); None without GPUs."""
    if not gpus:
        return None
    if len(gpus) >= parallel:
        share = len(gpus) // parallel
        return ",".join(gpus[slot * share : (slot + 1) * share])
    return gpus[slot % len(gpus)]


def parent_gpus() -> list[str]:
    """The devices this process may use, as CUDA_VISIBLE_DEVICES entries for its children."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.exists() else []
    return lines[-1] if lines else ""


def run_in_children(points: list[tuple[str, FedftConfig, Path]], parallel: int, ray_num_cpus: int,
                    on_done: Callable[[str, int, str], None], verbose: bool = False) -> None:
    """Run each (name, config, folder) as `python -m fedft run`, at most `parallel` at once;
    `on_done(name, exit code, last output line)` as each ends. On KeyboardInterrupt the
    running children get SIGTERM (they record themselves as interrupted), then the
    exception goes on."""
    todo = list(points)
    running: dict[str, tuple[subprocess.Popen, Path, int]] = {}
    gpus = parent_gpus()
    with tempfile.TemporaryDirectory(prefix="fedft-sweep-") as tmp:
        try:
            while todo or running:
                while todo and len(running) < parallel:
                    name, cfg, folder = todo.pop(0)
                    config_path, log_path = Path(tmp) / f"{name}.toml", Path(tmp) / f"{name}.log"
                    config_path.write_text(to_toml(cfg))
                    cmd = [sys.executable, "-m", "fedft", "run", str(config_path), "--out", str(folder), "--quiet",
                           "--set", f"simulation.ray_num_cpus={ray_num_cpus}", *(["--verbose"] if verbose else [])]
                    slot = min(set(range(parallel)) - {s for _, _, s in running.values()})
                    env = dict(os.environ)
                    if (devices := visible_gpus(slot, parallel, gpus)) is not None:
                        env["CUDA_VISIBLE_DEVICES"] = devices  # each point's Ray sees only its share of the GPUs
                    with open(log_path, "wb") as log:
                        # own session: a Ctrl-C at the terminal reaches the parent only, which sends each child one SIGTERM
                        running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env), log_path, slot)
                for name, (proc, log_path, _) in list(running.items()):
                    if proc.poll() is not None:
                        del running[name]
                        on_done(name, proc.returncode, _last_line(log_path))
                time.sleep(POLL_SECONDS)
        except BaseException:
            for proc, _, _ in running.values():
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for proc, _, _ in running.values():
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
