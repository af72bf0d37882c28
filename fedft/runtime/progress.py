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


def clock(seconds: float) -> str:
    """Seconds as a clock: 75 -> "1:15", 3725 -> "1:02:05"."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def eta_seconds(round_seconds: list[float], rounds_left: int) -> float | None:
    """Time the remaining rounds will take: the median round so far times the rounds left
    (the median, so one slow first round, Ray warming up or a compile, does not skew it).
    None before any round has been timed."""
    if not round_seconds or rounds_left <= 0:
        return None if not round_seconds else 0.0
    ordered = sorted(round_seconds)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return median * rounds_left


class RoundPrinter:
    def __init__(self, rounds: int, quiet: bool = False, console: Console | None = None) -> None:
        self.rounds = rounds
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.t0 = time.perf_counter()
        self.round_seconds: list[float] = []  # wall time of each trained round printed so far

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
        if r >= 1 and row.get("wall_seconds") is not None:
            self.round_seconds.append(float(row["wall_seconds"]))
        eta = eta_seconds(self.round_seconds, self.rounds - r) if r >= 1 else None
        self.say(
            f"round {r:>3}/{self.rounds}  acc {_fmt(row.get('test_accuracy'))}  loss {_fmt(row.get('test_loss'))}"
            f"{clients}  {row.get('wall_seconds', 0.0):.1f} s  elapsed {time.perf_counter() - self.t0:.1f} s"
            + (f"  ETA {clock(eta)}" if eta else "")
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
