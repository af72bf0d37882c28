"""The `fedft` command's warm start (fedft/runtime/warm_start.py) on and off: whole
processes on the quickstart workload (--rounds rounds, 1 local epoch, CPU), alternating

  warm:    python -m fedft run simulations/quickstart.toml ...   (the command as users run it)
  driver:  the same command with torch imported before it starts. The warm start then
           stands aside by design (it only helps a fresh process), so the local workers
           are forked from the driver, as before the warm start.

For each run (`_common.run_fedft`): wall time from launch to exit, and when each
metrics.csv row appeared (polled every 10 ms). Row r is written after round r's central evaluation,
which runs while round r + 1 trains, so row 1 marks the end of round 2's training.

    python benchmarks/warm_start.py [--repeats 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import ROOT, run_fedft

DRIVER_FORKS = "import sys, torch; from fedft.cli import console; sys.argv[0] = 'fedft'; console()"
OVERRIDES = ["train.local_epochs=1", "simulation.device=cpu"]


def one_run(arm: str, rounds: int) -> dict:
    launcher = None if arm == "warm" else [sys.executable, "-c", DRIVER_FORKS]
    r = run_fedft(ROOT / "simulations" / "quickstart.toml", [f"simulation.rounds={rounds}", *OVERRIDES], launcher=launcher)
    return {"wall": r["wall"], "rows_at": r["rows_at"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"driver": [], "warm": []}
    for i in range(args.repeats):
        for arm in runs:
            r = one_run(arm, args.rounds)
            runs[arm].append(r)
            print(f"run {i + 1} {arm:<7} {r['wall']:5.2f} s  rows at " + " ".join(f"{t:.2f}" for t in r["rows_at"]), flush=True)
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
