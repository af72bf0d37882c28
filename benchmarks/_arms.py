"""Run one base config under several named override sets ("arms") and tabulate the results.

Each arm is a full `fedft.run` (its own results folder under OUT/<arm>), so every
number in a table can be traced to a metrics.csv. An arm whose folder already
holds a completed run without failed clients is read back, not rerun, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

from fedft.config import FedftConfig
from fedft.jobs.runner import FinishedRun, run_each
from fedft.jobs.tables import markdown_table
from fedft.jobs.validate import load_config
from fedft.state.run_folder import read_rows, read_summary


def _read(run_dir: Path, overrides: list[str], seconds: float) -> dict | None:
    summary = read_summary(run_dir)
    if summary is None:
        return None
    rows = read_rows(run_dir)
    return {
        "status": summary["status"],
        "final": summary["final_accuracy"],
        "best": summary["best_accuracy"],
        "curve": [float(r["test_accuracy"]) for r in rows if r.get("test_accuracy") not in (None, "")],  # rows evaluate_every skips have none
        "rejected": sum(int(r.get("clients_rejected") or 0) for r in rows),
        "failed": sum(int(r.get("clients_failed") or 0) + int(r.get("clients_timed_out") or 0) for r in rows),
        "seconds": round(seconds or summary.get("wall_seconds", 0.0), 1),
        "overrides": overrides,
    }


def run_arms(config: str, arms: dict[str, list[str]], out: Path, common: list[str] | None = None) -> dict[str, dict]:
    """{arm: {"final", "best", "curve" (accuracy per round), "rejected", "failed", "seconds"}}."""
    out.mkdir(parents=True, exist_ok=True)
    arms = {arm: (common or []) + overrides for arm, overrides in arms.items()}
    results: dict[str, dict] = {}

    def to_run() -> Iterator[tuple[str, FedftConfig]]:
        """The arms in order; one already done is read back (and reported) instead."""
        for arm, overrides in arms.items():
            previous = _read(out / arm, overrides, 0.0)
            stored = out / arm / "overrides.json"
            same = stored.is_file() and json.loads(stored.read_text()) == overrides
            if previous and same and previous["status"] == "completed" and previous["failed"] == 0:
                results[arm] = previous
                print(f"  {arm}: final accuracy {previous['final']:.4f} (read back from {out / arm})", flush=True)
                continue
            shutil.rmtree(out / arm, ignore_errors=True)
            yield arm, load_config(config, overrides)

    def finished(done: FinishedRun) -> None:
        results[done.name] = _read(done.run_dir, arms[done.name], done.seconds)
        (out / done.name / "overrides.json").write_text(json.dumps(arms[done.name]) + "\n")
        note = f", {results[done.name]['failed']} client replies lost" if results[done.name]["failed"] else ""
        print(f"  {done.name}: final accuracy {results[done.name]['final']:.4f} ({results[done.name]['seconds']} s{note})", flush=True)

    run_each(to_run(), out, on_finish=finished)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def results_table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table of benchmark cells: floats to 3 places."""
    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return markdown_table(header, [[fmt(v) for v in row] for row in rows])
