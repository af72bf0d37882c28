"""Asynchronous buffered aggregation on the virtual clock: FedBuff (Nguyen et al. 2022,
"Federated Learning with Buffered Asynchronous Aggregation", AISTATS).

`concurrency` devices train at any time, each on the model version current when it
started. Reports arrive in virtual-time order; every `buffer_size` reports the server
updates the model (version v -> v + 1), weighting a report that is s = v - (its version)
versions old by (1 + s)^-a (`staleness_weight`; a = 1/2 is FedBuff's 1/sqrt(1 + s)), and
dropping it when s > max_staleness. A finished (or failed, at its timeout) task frees its
slot for a new device, picked uniformly among those online and idle. A device reports at
most once per update: one in the buffer is not restarted until the update is made.

Everything follows from (seed, task number) and the profiles, never from what the
devices learn; the scheduler's state (`to_plain`) is what a checkpoint needs to replay it.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedft.devices.clock import fails, online, task_seconds
from fedft.devices.deadline import RoundPlan
from fedft.devices.profiles import DeviceProfiles
from fedft.errors import FedftError

MAX_IDLE_WAITS = 10_000  # timeouts in a row with nobody online before the schedule gives up


def staleness_weight(staleness: int, exponent: float) -> float:
    """(1 + s)^-a: 1 for a fresh report, FedBuff's 1/sqrt(1 + s) at a = 1/2."""
    return float((1.0 + staleness) ** -exponent)


@dataclass(frozen=True, order=True)
class Task:
    finishes: float  # when it reports (or, failed, when the server gives up on it)
    number: int  # tasks started before it: breaks ties, seeds its draws
    client: int
    version: int  # the model version it trains from
    failed: bool


class BufferSchedule:
    def __init__(self, seed: int, profiles: DeviceProfiles, examples: np.ndarray, concurrency: int, buffer_size: int, max_staleness: int,
                 timeout: float, bytes_down: float, bytes_up: float) -> None:
        self.seed, self.profiles, self.examples = seed, profiles, examples
        self.concurrency, self.buffer_size, self.max_staleness, self.timeout = concurrency, buffer_size, max_staleness, timeout
        self.bytes_down, self.bytes_up = bytes_down, bytes_up
        self.time = 0.0
        self.version = 0  # server updates made so far
        self.started = 0  # tasks started so far
        self.tasks: list[Task] = []  # in flight, a heap

    def _start(self, eligible: np.ndarray, busy: set[int]) -> int | None:
        """Start one task at self.time on the current version: its device, or None if none is free."""
        free = np.setdiff1d(online(self.profiles, self.time, eligible), np.fromiter(busy, dtype=np.int64, count=len(busy)), assume_unique=True)
        if not len(free):
            return None
        rng = np.random.default_rng([self.seed, self.started, 0xFEDB])
        client = int(free[rng.integers(len(free))])
        ids = np.array([client])
        seconds = float(task_seconds(self.profiles, ids, self.examples[ids], self.bytes_down, self.bytes_up)[0])
        failed = bool(fails(self.profiles, ids, rng.random(1), self.time, np.array([seconds]))[0])
        heapq.heappush(self.tasks, Task(self.time + (self.timeout if failed else seconds), self.started, client, self.version, failed))
        self.started += 1
        return client

    def next_update(self, eligible: np.ndarray) -> RoundPlan:
        """Run the clock to the next server update; its plan: `accepted` (with `versions`)
        are the buffered reports, `stragglers` the reports dropped as too stale, `failed`
        the tasks lost, `selected` the devices that started (downloaded) meanwhile."""
        start_time = self.time
        starts: list[int] = []
        buffer: list[Task] = []
        stale: list[int] = []
        lost: list[int] = []
        waits = 0
        while len(buffer) < self.buffer_size:
            busy = {t.client for t in self.tasks} | {t.client for t in buffer}
            while len(self.tasks) < self.concurrency and (client := self._start(eligible, busy)) is not None:
                starts.append(client)
                busy.add(client)
            if not self.tasks:  # nobody online and free: wait a timeout and look again
                waits += 1
                if waits > MAX_IDLE_WAITS:
                    raise FedftError("devices", f"no device was online for {MAX_IDLE_WAITS} timeouts in a row.", "raise devices.online_hours, or lower round_policy.buffer_size.")
                self.time += self.timeout
                continue
            task = heapq.heappop(self.tasks)
            self.time = task.finishes
            if task.failed:
                lost.append(task.client)
            elif self.version - task.version > self.max_staleness:
                stale.append(task.client)
            else:
                buffer.append(task)
        self.version += 1
        return RoundPlan(tuple(starts), tuple(t.client for t in buffer), tuple(stale), tuple(lost), self.time - start_time, tuple(t.version for t in buffer))

    def in_flight_versions(self) -> set[int]:
        return {t.version for t in self.tasks}

    def to_plain(self) -> dict[str, Any]:
        return {"time": self.time, "version": self.version, "started": self.started, "tasks": [asdict(t) for t in sorted(self.tasks)]}

    def load_plain(self, data: dict[str, Any]) -> None:
        self.time, self.version, self.started = float(data["time"]), int(data["version"]), int(data["started"])
        self.tasks = [Task(float(t["finishes"]), int(t["number"]), int(t["client"]), int(t["version"]), bool(t["failed"])) for t in data["tasks"]]
        heapq.heapify(self.tasks)
