"""User-level DP without Poisson sampling on 6,000 Fashion-MNIST users
(simulations/dp_correlated_fashion_mnist.toml): DP-FedAvg's independent noise, DP-FTRL's
tree aggregation and banded matrix factorization (the banded square root), each
calibrated by the PLD accountant to ε ≈ 2 and ≈ 8 (δ = 1e-5) under cyclic participation,
plus DP-FedAvg with Poisson sampling (amplified, q = 100/6,000) at the same ε for
reference. Every arm also carries 500 canary users for the one-run audit's ε lower bound
(Steinke et al. 2023 at user level, docs/audit.md), which move the model a little: the
accuracies are those of runs with canaries.

Writes OUT/dp_correlated.md (the table: accuracy, ε under PLD and RDP, the noise
multiplier σ and σ/sens, the audit's lower bound, bytes) and OUT/dp_correlated.png
(accuracy against rounds). A completed arm is read back, so an interrupted run continues.

    nice -n 10 python benchmarks/dp_correlated.py --out runs/dp_correlated [--only ARM] [--set KEY=VALUE ...]
    python benchmarks/dp_correlated.py --plan-only [--rounds 120]   # the planned noise alone (seconds, no data needed)
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

CONFIG = ROOT / "simulations" / "dp_correlated_fashion_mnist.toml"
MECHANISMS = {"dp_fedavg": "independent", "dp_ftrl_tree": "tree", "bandmf": "banded"}
EPSILONS = (2.0, 8.0)
ARMS = {f"{arm}_eps{eps:g}": [f"privacy.noise_mechanism={mech}", f"privacy.target_epsilon={eps}"]
        for eps in EPSILONS for arm, mech in MECHANISMS.items()}
ARMS |= {f"dp_fedavg_poisson_eps{eps:g}": ["privacy.noise_mechanism=independent", "privacy.client_sampling=poisson", f"privacy.target_epsilon={eps}"]
         for eps in EPSILONS}


def arm_row(arm: str, run_dir: Path) -> list[object]:
    s = read_summary(run_dir) or {}
    f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    return [arm, s.get("noise_mechanism"), s.get("client_sampling"), s.get("final_accuracy"), f(s.get("epsilon")), f(s.get("epsilon_rdp")),
            f(s.get("noise_multiplier"), 3), f(s.get("effective_noise_multiplier", s.get("noise_multiplier")), 3), f(s.get("epsilon_lower_bound")),
            f"{s.get('bytes_down', 0) / 1e6:.0f}", f"{s.get('bytes_up', 0) / 1e6:.0f}", round(float(s.get("wall_seconds", 0.0)))]


def plot(out: Path, arms: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(EPSILONS), figsize=(10, 4), sharey=True)
    for ax, eps in zip(axes, EPSILONS):
        for arm in (a for a in arms if a.endswith(f"_eps{eps:g}")):
            rows = [r for r in read_rows(out / arm) if r.get("test_accuracy") is not None]
            ax.plot([int(r["round"]) for r in rows], [r["test_accuracy"] for r in rows], label=arm.rsplit("_eps", 1)[0], linestyle="--" if "poisson" in arm else "-")
        ax.set_title(f"ε ≈ {eps:g}, δ = 1e-5")
        ax.set_xlabel("round")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("Fashion-MNIST, 6,000 users, cyclic participation: correlated vs independent noise", fontsize=10)
    fig.tight_layout()
    path = out / "dp_correlated.png"
    fig.savefig(path, dpi=120)
    return path


def plan_table(rounds: int) -> str:
    """Per mechanism and ε: sens, σ, and the final model's noise std per coordinate, also in units of σ/sens."""
    from fedft.privacy.planner import plan_dp

    rows = []
    for eps in EPSILONS:
        for arm, mech in MECHANISMS.items():
            p = plan_dp(6000, 100, rounds, eps, 1e-5, sampling="cyclic", mechanism=mech, clipping_norm=0.5)
            rows.append([arm, eps, round(p.sensitivity, 3), round(p.noise_multiplier, 4), f"{p.noise_std_final:.4g}",
                         round(p.noise_std_final / (p.effective_noise_multiplier * 0.5 / 100), 2)])
    return results_table(["arm", "ε", "sens", "σ", "final noise std", "final noise std / (σC/(m·sens))"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "dp_correlated"))
    parser.add_argument("--only", action="append", default=[], help="run only these arms (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="added to every arm, e.g. simulation.rounds=10")
    parser.add_argument("--plan-only", action="store_true", help="print the planned noise per mechanism (fedft.privacy.planner) and stop")
    parser.add_argument("--rounds", type=int, default=60, help="--plan-only: rounds to plan for (default 60, as the config)")
    args = parser.parse_args()
    if args.plan_only:
        print(f"6,000 users, cohorts of 100 in cyclic turns, {args.rounds} rounds, C = 0.5, δ = 1e-5 (PLD)\n\n{plan_table(args.rounds)}")
        return 0
    if not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists():
        print(f"skipped: Fashion-MNIST is not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
        return 0
    out = Path(args.out)
    arms = {a: o + args.overrides for a, o in ARMS.items() if not args.only or a in args.only}
    run_arms(str(CONFIG), arms, out)
    header = ["arm", "noise", "sampling", "final acc", "ε (PLD)", "ε (RDP)", "σ", "σ / sens", "audit ε lower bound", "MB down", "MB up", "wall s"]
    table = results_table(header, [arm_row(a, out / a) for a in arms])
    text = f"Fashion-MNIST, 6,000 users of 10 records, cohort 100, δ = 1e-5 ({CONFIG.name}; `python benchmarks/dp_correlated.py`)\n\n{table}\n"
    (out / "dp_correlated.md").write_text(text)
    print(text)
    print(f"plot: {plot(out, list(arms))}")
    (out / "table.json").write_text(json.dumps({a: arm_row(a, out / a) for a in arms}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
