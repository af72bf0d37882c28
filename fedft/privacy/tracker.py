"""Server-side privacy bookkeeping for the round loop: who is out of budget, and
the ε, δ, noise and clipping columns of metrics.csv and keys of summary.json.

Local DP: clients report their own ε (their accountant lives with them); the
server keeps each client's latest report. `epsilon` is the largest over all
clients, `epsilon_mean` the mean over all `num_clients` (a client that never
trained has spent 0). A client that replies `budget_spent = 1` is excluded from
sampling for the rest of the run and its reply is not aggregated.

Central DP: the server accounts itself: after R rounds whose noisy aggregate was
released, ε = accountant[(noise_multiplier, clients_per_round / num_clients, R)].
"""

from __future__ import annotations

import math
from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import Strategy

from fedft.fl import protocol as p
from fedft.config import FedftConfig
from fedft.privacy.accounting import epsilon as account
from fedft.privacy.dp_sgd import BUDGET_SPENT, DP_STEPS, EPSILON, NOISE_MULTIPLIER, SAMPLE_RATE
from fedft.privacy.central import central_noise_multiplier
from fedft.privacy.central import current_clipping_norm


class PrivacyTracker:
    def __init__(self, cfg: FedftConfig) -> None:
        self.cfg = cfg
        self.pc = cfg.privacy
        self.mode = cfg.privacy.mode
        self.spent: set[int] = set()  # local: clients that refused for budget
        self.eps: dict[int, float] = {}  # local: latest ε per client
        self.steps: dict[int, int] = {}
        self.noise: dict[int, float] = {}
        self.rate: dict[int, float] = {}
        self.releases = 0  # central: rounds whose noisy aggregate was released
        self.noise_multiplier = float("nan")
        self.clipping_norm = float("nan")
        if self.mode == "central":
            self.noise_multiplier = central_noise_multiplier(cfg)
            self.clipping_norm = cfg.privacy.clipping_norm

    @property
    def exclude(self) -> frozenset[int]:
        """Clients not to sample any more."""
        return frozenset(self.spent)

    def begin_round(self, strategy: Strategy) -> None:
        """Note the clipping norm this round uses (adaptive clipping moves it)."""
        if self.mode == "central":
            self.clipping_norm = current_clipping_norm(strategy, self.cfg)

    def split(self, replies: list[Message], client_of: dict[int, int]) -> tuple[list[Message], list[int]]:
        """(replies to aggregate, ids of clients that refused for budget)."""
        if self.mode != "local":
            return replies, []
        refused = [m for m in replies if not m.has_error() and float(m.content[p.METRICS].get(BUDGET_SPENT, 0.0)) > 0]
        ids = [client_of.get(m.metadata.src_node_id, -1) for m in refused]
        return [m for m in replies if not any(m is r for r in refused)], ids

    def end_round(self, ok: list[Message], client_of: dict[int, int], refused: list[int], released: bool) -> dict[str, Any]:
        """Update from this round's replies; the privacy columns of its metrics row."""
        if self.mode == "none":
            return {}
        delta = self.pc.target_delta
        if self.mode == "central":
            self.releases += int(released)
            eps = account([(self.noise_multiplier, self._central_rate(), self.releases)], delta, self.pc.accountant)
            return {"epsilon": eps, "delta": delta, "noise_multiplier": self.noise_multiplier,
                    "clipping_norm": self.clipping_norm, "clients_refused_budget": 0}
        trained_noise = []
        for m in ok:
            metrics = m.content[p.METRICS]
            if EPSILON not in metrics:
                continue
            c = client_of.get(m.metadata.src_node_id, -1)
            self.eps[c] = float(metrics[EPSILON])
            self.steps[c] = int(metrics[DP_STEPS])
            self.noise[c] = float(metrics[NOISE_MULTIPLIER])
            self.rate[c] = float(metrics[SAMPLE_RATE])
            if float(metrics.get(BUDGET_SPENT, 0.0)) == 0:
                trained_noise.append(self.noise[c])
        self.spent.update(refused)
        return {
            "epsilon": max(self.eps.values(), default=0.0),
            "epsilon_mean": sum(self.eps.values()) / self.cfg.partition.num_clients,
            "delta": delta,
            "noise_multiplier": min(trained_noise, default=float("nan")),  # least noise any client used this round
            "clipping_norm": self.pc.max_grad_norm,
            "clients_refused_budget": len(refused),
        }

    def to_plain(self) -> dict[str, Any]:
        """What a run checkpoint keeps, so a resumed run reports the same ε."""
        return {
            "spent": sorted(self.spent),
            "eps": {str(c): v for c, v in self.eps.items()},
            "steps": {str(c): v for c, v in self.steps.items()},
            "noise": {str(c): v for c, v in self.noise.items()},
            "rate": {str(c): v for c, v in self.rate.items()},
            "releases": self.releases,
            "clipping_norm": self.clipping_norm,
        }

    def load_plain(self, data: dict[str, Any]) -> None:
        self.spent = set(int(c) for c in data["spent"])
        self.eps = {int(c): float(v) for c, v in data["eps"].items()}
        self.steps = {int(c): int(v) for c, v in data["steps"].items()}
        self.noise = {int(c): float(v) for c, v in data["noise"].items()}
        self.rate = {int(c): float(v) for c, v in data["rate"].items()}
        self.releases = int(data["releases"])
        self.clipping_norm = float(data["clipping_norm"])

    def _central_rate(self) -> float:
        return self.cfg.simulation.clients_per_round / self.cfg.partition.num_clients

    def summary(self) -> dict[str, Any]:
        """summary.json keys: enough to recompute ε with any accountant."""
        base: dict[str, Any] = {"privacy_mode": self.mode}
        if self.mode == "none":
            return {**base, "epsilon": None}
        base.update(delta=self.pc.target_delta, accountant=self.pc.accountant)
        if self.mode == "central":
            eps = account([(self.noise_multiplier, self._central_rate(), self.releases)], self.pc.target_delta, self.pc.accountant)
            return {**base, "epsilon": _finite(eps), "noise_multiplier": self.noise_multiplier, "max_grad_norm": None,
                    "clipping": self.pc.clipping, "clipping_norm": self.clipping_norm, "sample_rate": self._central_rate(),
                    "releases": self.releases}
        worst = max(self.eps, key=lambda c: (self.eps[c], -c), default=None)
        return {
            **base,
            "epsilon": _finite(self.eps[worst]) if worst is not None else 0.0,
            "noise_multiplier": self.noise.get(worst) if worst is not None else self.pc.noise_multiplier,
            "max_grad_norm": self.pc.max_grad_norm,
            "sample_rate": self.rate.get(worst) if worst is not None else None,
            "steps_max": max(self.steps.values(), default=0),
            "epsilon_client": worst,
            "epsilon_client_steps": self.steps.get(worst, 0) if worst is not None else 0,
            "epsilon_mean": sum(self.eps.values()) / self.cfg.partition.num_clients,
            "clients_budget_spent": sorted(self.spent),
            "epsilon_per_client": {str(c): self.eps[c] for c in sorted(self.eps)},
        }


def _finite(value: float) -> float | str:
    """JSON has no infinity: an unbounded ε (noise 0) is written as "inf"."""
    return value if math.isfinite(value) else "inf"
