"""Round policies on the virtual clock (docs/cross-device.md): Flower glue around the pure
schedules in `fedft.devices`, built once per run from `[devices]` and `[round_policy]`.

`ClockedRounds` (sync and deadline): each round's plan says who trains and whose update
counts, and advances the clock by the round's duration. The clock is the only state; it is
checkpointed (section `devices`), so a resumed run replays the same plans.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedft.config import FedftConfig
from fedft.devices.deadline import RoundPlan, plan_round
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
    if cfg.compression.kind != "none" and cfg.lora.ranks:
        raise FedftError("compression.kind", "cannot compress updates cut to per-client ranks (lora.ranks).", "drop lora.ranks, or set compression.kind = \"none\".")
    if cfg.devices.profiles and cfg.simulation.centralised:
        raise FedftError("devices.profiles", "simulates devices, but simulation.centralised trains one model without clients.", "drop devices.profiles for the centralised arm.")


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

    def plan(self, server_round: int, excluded: frozenset[int]) -> RoundPlan:
        eligible = np.array([c for c in range(len(self.profiles)) if c not in excluded], dtype=np.int64) if excluded else np.arange(len(self.profiles))
        plan = plan_round(self.seed, server_round, self.time, self.profiles, self.examples, eligible, self.target, self.over_selection,
                          self.deadline, self.bytes_down, self.bytes_up)
        self.time += plan.seconds
        self.joined[list(plan.accepted)] += 1
        return plan

    def columns(self, plan: RoundPlan) -> dict[str, Any]:
        return {"clients_selected": len(plan.selected), "clients_straggled": len(plan.stragglers), "clients_device_failed": len(plan.failed),
                "virtual_seconds": plan.seconds, "virtual_time": self.time}

    def summary(self) -> dict[str, Any]:
        return {"virtual_time": self.time, "rounds_joined_max": int(self.joined.max(initial=0)), "rounds_joined_mean": float(self.joined.mean()) if len(self.joined) else 0.0}

    def to_plain(self) -> dict[str, Any]:
        return {"time": self.time, "joined": self.joined.tolist()}

    def load_plain(self, data: dict[str, Any]) -> None:
        self.time = float(data["time"])
        self.joined = np.asarray(data["joined"], dtype=np.int32)


def clocked_rounds(cfg: FedftConfig, train_sizes: list[int], sent_shapes: dict[str, tuple[int, ...]], bytes_down: int) -> ClockedRounds | None:
    """The run's round policy over its devices, or None (no device model: rounds as before)."""
    profiles = profiles_for(cfg)
    if profiles is None:
        return None
    examples = np.asarray(train_sizes, dtype=np.float64) * cfg.train.local_epochs
    up = bytes_down if cfg.compression.kind == "none" else encoded_bytes(sent_shapes, cfg.compression.kind, cfg.compression.topk_fraction)
    return ClockedRounds(cfg, profiles, examples, bytes_down, up)
