"""The results folder: config.toml, metrics.csv/.jsonl, summary.json, model.pt, accuracy.png/.pdf.

Every file is written with `fedft.state.atomic`, so a reader (or a crash) never
sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fedft.config import FedftConfig, to_toml
from fedft.errors import FedftError
from fedft.state import atomic, figures
from fedft.state.provenance import command_line, git_commit


def atomic_write(path: Path, text: str) -> None:
    """Replace a text file all at once (see `fedft.state.atomic`)."""
    atomic.write_text(path, text)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("fedft", "flwr", "torch", "opacus", "ray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def new_run_dir(cfg: FedftConfig, out: str | Path | None = None) -> Path:
    """`out` if given (must be new or empty), else <output.dir>/<name>-<timestamp>[-N]."""
    field = "--out" if out is not None else "output.dir"
    try:
        if out is not None:
            path = Path(out)
            if path.exists() and any(path.iterdir()):
                raise FedftError("--out", f"'{path}' exists and is not empty.", "choose a new folder or remove it.")
            path.mkdir(parents=True, exist_ok=True)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(cfg.output.dir) / f"{cfg.name}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = base.with_name(f"{base.name}-{n}")
            path.mkdir(parents=True)
        probe = path / ".fedft-write-test"
        probe.write_bytes(b"")  # a folder we may create but not write into fails here, not mid-run
        probe.unlink()
    except OSError as exc:
        raise FedftError(field, f"cannot create or write the results folder ({exc.strerror or exc}: '{exc.filename or out or cfg.output.dir}').",
                         "choose a folder you can write to.") from None
    return path


# metrics.csv column order; later features append their own columns after these.
BASE_COLUMNS = [
    "round", "test_loss", "test_accuracy", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "clients_sampled", "clients_replied", "clients_failed", "clients_timed_out", "bytes_down", "bytes_up", "wall_seconds",
]


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


class RunWriter:
    """Appends a row per round and writes the summary at the end."""

    def __init__(self, run_dir: Path, cfg: FedftConfig, write_config: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # more summary.json keys, set during the run (e.g. a baseline)
        if write_config:  # a resumed run keeps the folder's config.toml as it is
            atomic_write(self.run_dir / "config.toml", to_toml(cfg))

    def restore(self, rows: list[dict[str, Any]]) -> None:
        """Continue from a checkpoint: its rows replace metrics.csv/.jsonl, dropping any
        row of a round the checkpoint does not cover (it will be run again)."""
        self.rows[:] = [dict(r) for r in rows]
        lines = "".join(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n" for row in self.rows)
        atomic_write(self.run_dir / "metrics.jsonl", lines)
        self._write_csv()

    def record_round(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._write_csv()

    def _write_csv(self) -> None:
        columns: list[str] = [c for c in BASE_COLUMNS if any(c in row for row in self.rows)]
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if _clean(v) is None else v) for k, v in row.items()})
        atomic_write(self.run_dir / "metrics.csv", buf.getvalue())

    def summary(self, status: str, wall_seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        trained = [r for r in self.rows if r.get("round", 0) > 0]
        accs = [r["test_accuracy"] for r in self.rows if "test_accuracy" in r]
        last = self.rows[-1] if self.rows else {}
        return {
            "status": status,
            "name": self.cfg.name,
            "run_dir": str(self.run_dir),
            "final_accuracy": _clean(last.get("test_accuracy")),
            "best_accuracy": max(accs) if accs else None,
            "final_loss": _clean(last.get("test_loss")),
            "rounds": len(trained),
            "bytes_down": int(sum(r.get("bytes_down", 0) for r in trained)),
            "bytes_up": int(sum(r.get("bytes_up", 0) for r in trained)),
            "wall_seconds": round(wall_seconds, 3),
            "seed": self.cfg.seed,
            "versions": versions(),
            "command": command_line(),  # how this run was started (a resume: the resume's command)
            "git_commit": git_commit(),  # HEAD of the git checkout it ran in; None outside one
            **self.extra,
            **(extra or {}),
        }

    def finish(self, status: str, wall_seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        summary = self.summary(status, wall_seconds, extra)
        atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if self.rows:
            how = "centralised" if self.cfg.simulation.centralised else self.cfg.strategy.name  # the reference arm trains no strategy
            title = figures.run_title(self.cfg.name, how, summary.get("privacy_mode"), summary.get("epsilon"), summary.get("delta"))
            plot_accuracy(self.rows, self.run_dir / "accuracy", title=title)
        return summary


def accuracy_figure(rows: list[dict[str, Any]], title: str = "") -> Any:
    """Central test accuracy (left) and loss (right) per round, round 0 being the model
    before training; `title` says what the run is (`figures.run_title`)."""
    with figures.styled() as plt:
        fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, key, label in ((acc_ax, "test_accuracy", "central test accuracy"), (loss_ax, "test_loss", "central test loss")):
            pts = [(r["round"], r[key]) for r in rows if _clean(r.get(key)) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
            ax.set_ylabel(label)
            figures.integer_rounds(ax)
        acc_ax.set_ylim(0, 1)
        fig.suptitle(title)
        return fig


def plot_accuracy(rows: list[dict[str, Any]], path: Path, title: str = "") -> tuple[Path, Path]:
    """accuracy.png and accuracy.pdf (`path` without its suffix)."""
    return figures.save(accuracy_figure(rows, title), path)


# ------------------------------------------------------------ reading a results folder back
# The one way every job, the deployment and the benchmarks read a folder's results.

def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """summary.json as a dict; None while there is none, or when it cannot be read or is
    not a JSON object (a run that never finished, or a damaged file)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, one dict per round (round 0 = start); [] while there is none. A last
    line without its newline is being appended right now and is left out."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
