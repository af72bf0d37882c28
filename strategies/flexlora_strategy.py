"""`strategy.name = "flexlora"`: FedAvg, except that LoRA adapter pairs are aggregated by
FlexLoRA (`strategies.flexlora`: the example-weighted mean of the updates B A, split back
by truncated SVD). With `lora.ranks` the round loop pads every reply to the server's rank
first (`fedft.fl.server.ranks`), so one aggregate serves clients of every rank. Under
FFA-LoRA only B travels and this is FedAvg, which is then exact."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp import strategy as fs

from strategies.flexlora import flexlora_states
from strategies.registry import register_strategy


class FlexLoRA(fs.FedAvg):
    """FedAvg of every array, then FlexLoRA for each (lora_B, lora_A) pair (Bai et al. 2024)."""

    def __init__(self, lora_alpha: float = 16.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lora_alpha = lora_alpha

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if arrays is None or not valid:
            return arrays, metrics
        weights = [float(cast(float, next(iter(m.content.metric_records.values()))[self.weighted_by_key])) for m in valid]  # checked by FedAvg
        states = [{k: v.numpy() for k, v in next(iter(m.content.array_records.values())).items()} for m in valid]
        for key, value in flexlora_states(states, weights, self.lora_alpha).items():
            arrays[key] = Array(np.ascontiguousarray(value))
        return arrays, metrics


register_strategy("flexlora")(FlexLoRA)
