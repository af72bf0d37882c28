"""`fedft report SWEEP_DIR`: sweep.csv, sweep.md and sweep.png/.pdf from the point folders alone.

Each point folder holds a normal run (config.toml, summary.json, metrics); the sweep
folder's points.json names the points and their varied fields (without it, every
sub-folder with a summary.json is a point and the varied fields are unknown).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from fedft.errors import FedftError
from fedft.jobs.tables import markdown_table
from fedft.state import figures
from fedft.state.run_folder import atomic_write, read_summary

METRICS = ("final_accuracy", "best_accuracy", "epsilon", "mia_auc", "mia_tpr_at_1pct_fpr", "wall_seconds", "epsilon_lower_bound")
SEED = "seed"
MODE = "privacy.mode"
EPS = "privacy.target_epsilon"
CENTRALISED = "simulation.centralised"  # shown through the series' label (arm_label), not as a field


def _points(sweep_dir: Path) -> list[dict[str, Any]]:
    listing = sweep_dir / "points.json"
    if listing.exists():
        return json.loads(listing.read_text())
    return [{"name": d.name, "values": {}} for d in sorted(sweep_dir.iterdir()) if (d / "summary.json").exists()]


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per point: its varied fields, then the run's results (blank if it has none yet)."""
    rows = []
    for point in _points(Path(sweep_dir)):
        s = read_summary(Path(sweep_dir) / point["name"])
        if s is None:
            s = {"status": "missing"}
        rows.append({
            "point": point["name"],
            **point["values"],
            "status": s.get("status"),
            "privacy_mode": s.get("privacy_mode", "none" if s.get("status") == "completed" else None),
            "training": s.get("training", "federated"),  # "centralised": the reference arm (simulation.centralised)
            "final_accuracy": s.get("final_accuracy"),
            "best_accuracy": s.get("best_accuracy"),
            "epsilon": s.get("epsilon"),
            "delta": s.get("delta"),
            "noise_multiplier": s.get("noise_multiplier"),
            "rounds": s.get("rounds"),
            "bytes_total": (s.get("bytes_down") or 0) + (s.get("bytes_up") or 0) if "bytes_down" in s else None,
            "wall_seconds": s.get("wall_seconds"),
            "mia_auc": s.get("mia_auc"),
            "mia_tpr_at_1pct_fpr": s.get("mia_tpr_at_1pct_fpr"),
            "epsilon_lower_bound": s.get("epsilon_lower_bound"),  # the one-run audit (audit.canaries; docs/audit.md)
            "audit_canaries": s.get("audit_canaries"),
            "audit_guesses": s.get("audit_guesses"),
            "audit_correct": s.get("audit_correct"),
        })
    return rows


def _varied(rows: list[dict[str, Any]]) -> list[str]:
    fixed = {"point", "status", "privacy_mode", "training", "delta", "noise_multiplier", "rounds", "bytes_total", "audit_canaries", "audit_guesses", "audit_correct", *METRICS}
    return [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed]


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return mean, std


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed points grouped by their varied fields except `seed`: mean and sample std per metric."""
    keys = [k for k in _varied(rows) if k != SEED]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "completed":
            groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        g: dict[str, Any] = dict(zip(keys, key))
        g["privacy_mode"] = members[0]["privacy_mode"]
        g["training"] = members[0].get("training", "federated")
        g["n"] = len(members)
        for m in METRICS:
            g[m], g[m + "_std"] = _mean_std([r.get(m) for r in members])
        out.append(g)
    return out


def _fmt(mean: float | None, std: float | None, spec: str) -> str:
    if mean is None:
        return "-"
    return format(mean, spec) + (f" ± {format(std, spec)}" if std is not None else "")


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """sweep.md: one line per group of seeds (mean ± std), then the points not completed."""
    keys = [k for k in _varied(rows) if k != SEED]
    header = [*keys, "seeds", "final acc", "best acc", "ε", "MIA AUC", "MIA TPR@1%FPR", "wall s", "ε lower bound (audit)"]
    cells = [
        ["-" if g[k] is None else str(g[k]) for k in keys] + [str(g["n"])]
        + [_fmt(g[m], g[m + "_std"], spec) for m, spec in zip(METRICS, (".4f", ".4f", ".3g", ".3f", ".3f", ".0f", ".3g"))]
        for g in group_rows(rows)
    ]
    table = markdown_table(header, cells)
    incomplete = [r["point"] for r in rows if r["status"] != "completed"]
    if incomplete:
        table += f"\nNot completed ({len(incomplete)}): {', '.join(incomplete)}\n"
    return table


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(ε, accuracy) points that no other point beats on both (smaller or equal ε and higher
    or equal accuracy, one of them strictly), by increasing ε."""
    front, best = [], -math.inf
    for eps, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((eps, acc))
            best = acc
    return front


def arm_label(row: dict[str, Any]) -> str:
    """What a point's privacy and training were, for a legend: "local DP", "central DP",
    "centralised DP-SGD" (the reference arm under record-level DP), "no DP", "no DP (centralised)"."""
    centralised = row.get("training") == "centralised"
    if row.get("privacy_mode") in (None, "none"):
        return "no DP (centralised)" if centralised else "no DP"
    return "centralised DP-SGD" if centralised else f"{row['privacy_mode']} DP"


def sweep_title(rows: list[dict[str, Any]], name: str) -> str:
    """What the sweep figure shows and what varied, e.g. "final accuracy and MIA AUC vs ε —
    privacy_tradeoff_quick, local and central DP, δ=1e-5"; "by train.lr" when ε is not swept."""
    modes = list(dict.fromkeys(arm_label(r) for r in rows if r.get("privacy_mode") not in (None, "none")))
    others = [k for k in _varied(rows) if k not in (SEED, MODE, EPS, CENTRALISED)]
    deltas = sorted({float(r["delta"]) for r in rows if r.get("delta") is not None})
    if not modes:
        return f"final accuracy and MIA AUC by {', '.join(others) or 'point'} — {name}, no DP"
    if all(m.endswith(" DP") for m in modes):  # "local and central DP"
        modes = [m.removesuffix(" DP") for m in modes[:-1]] + modes[-1:]
    parts = [name, " and ".join([", ".join(modes[:-1]), modes[-1]] if len(modes) > 1 else modes)]
    if deltas:
        parts.append(", ".join(f"δ={figures.number(d)}" for d in deltas))
    by = f", by {', '.join(others)}" if others else ""
    return f"final accuracy and MIA AUC vs ε{by} — {', '.join(parts)}"


def epsilon_axis(ax: Any, eps: list[float], deltas: list[float]) -> None:
    """Log ε axis with a tick at each ε the sweep reached (plain numbers, no minor ticks at
    2 and 5; ε that print alike share one tick) and the δ those ε are at in the label."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = list({figures.number(e): e for e in sorted(eps)}.values())  # 3.995 and 3.996 share one "4"
    ax.set_xscale("log")
    ax.set_xlim(ticks[0] / 1.6, ticks[-1] * 1.6)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: figures.number(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    delta = " / ".join(f"{d:g}" for d in sorted(set(deltas))) or "?"
    ax.set_xlabel(f"ε (δ = {delta})")


def sweep_figure(rows: list[dict[str, Any]], title: str = "") -> Any:
    """Left: final accuracy vs ε (log axis, a tick at each swept ε) per privacy mode, one
    marker per series, non-private accuracy dashed, Pareto frontier circled. Right: MIA AUC
    vs ε, 0.5 = no measurable leakage."""
    groups = group_rows(rows)
    others = [k for k in _varied(rows) if k not in (SEED, MODE, EPS, CENTRALISED)]
    deltas = [float(r["delta"]) for r in rows if r.get("delta") is not None]
    with figures.styled() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric, label in ((axes[0], "final_accuracy", "final test accuracy"), (axes[1], "mia_auc", "MIA AUC (loss threshold)")):
            series: dict[str, list[dict[str, Any]]] = {}
            for g in groups:
                if g["privacy_mode"] != "none" and g["epsilon"] is not None and g[metric] is not None:
                    name = " ".join([arm_label(g)] + [f"{k.rsplit('.', 1)[-1]}={g[k]}" for k in others])
                    series.setdefault(name, []).append(g)
            for marker, (name, gs) in zip(figures.MARKERS * 4, series.items()):
                gs.sort(key=lambda g: g["epsilon"])
                ax.errorbar([g["epsilon"] for g in gs], [g[metric] for g in gs], yerr=[g[metric + "_std"] or 0 for g in gs],
                            marker=marker, markersize=5, capsize=3, label=name)
            private = [g for g in groups if g["privacy_mode"] == "none" and g[metric] is not None]
            for i, g in enumerate(private):
                extra = " ".join(f"{k.rsplit('.', 1)[-1]}={g[k]}" for k in others)
                ax.axhline(g[metric], color="grey", linestyle="--" if g["training"] != "centralised" else ":", linewidth=1,
                           label=f"{arm_label(g)} {extra}".strip() if i < 4 else None)
            audited = [g for g in groups if metric == "final_accuracy" and (g.get("epsilon_lower_bound") or 0) > 0 and g[metric] is not None]
            if audited:  # the one-run audit: where the run's empirical ε lower bound sits beside its ε
                ax.scatter([g["epsilon_lower_bound"] for g in audited], [g[metric] for g in audited], marker="x", color="black", label="ε lower bound (audit)")
            if metric == "final_accuracy":
                front = pareto_front([(g["epsilon"], g[metric]) for gs in series.values() for g in gs])
                if len(front) > 1:
                    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=0.8, alpha=0.6)
                if front:
                    ax.scatter([p[0] for p in front], [p[1] for p in front], s=120, facecolors="none", edgecolors="black", label="Pareto frontier")
            else:
                ax.axhline(0.5, color="red", linestyle=":", linewidth=1, label="chance (0.5)")
            if series:
                epsilon_axis(ax, [g["epsilon"] for gs in series.values() for g in gs], deltas)
                if audited:  # keep the audit's markers in view; the ticks stay at the swept ε
                    low, high = ax.get_xlim()
                    bounds = [g["epsilon_lower_bound"] for g in audited]
                    ax.set_xlim(min(low, min(bounds) / 1.6), max(high, max(bounds) * 1.6))
            else:
                ax.set_xlabel("(no private points)")
            ax.set_ylim(*((0, 1) if metric == "final_accuracy" else (0.4, 1.0)))
            ax.set_ylabel(label)
            ax.legend()
        fig.suptitle(title)
        return fig


def plot_sweep(rows: list[dict[str, Any]], path: Path, title: str = "") -> tuple[Path, Path]:
    """sweep.png and sweep.pdf (`path` without its suffix)."""
    return figures.save(sweep_figure(rows, title), path)


def _sweep_name(sweep_dir: Path) -> str:
    """The config's name from the sweep's own sweep.toml; the folder's name without one."""
    import tomllib

    try:
        name = tomllib.loads((sweep_dir / "sweep.toml").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError):
        name = None
    return name if isinstance(name, str) and name else sweep_dir.name


def write_report(sweep_dir: str | Path) -> str:
    """sweep.csv, sweep.md, sweep.png and sweep.pdf in `sweep_dir`; returns the Markdown table."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FedftError("SWEEP_DIR", f"'{sweep_dir}' is not a folder.", "give the folder `fedft sweep` wrote, e.g. runs/privacy_tradeoff-<stamp>/.")
    rows = sweep_rows(sweep_dir)
    if not rows:
        raise FedftError("SWEEP_DIR", f"'{sweep_dir}' holds no sweep points.", "give the folder `fedft sweep` wrote.")
    columns = ["point", *_varied(rows), *[k for k in rows[0] if k not in _varied(rows) and k != "point"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    atomic_write(sweep_dir / "sweep.csv", buf.getvalue())
    table = sweep_table(rows)
    atomic_write(sweep_dir / "sweep.md", table)
    plot_sweep(rows, sweep_dir / "sweep", title=sweep_title(rows, _sweep_name(sweep_dir)))
    return table
