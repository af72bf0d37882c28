"""Server-side privacy bookkeeping for the round loop: who is out of budget, and
the ε, δ, noise and clipping columns of metrics.csv and keys of summary.json.

One tracker per `privacy.mode` behind one interface, so the round loop never asks
which mode it runs: `NoPrivacy` here, `LocalDPTracker` (clients report their ε)
`CentralDPTracker` (the server accounts its releases) and `DistributedDPTracker` (the
server accounts the Skellam sums secure aggregation released) in their own modules.
`privacy_tracker(cfg, dimension)` picks the one for a run.
"""

from __future__ import annotations

from typing import Any, Protocol

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.config import FedftConfig
from fedft.privacy.central import central_accounting_rate, central_factorization, central_noise_multiplier
from fedft.privacy.central_tracker import CentralDPTracker
from fedft.privacy.distributed import distributed_plan
from fedft.privacy.distributed_tracker import DistributedDPTracker
from fedft.privacy.local_tracker import LocalDPTracker
from fedft.privacy.tracker_plain import checkpoint_section


class PrivacyTracker(Protocol):
    """What the round loop and the run checkpoint ask of a run's privacy bookkeeping."""

    @property
    def exclude(self) -> frozenset[int]:
        """Clients not to sample any more."""
        ...

    def begin_round(self, strategy: Strategy) -> None:
        """Note what the strategy has in force for this round."""
        ...

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        """(replies to aggregate, ids of clients that refused for budget)."""
        ...

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Update from this round's replies; the privacy columns of its metrics row."""
        ...

    def summary(self) -> dict[str, Any]:
        """summary.json keys: enough to recompute ε with any accountant."""
        ...

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        ...

    def load_plain(self, data: dict[str, Any]) -> None:
        """Put back what `to_plain` kept."""
        ...


class NoPrivacy:
    """privacy.mode = "none": nothing to account, no columns, nobody excluded."""

    @property
    def exclude(self) -> frozenset[int]:
        return frozenset()

    def begin_round(self, strategy: Strategy) -> None:
        pass

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        return replies, []

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        return {}

    def summary(self) -> dict[str, Any]:
        return {"privacy_mode": "none", "epsilon": None}

    def to_plain(self) -> dict[str, Any]:
        return checkpoint_section()

    def load_plain(self, data: dict[str, Any]) -> None:
        pass


def privacy_tracker(cfg: FedftConfig, dimension: int | None = None) -> PrivacyTracker:
    """The tracker for `cfg.privacy.mode`; "distributed" needs the `dimension` of the update
    (the coordinates of the arrays sent), which its noise and sensitivities depend on."""
    pc = cfg.privacy
    if pc.mode == "local":
        return LocalDPTracker(delta=pc.target_delta, accountant=pc.accountant, num_clients=cfg.partition.num_clients,
                              max_grad_norm=pc.max_grad_norm, noise_multiplier=pc.noise_multiplier,
                              noise_source=pc.noise_source, client_metrics=pc.client_metrics, target_epsilon=pc.target_epsilon)
    if pc.mode == "central":
        return CentralDPTracker(delta=pc.target_delta, accountant=pc.accountant, noise_multiplier=central_noise_multiplier(cfg),
                                sample_rate=central_accounting_rate(cfg), clipping=pc.clipping, clipping_norm=pc.clipping_norm,
                                client_sampling=pc.client_sampling, expected_cohort=float(cfg.reports_per_round()),
                                noise_source=pc.noise_source, client_metrics=pc.client_metrics,
                                count_participation=bool(cfg.devices.profiles) or pc.client_sampling == "cyclic",
                                encoder=fact.encoder if (fact := central_factorization(cfg)) is not None else None,
                                noise_mechanism=pc.noise_mechanism, noise_cohort_size=pc.noise_cohort_size)
    if pc.mode == "distributed":
        if dimension is None:
            raise ValueError("the distributed DP tracker needs the update's dimension")
        return DistributedDPTracker(distributed_plan(cfg, dimension), delta=pc.target_delta, noise_source=pc.noise_source, client_metrics=pc.client_metrics)
    return NoPrivacy()
