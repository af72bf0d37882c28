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
Cyclic sampling counts participation the same way (a user joins every period-th round).

Correlated noise (fedft.privacy.matrix_mechanism, encoder C): the run is one Gaussian
mechanism of multiplier σ / sens, sens = max_u ‖Σ_{t ∈ rounds_u} C[:, t]‖₂ over the rounds
each user joined (counted participation) or over every released round (a fixed-size
cohort may hold a user every round), so ε = accountant[(σ / sens, 1, 1)].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.privacy.accounting import REPORTED_ACCOUNTANTS, central_rdp_orders, gaussian_epsilon
from fedft.privacy.accounting import epsilon as account
from fedft.privacy.central import current_clipping_norm
from fedft.privacy.disclosure import disclosure
from fedft.privacy.matrix_mechanism import sensitivity
from fedft.privacy.tracker_plain import approximate_gdp, checkpoint_section, finite


class CentralDPTracker:
    """privacy.mode = "central": ε from the count of released rounds; no client is ever excluded."""

    PRIVACY_UNIT = "user"
    NEIGHBOURING = {"poisson": "add/remove", "fixed": "zero-out", "cyclic": "zero-out"}  # by privacy.client_sampling (module docstring)

    def __init__(self, delta: float, accountant: str, noise_multiplier: float, sample_rate: float, clipping: str, clipping_norm: float,
                 client_sampling: str = "poisson", expected_cohort: float = 1.0, noise_source: str = "os", client_metrics: str = "withheld",
                 count_participation: bool = False, encoder: np.ndarray | None = None, noise_mechanism: str = "independent",
                 noise_cohort_size: int | None = None) -> None:
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
        self.count_participation = count_participation and client_sampling != "poisson"
        self.joined: dict[int, int] = {}  # client id -> released rounds its update was in
        self.encoder = encoder  # correlated noise: the factorization's C (None: independent noise)
        self.noise_mechanism = noise_mechanism
        self.noise_cohort_size = noise_cohort_size
        self.rounds_of: dict[int, list[int]] = {}  # correlated noise, counted participation: client id -> the releases (1-based) it was in

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
                    if self.encoder is not None and self.count_participation:
                        self.rounds_of.setdefault(c, []).append(self.releases)
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "clipping_norm": self.clipping_norm, "clients_refused_budget": 0,
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring}

    def accounted_rounds(self) -> int:
        """Rounds in ε: the most any user joined (with `count_participation`), else every release."""
        return max(self.joined.values(), default=0) if self.count_participation else self.releases

    def sensitivity(self, every_release: bool = False) -> float:
        """Correlated noise: one user's largest reach into the released C x, in clipping norms."""
        assert self.encoder is not None
        released = min(self.releases, self.encoder.shape[1])
        if self.count_participation and not every_release:
            return max((sensitivity(self.encoder, r) for r in self.rounds_of.values()), default=0.0)
        return sensitivity(self.encoder, range(1, released + 1))

    def epsilon(self, accountant: str | None = None, rounds: int | None = None) -> float:
        """ε after the accounted rounds so far (the configured accountant unless another is named)."""
        if self.encoder is not None:
            sens = self.sensitivity(every_release=rounds is not None)
            if sens == 0:
                return 0.0
            return gaussian_epsilon(self.noise_multiplier / sens, self.delta, accountant or self.accountant) if self.noise_multiplier > 0 else math.inf
        return account([(self.noise_multiplier, self.sample_rate, self.accounted_rounds() if rounds is None else rounds)], self.delta,
                       accountant or self.accountant, central_rdp_orders(self.sample_rate))

    def summary(self) -> dict[str, Any]:
        """summary.json keys: (σ, q, releases), enough to recompute ε with any accountant."""
        return {"privacy_mode": "central", "delta": self.delta, "accountant": self.accountant, "epsilon": finite(self.epsilon()),
                **{f"epsilon_{name}": finite(self.epsilon(name)) for name in REPORTED_ACCOUNTANTS}, "epsilon_gdp": approximate_gdp([(self.noise_multiplier, self.sample_rate, self.accounted_rounds())], self.delta),
                "privacy_unit": self.PRIVACY_UNIT, "neighbouring": self.neighbouring, "client_sampling": self.client_sampling,
                "expected_cohort": self.expected_cohort, "noise_source": self.noise_source, "client_metrics": self.client_metrics,
                **disclosure("central", self.noise_source, self.client_metrics, self.client_sampling),
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": None, "clipping": self.clipping,
                "clipping_norm": self.clipping_norm, "sample_rate": self.sample_rate, "releases": self.releases,
                "noise_mechanism": self.noise_mechanism,
                **({"sensitivity": self.sensitivity(), "effective_noise_multiplier": self.noise_multiplier / max(self.sensitivity(), 1e-300)} if self.encoder is not None else {}),
                **({"noise_cohort_size": self.noise_cohort_size, "epsilon_describes": f"the planned cohort of {self.noise_cohort_size}, not this run"} if self.noise_cohort_size else {}),
                **({"accounted_rounds": self.accounted_rounds(), "epsilon_all_releases": finite(self.epsilon(rounds=self.releases))} if self.count_participation else {})}

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return checkpoint_section(releases=self.releases, clipping_norm=self.clipping_norm, reported=self.joined, joined_rounds=self.rounds_of)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.releases = int(data["releases"])
        self.clipping_norm = float(data["clipping_norm"])
        self.joined = {int(c): int(k) for c, k in data.get("reported", {}).items()}
        self.rounds_of = {int(c): [int(t) for t in r] for c, r in data.get("joined_rounds", {}).items()}
