"""Device profiles and the virtual clock (fedft/devices): closed-form task times, daily
windows, and deadline rounds against schedules computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedft.devices.clock import fails, online, online_seconds_left, task_seconds
from fedft.devices.deadline import plan_round
from fedft.devices.profiles import DeviceProfiles, read_profiles_csv, seeded_profiles
from fedft.errors import FedftError


def _devices(speeds, down=8.0, up=4.0, dropout=0.0, start=0.0, hours=24.0) -> DeviceProfiles:
    n = len(speeds)
    full = lambda v: np.full(n, v, dtype=np.float64) if np.isscalar(v) else np.asarray(v, dtype=np.float64)  # noqa: E731
    return DeviceProfiles(full(speeds), full(down), full(up), full(dropout), full(start), full(hours))


def test_a_task_is_download_plus_compute_plus_upload():
    # 1 MB down at 8 Mbit/s = 1 s; 50 examples at 10/s = 5 s; 1 MB up at 4 Mbit/s = 2 s
    seconds = task_seconds(_devices([10.0, 5.0]), np.array([0, 1]), np.array([50.0, 50.0]), 1e6, 1e6)
    np.testing.assert_allclose(seconds, [8.0, 13.0])


def test_a_daily_window_opens_and_closes_across_midnight():
    d = _devices([1.0, 1.0], start=[22.0, 0.0], hours=[4.0, 24.0])  # client 0: online 22:00-02:00; client 1: always
    hour = 3600.0
    np.testing.assert_allclose(online_seconds_left(d, np.array([0, 1]), 23 * hour), [3 * hour, np.inf])
    np.testing.assert_allclose(online_seconds_left(d, np.array([0]), 24 * hour + 1 * hour), [1 * hour])  # 01:00 the next day
    assert online_seconds_left(d, np.array([0]), 3 * hour)[0] == 0.0
    assert online(d, 3 * hour).tolist() == [1] and online(d, 23 * hour).tolist() == [0, 1]
    # a 2-hour task started at 01:00 outlives the window; the coin alone would not fail it
    assert fails(d, np.array([0]), np.array([0.5]), 1 * hour, np.array([2 * hour])).tolist() == [True]
    assert fails(d, np.array([0]), np.array([0.5]), 23 * hour, np.array([2 * hour])).tolist() == [False]


def _three(deadline: float, target: int, over_selection: float):
    # bytes 0: a task is examples / speed: client 0 takes 4 s, client 1 1 s, client 2 9 s
    d = _devices([10.0, 10.0, 10.0])
    return plan_round(1, 1, 0.0, d, np.array([40.0, 10.0, 90.0]), np.arange(3), target, over_selection, deadline, 0.0, 0.0)


def test_deadline_round_closes_at_the_kth_report():
    plan = _three(deadline=5.0, target=2, over_selection=0.5)  # selects ceil(2 x 1.5) = 3 of 3
    assert (plan.selected, plan.accepted, plan.stragglers, plan.failed, plan.seconds) == ((0, 1, 2), (0, 1), (2,), (), 4.0)


def test_deadline_round_closes_at_the_deadline_when_too_few_report():
    plan = _three(deadline=3.0, target=2, over_selection=0.5)
    assert (plan.accepted, plan.stragglers, plan.seconds) == ((1,), (0, 2), 3.0)


def test_sync_waits_for_every_selected_client_up_to_the_deadline():
    assert _three(deadline=600.0, target=3, over_selection=0.0).seconds == 9.0
    plan = _three(deadline=5.0, target=3, over_selection=0.0)
    assert (plan.accepted, plan.stragglers, plan.seconds) == ((0, 1), (2,), 5.0)


def test_failed_devices_never_report_and_the_round_waits_for_the_deadline():
    d = _devices([10.0, 10.0], dropout=0.999999)
    plan = plan_round(1, 1, 0.0, d, np.array([10.0, 10.0]), np.arange(2), 2, 0.0, 60.0, 0.0, 0.0)
    assert (plan.accepted, plan.failed, plan.seconds) == ((), (0, 1), 60.0)


def test_only_online_eligible_clients_are_selected_and_plans_replay():
    d = seeded_profiles(5, 200, 100.0, 20.0, 5.0, 0.8, 0.1, 8.0)
    args = (5, 7, 3 * 3600.0, d, np.full(200, 60.0), np.arange(0, 200, 2), 10, 0.3, 120.0, 4e5, 1e5)
    plan = plan_round(*args)
    assert plan == plan_round(*args)  # (seed, round, clock) alone decide it
    assert len(plan.selected) == 13 and all(c % 2 == 0 for c in plan.selected)
    assert set(plan.selected) <= set(online(d, 3 * 3600.0).tolist())
    assert set(plan.accepted) | set(plan.stragglers) | set(plan.failed) == set(plan.selected) and len(plan.accepted) <= 10


def test_seeded_profiles_are_log_normal_around_the_medians():
    d = seeded_profiles(0, 20_000, 100.0, 20.0, 5.0, 0.8, 0.0, 24.0)
    assert np.median(d.examples_per_second) == pytest.approx(100.0, rel=0.03)
    assert np.std(np.log(d.upload_mbps)) == pytest.approx(0.8, rel=0.03)
    assert d.nbytes() == 6 * 8 * 20_000  # 60,000 devices: under 3 MB
    assert seeded_profiles(0, 5, 100.0, 20.0, 5.0, 0.0, 0.0, 24.0).examples_per_second.tolist() == [100.0] * 5  # spread 0: identical


def _csv(tmp_path, text: str):
    path = tmp_path / "devices.csv"
    path.write_text(text)
    return path


def test_a_csv_of_devices_is_read_with_optional_columns_defaulted(tmp_path):
    path = _csv(tmp_path, "client,examples_per_second,download_mbps,upload_mbps,online_hours\n1,50,10,2,\n0,25,5,1,6\n")
    d = read_profiles_csv(path, 2, seed=0, dropout_probability=0.1, online_hours=24.0)
    assert d.examples_per_second.tolist() == [25.0, 50.0] and d.online_hours.tolist() == [6.0, 24.0] and d.dropout_probability.tolist() == [0.1, 0.1]


@pytest.mark.parametrize("text, needle", [
    ("client,examples_per_second,download_mbps\n0,1,1\n", "no column 'upload_mbps'"),
    ("client,examples_per_second,download_mbps,upload_mbps\n0,1,1,1\n0,1,1,1\n", "line 3: client 0 is listed twice"),
    ("client,examples_per_second,download_mbps,upload_mbps\n0,1,1,1\n", "has 1 rows for 2 clients (client 1 is missing)"),
    ("client,examples_per_second,download_mbps,upload_mbps\n0,1,1,1\n1,-3,1,1\n", "line 3: examples_per_second = '-3' is not a positive number"),
    ("client,examples_per_second,download_mbps,upload_mbps,dropout_probability\n0,1,1,1,1\n1,1,1,1,0\n", "line 2: dropout_probability = '1' is not a probability"),
    ("client,examples_per_second,download_mbps,upload_mbps\nx,1,1,1\n1,1,1,1\n", "line 2: client 'x' is not an integer"),
])
def test_a_bad_csv_of_devices_is_one_line_naming_the_line_and_column(tmp_path, text, needle):
    with pytest.raises(FedftError) as caught:
        read_profiles_csv(_csv(tmp_path, text), 2, seed=0, dropout_probability=0.0, online_hours=24.0)
    assert caught.value.field == "devices.profiles" and needle in caught.value.one_line() and "\n" not in caught.value.one_line()
