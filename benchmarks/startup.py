"""Start-up: time from `fedft run` to its first round, and how it splits.

Each part is timed in a fresh child process (nothing cached by an earlier part):
  imports  - `import torch, flwr, ray, fedft.api, fedft.fl.server.app, fedft.fl.client.app`
  data     - `fedft.api.prepare(config)`: validate, load, partition (after imports)
  ray      - `ray.init()` + `ray.shutdown()` with fedft's arguments (after imports)
  fedft run to round 0 row - the whole command until metrics.csv appears (round 0 =
             central evaluation of the initial model, after nodes start and the
             workers have loaded their data), then round 1 for reference.

With --backends ray,local it instead runs the whole command (default: 5 rounds) for each
backend in turn, --repeats times alternating, and prints per backend the medians of:
launch -> round 0 recorded (the server sends round 1's messages right after that row is
written), the whole wall time, and how many of the command's processes were still
running when it returned (fedft run waits for every process it started: 0).

    python benchmarks/startup.py [--set KEY=VALUE ...]
    python benchmarks/startup.py --backends ray,local [--repeats 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from _common import ROOT, run_fedft

PARTS = {
    "imports": "import time; t=time.perf_counter(); import torch, flwr, ray, fedft.api, fedft.fl.server.app, fedft.fl.client.app; print(time.perf_counter()-t)",
    "data": "import time, sys, fedft.api; t=time.perf_counter(); fedft.api.prepare(sys.argv[1], sys.argv[2:]); print(time.perf_counter()-t)",
    "ray": ("import time, ray; from fedft.runtime.engine import backend_config, start_ray; from fedft.config import SimulationConfig; "
            "t=time.perf_counter(); start_ray(backend_config(SimulationConfig())['init_args']); ray.shutdown(); print(time.perf_counter()-t)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "simulations" / "quickstart.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--backends", default="", help="comma-separated simulation.backend values to compare, e.g. ray,local")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="with --backends: rounds per run")
    args = parser.parse_args(argv)
    if args.backends:
        return compare_backends(args.config, args.backends.split(","), args.repeats, args.rounds, args.overrides)
    overrides = ["simulation.rounds=1", "simulation.device=cpu", *args.overrides]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    times = {}
    for name, code in PARTS.items():
        out = subprocess.run([sys.executable, "-c", code, args.config, *overrides], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        times[name] = float(out.stdout.strip().splitlines()[-1])
    run = run_fedft(args.config, overrides, sample_every=0.1)
    to_round0 = run["first_row_at"]
    print(f"workload: {args.config} {overrides}")
    print(f"{'part':<34}{'seconds':>9}")
    for name, t in times.items():
        print(f"{name:<34}{t:>9.1f}")
    rest = to_round0 - sum(times.values())
    print(f"{'rest (nodes, actors, worker data)':<34}{rest:>9.1f}")
    print(f"{'fedft run -> round 0 recorded':<34}{to_round0:>9.1f}")
    print(f"{'round 1':<34}{float(run['rows'][1]['wall_seconds']):>9.1f}")
    print(f"\nshares of start-up: imports {times['imports'] / to_round0:.0%}, data {times['data'] / to_round0:.0%}, "
          f"ray {times['ray'] / to_round0:.0%}, rest {rest / to_round0:.0%}")
    return 0


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def compare_backends(config: str, backends: list[str], repeats: int, rounds: int, extra: list[str]) -> int:
    overrides = [f"simulation.rounds={rounds}", "simulation.device=cpu", *extra]
    print(f"workload: {config} {overrides}; {repeats} alternating runs per backend")
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    for i in range(repeats):
        for b in backends:
            load = _load()
            run = run_fedft(config, [*overrides, f'simulation.backend="{b}"'], sample_every=0.05)
            runs[b].append(run)
            print(f"run {i + 1} {b:<6} round 0 at {run['first_row_at']:6.1f} s  total {run['wall']:6.1f} s  "
                  f"left running {len(run['left_running'])}  load average before: {load}")
    print(f"\n{'backend':<8}{'-> round 0 (median)':>21}{'total (median)':>16}{'left running':>14}")
    med = {}
    for b, rs in runs.items():
        med[b] = (statistics.median(r["first_row_at"] for r in rs), statistics.median(r["wall"] for r in rs))
        print(f"{b:<8}{med[b][0]:>19.1f} s{med[b][1]:>14.1f} s{max(len(r['left_running']) for r in rs):>14}")
    same = len({tuple(tuple((k, v) for k, v in row.items() if k != "wall_seconds") for row in r["rows"]) for rs in runs.values() for r in rs}) == 1
    print(f"\nmetrics rows (without wall_seconds) identical across all runs: {same}")
    if len(backends) == 2:
        a, b = backends
        print(f"{a} / {b}: start-up {med[a][0] / med[b][0]:.2f}x, total {med[a][1] / med[b][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
