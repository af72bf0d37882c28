"""Trackers: what each of `output.loggers` adds to a run, outside the run itself.

Each tracker is timed in a fresh child process (only torch and fedft imported before,
as in a run), through the same `RunTrackers` that `fedft run` uses, on a fresh folder:
  start      - import the package, open the tracker run, log the config
  per round  - one metrics row of ROW_KEYS numbers (mean over --rounds rounds)
  finish     - model.pt (a --model-mib file) and summary.json as artifacts, close
W&B runs offline; MLflow uses its default store (a new SQLite file in the folder).

    python benchmarks/trackers_overhead.py [--rounds 50] [--model-mib 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import ROOT

TRACKERS = ("tensorboard", "mlflow", "wandb")
ROW_KEYS = 15  # about a DP run's metrics row (accuracy, loss, ε, bytes, clients, wall seconds, ...)

CHILD = r"""
import json, os, sys, tempfile, time
from pathlib import Path
name, rounds, mib = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run_dir = Path(tempfile.mkdtemp(prefix="fedft-trackers-"))
(run_dir / "model.pt").write_bytes(os.urandom(int(mib * 2**20)))
(run_dir / "summary.json").write_text(json.dumps({"status": "completed"}))
import torch  # loaded in every run before its trackers start: not their cost
from fedft.jobs.trackers import RunTrackers
t0 = time.perf_counter()
warnings = []
trackers = RunTrackers([name], warn=warnings.append)
config = {"name": "bench", "seed": 0, "train": {"lr": 0.05}, "output": {"mlflow_tracking_uri": "", "wandb_mode": "offline"}}
trackers.start(config, run_dir)
t1 = time.perf_counter()
for r in range(rounds):
    trackers.log_round({"round": r, **{f"metric_%d" % k: r + k / 10 for k in range(%(keys)d)}})
t2 = time.perf_counter()
trackers.finish(run_dir, "completed")
t3 = time.perf_counter()
if name == "wandb":
    import wandb
    wandb.teardown()  # stop the wandb-core service this process started
import shutil
shutil.rmtree(run_dir)
print(json.dumps({"start": t1 - t0, "per_round": (t2 - t1) / rounds, "finish": t3 - t2, "warnings": warnings}))
""".replace("%(keys)d", str(ROW_KEYS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--model-mib", type=float, default=1.0)
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", MLFLOW_DISABLE_TELEMETRY="true")
    print(f"workload: {args.rounds} rounds of {ROW_KEYS} metrics, a {args.model_mib:g} MiB model.pt; load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'tracker':<12}{'start s':>9}{'per round ms':>14}{'finish s':>10}")
    for name in TRACKERS:
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.rounds), str(args.model_mib)], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if result["warnings"]:
            print(f"{name}: {result['warnings'][0]}")
        print(f"{name:<12}{result['start']:>9.1f}{result['per_round'] * 1000:>14.1f}{result['finish']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
