"""Markdown tables: one renderer for comparison.md, sweep.md and the benchmarks' tables.

Each caller chooses its own columns and formats its own cells; this only lays them out.
"""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A header, a separator and one line per row, each line ending in a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
