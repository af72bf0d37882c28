"""Aggregation strategies: a registry of names -> Flower `Strategy` factories.

Pure aggregation math lives in `aggregation` (functions on arrays, tested against hand
computations; `flexlora`: LoRA adapters of mixed ranks); `flower` registers Flower's own strategies, `scaffold` fedft's SCAFFOLD.
May import `fedft.errors`, `fedft.config` and `fedft.fl.protocol` only: the round loop
(`fedft.fl.server`) uses strategies, never the reverse.
"""

from strategies import flexlora_strategy as _flexlora  # noqa: F401  (registers FlexLoRA)
from strategies import flower as _flower  # noqa: F401  (registers Flower's strategies)
from strategies import scaffold as _scaffold  # noqa: F401  (registers fedft's SCAFFOLD)
from strategies.registry import (
    FIXED_BY_FEDFT,
    RunFacts,
    build_strategy,
    check_strategy,
    register_strategy,
    strategy_names,
    strategy_origin,
    strategy_parameters,
)

__all__ = ["FIXED_BY_FEDFT", "RunFacts", "build_strategy", "check_strategy", "register_strategy", "strategy_names", "strategy_origin", "strategy_parameters"]
