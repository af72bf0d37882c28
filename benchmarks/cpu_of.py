"""CPU seconds the whole machine spent while a command ran, beside its wall time.

    python benchmarks/cpu_of.py CMD [ARG ...]

Counts every process (the command's children, Ray's daemons and workers, Flower's
processes), so run it on an otherwise idle machine. The command's output goes to the
terminal; the last line is `cpu ... s  wall ... s  rc ...: CMD`, and the exit code is the
command's.
"""

from __future__ import annotations

import subprocess
import sys
import time

from _common import machine_cpu_seconds


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    cpu, wall = machine_cpu_seconds(), time.perf_counter()
    rc = subprocess.call(argv)
    cpu, wall = machine_cpu_seconds() - cpu, time.perf_counter() - wall
    print(f"cpu {cpu:.1f} s  wall {wall:.1f} s  rc {rc}: {' '.join(argv)}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
