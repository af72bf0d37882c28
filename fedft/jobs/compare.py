"""Comparisons: several arms of one config, each a full `fedft.run`, in one table and one plot.

A config with a `[compare]` table, e.g.

    [compare]
    reference = "scratch"
    pretrain = true
    [compare.arms]
    scratch = []
    pretrained_full = ["model.init_from={pretrained}", "model.reset_head=true"]

runs every arm with the same seed, data, partitions and sampled clients (arms
may not override `seed`, `data.*`, `partition.*` or `simulation.clients_per_round`)
into `<out>/<arm>/`, then writes `comparison.csv`, `comparison.md` and
`comparison.png`/`.pdf` (test accuracy and loss per round, all arms) into `<out>/`. With
`pretrain = true` it first runs `fedft pretrain` on the same config into
`<out>/pretrained/`, and `{pretrained}` in an arm (or in the base config) stands for that
`model.pt`; for `model.name = "hf"`, for its save_pretrained folder (`model.path = "{pretrained}"`).

`run_arms`, `comparison_rows` and `write_comparison` are the reusable parts (sweeps).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig, apply_overrides, to_toml
from fedft.errors import FedftError
from fedft.jobs.pretrain import prepare_pretrain, pretrain
from fedft.jobs.run import prepare
from fedft.jobs.runner import run_each
from fedft.jobs.tables import markdown_table
from fedft.jobs.validate import PRETRAINED, load_config
from fedft.state import figures
from fedft.state.run_folder import atomic_write, new_run_dir, read_rows


def _substitute(node: Any, token: str, value: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, token, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, token, value) for v in node]
    return node.replace(token, value) if isinstance(node, str) else node


def arm_config(base: FedftConfig, name: str, overrides: list[str], pretrained: str = "") -> FedftConfig:
    """The base config with an arm's overrides, as a plain single-run config."""
    raw = base.model_dump(mode="json")
    raw["compare"] = {}
    raw = apply_overrides(raw, overrides)
    if pretrained:
        raw = _substitute(raw, PRETRAINED, pretrained)
    if raw.get("name") == base.name:
        raw["name"] = f"{base.name}-{name}"
    try:
        return load_config(raw)
    except FedftError as exc:
        raise FedftError(f"compare.arms.{name}: {exc.field}", exc.problem, exc.fix) from None


@dataclass(frozen=True)
class ArmResult:
    name: str
    cfg: FedftConfig
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics.jsonl, one dict per round (round 0 = start)


def run_arms(arms: dict[str, FedftConfig], out_dir: Path, quiet: bool = False, verbose: bool = False) -> list[ArmResult]:
    """Run each arm's config with `fedft.run` into `<out_dir>/<arm>/`, one after another.
    A failed arm is recorded (status in its summary) and the others still run."""
    from rich.console import Console

    console = Console(highlight=False, quiet=quiet)
    finished = run_each(arms.items(), Path(out_dir), quiet=quiet, verbose=verbose,
                        on_start=lambda number, name: console.rule(f"arm {number}/{len(arms)}: {name}"))
    return [ArmResult(r.name, arms[r.name], r.run_dir, r.summary, read_rows(r.run_dir)) for r in finished]


def rounds_to_reach(rows: list[dict[str, Any]], target: float | None) -> int | None:
    """First trained round whose central test accuracy is at least `target` (None: never)."""
    if target is None:
        return None
    for row in rows:
        acc = row.get("test_accuracy")
        if row.get("round", 0) >= 1 and acc is not None and acc >= target:
            return int(row["round"])
    return None


def _start(cfg: FedftConfig) -> str:
    """Where an arm's model starts: "scratch", or the last two parts of its checkpoint (hf: its model folder)."""
    path = cfg.model.init_from or (cfg.model.path if cfg.model.name == "hf" else "")
    return f"{Path(path).parent.name}/{Path(path).name}" if path else "scratch"


def comparison_rows(results: list[ArmResult], reference: str = "", targets: list[float] | None = None) -> list[dict[str, Any]]:
    """One row per arm; `rounds_to_target` counts rounds until the reference arm's final
    accuracy, `rounds_to_<t>` until each fixed accuracy in `targets`. Bytes are means over
    trained rounds from metrics.csv (the actual messages); `bytes_vs_reference` compares
    down+up per round, so read it together with `failed_replies` (a failed client sends nothing up)."""
    ref = next((r for r in results if r.name == reference), results[0])
    target = ref.summary.get("final_accuracy")
    ref_rounds = max(int(ref.summary.get("rounds") or 0), 1)
    ref_bytes = None
    out: list[dict[str, Any]] = []
    for r in results:
        trained = [row for row in r.rows if row.get("round", 0) >= 1]
        per_round = (sum(row.get("bytes_down", 0) + row.get("bytes_up", 0) for row in trained) / len(trained)) if trained else 0.0
        if r is ref:
            ref_bytes = per_round
        reached = rounds_to_reach(r.rows, target)
        out.append({
            "arm": r.name,
            "start": _start(r.cfg),
            "finetune_mode": r.cfg.finetune.mode if isinstance(r.cfg.finetune.mode, str) else " ".join(r.cfg.finetune.mode),
            "training": r.summary.get("training", "federated"),  # "centralised": simulation.centralised, the reference arm
            "status": r.summary.get("status"),
            "rounds": r.summary.get("rounds"),
            "start_accuracy": r.rows[0].get("test_accuracy") if r.rows else None,
            "final_accuracy": r.summary.get("final_accuracy"),
            "best_accuracy": r.summary.get("best_accuracy"),
            "target_accuracy": target,
            "rounds_to_target": reached,
            "rounds_fraction": None if reached is None else reached / ref_rounds,
            **{f"rounds_to_{t:g}": rounds_to_reach(r.rows, t) for t in targets or []},
            "bytes_down_per_round": sum(row.get("bytes_down", 0) for row in trained) / len(trained) if trained else 0.0,
            "bytes_up_per_round": sum(row.get("bytes_up", 0) for row in trained) / len(trained) if trained else 0.0,
            "bytes_per_round": per_round,
            "bytes_total": int(r.summary.get("bytes_down", 0)) + int(r.summary.get("bytes_up", 0)),
            "failed_replies": int(sum((row.get("clients_failed") or 0) + (row.get("clients_timed_out") or 0) for row in trained)),
            "wall_seconds": r.summary.get("wall_seconds"),
            "epsilon": r.summary.get("epsilon"),
            "run_dir": str(r.run_dir),
        })
    for row in out:
        row["bytes_vs_reference"] = row["bytes_per_round"] / ref_bytes if ref_bytes else None
    return out


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _never(value: Any) -> str:
    return "never" if value is None else str(value)


def comparison_table(rows: list[dict[str, Any]], reference: str) -> str:
    """comparison.md: one line per arm, accuracies to 4 places, bytes per round, "never"
    for a target an arm did not reach."""
    target = rows[0]["target_accuracy"] if rows else None
    private = any(isinstance(r.get("epsilon"), (int, float)) for r in rows)  # a column for ε once any arm is private
    extra = [k for k in (rows[0] if rows else {}) if k.startswith("rounds_to_") and k != "rounds_to_target"]
    header = [
        "arm", "start", "mode", "rounds", "start acc", "final acc", "best acc", f"rounds to {_f(target, '.4f')} ({reference} final)",
        *(f"rounds to {k.removeprefix('rounds_to_')}" for k in extra),
        "bytes down/round", "bytes up/round", f"vs {reference}", "failed replies", "wall s", *(["ε"] if private else []),
    ]
    cells = [
        [
            str(r["arm"]), str(r["start"]), str(r["finetune_mode"]), str(r["rounds"]), _f(r["start_accuracy"], ".4f"), _f(r["final_accuracy"], ".4f"),
            _f(r["best_accuracy"], ".4f"), _never(r["rounds_to_target"]), *(_never(r[k]) for k in extra),
            f"{r['bytes_down_per_round']:,.0f}", f"{r['bytes_up_per_round']:,.0f}", _f(r["bytes_vs_reference"], ".2%"), str(r["failed_replies"]), _f(r["wall_seconds"], ".1f"),
            *([_f(r["epsilon"] if isinstance(r["epsilon"], (int, float)) else None, ".3g")] if private else []),
        ]
        for r in rows
    ]
    return markdown_table(header, cells)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def differing_fields(configs: list[FedftConfig]) -> list[str]:
    """The config fields (dotted, as in `--set`) whose values are not the same in every arm,
    the run's name aside."""
    flat = [_flat(cfg.model_dump(mode="json")) for cfg in configs]
    keys = dict.fromkeys(k for f in flat for k in f if k != "name")
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def comparison_title(name: str, results: list[ArmResult]) -> str:
    """"finetune_vs_scratch — 3 arms differing in model.init_from, model.reset_head"."""
    fields = differing_fields([r.cfg for r in results])
    what = f"differing in {', '.join(fields[:4])}{' …' if len(fields) > 4 else ''}" if fields else "with the same config"
    return f"{name} — {len(results)} arms {what}"


def comparison_figure(results: list[ArmResult], target: float | None = None, title: str = "") -> Any:
    """Central test accuracy (left, the target dashed) and loss (right) per round, one line
    and marker per arm."""
    with figures.styled() as plt:
        fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
        for marker, r in zip(figures.MARKERS * 4, results):
            for ax, key in ((acc_ax, "test_accuracy"), (loss_ax, "test_loss")):
                pts = [(row["round"], row[key]) for row in r.rows if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=r.name)
        if target is not None:
            acc_ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f}")
        for ax, label in ((acc_ax, "central test accuracy"), (loss_ax, "central test loss")):
            figures.integer_rounds(ax)
            ax.set_ylabel(label)
        acc_ax.set_ylim(0, 1)
        acc_ax.legend(loc="lower right")
        fig.suptitle(title)
        return fig


def plot_comparison(results: list[ArmResult], path: Path, target: float | None = None, title: str = "") -> tuple[Path, Path]:
    """comparison.png and comparison.pdf (`path` without its suffix)."""
    return figures.save(comparison_figure(results, target, title), path)


def write_comparison(out_dir: Path, results: list[ArmResult], reference: str = "", title: str = "", targets: list[float] | None = None) -> str:
    """comparison.csv, comparison.md and comparison.png/.pdf in `out_dir`; returns the Markdown table.
    `title` (the config's name) is followed by what differs between the arms."""
    reference = reference or results[0].name
    rows = comparison_rows(results, reference, targets)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    atomic_write(out_dir / "comparison.csv", buf.getvalue())
    table = comparison_table(rows, reference)
    atomic_write(out_dir / "comparison.md", table)
    plot_comparison(results, out_dir / "comparison", rows[0]["target_accuracy"], comparison_title(title or out_dir.name, results))
    return table


@dataclass(frozen=True)
class ComparisonResult:
    out_dir: Path
    arms: list[ArmResult]
    table: str  # Markdown

    def rows(self) -> list[dict[str, Any]]:
        return list(csv.DictReader(open(self.out_dir / "comparison.csv")))


def has_arms(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None) -> bool:
    return bool(load_config(config, overrides).compare.arms)


def prepare_arms(base: FedftConfig) -> FedftConfig:
    """Check every arm (and the pretraining) before anything runs; returns the base
    config without its [compare] table (what pretraining uses)."""
    cmp = base.compare
    if not cmp.arms:
        raise FedftError("compare.arms", "is empty: nothing to compare.", "add arms under [compare.arms], or use `fedft run` for one run.")
    plain = base.model_copy(update={"compare": type(cmp)()})
    if cmp.pretrain:
        prepare_pretrain(plain)
    placeholder = str(Path(base.output.dir).resolve() / "pretrained" / "model.pt")  # the file comes later
    in_base = PRETRAINED in plain.to_json()  # e.g. model.path = "{pretrained}" for hf models: every arm starts from it
    for name, arm_overrides in cmp.arms.items():
        uses_pretrained = in_base or any(PRETRAINED in text for text in arm_overrides)
        stub = "" if base.model.name == "hf" else placeholder  # hf: the token stays, so the model folder is loaded once it exists
        cfg = arm_config(base, name, arm_overrides, stub if uses_pretrained else "")
        if not uses_pretrained:
            try:
                prepare(cfg)
            except FedftError as exc:
                raise FedftError(f"compare.arms.{name}: {exc.field}", exc.problem, exc.fix) from None
    return plain


def compare(config: str | Path | dict | FedftConfig, overrides: list[str] | None = None, out: str | Path | None = None, quiet: bool = False, verbose: bool = False) -> ComparisonResult:
    """Validate every arm (and the pretraining), then pretrain if asked, run the arms, write the comparison."""
    from rich.console import Console

    base = load_config(config, overrides)
    cmp = base.compare
    plain = prepare_arms(base)
    out_dir = new_run_dir(base, out)
    atomic_write(out_dir / "config.toml", to_toml(base))
    console = Console(highlight=False, quiet=quiet)
    console.print(f"fedft compare: {base.name}: {len(cmp.arms)} arms ({', '.join(cmp.arms)}) -> {out_dir}")
    pretrained = ""
    if cmp.pretrain:
        console.rule("pretraining on public data")
        pretrained = str(pretrain(plain, out=out_dir / "pretrained", quiet=quiet).model_path.resolve())
    arms = {name: arm_config(base, name, o, pretrained) for name, o in cmp.arms.items()}
    results = run_arms(arms, out_dir, quiet=quiet, verbose=verbose)
    reference = cmp.reference or next(iter(cmp.arms))
    table = write_comparison(out_dir, results, reference, title=base.name, targets=cmp.targets)
    if not quiet:
        print()
        print(table, end="")
        print(f"\nwrote {out_dir / 'comparison.csv'}, comparison.md, comparison.png, comparison.pdf")
    return ComparisonResult(out_dir, results, table)
