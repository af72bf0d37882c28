"""FedAvg vs robust aggregators under the same attack, each against its own no-attack run.

    python benchmarks/robustness.py                      # simulations/attack_signflip.toml
    python benchmarks/robustness.py --set attack.scale=1 --strategies fedavg fedmedian

Prints a markdown table of final central test accuracy and writes OUT/table.md and
OUT/results.json (each arm's results folder is OUT/<arm>/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arms import results_table, run_arms  # noqa: E402

from fedft.fl.client.attack import attackers  # noqa: E402
from fedft.jobs.validate import load_config  # noqa: E402

# Parameters each strategy needs to face 2 attackers out of 10.
STRATEGY_SETTINGS = {
    "fedavg": [],
    "fedmedian": [],
    "fedtrimmedavg": ["strategy.beta=0.2"],
    "krum": ["strategy.num_malicious_nodes=2"],
    "multikrum": ["strategy.num_malicious_nodes=2", "strategy.num_nodes_to_select=6"],
    "bulyan": ["strategy.num_malicious_nodes=1"],  # n = 10 allows f <= 1 (n >= 4f + 3)
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="simulations/attack_signflip.toml")
    parser.add_argument("--strategies", nargs="+", default=["fedavg", "fedmedian", "fedtrimmedavg", "krum"], choices=sorted(STRATEGY_SETTINGS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="applied to every arm")
    parser.add_argument("--out", default="runs/robustness")
    args = parser.parse_args(argv)

    arms: dict[str, list[str]] = {}
    for name in args.strategies:
        settings = [f"strategy.name={name}", *STRATEGY_SETTINGS[name]]
        arms[f"{name}-clean"] = [*settings, "attack.kind=none", f"name={name}-clean"]
        arms[f"{name}-attacked"] = [*settings, f"name={name}-attacked"]
    results = run_arms(args.config, arms, Path(args.out), args.overrides)

    fedavg_clean = results.get("fedavg-clean", {}).get("final")
    rows = []
    for name in args.strategies:
        clean, attacked = results[f"{name}-clean"], results[f"{name}-attacked"]
        row = [name, clean["final"], attacked["final"], f"{100 * (attacked['final'] - clean['final']):+.1f}"]
        if fedavg_clean is not None:
            row.append(f"{100 * (attacked['final'] - fedavg_clean):+.1f}")
        rows.append(row + [clean["failed"] + attacked["failed"]])
    header = ["strategy", "no attack", "attacked", "change (points)"] + (["vs FedAvg no attack (points)"] if fedavg_clean is not None else []) + ["lost replies"]
    table = results_table(header, rows)
    (Path(args.out) / "table.md").write_text(table)
    cfg = load_config(args.config, args.overrides)
    who = sorted(attackers(cfg.attack.seed, cfg.partition.num_clients, cfg.attack.fraction))
    print(f"\n{args.config} {' '.join(args.overrides)}: final central test accuracy after {cfg.simulation.rounds} rounds;")
    print(f"attack {cfg.attack.kind} (scale {cfg.attack.scale}) by clients {who} of {cfg.partition.num_clients}\n")
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
