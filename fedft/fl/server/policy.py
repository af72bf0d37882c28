"""Round policies on the virtual clock (docs/cross-device.md): Flower glue around the pure
schedules in `fedft.devices`, built once per run from `[devices]` and `[round_policy]`.

`ClockedRounds` (sync and deadline): each round's plan says who trains and whose update
counts, and advances the clock by the round's duration. `BufferedRounds` (fedbuff): each
"round" is one server update of FedBuff's schedule; clients train from the model version
current when they started, so it keeps those versions and rebases each report onto the
current model with its staleness weight. Their state is checkpointed (section `devices`),
so a resumed run replays the same plans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ArrayRecord

from fedft.config import FedftConfig
from fedft.devices.deadline import RoundPlan, plan_round
from fedft.devices.fedbuff import BufferSchedule, staleness_weight
from fedft.devices.profiles import DeviceProfiles, read_profiles_csv, seeded_profiles
from fedft.errors import FedftError
from fedft.fl.compression import encoded_bytes


def profiles_for(cfg: FedftConfig) -> DeviceProfiles | None:
    """The run's devices (`devices.profiles`), or None without a device model."""
    d, n = cfg.devices, cfg.partition.num_clients
    if not d.profiles:
        return None
    if d.profiles == "seeded":
        return seeded_profiles(cfg.seed, n, d.examples_per_second, d.download_mbps, d.upload_mbps, d.spread, d.dropout_probability, d.online_hours)
    return read_profiles_csv(d.profiles, n, cfg.seed, d.dropout_probability, d.online_hours)


def check_devices(cfg: FedftConfig) -> None:
    """The rules `[devices]`, `[round_policy]` and `[compression]` put on the rest of the config."""
    policy, central = cfg.round_policy.name, cfg.privacy.mode == "central"
    if policy != "sync" and not cfg.devices.profiles:
        raise FedftError("round_policy.name", f"'{policy}' closes rounds on the virtual clock, which needs devices.profiles.",
                         "set devices.profiles = \"seeded\" (or a CSV of devices), or round_policy.name = \"sync\".")
    if cfg.devices.profiles and central and cfg.privacy.client_sampling == "poisson":
        raise FedftError("privacy.client_sampling", "is \"poisson\", but with devices.profiles who takes part depends on who is online, fast and still there, "
                         "not on independent coins: amplification by sampling does not hold.",
                         "set privacy.client_sampling = \"fixed\" (accounted without amplification, valid for any participation), or drop devices.profiles.")
    if cfg.devices.profiles and cfg.faults.straggler_probability > 0:
        raise FedftError("faults.straggler_probability", "injects wall-clock stragglers, but devices.profiles already makes devices slow on the virtual clock.",
                         "set faults.straggler_probability = 0 (devices.spread and round_policy.deadline_seconds make stragglers).")
    rp, n = cfg.round_policy, cfg.partition.num_clients
    if policy == "fedbuff":
        if cfg.strategy.name == "scaffold" or cfg.lora.ranks:
            what = "strategy.name" if cfg.strategy.name == "scaffold" else "lora.ranks"
            raise FedftError(what, f"cannot run with round_policy.name = \"fedbuff\": {'SCAFFOLD control variates' if what == 'strategy.name' else 'per-client adapter ranks'} assume every report was trained from the current model.",
                             "use round_policy.name = \"deadline\", or another strategy (fedavg, fedadam, ...).")
        if rp.buffer_size > n or (rp.concurrency or cfg.simulation.clients_per_round) > n:
            raise FedftError("round_policy.buffer_size", f"= {rp.buffer_size} and concurrency = {rp.concurrency or cfg.simulation.clients_per_round} must each be at most partition.num_clients = {n}.",
                             "lower them: a device reports at most once per server update.")
        if cfg.simulation.min_replies > rp.buffer_size:
            raise FedftError("simulation.min_replies", f"= {cfg.simulation.min_replies} is more than round_policy.buffer_size = {rp.buffer_size}, so every update would be skipped.",
                             "require at most buffer_size replies.")
    if cfg.compression.kind != "none" and cfg.lora.ranks:
        raise FedftError("compression.kind", "cannot compress updates cut to per-client ranks (lora.ranks).", "drop lora.ranks, or set compression.kind = \"none\".")
    if cfg.devices.profiles and cfg.simulation.centralised:
        raise FedftError("devices.profiles", "simulates devices, but simulation.centralised trains one model without clients.", "drop devices.profiles for the centralised arm.")


def clock_summary(time: float, joined: np.ndarray) -> dict[str, Any]:
    """summary.json's view of a clocked run: its virtual duration and how often devices took part."""
    return {"virtual_time": time, "rounds_joined_max": int(joined.max(initial=0)), "rounds_joined_mean": float(joined.mean()) if len(joined) else 0.0}


class ClockedRounds:
    """Synchronous rounds (round_policy "sync" or "deadline") over device profiles."""

    def __init__(self, cfg: FedftConfig, profiles: DeviceProfiles, examples: np.ndarray, bytes_down: int, bytes_up: int) -> None:
        rp = cfg.round_policy
        self.seed, self.profiles, self.examples = cfg.seed, profiles, examples
        self.target = cfg.simulation.clients_per_round
        self.over_selection = rp.over_selection if rp.name == "deadline" else 0.0
        self.deadline, self.bytes_down, self.bytes_up = rp.deadline_seconds, bytes_down, bytes_up
        self.time = 0.0  # virtual seconds since the run started
        self.joined = np.zeros(len(profiles), dtype=np.int32)  # rounds each client's update counted in

    def plan(self, server_round: int, excluded: frozenset[int], current: ArrayRecord | None = None) -> RoundPlan:
        plan = plan_round(self.seed, server_round, self.time, self.profiles, self.examples, _eligible(len(self.profiles), excluded), self.target,
                          self.over_selection, self.deadline, self.bytes_down, self.bytes_up)
        self.time += plan.seconds
        self.joined[list(plan.accepted)] += 1
        return plan

    def bases(self, plan: RoundPlan) -> dict[int, ArrayRecord]:
        """Clients that trained from another model than the current one: none in a synchronous round."""
        return {}

    def weights(self, plan: RoundPlan) -> dict[int, float]:
        return {}

    def after_round(self, arrays: ArrayRecord) -> None:
        pass

    def columns(self, plan: RoundPlan) -> dict[str, Any]:
        return {"clients_selected": len(plan.selected), "clients_straggled": len(plan.stragglers), "clients_device_failed": len(plan.failed),
                "virtual_seconds": plan.seconds, "virtual_time": self.time}

    def summary(self) -> dict[str, Any]:
        return clock_summary(self.time, self.joined)

    def to_plain(self) -> dict[str, Any]:
        return {"time": self.time, "joined": self.joined.tolist()}

    def load_plain(self, data: dict[str, Any]) -> None:
        self.time = float(data["time"])
        self.joined = np.asarray(data["joined"], dtype=np.int32)


def _eligible(num_clients: int, excluded: frozenset[int]) -> np.ndarray:
    return np.setdiff1d(np.arange(num_clients), np.fromiter(excluded, dtype=np.int64, count=len(excluded)), assume_unique=True)


class BufferedRounds:
    """FedBuff (round_policy "fedbuff") over device profiles: round r is server update r."""

    def __init__(self, cfg: FedftConfig, profiles: DeviceProfiles, examples: np.ndarray, bytes_down: int, bytes_up: int) -> None:
        rp = cfg.round_policy
        self.schedule = BufferSchedule(cfg.seed, profiles, examples, rp.concurrency or cfg.simulation.clients_per_round, rp.buffer_size,
                                       rp.max_staleness, rp.deadline_seconds, bytes_down, bytes_up)
        self.exponent = rp.staleness_exponent
        self.versions: dict[int, ArrayRecord] = {}  # the model versions in-flight tasks train from, and the current one
        self.joined = np.zeros(len(profiles), dtype=np.int32)

    @property
    def time(self) -> float:
        return self.schedule.time

    def plan(self, server_round: int, excluded: frozenset[int], current: ArrayRecord | None = None) -> RoundPlan:
        if not self.versions and current is not None:
            self.versions[self.schedule.version] = current  # version 0: the start model
        plan = self.schedule.next_update(_eligible(len(self.joined), excluded))
        self.joined[list(plan.accepted)] += 1
        return plan

    def staleness(self, plan: RoundPlan) -> list[int]:
        current = self.schedule.version - 1  # the model the reports are aggregated into
        return [current - v for v in plan.versions]

    def bases(self, plan: RoundPlan) -> dict[int, ArrayRecord]:
        current = self.schedule.version - 1
        return {c: self.versions[v] for c, v in zip(plan.accepted, plan.versions, strict=True) if v != current}

    def weights(self, plan: RoundPlan) -> dict[int, float]:
        return {c: staleness_weight(s, self.exponent) for c, s in zip(plan.accepted, self.staleness(plan), strict=True) if s}

    def after_round(self, arrays: ArrayRecord) -> None:
        """The update is made: keep it, and only the versions still in flight."""
        self.versions[self.schedule.version] = arrays
        keep = self.schedule.in_flight_versions() | {self.schedule.version}
        self.versions = {v: a for v, a in self.versions.items() if v in keep}

    def columns(self, plan: RoundPlan) -> dict[str, Any]:
        s = self.staleness(plan)
        return {"clients_selected": len(plan.selected), "clients_stale": len(plan.stragglers), "clients_device_failed": len(plan.failed),
                "staleness_mean": float(np.mean(s)) if s else 0.0, "staleness_max": max(s, default=0),
                "virtual_seconds": plan.seconds, "virtual_time": self.time}

    def summary(self) -> dict[str, Any]:
        return clock_summary(self.time, self.joined)

    def to_plain(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_plain(), "joined": self.joined.tolist(),
                "versions": {str(v): dict(a.to_torch_state_dict()) for v, a in self.versions.items()}}

    def load_plain(self, data: dict[str, Any]) -> None:
        self.schedule.load_plain(data["schedule"])
        self.joined = np.asarray(data["joined"], dtype=np.int32)
        self.versions = {int(v): ArrayRecord(arrays) for v, arrays in data["versions"].items()}


RoundPolicy = ClockedRounds | BufferedRounds


def rebase(reply: ArrayRecord, base: ArrayRecord, current: ArrayRecord, weight: float) -> ArrayRecord:
    """current + weight x (reply - base): a report trained from an older model `base`, as an
    update of the current one, scaled by its staleness weight (FedBuff's server step)."""
    r, b, c = reply.to_torch_state_dict(), base.to_torch_state_dict(), current.to_torch_state_dict()
    return ArrayRecord({k: (c[k].double() + weight * (r[k].double() - b[k].double())).to(c[k].dtype) if c[k].is_floating_point() else r[k] for k in r})


def clocked_rounds(cfg: FedftConfig, train_sizes: list[int], sent_shapes: dict[str, tuple[int, ...]], bytes_down: int) -> RoundPolicy | None:
    """The run's round policy over its devices, or None (no device model: rounds as before)."""
    profiles = profiles_for(cfg)
    if profiles is None:
        return None
    examples = np.asarray(train_sizes, dtype=np.float64) * cfg.train.local_epochs
    up = bytes_down if cfg.compression.kind == "none" else encoded_bytes(sent_shapes, cfg.compression.kind, cfg.compression.topk_fraction)
    return (BufferedRounds if cfg.round_policy.name == "fedbuff" else ClockedRounds)(cfg, profiles, examples, bytes_down, up)
