"""Start-up: time from `fedft run` to its first round, and how it splits.

Each part is timed in a fresh child process (nothing cached by an earlier part):
  imports  - `import torch, flwr, ray, fedft.api, fedft.fl.server.app, fedft.fl.client.app`
  data     - `fedft.api.prepare(config)`: validate, load, partition (after imports)
  ray      - `ray.init()` + `ray.shutdown()` with fedft's arguments (after imports)
  fedft run to round 0 row - the whole command until metrics.csv appears (round 0 =
             central evaluation of the initial model, after nodes start and the
             workers have loaded their data), then round 1 for reference.

    python benchmarks/startup.py [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _common import ROOT, run_fedft

PARTS = {
    "imports": "import time; t=time.perf_counter(); import torch, flwr, ray, fedft.api, fedft.fl.server.app, fedft.fl.client.app; print(time.perf_counter()-t)",
    "data": "import time, sys, fedft.api; t=time.perf_counter(); fedft.api.prepare(sys.argv[1], sys.argv[2:]); print(time.perf_counter()-t)",
    "ray": ("import time, ray; from fedft.runtime.engine import backend_config, _start_ray; from fedft.config import SimulationConfig; "
            "t=time.perf_counter(); _start_ray(backend_config(SimulationConfig())['init_args']); ray.shutdown(); print(time.perf_counter()-t)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "simulations" / "quickstart.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
