"""The `fedft` command's warm start (fedft/runtime/warm_start.py) on and off: whole
processes on the quickstart workload (--rounds rounds, 1 local epoch, CPU), alternating

  warm:    python -m fedft run simulations/quickstart.toml ...   (the command as users run it)
  driver:  the same command with torch imported before it starts. The warm start then
           stands aside by design (it only helps a fresh process), so the local workers
           are forked from the driver, as before the warm start.

For each run: wall time from launch to exit, and when each metrics.csv row appeared
(metrics.csv polled every 10 ms). Row r is written after round r's central evaluation,
which runs while round r + 1 trains, so row 1 marks the end of round 2's training.

    python benchmarks/warm_start.py [--repeats 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER_FORKS = "import sys, torch; from fedft.cli import console; sys.argv[0] = 'fedft'; console()"


def one_run(arm: str, rounds: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    args = ["run", "simulations/quickstart.toml", "--quiet", "--out", str(out), "--set", f"simulation.rounds={rounds}",
            "--set", "train.local_epochs=1", "--set", "simulation.device=cpu"]
    cmd = [sys.executable, "-m", "fedft", *args] if arm == "warm" else [sys.executable, "-c", DRIVER_FORKS, *args]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    rows_at: list[float] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None:
        try:
            seen = (out / "metrics.csv").read_text().count("\n") - 1
        except OSError:
            seen = 0
        while len(rows_at) < seen:
            rows_at.append(time.perf_counter() - t0)
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{arm}: fedft run failed ({proc.returncode}):\n{proc.stdout.read()[-3000:] if proc.stdout else ''}")
    return {"wall": wall, "rows_at": rows_at}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fedft-warm-"))
    runs: dict[str, list[dict]] = {"driver": [], "warm": []}
    try:
        for i in range(args.repeats):
            for arm in runs:
                r = one_run(arm, args.rounds, work / arm)
                runs[arm].append(r)
                print(f"run {i + 1} {arm:<7} {r['wall']:5.2f} s  rows at " + " ".join(f"{t:.2f}" for t in r["rows_at"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nquickstart, {args.rounds} rounds, 1 local epoch; medians of {args.repeats} alternating runs")
    print(f"{'workers forked from':<22}{'launch -> exit':>16}{'row 0 at':>10}{'row 1 at':>10}{'last row at':>13}")
    for arm, label in (("driver", "the driver"), ("warm", "the warm process")):
        rs = runs[arm]
        med = lambda values: statistics.median(values)  # noqa: E731
        print(f"{label:<22}{med([r['wall'] for r in rs]):>14.2f} s{med([r['rows_at'][0] for r in rs]):>8.2f} s"
              f"{med([r['rows_at'][1] for r in rs]):>8.2f} s{med([r['rows_at'][-1] for r in rs]):>11.2f} s")
    ratio = statistics.median(r["wall"] for r in runs["warm"]) / statistics.median(r["wall"] for r in runs["driver"])
    print(f"\nwarm / driver, whole-run wall time (medians): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
