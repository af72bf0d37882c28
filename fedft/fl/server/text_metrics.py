"""What a run on text data adds: perplexity per round, the bigram baseline in
summary.json, and the vocabulary in model.pt (so `fedft generate` needs nothing else)."""

from __future__ import annotations

import math
from typing import Any

from fedft.ml.bigram import bigram_baseline
from fedft.ml.data.text import TextFederatedData
from fedft.ml.models import model_options


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy per character, in nats): the effective number of equally
    likely next characters; the vocabulary size for a uniform guess, 1 for a perfect model."""
    if math.isnan(mean_cross_entropy):
        return float("nan")
    return math.exp(mean_cross_entropy) if mean_cross_entropy < 700 else float("inf")


def with_perplexity(row: dict[str, Any]) -> dict[str, Any]:
    if "test_loss" in row:
        row["test_perplexity"] = perplexity(row["test_loss"])
    return row


def text_summary(data: TextFederatedData) -> dict[str, Any]:
    """Baseline numbers and who the clients are, for summary.json."""
    return {**bigram_baseline(data), "roles": list(data.roles)}


def checkpoint_extra(cfg, data: TextFederatedData) -> dict[str, Any]:  # cfg: FedftConfig
    return {"vocabulary": data.vocabulary, "model_options": model_options(cfg.model, cfg.lora), "seq_len": cfg.data.seq_len}
