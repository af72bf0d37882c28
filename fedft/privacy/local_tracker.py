"""Local DP bookkeeping at the server: the clients account, the server keeps their reports.

Clients report their own ε (their accountant lives with them); the server keeps
each client's latest report, and rebuilds each client's whole accountant history
from the reports: each reply's new DP-SGD steps (`dp_steps` now less at the last
report) at the round's (σ, q). That history is the server's side of the budget:

- `epsilon_rdp`, `epsilon_prv` and `epsilon_gdp` in summary.json are recomputed from
  the worst client's whole history, however many (σ, q) entries it has;
- a reported ε never goes down. A client whose `dp_steps` falls below its last report
  has lost its accountant (a reset: its state was not restored); its new steps are
  composed onto what the server already counted, the ε column is recomputed from
  that, a warning names the client, and once that count passes `target_epsilon` the
  client is sampled no more.

`epsilon` is the largest over all clients, `epsilon_mean` the mean over all
`num_clients` (a client that never trained has spent 0). A client that replies
`budget_spent = 1` is excluded from sampling for the rest of the run and its reply
is not aggregated; `policy_refused = 1` besides says it was a deployed client's own
policy that refused (`fedft.privacy.client_policy`).
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.fl import protocol as p
from fedft.privacy.accounting import REPORTED_ACCOUNTANTS, History, compose, epsilon
from fedft.privacy.disclosure import disclosure
from fedft.privacy.dp_sgd import BUDGET_SPENT, DP_STEPS, EPSILON, NOISE_MULTIPLIER, POLICY_REFUSED, SAMPLE_RATE
from fedft.privacy.tracker_plain import approximate_gdp, checkpoint_section, finite

log = logging.getLogger("fedft")
# What ε is about: one record of one client, neighbours by adding or removing it (Opacus' Poisson analysis).
MEANING = {"privacy_unit": "record", "neighbouring": "add/remove"}


class LocalDPTracker:
    """privacy.mode = "local": ε per client from its replies; out-of-budget clients leave the run."""

    def __init__(self, delta: float, accountant: str, num_clients: int, max_grad_norm: float, noise_multiplier: float | None,
                 noise_source: str = "os", client_metrics: str = "withheld", target_epsilon: float | None = None) -> None:
        self.target_epsilon = target_epsilon  # a client the server counts above it is sampled no more
        self.noise_source, self.client_metrics = noise_source, client_metrics  # recorded in summary.json
        self.policy_refused: set[int] = set()  # clients whose own policy refused (deployment only, which never resumes: not checkpointed)
        self.delta = delta
        self.accountant = accountant  # the clients' accountant, named in summary.json
        self.num_clients = num_clients
        self.max_grad_norm = max_grad_norm
        self.configured_noise = noise_multiplier  # summary.json's σ before any client has reported one
        self.spent: set[int] = set()  # clients that refused for budget
        self.eps: dict[int, float] = {}  # ε per client: its latest report, or the server's history's where that is larger
        self.steps: dict[int, int] = {}  # DP-SGD steps the server counted per client
        self.noise: dict[int, float] = {}
        self.rate: dict[int, float] = {}
        self.history: dict[int, History] = {}  # per client, rebuilt from the reports
        self.reported: dict[int, int] = {}  # the dp_steps each client reported last

    @property
    def exclude(self) -> frozenset[int]:
        """Clients not to sample any more."""
        return frozenset(self.spent)

    def begin_round(self, strategy: Strategy) -> None:
        """Nothing to note: each client clips and noises by its own settings."""

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        """(replies to aggregate, ids of clients that refused for budget)."""
        refused = [m for m in replies if not m.has_error() and float(p.number(m.content.metric_records[p.METRICS], BUDGET_SPENT, 0.0)) > 0]
        ids = [client_of.get(m.metadata.src_node_id, -1) for m in refused]
        return [m for m in replies if not any(m is r for r in refused)], ids

    def _keep_report(self, c: int, reported_eps: float, reported_steps: int, sigma: float, q: float) -> None:
        """Compose the report's new steps onto client c's history; ε never goes down."""
        last = self.reported.get(c, 0)
        reset = reported_steps < last
        new_steps = reported_steps if reset else reported_steps - last
        self.history[c] = compose(self.history.get(c, []), sigma, q, new_steps)
        self.reported[c] = reported_steps
        self.steps[c] = sum(n for _, _, n in self.history[c])
        self.noise[c], self.rate[c] = sigma, q
        if reset:
            log.warning("client %d reported %d DP-SGD steps after %d: its accountant was reset (state not restored?); "
                        "its ε is recomputed from the %d steps the server has counted", c, reported_steps, last, self.steps[c])
        if reported_steps != self.steps[c] or reported_eps < self.eps.get(c, 0.0):
            reported_eps = max(reported_eps, epsilon(self.history[c], self.delta, self.accountant))
        self.eps[c] = max(reported_eps, self.eps.get(c, 0.0))
        if self.target_epsilon is not None and self.eps[c] > self.target_epsilon and c not in self.spent:
            log.warning("client %d has spent ε = %.4g by the server's count, above privacy.target_epsilon = %g: it is sampled no more", c, self.eps[c], self.target_epsilon)
            self.spent.add(c)

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Keep this round's ε reports; the privacy columns of its metrics row."""
        trained_noise = []
        for m in ok:
            metrics = m.content.metric_records[p.METRICS]
            if EPSILON not in metrics:
                continue
            c = client_of.get(m.metadata.src_node_id, -1)
            self._keep_report(c, float(p.number(metrics, EPSILON)), int(p.number(metrics, DP_STEPS)),
                              float(p.number(metrics, NOISE_MULTIPLIER)), float(p.number(metrics, SAMPLE_RATE)))
            if float(p.number(metrics, BUDGET_SPENT, 0.0)) == 0:
                trained_noise.append(self.noise[c])
            if float(p.number(metrics, POLICY_REFUSED, 0.0)) > 0:
                self.policy_refused.add(c)
        self.spent.update(refused)
        return {
            "epsilon": max(self.eps.values(), default=0.0),
            "epsilon_mean": self._epsilon_mean(),
            "delta": self.delta,
            "noise_multiplier": min(trained_noise, default=float("nan")),  # least noise any client used this round
            "clipping_norm": self.max_grad_norm,
            "clients_refused_budget": len(refused),
            **MEANING,
        }

    def summary(self) -> dict[str, Any]:
        """summary.json keys: the worst client's whole history, recomputed under each accountant."""
        worst = max(self.eps, key=lambda c: (self.eps[c], -c), default=None)
        history = self.history.get(worst, []) if worst is not None else []
        both = {name: finite(epsilon(history, self.delta, name)) if history else 0.0 for name in REPORTED_ACCOUNTANTS}
        return {
            "privacy_mode": "local",
            **MEANING,
            "delta": self.delta,
            "accountant": self.accountant,
            "epsilon": finite(self.eps[worst]) if worst is not None else 0.0,
            **{f"epsilon_{name}": value for name, value in both.items()},
            "epsilon_gdp": approximate_gdp(history, self.delta),  # an approximation, never the headline
            "noise_multiplier": self.noise.get(worst) if worst is not None else self.configured_noise,
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.rate.get(worst) if worst is not None else None,
            "steps_max": max(self.steps.values(), default=0),
            "epsilon_client": worst,
            "epsilon_client_steps": self.steps.get(worst, 0) if worst is not None else 0,
            "epsilon_client_history": [list(h) for h in history],
            "epsilon_mean": self._epsilon_mean(),
            "clients_budget_spent": sorted(self.spent),
            "clients_refused_policy": sorted(self.policy_refused),
            "noise_source": self.noise_source,
            "client_metrics": self.client_metrics,
            **disclosure("local", self.noise_source, self.client_metrics),
            "epsilon_per_client": {str(c): self.eps[c] for c in sorted(self.eps)},
        }

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return checkpoint_section(spent=self.spent, eps=self.eps, steps=self.steps, noise=self.noise, rate=self.rate,
                                  history=self.history, reported=self.reported)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.spent = {int(c) for c in data["spent"]}
        self.eps = {int(c): float(v) for c, v in data["eps"].items()}
        self.steps = {int(c): int(v) for c, v in data["steps"].items()}
        self.noise = {int(c): float(v) for c, v in data["noise"].items()}
        self.rate = {int(c): float(v) for c, v in data["rate"].items()}
        # a checkpoint from before the histories were kept: one (σ, q, steps) entry per client
        old = {str(c): [[self.noise[c], self.rate[c], n]] for c, n in self.steps.items() if n}
        self.history = {int(c): [(float(s), float(q), int(n)) for s, q, n in v] for c, v in data.get("history", old).items()}
        self.reported = {int(c): int(v) for c, v in data.get("reported", {str(c): n for c, n in self.steps.items()}).items()}

    def _epsilon_mean(self) -> float:
        return sum(self.eps.values()) / self.num_clients
