"""What a run's ε covers and what it does not: summary.json's `private`,
`not_private_because` and `outside_epsilon`.

ε bounds what the DP mechanism releases (the noised updates, the noised model).
A run also logs values that are exact functions of private data, which no noise
protects; `outside_epsilon` names each one, so a reader of a run folder knows
what to withhold before publishing it. `privacy.client_metrics` keeps most of
them out ("withheld", the default, drops the train/val metrics; "none" also
sends num-examples as 1). A run whose noise can be regenerated from published
files (`privacy.noise_source = "seeded"`) is not private at any ε.
"""

from __future__ import annotations

from typing import Any

_TRAIN_METRICS = ("train_loss, train_accuracy, val_loss, val_accuracy (metrics.csv): means of what clients computed on their private data, "
                  "sent in the clear (privacy.client_metrics = \"clear\")")
_NUM_EXAMPLES = ("num-examples (each training and evaluation reply): the client's record count in the clear, which the server sees "
                 "(privacy.client_metrics = \"none\" sends 1 instead)")
_LOCAL_ACCOUNTING = ("epsilon, dp_steps, sample_rate, budget_spent (each reply; epsilon, epsilon_per_client, clients_budget_spent in "
                     "metrics.csv and summary.json): functions of the client's record count through q = 1 / ceil(n / batch_size)")
_COHORT_SIZE = ("clients_sampled, clients_replied (metrics.csv): the Poisson cohort's size, whose distribution shifts slightly "
                "with whether a user is in the population")
_SEEDED = ("privacy.noise_source = \"seeded\": the noise (and under central DP the Poisson cohorts) follow from the seed in "
           "config.toml and model.pt, so anyone with them can regenerate and subtract it; use noise_source = \"os\" for a private run")


def outside_epsilon(mode: str, client_metrics: str, client_sampling: str = "poisson") -> list[str]:
    """The logged or sent fields that depend on private data without noise, for `privacy.mode`."""
    if mode == "none":
        return []
    fields = [] if client_metrics == "none" else [_NUM_EXAMPLES]
    if client_metrics == "clear":
        fields.append(_TRAIN_METRICS)
    if mode == "local":
        fields.append(_LOCAL_ACCOUNTING)
    elif client_sampling == "poisson":
        fields.append(_COHORT_SIZE)
    return fields


def disclosure(mode: str, noise_source: str, client_metrics: str, client_sampling: str = "poisson") -> dict[str, Any]:
    """summary.json's keys on what ε means for this run (see the module docstring)."""
    seeded = mode != "none" and noise_source == "seeded"
    return {"private": mode != "none" and not seeded, "not_private_because": _SEEDED if seeded else None,
            "outside_epsilon": outside_epsilon(mode, client_metrics, client_sampling)}
