"""What the user sees while a run goes: one line per round, a summary table at the end."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def human_bytes(count: float) -> str:
    """1024-based, as a file manager shows it: 7494240 -> "7.1 MiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class RoundPrinter:
    def __init__(self, rounds: int, quiet: bool = False, console: Console | None = None) -> None:
        self.rounds = rounds
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def on_round(self, row: dict[str, Any]) -> None:
        r = int(row["round"])
        clients = f"  clients {row['clients_replied']}/{row['clients_sampled']}" if "clients_sampled" in row else ""
        if row.get("round_skipped"):
            clients += " (skipped: below simulation.min_replies)"
        if row.get("epsilon") is not None:
            clients += f"  ε {_fmt(row['epsilon'], '.3g')}"
        self.say(
            f"round {r:>3}/{self.rounds}  acc {_fmt(row.get('test_accuracy'))}  loss {_fmt(row.get('test_loss'))}"
            f"{clients}  {row.get('wall_seconds', 0.0):.1f} s  elapsed {time.perf_counter() - self.t0:.1f} s"
        )

    def on_done(self, summary: dict[str, Any]) -> None:
        if self.quiet:
            return
        table = Table(title=f"fedft: {summary.get('name', '')} ({summary['status']})", show_header=False)
        for key in ("final_accuracy", "best_accuracy", "final_loss", "rounds", "bytes_down", "bytes_up", "wall_seconds", "epsilon", "baseline_accuracy", "run_dir"):
            if key in summary and summary[key] is not None:
                value = summary[key]
                text = human_bytes(value) if key.startswith("bytes_") else _fmt(value) if isinstance(value, float) else str(value)
                table.add_row(key, text)
        self.console.print(table)
