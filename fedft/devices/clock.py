"""The virtual clock: how long a device's task takes and whether it is online, in
simulated seconds. Pure functions of a profile; the round policies compose them.

A task is: download the global model, train `examples` examples, upload the update.
    seconds = 8 bytes_down / (download_mbps 1e6) + examples / examples_per_second + 8 bytes_up / (upload_mbps 1e6)
A device is online while its local hour h = (t / 3600 - online_start_hour) mod 24 is below
`online_hours`; one that goes offline before its task ends never reports.
"""

from __future__ import annotations

import numpy as np

from fedft.devices.profiles import DeviceProfiles


def task_seconds(profiles: DeviceProfiles, clients: np.ndarray, examples: np.ndarray, bytes_down: float, bytes_up: float) -> np.ndarray:
    """Each client's download + compute + upload time; `examples` is per client (epochs x records)."""
    return (8.0 * bytes_down / (profiles.download_mbps[clients] * 1e6) + examples / profiles.examples_per_second[clients]
            + 8.0 * bytes_up / (profiles.upload_mbps[clients] * 1e6))


def online_seconds_left(profiles: DeviceProfiles, clients: np.ndarray, t: float) -> np.ndarray:
    """Seconds each client stays online from time t: 0 when offline, inf when always online."""
    hours = profiles.online_hours[clients]
    into = np.mod(t / 3600.0 - profiles.online_start_hour[clients], 24.0)  # hours since the window opened
    left = np.where(into < hours, (hours - into) * 3600.0, 0.0)
    return np.where(hours >= 24.0, np.inf, left)


def online(profiles: DeviceProfiles, t: float, clients: np.ndarray | None = None) -> np.ndarray:
    """The ids (of `clients`, or of all) online at time t."""
    ids = np.arange(len(profiles)) if clients is None else np.asarray(clients, dtype=np.int64)
    return ids[online_seconds_left(profiles, ids, t) > 0]


def fails(profiles: DeviceProfiles, clients: np.ndarray, coins: np.ndarray, t: float, seconds: np.ndarray) -> np.ndarray:
    """Which tasks started at t never report: the device's dropout coin came up (`coins`
    uniform in [0, 1)), or it goes offline before the task's `seconds` are over."""
    return (coins < profiles.dropout_probability[clients]) | (online_seconds_left(profiles, clients, t) < seconds)
