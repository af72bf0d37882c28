"""The ready Fashion-MNIST privacy study: no DP, federated local DP at ε = 3 and 8, and the
centralised DP-SGD reference at ε = 3 and 8 (simulations/dp_fashion_mnist.toml), with the
issue's targets and each arm's wall time.

It is `fedft sweep` on that config in this process (the sweep's own resume: run the same
command with the same --out again and completed arms are kept), then a table from the
points' summary.json files. Skips with a reason where Fashion-MNIST is absent.

    nice -n 10 python benchmarks/dp_fashion_mnist.py --out runs/dp_fmnist          # 10 rounds (epochs) per arm
    nice -n 10 python benchmarks/dp_fashion_mnist.py --out runs/dp_fmnist_r3 --set simulation.rounds=3   # short run
    nice -n 10 python benchmarks/dp_fashion_mnist.py --out runs/dp_fmnist --only centralised=True  # some arms
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fedft.config import read_toml  # noqa: E402
from fedft.jobs.report import sweep_rows  # noqa: E402
from fedft.ml.data.images import FASHION_MNIST_DIR  # noqa: E402

CONFIG = ROOT / "simulations" / "dp_fashion_mnist.toml"
# issue 17's "done when" test accuracies, by (training, privacy mode, ε)
TARGETS = {("federated", "none", None): 0.89, ("federated", "local", 3.0): 0.78, ("federated", "local", 8.0): 0.82,
           ("centralised", "local", 3.0): 0.84, ("centralised", "local", 8.0): None}


def _label(row: dict) -> tuple[str, float | None]:
    eps = row.get("privacy.target_epsilon")
    training = "centralised" if row.get("simulation.centralised") else "federated"  # the point's own field (a missing point has no summary)
    if row.get("privacy.mode") == "none":
        return f"no DP (federated, {row.get('model.name') or 'dp_cnn'})", TARGETS[("federated", "none", None)]
    name = "centralised DP-SGD" if training == "centralised" else "federated local DP"
    return f"{name}, target ε = {eps:g}", TARGETS.get((training, "local", eps))


def _f(value, spec: str) -> str:
    return "-" if value is None or isinstance(value, str) else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "dp_fashion_mnist"), help="sweep folder (resumed when it exists)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, e.g. simulation.rounds=3")
    parser.add_argument("--only", action="append", default=[], help="run only points whose folder name contains this (repeatable)")
    args = parser.parse_args()
    if not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists():
        print(f"skipped: Fashion-MNIST is not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
        return 0
    from fedft.jobs.sweep import expand_grid, sweep

    raw = read_toml(CONFIG)
    if args.only:  # keep the sub-grids' points that match: a sweep of those alone, in the same folder layout
        from fedft.config import apply_overrides

        kept = [p for p in expand_grid(apply_overrides(raw, args.overrides)) if any(s in p.name for s in args.only)]
        if not kept:
            print(f"no point matches {args.only}")
            return 2
        grids = [{k: [v] for k, v in p.values.items()} for p in kept]
        raw["sweep"] = {"grid": [_nest(g) for g in grids]}
    resume = Path(args.out) if (Path(args.out) / "sweep.toml").exists() else None
    result = sweep(resume if resume else raw, overrides=None if resume else args.overrides, out=args.out, quiet=False)
    print()
    print(f"Fashion-MNIST, 10 IID clients of 6,000 records, δ = 1e-5, {os.cpu_count()} CPUs; {result.sweep_dir}")
    print("| arm | status | rounds (epochs) | ε | final test accuracy | target | wall s |")
    print("|---|---|---|---|---|---|---|")
    for row in sweep_rows(result.sweep_dir):
        label, target = _label(row)
        met = "" if target is None or row.get("final_accuracy") is None else (" (met)" if row["final_accuracy"] >= target else " (not met)")
        if row.get("status") != "completed":
            print(f"| {label} | {row.get('status')} | - | - | - | {'-' if target is None else f'≥ {target:g}'} | - |")
            continue
        print(f"| {label} | completed | {row.get('rounds') or '-'} | {_f(row.get('epsilon'), '.3g')} | {_f(row.get('final_accuracy'), '.4f')} | "
              f"{'-' if target is None else f'≥ {target:g}'}{met} | {_f(row.get('wall_seconds'), '.0f')} |")
    return 0


def _nest(flat: dict) -> dict:
    """{"a.b": [1]} -> {"a": {"b": [1]}} (a sub-grid as TOML nests it)."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return out


if __name__ == "__main__":
    raise SystemExit(main())
