"""Final test accuracy and ε on mnist-5k: no DP, local DP at ε ≈ 1, 3, 8, central DP.

Every row is the same run (10 IID clients, all 10 per round, seed_cnn, same seed,
same rounds, same optimizer) from the ready configs in simulations/, differing
only in [privacy]. Each row is `fedft run` in its own process; prints a Markdown
table; each row's results folder stays in --out.

    python benchmarks/privacy_table.py                 # 10 rounds, as the configs say
    python benchmarks/privacy_table.py --rounds 3      # quicker
    python benchmarks/privacy_table.py --noise-source seeded   # the noise from the seed: reruns repeat exactly (not private)

The configs' noise comes from OS entropy (privacy.noise_source = "os", the default), so
each rerun draws new noise and its accuracies vary a little, as with another seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fedft.state.run_folder import read_summary  # noqa: E402

ROWS = [
    ("no DP", "simulations/dp_local_eps8.toml", ["privacy.mode=none"]),
    ("local DP, target ε = 1", "simulations/dp_local_eps1.toml", []),
    ("local DP, target ε = 3", "simulations/dp_local_eps3.toml", []),
    ("local DP, target ε = 8", "simulations/dp_local_eps8.toml", []),
    ("central DP, target ε = 8", "simulations/dp_central.toml", []),
    ("central DP, σ = 0.1", "simulations/dp_central_low_noise.toml", []),
]


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def run_row(config: str, overrides: list[str], out: Path, attempts: int = 3) -> tuple[dict, Path]:
    """One `fedft run` in its own process; retried when any client failed or timed out
    (on a shared machine another job can kill Ray workers), so every row is a clean run."""
    for attempt in range(1, attempts + 1):
        run_dir = out.with_name(f"{out.name}-try{attempt}")
        cmd = [sys.executable, "-m", "fedft", "run", str(ROOT / config), "--out", str(run_dir), "--quiet"]
        for o in overrides:
            cmd += ["--set", o]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        summary = read_summary(run_dir)
        if proc.returncode == 0 and summary is not None:
            with open(run_dir / "metrics.csv") as f:
                rows = list(csv.DictReader(f))
            lost = sum(int(r["clients_failed"] or 0) + int(r["clients_timed_out"] or 0) for r in rows[1:])
            if lost == 0:
                return summary, run_dir
            print(f"  {config}: {lost} client replies lost in attempt {attempt}; running it again", file=sys.stderr, flush=True)
        else:
            print(f"  {config}: attempt {attempt} exited {proc.returncode}: {proc.stderr.strip()[-300:]}", file=sys.stderr, flush=True)
    raise SystemExit(f"{config}: no clean run in {attempts} attempts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="override simulation.rounds for every row")
    parser.add_argument("--out", default=None, help="folder for the results folders (default: a temp dir)")
    parser.add_argument("--rows", default="", help="comma-separated row numbers to run (default: all)")
    parser.add_argument("--noise-source", choices=["os", "seeded"], default="os", help="privacy.noise_source of the DP rows (default: os, the configs' default)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="fedft-privacy-table-"))
    out.mkdir(parents=True, exist_ok=True)
    chosen = [int(i) for i in args.rows.split(",") if i.strip()] or list(range(len(ROWS)))
    results = []
    for i in chosen:
        label, config, overrides = ROWS[i]
        overrides = list(overrides) + ([f"simulation.rounds={args.rounds}"] if args.rounds else [])
        overrides += [f"privacy.noise_source={args.noise_source}"] if args.noise_source != "os" else []
        t0 = time.perf_counter()
        s, run_dir = run_row(config, overrides, out / f"row{i}")
        results.append({"row": label, "config": config, "overrides": overrides, "final_accuracy": s.get("final_accuracy"),
                        "epsilon": s.get("epsilon"), "delta": s.get("delta"), "noise_multiplier": s.get("noise_multiplier"),
                        "rounds": s.get("rounds"), "wall_seconds": round(time.perf_counter() - t0, 1), "run_dir": str(run_dir)})
        print(f"done: {label}: accuracy {s.get('final_accuracy')}, ε {s.get('epsilon')}", file=sys.stderr, flush=True)
        (out / "privacy_table.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nmnist-5k, 10 IID clients, all 10 per round, seed_cnn, seed 0, {results[0]['rounds']} rounds, δ = 1e-5, noise_source {args.noise_source} (results: {out})\n")
    print("| run | ε | noise multiplier | final test accuracy | wall s |")
    print("|---|---|---|---|---|")
    for r in results:
        eps = "∞ (no DP)" if r["epsilon"] is None else _fmt(r["epsilon"], ".3g")
        print(f"| {r['row']} | {eps} | {_fmt(r['noise_multiplier'], '.3g')} | {_fmt(r['final_accuracy'], '.3f')} | {r['wall_seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
