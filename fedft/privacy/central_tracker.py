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

With device profiles (`count_participation`, fedft/devices) who takes part is decided by
the devices (online, fast enough, still there), not by coins, and under fixed sampling
each user's contribution is zeroed in exactly the rounds it joined; the other rounds'
releases do not depend on it. So the headline ε is that of the user who joined most,
ε = accountant[(σ, 1, max_u rounds_u)], counted from the replies the server aggregated;
`epsilon_all_releases` (every release, no assumption on participation) stays beside it.
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
                 client_sampling: str = "poisson", expected_cohort: float = 1.0, noise_source: str = "os", client_metrics: str = "withheld",
                 count_participation: bool = False) -> None:
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
        self.count_participation = count_participation and client_sampling == "fixed"
        self.joined: dict[int, int] = {}  # client id -> released rounds its update was in

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
        if released:
            for m in ok:
                if (c := client_of.get(m.metadata.src_node_id)) is not None:
                    self.joined[c] = self.joined.get(c, 0) + 1
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "clipping_norm": self.clipping_norm, "clients_refused_budget": 0,
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring}

    def accounted_rounds(self) -> int:
        """Rounds in ε: the most any user joined (with `count_participation`), else every release."""
        return max(self.joined.values(), default=0) if self.count_participation else self.releases

    def epsilon(self, accountant: str | None = None, rounds: int | None = None) -> float:
        """ε after the accounted rounds so far (the configured accountant unless another is named)."""
        return account([(self.noise_multiplier, self.sample_rate, self.accounted_rounds() if rounds is None else rounds)], self.delta,
                       accountant or self.accountant, central_rdp_orders(self.sample_rate))

    def summary(self) -> dict[str, Any]:
        """summary.json keys: (σ, q, releases), enough to recompute ε with any accountant."""
        return {"privacy_mode": "central", "delta": self.delta, "accountant": self.accountant, "epsilon": finite(self.epsilon()),
                "epsilon_rdp": finite(self.epsilon("rdp")), "epsilon_prv": finite(self.epsilon("prv")), "epsilon_gdp": approximate_gdp([(self.noise_multiplier, self.sample_rate, self.accounted_rounds())], self.delta),
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring, "client_sampling": self.client_sampling,
                "expected_cohort": self.expected_cohort, "noise_source": self.noise_source, "client_metrics": self.client_metrics,
                **disclosure("central", self.noise_source, self.client_metrics, self.client_sampling),
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": None, "clipping": self.clipping,
                "clipping_norm": self.clipping_norm, "sample_rate": self.sample_rate, "releases": self.releases,
                **({"accounted_rounds": self.accounted_rounds(), "epsilon_all_releases": finite(self.epsilon(rounds=self.releases))} if self.count_participation else {})}

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return checkpoint_section(releases=self.releases, clipping_norm=self.clipping_norm, reported=self.joined)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.releases = int(data["releases"])
        self.clipping_norm = float(data["clipping_norm"])
        self.joined = {int(c): int(k) for c, k in data.get("reported", {}).items()}
