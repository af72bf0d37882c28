"""What a Ray actor's start costs with and without a `runtime_env` (fedft.runtime.engine.start_ray).

    python benchmarks/ray_actor_start.py [--actors 3] [--repeats 2]

Each arm starts a 1-CPU local Ray, creates `--actors` actors one after another, each
importing torch and flwr as a client actor does, and prints the wall seconds and the CPU
seconds of the whole process tree (this process, Ray's daemons and workers). Arms alternate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import machine_cpu_seconds

CHILD = r"""
import os, sys, time, ray
env = sys.argv[1] == "runtime_env"
kw = {"runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}}} if env else {}
ray.init(include_dashboard=False, logging_level=40, num_cpus=1, _system_config={"worker_niceness": 0}, **kw)

@ray.remote(num_cpus=1)
class Client:
    def ready(self):
        import flwr, torch  # what a client actor imports before its first message
        return True

start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    actor = Client.remote()
    ray.get(actor.ready.remote())
    ray.kill(actor)
print(f"{time.perf_counter() - start:.2f}")
ray.shutdown()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.repeats):
        for arm in ("runtime_env", "inherited_env"):
            cpu = machine_cpu_seconds()
            out = subprocess.run([sys.executable, "-c", CHILD, arm, str(args.actors)], capture_output=True, text=True, check=True)
            cpu = machine_cpu_seconds() - cpu
            print(f"{arm:14s} {args.actors} actors: {out.stdout.strip()} s wall for the actors, {cpu:.1f} s CPU for the whole process")


if __name__ == "__main__":
    main()
