"""Round policies on 6,000 simulated phones (simulations/cross_device_fashion_mnist.toml):
synchronous FedAvg, deadline rounds with over-selection, and FedBuff, each plain and under
central DP, plus deadline rounds with 8-bit and top-k updates. Time to accuracy is on the
virtual clock (what the simulated deployment would take), beside this machine's wall time.

Every policy consumes the same 6,000 reports (sync and deadline: 60 rounds of 100; FedBuff:
300 updates of 20, with FedBuff's plain server step: server momentum 0.9, which the
synchronous arms use, made its 300 updates of 20 diverge). Central DP: fixed-size sampling (the only valid kind when devices decide
who takes part), noise_multiplier 2.0, clipping 0.5; ε counts the rounds the most active
device joined, `ε all` every release. Each arm is a `fedft run` in OUT/<arm>; a completed arm
is read back, so an interrupted benchmark continues. Writes OUT/cross_device.md (the table)
and OUT/cross_device.png (accuracy against virtual hours).

    nice -n 10 python benchmarks/cross_device.py --out runs/cross_device [--target 0.7] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _arms import results_table, run_arms  # noqa: E402

from fedft.ml.data.images import FASHION_MNIST_DIR  # noqa: E402
from fedft.state.run_folder import read_rows, read_summary  # noqa: E402

CONFIG = ROOT / "simulations" / "cross_device_fashion_mnist.toml"
FEDBUFF = ["round_policy.name=fedbuff", "simulation.rounds=300", "simulation.evaluate_every=10", "strategy.server_momentum=0.0"]  # FedBuff's server SGD: momentum 0.9 over 300 small buffers diverged (0.365)
DEADLINE = ["round_policy.name=deadline"]
DP = ["privacy.mode=central", "privacy.client_sampling=fixed", "privacy.noise_multiplier=2.0", "privacy.clipping_norm=0.5"]
ARMS = {
    "sync": ["simulation.evaluate_every=2"],
    "deadline": DEADLINE + ["simulation.evaluate_every=2"],
    "fedbuff": FEDBUFF,
    "deadline_int8": DEADLINE + ["simulation.evaluate_every=2", "compression.kind=int8"],
    "deadline_topk": DEADLINE + ["simulation.evaluate_every=2", "compression.kind=topk", "compression.topk_fraction=0.05"],
    "sync_dp": ["simulation.evaluate_every=2"] + DP,
    "deadline_dp": DEADLINE + ["simulation.evaluate_every=2"] + DP,
    "fedbuff_dp": FEDBUFF + DP,
}


def time_to(rows: list[dict], target: float) -> float | None:
    """Virtual seconds at the first central evaluation at or above `target`."""
    return next((float(r["virtual_time"]) for r in rows[1:] if r.get("test_accuracy") is not None and r["test_accuracy"] >= target), None)


def arm_row(arm: str, run_dir: Path, target: float) -> list[object]:
    rows, s = read_rows(run_dir), read_summary(run_dir) or {}
    reached = time_to(rows, target)
    eps, eps_all = s.get("epsilon"), s.get("epsilon_all_releases")
    hours = lambda seconds: "-" if seconds is None else f"{seconds / 3600:.2f}"  # noqa: E731
    return [arm, s.get("final_accuracy"), hours(reached), hours(s.get("virtual_time")), round(float(s.get("wall_seconds", 0.0))),
            f"{s.get('bytes_down', 0) / 1e6:.0f}", f"{s.get('bytes_up', 0) / 1e6:.0f}", sum(int(r.get("clients_straggled") or r.get("clients_stale") or 0) for r in rows),
            "-" if eps is None else f"{eps:.2f}", "-" if eps_all is None else f"{eps_all:.2f}", s.get("rounds_joined_max", "-")]


def plot(out: Path, arms: list[str], target: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in arms:
        rows = [r for r in read_rows(out / arm) if r.get("test_accuracy") is not None and float(r.get("virtual_time") or 0.0) > 0]  # a log axis: round 0 left out
        ax.plot([float(r.get("virtual_time") or 0.0) / 3600 for r in rows], [r["test_accuracy"] for r in rows], label=arm, linestyle="--" if arm.endswith("_dp") else "-")
    ax.axhline(target, color="grey", linewidth=0.6)
    ax.set_xscale("log")  # sync's hours and deadline's minutes on one figure
    ax.set_xlabel("virtual time (hours of the simulated deployment)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Fashion-MNIST on 6,000 simulated devices")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "cross_device.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "cross_device"))
    parser.add_argument("--target", type=float, default=0.7, help="accuracy whose virtual time-to is tabulated")
    parser.add_argument("--only", action="append", default=[], help="run only these arms (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="added to every arm, e.g. simulation.rounds=10")
    args = parser.parse_args()
    if not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists():
        print(f"skipped: Fashion-MNIST is not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
        return 0
    out = Path(args.out)
    arms = {a: o + args.overrides for a, o in ARMS.items() if not args.only or a in args.only}
    run_arms(str(CONFIG), arms, out)
    header = ["arm", "final acc", f"hours to {args.target:g}", "virtual hours", "wall s", "MB down", "MB up", "stragglers / stale", "ε", "ε all", "max rounds joined"]
    table = results_table(header, [arm_row(a, out / a, args.target) for a in arms])
    text = f"Fashion-MNIST, 6,000 devices of 10 records, δ = 1e-5 ({CONFIG.name}; `python benchmarks/cross_device.py`)\n\n{table}\n"
    (out / "cross_device.md").write_text(text)
    print(text)
    print(f"plot: {plot(out, list(arms), args.target)}")
    (out / "table.json").write_text(json.dumps({a: arm_row(a, out / a, args.target) for a in arms}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
