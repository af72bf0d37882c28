"""examples/quick_study.ipynb runs top to bottom in a fresh kernel and produces its plot and final accuracies."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import _descends_from, _pids, kill_pids

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quick_study.ipynb"


def _descendants(before: set[int]) -> list[int]:
    """Processes started since `before` below this one: the kernel and whatever it started (Ray)."""
    me = os.getpid()
    return sorted(p for p in _pids() - before if p != me and _descends_from(p, me))


@pytest.mark.slow
def test_quick_study_notebook_runs_and_plots(tmp_path, process_guard):
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit the notebook without outputs"
    out = tmp_path / "out"
    env = {**os.environ, "FEDFT_NOTEBOOK_OUT": str(out), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    before = process_guard
    try:
        client.execute(cleanup_kc=False, env=env)  # the kernel stays up until its process tree is recorded below
    finally:
        started = _descendants(before)
        if client.km is not None:
            if client.kc is not None:
                client.kc.stop_channels()
            run_sync(client.km.shutdown_kernel)(now=True)
        kill_pids([p for p in started if Path(f"/proc/{p}").exists()])

    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    finals = dict(re.findall(r"final accuracy (lr 0\.0[15]): ([0-9.]+) \(completed", text))
    assert set(finals) == {"lr 0.05", "lr 0.01"}, text
    assert all(0.0 <= float(v) <= 1.0 for v in finals.values())
    plot = out / "accuracy_per_round.png"
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arm in ("lr_0.05", "lr_0.01"):
        assert (out / arm / "summary.json").is_file() and (out / arm / "metrics.csv").is_file()
