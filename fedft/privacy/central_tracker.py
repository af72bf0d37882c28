"""Central DP bookkeeping: the server accounts the noisy aggregates it releases.

After R released rounds, ε = accountant[(noise_multiplier, q, R)] with
q = clients_per_round / num_clients under Poisson client sampling and q = 1 (no
amplification) under fixed-size sampling; RDP over `central_rdp_orders(q)`. The unit
protected is a user (a client's whole data). What neighbouring means follows from the
sampling (see `fedft.privacy.central`):

- Poisson: add/remove one user (the subsampled Gaussian's analysis);
- fixed-size: zero-out, one user's update replaced by the zero update in the
  fixed-denominator sum (sensitivity C). Not replace-one: swapping one user's data for
  another's moves the sum by up to 2C, which would double the sensitivity.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.privacy.accounting import central_rdp_orders
from fedft.privacy.accounting import epsilon as account
from fedft.privacy.central import current_clipping_norm
from fedft.privacy.disclosure import disclosure
from fedft.privacy.tracker_plain import approximate_gdp, checkpoint_section, finite


class CentralDPTracker:
    """privacy.mode = "central": ε from the count of released rounds; no client is ever excluded."""

    PRIVACY_UNIT = "user"
    NEIGHBOURING = {"poisson": "add/remove", "fixed": "zero-out"}  # by privacy.client_sampling (module docstring)

    def __init__(self, delta: float, accountant: str, noise_multiplier: float, sample_rate: float, clipping: str, clipping_norm: float,
                 client_sampling: str = "poisson", expected_cohort: float = 1.0, noise_source: str = "os", client_metrics: str = "withheld") -> None:
        self.delta = delta
        self.accountant = accountant
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate  # what the accountant uses: q (poisson) or 1 (fixed)
        self.client_sampling = client_sampling  # "poisson" | "fixed"
        self.expected_cohort = expected_cohort  # m, the mean's fixed denominator
        self.noise_source = noise_source  # "os" entropy | "seeded" from (seed, round), not private
        self.client_metrics = client_metrics
        self.neighbouring = self.NEIGHBOURING[client_sampling]
        self.clipping = clipping  # who clips, fixed or adaptive (summary.json)
        self.configured_clipping_norm = clipping_norm
        self.clipping_norm = clipping_norm  # in force this round (adaptive clipping moves it)
        self.releases = 0  # rounds whose noisy aggregate was released

    @property
    def exclude(self) -> frozenset[int]:
        """Clients not to sample any more: none, the server's budget is the run's."""
        return frozenset()

    def begin_round(self, strategy: Strategy) -> None:
        """Note the clipping norm this round uses (adaptive clipping moves it)."""
        self.clipping_norm = current_clipping_norm(strategy, self.configured_clipping_norm)

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        """(replies to aggregate, ids of clients that refused for budget): all of them, none."""
        return replies, []

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Count the release; the privacy columns of the round's metrics row."""
        self.releases += int(released)
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "clipping_norm": self.clipping_norm, "clients_refused_budget": 0,
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring}

    def epsilon(self, accountant: str | None = None) -> float:
        """ε after the releases so far (the configured accountant unless another is named)."""
        return account([(self.noise_multiplier, self.sample_rate, self.releases)], self.delta, accountant or self.accountant,
                       central_rdp_orders(self.sample_rate))

    def summary(self) -> dict[str, Any]:
        """summary.json keys: (σ, q, releases), enough to recompute ε with any accountant."""
        return {"privacy_mode": "central", "delta": self.delta, "accountant": self.accountant, "epsilon": finite(self.epsilon()),
                "epsilon_rdp": finite(self.epsilon("rdp")), "epsilon_prv": finite(self.epsilon("prv")), "epsilon_gdp": approximate_gdp([(self.noise_multiplier, self.sample_rate, self.releases)], self.delta),
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring, "client_sampling": self.client_sampling,
                "expected_cohort": self.expected_cohort, "noise_source": self.noise_source, "client_metrics": self.client_metrics,
                **disclosure("central", self.noise_source, self.client_metrics, self.client_sampling),
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": None, "clipping": self.clipping,
                "clipping_norm": self.clipping_norm, "sample_rate": self.sample_rate, "releases": self.releases}

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return checkpoint_section(releases=self.releases, clipping_norm=self.clipping_norm)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.releases = int(data["releases"])
        self.clipping_norm = float(data["clipping_norm"])
