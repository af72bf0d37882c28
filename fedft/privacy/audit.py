"""Loss-threshold membership inference (Yeom et al. 2018, "Privacy Risk in Machine
Learning", CSF): the attacker guesses "member" when the model's loss on a record is
below a threshold. Sweeping the threshold gives a ROC curve; its AUC is 0.5 for a
model that leaks nothing about membership and approaches 1 for one that memorised
its training records. TPR at 1% FPR (Carlini et al. 2022) reports the low-false-alarm
regime that matters for an attacker who must be confident.

Members are drawn from the clients' training records, non-members from the server's
held-out test set, the same number of each, seeded by the run's seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def per_example_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Cross-entropy of each record under `model` (eval mode, no gradients)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size])
            out.append(F.cross_entropy(logits, y[i:i + batch_size].long(), reduction="none").cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def loss_threshold_attack(member_losses: np.ndarray, nonmember_losses: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    """AUC and TPR at `fpr` of the score -loss (lower loss = more likely a member).
    TPR@FPR is the largest true-positive rate over thresholds whose false-positive
    rate is at most `fpr` (0 if no threshold gets there)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.concatenate([np.ones(len(member_losses)), np.zeros(len(nonmember_losses))])
    losses = np.concatenate([member_losses, nonmember_losses]).astype(np.float64)
    big = np.finfo(np.float64).max  # a diverged model (NaN/inf loss) tells the attacker nothing
    scores = -np.nan_to_num(losses, nan=big, posinf=big, neginf=-big)
    auc = float(roc_auc_score(labels, scores))
    fprs, tprs, _ = roc_curve(labels, scores)
    ok = fprs <= fpr + 1e-12
    return {"mia_auc": auc, "mia_tpr_at_1pct_fpr": float(tprs[ok].max()) if ok.any() else 0.0}


def sample_members(data: Any, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(member, non-member) indices into `data.full`: equal counts, at most `samples` each."""
    train = np.unique(np.concatenate([t for t, _ in data.clients]))
    if getattr(data, "canaries", None) is not None:  # the one-run audit's mislabeled canaries are not typical members
        train = np.setdiff1d(train, data.canaries.index)
    test = np.asarray(data.test)
    n = min(samples, len(train), len(test))
    rng = np.random.default_rng([seed, 5150])  # independent of training's streams
    return np.sort(rng.choice(train, n, replace=False)), np.sort(rng.choice(test, n, replace=False))


def run_mia(model: nn.Module, state: dict[str, torch.Tensor], data: Any, samples: int, seed: int) -> dict[str, Any]:
    """The attack on a run's final global model (`state`, loaded into `model`); summary.json keys."""
    members, nonmembers = sample_members(data, samples, seed)
    model.load_state_dict(state)
    as_t = torch.from_numpy
    m = per_example_losses(model, as_t(data.full.x[members]), as_t(data.full.y[members]))
    n = per_example_losses(model, as_t(data.full.x[nonmembers]), as_t(data.full.y[nonmembers]))
    return {**loss_threshold_attack(m, n), "mia_samples": int(len(members)), "mia_attack": "loss-threshold"}
