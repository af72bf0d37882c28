"""Each client's device: compute speed, bandwidths, failure rate and daily online window.

One array per property (`DeviceProfiles`), indexed by client id. Drawn from log-normals
with the run's seed (FedScale's traces show speeds and bandwidths spread over orders of
magnitude, which a log-normal reproduces), or read from a user's CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from fedft.errors import FedftError

CSV_COLUMNS = ("client", "examples_per_second", "download_mbps", "upload_mbps")  # required
CSV_OPTIONAL = ("dropout_probability", "online_start_hour", "online_hours")  # default: devices.* (start hour: seeded)


@dataclass(frozen=True)
class DeviceProfiles:
    examples_per_second: np.ndarray  # training throughput, examples (forward + backward) per second
    download_mbps: np.ndarray
    upload_mbps: np.ndarray
    dropout_probability: np.ndarray  # per task: the device fails to report
    online_start_hour: np.ndarray  # local hour [0, 24) its daily online window opens
    online_hours: np.ndarray  # length of that window; 24 = always online

    def __len__(self) -> int:
        return len(self.examples_per_second)

    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self))


def seeded_profiles(seed: int, num_clients: int, examples_per_second: float, download_mbps: float, upload_mbps: float, spread: float,
                    dropout_probability: float, online_hours: float) -> DeviceProfiles:
    """Log-normal speed and bandwidths around the given medians (sigma `spread`), a uniform
    local start hour; the same (seed, num_clients) gives the same devices."""
    rng = np.random.default_rng([seed, 0xDE71CE])
    lognormal = lambda median: median * np.exp(spread * rng.standard_normal(num_clients))  # noqa: E731
    return DeviceProfiles(lognormal(examples_per_second), lognormal(download_mbps), lognormal(upload_mbps),
                          np.full(num_clients, dropout_probability), rng.uniform(0.0, 24.0, num_clients), np.full(num_clients, online_hours))


def read_profiles_csv(path: str | Path, num_clients: int, seed: int, dropout_probability: float, online_hours: float) -> DeviceProfiles:
    """One row per client 0..num_clients-1 (any order); columns `CSV_COLUMNS`, optionally
    `CSV_OPTIONAL`. Any problem is one FedftError naming the file, the line and the column."""
    field, fix = "devices.profiles", f"give one row per client 0..{num_clients - 1} with columns {', '.join(CSV_COLUMNS)} (optional: {', '.join(CSV_OPTIONAL)})."
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FedftError(field, f"'{path}' cannot be read ({exc}).", fix) from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise FedftError(field, f"'{path}' has no column {missing[0]!r}.", fix)
    start = np.random.default_rng([seed, 0xDE71CE]).uniform(0.0, 24.0, num_clients)
    values = {c: np.full(num_clients, np.nan) for c in CSV_COLUMNS[1:] + CSV_OPTIONAL}
    values["dropout_probability"][:], values["online_hours"][:], values["online_start_hour"][:] = dropout_probability, online_hours, start
    seen: set[int] = set()
    for line, row in enumerate(rows, start=2):
        try:
            client = int(row["client"])
        except (TypeError, ValueError):
            raise FedftError(field, f"'{path}' line {line}: client {row['client']!r} is not an integer.", fix) from None
        if not 0 <= client < num_clients or client in seen:
            raise FedftError(field, f"'{path}' line {line}: client {client} is {'listed twice' if client in seen else 'out of range'}.", fix)
        seen.add(client)
        for column in CSV_COLUMNS[1:] + CSV_OPTIONAL:
            text = (row.get(column) or "").strip()
            if not text and column in CSV_OPTIONAL:
                continue
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            what, valid = _VALID[column]
            if not valid(value):
                raise FedftError(field, f"'{path}' line {line}: {column} = {text!r} is not {what}.", fix)
            values[column][client] = value
    if len(seen) < num_clients:
        absent = min(set(range(num_clients)) - seen)
        raise FedftError(field, f"'{path}' has {len(seen)} rows for {num_clients} clients (client {absent} is missing).", fix)
    return DeviceProfiles(*(values[c] for c in CSV_COLUMNS[1:] + CSV_OPTIONAL))


_VALID = {  # column: (what a value must be, the test); NaN and inf fail every test
    "examples_per_second": ("a positive number", lambda v: 0.0 < v < np.inf),
    "download_mbps": ("a positive number", lambda v: 0.0 < v < np.inf),
    "upload_mbps": ("a positive number", lambda v: 0.0 < v < np.inf),
    "dropout_probability": ("a probability in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "online_start_hour": ("an hour in [0, 24)", lambda v: 0.0 <= v < 24.0),
    "online_hours": ("a number of hours in (0, 24]", lambda v: 0.0 < v <= 24.0),
}
