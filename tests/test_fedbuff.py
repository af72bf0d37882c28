"""FedBuff on the virtual clock (fedft/devices/fedbuff.py): staleness weights, a schedule
worked out by hand, the server's rebasing of stale reports, and a resumed run that
replays the uninterrupted one bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

import fedft
from fedft.devices.fedbuff import BufferSchedule, staleness_weight
from fedft.devices.profiles import DeviceProfiles
from fedft.fl.server.policy import rebase


def test_staleness_weight_is_fedbuffs_inverse_square_root():
    assert [staleness_weight(s, 0.5) for s in (0, 3, 8)] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert staleness_weight(5, 0.0) == 1.0


def _two_devices(max_staleness: int = 10) -> BufferSchedule:
    """A trains in 2 s, B in 3 s (20 and 30 examples at 10/s, no bytes), both always online."""
    n = 2
    d = DeviceProfiles(np.full(n, 10.0), np.ones(n), np.ones(n), np.zeros(n), np.zeros(n), np.full(n, 24.0))
    return BufferSchedule(0, d, np.array([20.0, 30.0]), concurrency=2, buffer_size=1, max_staleness=max_staleness, timeout=60.0, bytes_down=0.0, bytes_up=0.0)


def test_a_schedule_worked_out_by_hand():
    # t=0: A (v0, done at 2) and B (v0, done at 3) start.  update 1 at t=2: A's v0 report, fresh.
    # A restarts on v1 (done at 4).  update 2 at t=3: B's v0 report, 1 old; B restarts on v2 (done at 6).
    # update 3 at t=4: A's v1 report, 1 old; A restarts on v3 (done at 6).
    # t=6: B's task started first (task 3 before task 4), so update 4 is B's v2 report, then update 5 A's v3 one, at the same time.
    s = _two_devices()
    plans = [s.next_update(np.arange(2)) for _ in range(5)]
    assert [(p.accepted, p.versions) for p in plans] == [((0,), (0,)), ((1,), (0,)), ((0,), (1,)), ((1,), (2,)), ((0,), (3,))]
    assert [p.seconds for p in plans] == [2.0, 1.0, 1.0, 2.0, 0.0]
    assert [sorted(p.selected) for p in plans] == [[0, 1], [0], [1], [0], [1]]  # who started (downloaded) before each update
    assert s.time == 6.0 and s.version == 5


def test_reports_staler_than_the_bound_are_dropped():
    s = _two_devices(max_staleness=0)
    first, second = s.next_update(np.arange(2)), s.next_update(np.arange(2))
    assert first.accepted == (0,)
    # B's v0 report at t=3 is one version old: dropped; B restarts on v1 (done at 6); A's v1 report at t=4 is fresh
    assert (second.accepted, second.versions, second.stragglers, second.seconds) == ((0,), (1,), (1,), 2.0)


def test_a_restored_schedule_replays_the_same_updates():
    straight, first = _two_devices(), _two_devices()
    expected = [straight.next_update(np.arange(2)) for _ in range(6)]
    for _ in range(3):
        first.next_update(np.arange(2))
    resumed = _two_devices()
    resumed.load_plain(json.loads(json.dumps(first.to_plain())))
    assert [resumed.next_update(np.arange(2)) for _ in range(3)] == expected[3:]


def test_a_stale_report_is_rebased_onto_the_current_model_with_its_weight():
    base, current, reply = (ArrayRecord({"w": torch.tensor(v)}) for v in ([1.0, 1.0], [2.0, 0.0], [3.0, 5.0]))
    # current + 0.5 x (reply - base) = [2 + 1, 0 + 2]
    assert rebase(reply, base, current, 0.5).to_torch_state_dict()["w"].tolist() == [3.0, 2.0]


@pytest.mark.slow
def test_fedbuff_with_compression_resumes_bit_identically(tiny_config, tmp_path, process_guard):
    """FedBuff with int8 updates and error feedback: a run stopped after round 2 and resumed
    ends with the uninterrupted run's arrays, rows and clock (the schedule, the kept model
    versions and every client's residual come back from the checkpoint)."""
    from test_reliability import rows_without_times, stop_after_round

    tiny_config["partition"]["num_clients"] = 12
    tiny_config["simulation"].update(rounds=4, clients_per_round=4, backend="local")
    tiny_config["devices"] = {"profiles": "seeded", "dropout_probability": 0.2}
    tiny_config["round_policy"] = {"name": "fedbuff", "buffer_size": 2, "concurrency": 5}
    tiny_config["compression"] = {"kind": "int8"}
    reference = fedft.run(tiny_config, out=tmp_path / "reference", quiet=True)
    assert reference.summary["status"] == "completed", reference.summary
    rows = reference.metrics[1:]
    assert all(r["clients_sampled"] == 2 for r in rows) and max(r["staleness_max"] for r in rows) >= 1  # stale reports were rebased

    with pytest.raises(Exception, match="stopped after round 2"):
        fedft.run(tiny_config, out=tmp_path / "stopped", quiet=True, on_round=stop_after_round(2))
    resumed = fedft.run(resume=tmp_path / "stopped", quiet=True)
    assert resumed.summary["status"] == "completed" and resumed.summary["resumed_from_round"] == 2
    assert rows_without_times(tmp_path / "stopped") == rows_without_times(reference.run_dir)
    for key, value in reference.state.items():
        assert torch.equal(resumed.state[key], value), key
    assert resumed.summary["virtual_time"] == reference.summary["virtual_time"]
