"""Same behaviour before and after a change: seeded `fedft run`s of the base revision
and of the working tree must give the same metrics and the same final model, bit for bit.

Made for refactors that move code around (files between folders) and must not change
what a run computes. The base revision is checked out in a temporary `git worktree`;
every workload runs once on it and once on this tree, each `python -m fedft run` in a
child process whose PYTHONPATH starts with its own tree (so the driver and the Ray
workers import that tree's `fedft` and `strategies`, not the editable install).
Workloads: quickstart (3 rounds), local DP at epsilon 8 (2 rounds), and fine-tuning
the last 2 layers (finetune_head.toml, 2 rounds) from one checkpoint file shared by
both sides: the working tree's quickstart model.pt. Compared per workload: every
`metrics.csv` column both runs have (accuracies, losses, bytes, client counts,
epsilon...) as strings, row by row, except timings (`wall_seconds` differs between two
runs of the same code), and the final `model.pt` tensors with `torch.equal`.
Only stdlib and torch at module level: it must not import fedft.

    python benchmarks/same_behaviour.py [--base REV] [--keep DIR]

REV defaults to HEAD (then the check proves the runs are deterministic); --keep DIR
keeps the results folders (DIR/<workload>/{base,current}). Exit 0: all identical;
1: something differs or a run failed; 2: bad input. About 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["simulation.device=cpu"]
TIMINGS = ("seconds",)  # metrics.csv columns left out: they differ between two runs of the same code
# (name, config relative to a tree's root, overrides); {init} = the shared checkpoint.
WORKLOADS = [
    ("quickstart", "simulations/quickstart.toml", ["simulation.rounds=3"]),
    # seeded: the noise from the seed, so two trees can give the same arrays (OS noise never repeats)
    ("dp_local_eps8", "simulations/dp_local_eps8.toml", ["simulation.rounds=2", "privacy.noise_source=seeded"]),
    ("finetune_last2", "simulations/finetune_head.toml", ["simulation.rounds=2", "model.init_from={init}", "finetune.mode=last:2"]),
]


def env_for(tree: Path) -> dict[str, str]:
    old = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{old}" if old else str(tree))


def fedft_run(tree: Path, config: str, overrides: list[str], out: Path) -> str | None:
    """One `fedft run` with `tree`'s code; None if it worked, else the tail of its stderr."""
    cmd = [sys.executable, "-m", "fedft", "run", config, "--out", str(out), "--quiet"]
    for o in overrides + COMMON:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, cwd=tree, env=env_for(tree), check=False, capture_output=True, text=True)
    if proc.returncode == 2 and "privacy.noise_source" in proc.stderr and "privacy.noise_source=seeded" in overrides:
        # a tree from before 'seeded' was named: the same noise was its default, 'derived'
        return fedft_run(tree, config, [o.replace("=seeded", "=derived") if o.startswith("privacy.noise_source") else o for o in overrides], out)
    return None if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"


def check_imports(tree: Path) -> None:
    """Show where `fedft` and `strategies` come from under `tree`'s env; stop if not from `tree`."""
    code = "import fedft, strategies; print(fedft.__file__); print(strategies.__file__)"
    files = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env_for(tree), capture_output=True, text=True, check=True).stdout.split()
    print(f"imports under {tree}: {' '.join(files)}")
    if not all(Path(f).resolve().is_relative_to(tree.resolve()) for f in files):
        print(f"same_behaviour: error: {tree}: fedft imports from elsewhere ({files}). Fix: uninstall the other copy or check PYTHONPATH.", file=sys.stderr)
        raise SystemExit(2)


def compare(a: Path, b: Path) -> tuple[int, float | None, list[str]]:
    """(metrics.csv columns compared, max |diff| over the final tensors, the differences found)."""
    problems: list[str] = []
    rows_a, rows_b = (list(csv.DictReader((d / "metrics.csv").read_text().splitlines())) for d in (a, b))
    names_b = set(rows_b[0]) if rows_b else set()
    cols = [c for c in (rows_a[0] if rows_a else []) if c in names_b and not c.endswith(TIMINGS)]
    if not [c for c in cols if c.endswith(("accuracy", "loss"))]:
        problems.append("no accuracy/loss column in common")
    if len(rows_a) != len(rows_b):
        problems.append(f"metrics.csv rows {len(rows_a)} vs {len(rows_b)}")
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        problems += [f"row {i} {c}: {ra[c]!r} vs {rb[c]!r}" for c in cols if ra[c] != rb[c]]
    sa, sb = (torch.load(d / "model.pt", map_location="cpu", weights_only=True)["state_dict"] for d in (a, b))
    if sa.keys() != sb.keys():
        problems.append(f"model.pt keys differ: {sorted(sa.keys() ^ sb.keys())[:5]}")
    diff = 0.0
    for k in sa.keys() & sb.keys():
        if sa[k].shape != sb[k].shape or sa[k].dtype != sb[k].dtype:
            problems.append(f"model.pt {k}: {sa[k].dtype}{tuple(sa[k].shape)} vs {sb[k].dtype}{tuple(sb[k].shape)}")
            continue
        if not torch.equal(sa[k], sb[k]):
            problems.append(f"model.pt {k} differs")
        if sa[k].numel():
            diff = max(diff, (sa[k].double() - sb[k].double()).abs().max().item())
    return len(cols), diff, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare the working tree against (default HEAD)")
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep the runs' results folders in DIR")
    args = parser.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], cwd=ROOT, check=False, capture_output=True, text=True)
    if rev.returncode != 0:
        print(f"same_behaviour: error: --base: '{args.base}' is not a commit of {ROOT}. Fix: give a revision `git log --oneline` lists, e.g. --base HEAD~1.", file=sys.stderr)
        return 2
    sha = rev.stdout.strip()
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="fedft-same-"))
    work.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="fedft-base-")) / "tree"
    t0, table = time.perf_counter(), []
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), sha], cwd=ROOT, check=True)
    try:
        print(f"base {args.base} = {sha[:10]} in {base}; current = working tree {ROOT}")
        check_imports(base)
        check_imports(ROOT)
        init = work / "init_model.pt"  # one pretrained file for both sides: quickstart's current-tree model
        for name, config, overrides in WORKLOADS:
            overrides = [o.replace("{init}", str(init)) for o in overrides]
            errors = [f"{side} run failed, {e}" for side, tree in (("base", base), ("current", ROOT))
                      if (e := fedft_run(tree, config, overrides, work / name / side))]
            if name == "quickstart" and (work / name / "current" / "model.pt").is_file():
                shutil.copyfile(work / name / "current" / "model.pt", init)
            rounds = next((o.split("=", 1)[1] for o in overrides if o.startswith("simulation.rounds=")), "?")
            cols, diff, problems = (0, None, errors) if errors else compare(work / name / "base", work / name / "current")
            table.append((name, rounds, cols, diff, "identical" if not problems else "DIFFERENT"))
            print(f"{name}: {table[-1][-1]} ({time.perf_counter() - t0:.0f} s so far)", flush=True)
            for p in problems[:10]:
                print(f"  {p}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], check=False, cwd=ROOT)
        shutil.rmtree(base.parent, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'workload':<16} {'rounds':>6} {'columns':>7} {'max |diff|':>11}  verdict")
    for name, rounds, cols, diff, verdict in table:
        print(f"{name:<16} {rounds:>6} {cols:>7} {'n/a' if diff is None else f'{diff:.3g}':>11}  {verdict}")
    same = all(row[-1] == "identical" for row in table)
    print(f"\nbase {sha[:10]} vs working tree: {'identical' if same else 'DIFFERENT'} ({time.perf_counter() - t0:.0f} s)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
