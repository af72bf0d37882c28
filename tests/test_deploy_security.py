"""Deployment security with real processes on 127.0.0.1 (slow: each start of a SuperLink
and SuperNodes costs many seconds on a small machine, so checks share process starts)."""

from __future__ import annotations

import json
import time

import pytest
from test_deploy import _assert_nothing_left, _config, _fedft, _read, _rows, _stop


@pytest.mark.slow
def test_launch_three_of_ten_partitions_finishes_with_three_clients(tmp_path, process_guard):
    """`fedft launch --clients 3` with partition.num_clients = 10: the server starts with the
    3 nodes it launched (simulation.min_clients defaults to --clients) and samples only them;
    deployment defaults bound the update norm (clients_clipped recorded)."""
    config = _config(tmp_path, rounds=1, clients_per_round=10)
    config.write_text(config.read_text().replace("num_clients = 3", "num_clients = 10"))
    out = tmp_path / "run"
    t0 = time.monotonic()
    launch = _fedft("launch", str(config), "--clients", "3", "--out", str(out), log=tmp_path / "launch.log")
    try:
        assert launch.wait(timeout=600) == 0, _read(tmp_path / "launch.log")
    finally:
        _stop(launch)
    print(f"launch 3 of 10: {time.monotonic() - t0:.1f} s")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    rows = _rows(out)
    assert rows[0]["clients_joined"] == "3" and rows[0]["nodes_refused"] == "0"
    assert rows[1]["clients_sampled"] == "3" and rows[1]["clients_replied"] == "3" and "clients_clipped" in rows[1]
    _assert_nothing_left(out)
