"""Local DP bookkeeping at the server: the clients account, the server keeps their reports.

Clients report their own ε (their accountant lives with them); the server keeps
each client's latest report. `epsilon` is the largest over all clients,
`epsilon_mean` the mean over all `num_clients` (a client that never trained has
spent 0). A client that replies `budget_spent = 1` is excluded from sampling for
the rest of the run and its reply is not aggregated; `policy_refused = 1` besides
says it was a deployed client's own policy that refused (`fedft.privacy.client_policy`).
"""

from __future__ import annotations

from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.fl import protocol as p
from fedft.privacy.accounting import epsilon
from fedft.privacy.dp_sgd import BUDGET_SPENT, DP_STEPS, EPSILON, NOISE_MULTIPLIER, POLICY_REFUSED, SAMPLE_RATE
from fedft.privacy.tracker_plain import checkpoint_section, finite

# What ε is about: one record of one client, neighbours by adding or removing it (Opacus' Poisson analysis).
MEANING = {"privacy_unit": "record", "neighbouring": "add/remove"}


class LocalDPTracker:
    """privacy.mode = "local": ε per client from its replies; out-of-budget clients leave the run."""

    def __init__(self, delta: float, accountant: str, num_clients: int, max_grad_norm: float, noise_multiplier: float | None,
                 noise_source: str = "derived", client_metrics: str = "withheld") -> None:
        self.noise_source, self.client_metrics = noise_source, client_metrics  # recorded in summary.json
        self.policy_refused: set[int] = set()  # clients whose own policy refused (deployment only, which never resumes: not checkpointed)
        self.delta = delta
        self.accountant = accountant  # the clients' accountant, named in summary.json
        self.num_clients = num_clients
        self.max_grad_norm = max_grad_norm
        self.configured_noise = noise_multiplier  # summary.json's σ before any client has reported one
        self.spent: set[int] = set()  # clients that refused for budget
        self.eps: dict[int, float] = {}  # latest ε per client
        self.steps: dict[int, int] = {}
        self.noise: dict[int, float] = {}
        self.rate: dict[int, float] = {}

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

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Keep this round's ε reports; the privacy columns of its metrics row."""
        trained_noise = []
        for m in ok:
            metrics = m.content.metric_records[p.METRICS]
            if EPSILON not in metrics:
                continue
            c = client_of.get(m.metadata.src_node_id, -1)
            self.eps[c] = float(p.number(metrics, EPSILON))
            self.steps[c] = int(p.number(metrics, DP_STEPS))
            self.noise[c] = float(p.number(metrics, NOISE_MULTIPLIER))
            self.rate[c] = float(p.number(metrics, SAMPLE_RATE))
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
        """summary.json keys: the worst client's (σ, q, steps), enough to recompute its ε with any accountant."""
        worst = max(self.eps, key=lambda c: (self.eps[c], -c), default=None)
        # the same client's history under both accountants (`epsilon` is the clients' configured one)
        history = [(self.noise[worst], self.rate[worst], self.steps[worst])] if worst is not None and self.steps.get(worst) else []
        both = {name: finite(epsilon(history, self.delta, name)) if history else 0.0 for name in ("rdp", "prv")}
        return {
            "privacy_mode": "local",
            **MEANING,
            "delta": self.delta,
            "accountant": self.accountant,
            "epsilon": finite(self.eps[worst]) if worst is not None else 0.0,
            "epsilon_rdp": both["rdp"],
            "epsilon_prv": both["prv"],
            "noise_multiplier": self.noise.get(worst) if worst is not None else self.configured_noise,
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.rate.get(worst) if worst is not None else None,
            "steps_max": max(self.steps.values(), default=0),
            "epsilon_client": worst,
            "epsilon_client_steps": self.steps.get(worst, 0) if worst is not None else 0,
            "epsilon_mean": self._epsilon_mean(),
            "clients_budget_spent": sorted(self.spent),
            "clients_refused_policy": sorted(self.policy_refused),
            "noise_source": self.noise_source,
            "client_metrics": self.client_metrics,
            "epsilon_per_client": {str(c): self.eps[c] for c in sorted(self.eps)},
        }

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return checkpoint_section(spent=self.spent, eps=self.eps, steps=self.steps, noise=self.noise, rate=self.rate)

    def load_plain(self, data: dict[str, Any]) -> None:
        self.spent = {int(c) for c in data["spent"]}
        self.eps = {int(c): float(v) for c, v in data["eps"].items()}
        self.steps = {int(c): int(v) for c, v in data["steps"].items()}
        self.noise = {int(c): float(v) for c, v in data["noise"].items()}
        self.rate = {int(c): float(v) for c, v in data["rate"].items()}

    def _epsilon_mean(self) -> float:
        return sum(self.eps.values()) / self.num_clients
