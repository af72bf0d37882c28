"""A deployed client's own privacy policy: the rounds it will and will not train.

In a deployment the server's config chooses σ, δ, the seed and how many rounds a
client is asked to train. A client that does not trust the server holds its own
policy (`fedft client --max-epsilon E --min-noise-multiplier S --delta D`), which
reaches its ClientApp as node config, and keeps its accountant history only in
its own folder (`--state-dir`; `fedft.privacy.history`), never in state the
server can send back. Before each round it refuses, replying without an update,
when

- the run is not local DP (its update would leave without record-level noise);
- the round's σ is below `min_noise_multiplier`;
- the run's δ (`privacy.target_delta`) is above the client's δ;
- ε after this round, at the client's δ under the RDP accountant, would exceed
  `max_epsilon`.

RDP is used whatever `privacy.accountant` the server names: its ε is an upper
bound on the mechanism's ε, so the budget check never relies on the server's
choice. Without `max-epsilon` and `min-noise-multiplier` the client enforces no
limit (it still draws its noise from OS entropy and keeps its own history).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedft.privacy.accounting import History, compose, epsilon
from fedft.state.node_store import STATE_DIR

MAX_EPSILON = "max-epsilon"  # node config keys (`fedft client` writes them)
MIN_NOISE_MULTIPLIER = "min-noise-multiplier"
DELTA = "delta"
DEFAULT_DELTA = 1e-5
BUDGET_ACCOUNTANT = "rdp"


@dataclass(frozen=True)
class ClientPolicy:
    """A deployed node's own limits; `state_dir` is where its accountant history lives."""

    state_dir: str
    max_epsilon: float | None = None
    min_noise_multiplier: float | None = None
    delta: float = DEFAULT_DELTA

    @property
    def enforced(self) -> bool:
        return self.max_epsilon is not None or self.min_noise_multiplier is not None


def policy_from_node_config(node_config: Mapping[str, Any]) -> ClientPolicy | None:
    """The node's policy, or None in a simulation (no `state-dir`: not a deployed node)."""
    folder = str(node_config.get(STATE_DIR, "") or "")
    if not folder:
        return None

    def number(key: str) -> float | None:
        return float(node_config[key]) if key in node_config else None

    return ClientPolicy(folder, number(MAX_EPSILON), number(MIN_NOISE_MULTIPLIER), number(DELTA) or DEFAULT_DELTA)


def mode_refusal(policy: ClientPolicy | None, mode: str) -> str | None:
    """Why a node with an enforced policy will not train a run of `privacy.mode`, or None."""
    if policy is None or not policy.enforced or mode == "local":
        return None
    return f"client policy: privacy.mode is '{mode}', this client trains only under local DP"


def round_refusal(policy: ClientPolicy | None, noise_multiplier: float, delta: float, history: History,
                  sample_rate: float, steps: int) -> str | None:
    """Why this local-DP round breaks the node's policy, or None to train it.

    `history` is the node's own accountant history; the round adds `steps` DP-SGD
    steps at (σ = `noise_multiplier`, q = `sample_rate`)."""
    if policy is None or not policy.enforced:
        return None
    if policy.min_noise_multiplier is not None and noise_multiplier < policy.min_noise_multiplier:
        return f"client policy: noise multiplier {noise_multiplier:.4g} is below this client's minimum {policy.min_noise_multiplier:.4g}"
    if delta > policy.delta:
        return f"client policy: the run's delta {delta:.3g} is above this client's delta {policy.delta:.3g}"
    if policy.max_epsilon is not None:
        after = epsilon(compose(history, noise_multiplier, sample_rate, steps), policy.delta, BUDGET_ACCOUNTANT)
        if after > policy.max_epsilon:
            return f"client policy: epsilon would reach {after:.4g} after this round, above this client's maximum {policy.max_epsilon:.4g}"
    return None
