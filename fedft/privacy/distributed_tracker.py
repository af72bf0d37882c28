"""Distributed DP bookkeeping (`privacy.mode = "distributed"`): ε from the noise actually present.

Round r's sum carries Sk(μ_r) noise with μ_r = k_r μ / n, k_r the shares that arrived of the n
planned (a dropped client took its noise share with it), so after the released rounds

    ε = skellam-rdp[(μ_r) over released rounds; Δ₂, Δ₁; δ]      (fedft.privacy.distributed_dp)

and `epsilon_round` is round r's ε alone: a dropout lowers μ_r and raises it. A round that
secure aggregation aborted (fewer than min_reports shares) released nothing and costs nothing.
Neighbouring is zero-out (one user's update replaced by zero in the fixed-cohort sum), the unit a
user. The checkpoint (the section every tracker writes, `fedft.privacy.tracker_plain`) keeps, keyed
by round, the variance present (`noise`), the shares summed (`reported`) and the wrapped
coordinates (`steps`), so a resumed run reports the same ε and counts.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.privacy.disclosure import disclosure
from fedft.privacy.distributed_dp import DistributedPlan
from fedft.privacy.tracker_plain import checkpoint_section, finite

ACCOUNTANT = "skellam-rdp"
SIMULATED = ("simulated: the simulation process holds every share and every update; the server's code uses only their "
             "modular sum (and the wrap-around count, which only a simulation can know)")


class DistributedDPTracker:
    """privacy.mode = "distributed": ε of the Skellam sums released so far; no client is ever excluded."""

    PRIVACY_UNIT = "user"
    NEIGHBOURING = "zero-out"

    def __init__(self, plan: DistributedPlan, delta: float, noise_source: str = "os", client_metrics: str = "withheld") -> None:
        self.plan = plan
        self.delta = delta
        self.noise_source = noise_source
        self.client_metrics = client_metrics
        self.rounds = 0  # rounds ended
        self.variances: dict[int, float] = {}  # released round -> μ_r present in its sum
        self.survivors: dict[int, int] = {}  # round -> shares summed (aborted rounds too)
        self.wrapped: dict[int, int] = {}  # round -> coordinates that wrapped around
        self._strategy: Strategy | None = None

    @property
    def exclude(self) -> frozenset[int]:
        return frozenset()

    def begin_round(self, strategy: Strategy) -> None:
        """Keep the strategy: at the round's end it says how many shares it summed."""
        self._strategy = strategy

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        return replies, []

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Account the round with the noise its sum carries; the privacy columns of its row."""
        self.rounds += 1
        server_round = self.rounds
        outcome = getattr(self._strategy, "last_round", None)
        survivors = outcome.survivors if outcome is not None else 0
        wrapped = outcome.wrapped if outcome is not None else 0
        self.survivors[server_round], self.wrapped[server_round] = survivors, wrapped
        present = self.plan.present_variance(survivors) if released else 0.0
        if released:
            self.variances[server_round] = present
        return {"epsilon": self.epsilon(), "epsilon_round": self.plan.epsilon([present], self.delta) if released else 0.0,
                "delta": self.delta, "noise_multiplier": self.plan.noise_multiplier, "clipping_norm": self.plan.clipping_norm,
                "noise_variance": present * self.plan.granularity ** 2,  # real units: γ² μ_r
                "noise_fraction": survivors / self.plan.cohort if released else 0.0,
                "secagg_survivors": survivors, "secagg_aborted": int(not released), "secagg_wrapped": wrapped,
                "clients_refused_budget": 0, "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.NEIGHBOURING}

    def epsilon(self, variances: list[float] | None = None) -> float:
        return self.plan.epsilon(list(self.variances.values()) if variances is None else variances, self.delta)

    def summary(self) -> dict[str, Any]:
        """summary.json keys: the variances present and the sensitivities, enough to recompute ε."""
        p = self.plan
        planned = p.cohort * len(self.survivors)
        return {"privacy_mode": "distributed", "delta": self.delta, "accountant": ACCOUNTANT, "epsilon": finite(self.epsilon()),
                "epsilon_planned": finite(self.epsilon([p.variance] * len(self.variances))),  # had every released round been full
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.NEIGHBOURING, "client_sampling": "fixed",
                "expected_cohort": float(p.cohort), "noise_source": self.noise_source, "client_metrics": self.client_metrics,
                **disclosure("distributed", self.noise_source, self.client_metrics, "fixed"),
                "noise_multiplier": p.noise_multiplier, "noise_variance": p.variance * p.granularity ** 2, "noise_variance_integer": p.variance,
                "noise_variance_present": [self.variances[r] for r in sorted(self.variances)],
                "clipping": "client_fixed", "clipping_norm": p.clipping_norm, "max_grad_norm": None, "sample_rate": 1.0,
                "granularity": p.granularity, "l2_sensitivity": p.l2_bound, "l1_sensitivity": p.l1_bound,
                "dimension": p.dim, "padded_dimension": p.padded_dim, "rotation": p.rotation,
                "secagg": SIMULATED, "secagg_bits": p.bits, "secagg_min_reports": p.min_reports,
                "secagg_wrap_bound": p.wrap_bound(), "secagg_bits_for_wrap_1e-3": p.bits_for_wrap(1e-3),
                "secagg_wrapped": sum(self.wrapped.values()), "secagg_aborted": len(self.survivors) - len(self.variances),
                "dropouts": planned - sum(self.survivors.values()), "releases": len(self.variances)}

    def to_plain(self) -> dict[str, Any]:
        return checkpoint_section(releases=len(self.variances), clipping_norm=self.plan.clipping_norm, noise=self.variances, reported=self.survivors,
                                  steps=self.wrapped)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.variances = {int(r): float(v) for r, v in data.get("noise", {}).items()}
        self.survivors = {int(r): int(k) for r, k in data.get("reported", {}).items()}
        self.wrapped = {int(r): int(w) for r, w in data.get("steps", {}).items()}
        self.rounds = max(self.survivors, default=0)
