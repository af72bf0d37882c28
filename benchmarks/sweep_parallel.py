"""Sweep points one at a time vs side by side (`fedft sweep --parallel N`).

The same sweep (simulations/quickstart.toml with fewer rounds, one point per seed) runs
once per `--parallel` value, each a `fedft sweep` child process into its own folder.
Prints the wall time of each and the speed-up over the first, and checks that every
point's final accuracy is the same whatever the parallelism (runs are seeded).

    python benchmarks/sweep_parallel.py [--parallel 1,2] [--seeds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import tomli_w

    from fedft.config import read_toml
    from fedft.state.run_folder import read_summary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", default="1,2", help="comma-separated values of --parallel to compare")
    parser.add_argument("--seeds", type=int, default=4, help="points in the sweep (one per seed)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    raw = read_toml(ROOT / "simulations" / "quickstart.toml")
    raw["simulation"]["rounds"] = args.rounds
    raw["sweep"] = {"seed": list(range(args.seeds))}
    tmp = Path(tempfile.mkdtemp(prefix="fedft-sweep-bench-"))
    config = tmp / "sweep.toml"
    config.write_text(tomli_w.dumps(raw))
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    walls, accuracies = {}, {}
    for parallel in [int(v) for v in args.parallel.split(",")]:
        out = tmp / f"parallel-{parallel}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fedft", "sweep", str(config), "--out", str(out), "--parallel", str(parallel), "--quiet"],
                       cwd=ROOT, env=env, check=True)
        walls[parallel] = time.perf_counter() - t0
        points = json.loads((out / "points.json").read_text())
        accuracies[parallel] = [read_summary(out / p["name"])["final_accuracy"] for p in points]
        print(f"--parallel {parallel}: {walls[parallel]:.1f} s, final accuracies {accuracies[parallel]}", flush=True)
    first = next(iter(walls))
    same = all(a == accuracies[first] for a in accuracies.values())
    print(f"\n{args.seeds} points of {args.rounds} rounds on {len(os.sched_getaffinity(0))} CPUs; results identical across --parallel: {same}")
    for parallel, wall in walls.items():
        print(f"--parallel {parallel}: {wall:7.1f} s  speed-up over --parallel {first}: {walls[first] / wall:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
