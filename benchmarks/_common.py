"""Shared by the benchmarks: run `fedft run` as a child process, sample the RSS of its
whole process tree from /proc, read back its per-round metrics, and read the machine's
CPU time."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent (every process: user, nice, system, irq,
    softirq, steal; from /proc/stat). The difference across a command is its cost with
    everything it started (Ray's daemons and workers, Flower's processes), on an idle machine."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree_sum(root_pid: int, read: Callable[[int], int]) -> int:
    """`read(pid)` summed over `root_pid` and all its descendants (a process that is gone counts 0)."""
    kids, total, todo = _children(), 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            total += read(pid)
        except (OSError, IndexError, ValueError, StopIteration):
            pass
    return total


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024


def tree_rss_bytes(root_pid: int) -> int:
    """Sum of resident memory over `root_pid` and all its descendants (shared pages,
    e.g. Ray's object store, count once per process that touches them: an upper bound)."""
    return _tree_sum(root_pid, _rss)


def tree_pss_bytes(root_pid: int) -> int:
    """Sum of proportional set sizes over `root_pid` and its descendants (/proc/PID/smaps_rollup):
    a page shared by n processes counts 1/n in each, so shared memory (pages a forked worker
    still shares with its parent, a memory-mapped file, Ray's object store) counts once."""
    return _tree_sum(root_pid, _pss)


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes in session `sid`: `run_fedft` starts fedft in its own
    session, which everything it starts (Ray's processes, local workers) stays in."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def run_fedft(config: str | Path, overrides: list[str], sample_every: float = 0.5, launcher: list[str] | None = None) -> dict:
    """`python -m fedft run CONFIG --set ...` in a child process; returns wall time from
    launch to exit, peak tree RSS and PSS, the metrics.csv rows, the time the first round row
    appeared (start-up = launch to round 0 row, i.e. Ray, nodes and the handshake up; the
    server sends round 1 right after) and the processes of its session still running
    when it exited (`left_running`). `launcher`: what runs the `fedft` command line instead
    of `python -m fedft`."""
    from fedft.state.run_folder import read_summary  # here: the scripts put ROOT on sys.path after importing this module

    out = Path(tempfile.mkdtemp(prefix="fedft-bench-")) / "run"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [*(launcher or [sys.executable, "-m", "fedft"]), "run", str(config), "--quiet", "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    peak, peak_pss, first_row_at = 0, 0, None
    rows_at: list[float] = []  # when each metrics.csv row appeared (polled every 10 ms)
    stop = threading.Event()

    def watch_rows() -> None:
        while not stop.is_set():
            try:
                seen = (out / "metrics.csv").read_text().count("\n") - 1
            except OSError:
                seen = 0
            while len(rows_at) < seen:
                rows_at.append(time.perf_counter() - t0)
            stop.wait(0.01)

    def sample() -> None:
        nonlocal peak, peak_pss, first_row_at
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            peak_pss = max(peak_pss, tree_pss_bytes(proc.pid))
            if first_row_at is None and (out / "metrics.csv").exists():
                first_row_at = time.perf_counter() - t0
            stop.wait(sample_every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    watcher = threading.Thread(target=watch_rows, daemon=True)
    watcher.start()
    try:
        output, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        sampler.join()
        watcher.join()
    wall = time.perf_counter() - t0
    left = session_processes(proc.pid)  # at once, as the command returned
    if proc.returncode != 0:
        raise RuntimeError(f"fedft run failed ({proc.returncode}):\n{output[-3000:]}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    summary = read_summary(out)
    if summary is None:
        raise RuntimeError(f"fedft run left no readable summary.json in {out}")
    return {"wall": wall, "peak_rss": peak, "peak_pss": peak_pss, "rows": rows, "summary": summary, "first_row_at": first_row_at, "rows_at": rows_at,
            "run_dir": out, "left_running": left}


def round_period(rows_at: list[float]) -> float:
    """Mean seconds per round, from when row 0 (the initial evaluation) appeared to when
    the last row did: every round's training and evaluation, as a user waits for them.
    Since round r's evaluation runs while round r + 1 trains, `wall_seconds` (a round's
    start to its evaluation's end) overlaps the next round, and summing or comparing it
    with a sequential loop's rounds counts that overlap twice."""
    return (rows_at[-1] - rows_at[0]) / (len(rows_at) - 1)


def round_seconds(rows: list[dict]) -> list[float]:
    """wall_seconds of rounds 1.. (round 0 is the initial evaluation and handshake)."""
    return [float(r["wall_seconds"]) for r in rows if int(r["round"]) > 0]
