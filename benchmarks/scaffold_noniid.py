"""SCAFFOLD vs FedAvg (and optionally FedProx) on a strongly non-IID split, same rounds.

    python benchmarks/scaffold_noniid.py                       # simulations/scaffold_noniid.toml
    python benchmarks/scaffold_noniid.py --set partition.method=pathological

Prints central test accuracy per round for each arm and writes OUT/table.md and
OUT/results.json (each arm's results folder is OUT/<arm>/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arms import results_table, run_arms  # noqa: E402

ARMS = {
    "fedavg": ["strategy.name=fedavg"],
    "scaffold": ["strategy.name=scaffold"],
    "fedprox": ["strategy.name=fedprox", "strategy.proximal_mu=0.01"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="simulations/scaffold_noniid.toml")
    parser.add_argument("--arms", nargs="+", default=["fedavg", "scaffold"], choices=sorted(ARMS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="applied to every arm")
    parser.add_argument("--out", default="runs/scaffold-noniid")
    args = parser.parse_args(argv)

    arms = {arm: [*ARMS[arm], f"name={arm}"] for arm in args.arms}
    results = run_arms(args.config, arms, Path(args.out), args.overrides)
    rounds = len(next(iter(results.values()))["curve"])
    rows = [[r] + [results[a]["curve"][r] for a in args.arms] for r in range(rounds)]
    rows.append(["best"] + [results[a]["best"] for a in args.arms])
    table = results_table(["round"] + args.arms, rows)
    (Path(args.out) / "table.md").write_text(table)
    print(f"\n{args.config} {' '.join(args.overrides)}: central test accuracy per round\n")
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
